"""The exception hierarchy.

Every error a user can meet is a `UserError` subclass carrying duplicity's exit code and a
hint; `cli.main` prints it as one line. Anything else is a bug and gets exit code 30
(duplicity's "unexpected exception"), with a traceback only under --debug.
"""

from __future__ import annotations


class UserError(Exception):
    """An error reported to the user as one line, with duplicity's exit code."""

    exit_code = 30

    def __init__(self, message: str, hint: str = "", exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def line(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class CommandLineError(UserError):
    exit_code = 2


class HostnameMismatchError(UserError):
    exit_code = 3


class ManifestError(UserError):
    """A manifest is missing (duplicity's 4), does not match (5) or is unreadable (6)."""

    exit_code = 5


class TargetNotEmptyError(UserError):
    exit_code = 11


class NoSignaturesError(UserError):
    exit_code = 17


class NothingToRestoreError(UserError):
    """The requested path is not in the backup (19); 20 when nothing at all is."""

    exit_code = 19


class NoChainsError(UserError):
    """duplicity prints "No backup chains found" and exits with its generic code 30."""

    exit_code = 30


class VolumeHashError(UserError):
    """A volume's content does not match its manifest hash, or cannot be parsed."""

    exit_code = 21


class BadSignerError(UserError):
    exit_code = 22


class LockError(UserError):
    exit_code = 23


class GpgError(UserError):
    exit_code = 31


class TempSpaceError(UserError):
    exit_code = 35


class SourceMismatchError(UserError):
    exit_code = 42


class SourceError(UserError):
    """The backup source is missing or not a directory (13); verify's directory: 12."""

    exit_code = 13


class BackendError(UserError):
    exit_code = 50


class BackendPermissionError(BackendError):
    exit_code = 51


class BackendNotFoundError(BackendError):
    exit_code = 52


class BackendNoSpaceError(BackendError):
    exit_code = 53


class BackendValidationError(BackendError):
    exit_code = 56


class RsyncError(UserError):
    """librsync rejected its input (corrupt or truncated signature or delta)."""

    exit_code = 21
