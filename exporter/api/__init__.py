"""The JSON API under /api/v1/unstract/{org_id}/metrics/: routes.py mounts the views."""
