"""Two kinds of failure.

``KnownError`` is something the user can act on (a broken model file, a corrupt or locked
database, a full disk): it carries one clear sentence and is shown as a dialog in the window and
as ``error: ...`` with exit code 1 on the command line. Anything else is a bug: it goes to the
excepthook, which writes a crash report to the data folder.
"""

from __future__ import annotations

import errno


class KnownError(Exception):
    """An error with a message meant for the user."""

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message if not self.hint else f"{self.message} {self.hint}"


class ModelError(KnownError):
    """A model file that cannot be used."""


class StoreError(KnownError):
    """The database cannot be opened or written."""


class StorageFullError(StoreError):
    """The disk is full or the store is read-only; nothing already stored was damaged."""


class EngineError(KnownError):
    """The engine failed while generating (server down, model crashed, ...)."""


def storage_error_from_os(exc: BaseException, what: str) -> StoreError:
    """Turn an OSError / sqlite3 error raised while writing into a message the user can act on."""
    text = str(exc).lower()
    no = getattr(exc, "errno", None)
    if no == errno.ENOSPC or "full" in text:
        return StorageFullError(
            f"Could not save {what}: the disk is full. Free some space; nothing already saved was "
            "lost and this chat stays open."
        )
    if no in (errno.EROFS, errno.EACCES, errno.EPERM) or "readonly" in text or "read-only" in text:
        return StorageFullError(
            f"Could not save {what}: the data folder is read-only. Nothing already saved was lost."
        )
    if "locked" in text or "busy" in text:
        return StoreError(f"Could not save {what}: the database is locked by another program.")
    return StoreError(f"Could not save {what}: {exc}")
