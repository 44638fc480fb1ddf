"""Pushed events: POST /api/v1/unstract/{org_id}/events/ (auth, validation, storage, view)."""
