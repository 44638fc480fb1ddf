"""The one exception type commands raise for a failure the user can act on."""

from __future__ import annotations


class CommandError(RuntimeError):
    """A one-line failure reported to the user with a non-zero exit."""
