"""User-facing errors: the CLI prints the message on one line and exits with `exit_code`, no traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix (bad path, bad option). The message says what, where and how to fix."""

    exit_code = 2


class DatasetNotFound(UserError):
    """A dataset root, or a folder expected inside it, is missing."""
