"""The exception types commands raise for a failure the user can act on."""

from __future__ import annotations


class CommandError(RuntimeError):
    """A one-line failure reported to the user with a non-zero exit."""

    exit_code = 1


class InputError(CommandError):
    """The command's input (a file it was given) is invalid: nothing was done; exit 2."""

    exit_code = 2
