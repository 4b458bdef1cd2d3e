"""file:// — a folder on a local or mounted filesystem."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from duplicity_ng.backends.base import ParsedUrl, RemoteFile, register
from duplicity_ng.errors import (
    BackendError,
    BackendNoSpaceError,
    BackendNotFoundError,
    BackendPermissionError,
)


def _backend_error(exc: OSError, what: str) -> BackendError:
    message = f"{what}: {exc.strerror or exc}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return BackendPermissionError(message, "check the folder's permissions")
    if exc.errno == errno.ENOSPC:
        return BackendNoSpaceError(message, "free some space on the target")
    if exc.errno == errno.ENOENT:
        return BackendNotFoundError(message)
    return BackendError(message)


class LocalBackend:
    def __init__(self, directory: Path, display_url: str) -> None:
        self.directory = directory
        self.display_url = display_url

    def _path(self, name: str) -> Path:
        if "/" in name or name in ("", ".", ".."):
            raise BackendError(f"Refusing unsafe remote file name {name!r}")
        return self.directory / name

    def list(self) -> list[RemoteFile]:
        try:
            with os.scandir(self.directory) as it:
                return [
                    RemoteFile(e.name, e.stat(follow_symlinks=True).st_size)
                    for e in it
                    if e.is_file(follow_symlinks=True)
                ]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise _backend_error(exc, f"Cannot list {self.display_url}") from exc

    def put(self, local: Path, name: str) -> None:
        target = self._path(name)
        tmp = target.with_name(f".{name}.ngtmp")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(local, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())
            # The old file (if any) stays until the new one is complete on disk.
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise _backend_error(exc, f"Cannot write {name} to {self.display_url}") from exc

    def get(self, name: str, local: Path) -> None:
        try:
            with open(self._path(name), "rb") as src, open(local, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except OSError as exc:
            raise _backend_error(exc, f"Cannot read {name} from {self.display_url}") from exc

    def delete(self, names: list[str]) -> None:
        for name in names:
            try:
                self._path(name).unlink(missing_ok=True)
            except OSError as exc:
                raise _backend_error(exc, f"Cannot delete {name} on {self.display_url}") from exc

    def close(self) -> None:
        pass


@register("file")
def open_local(url: ParsedUrl) -> LocalBackend:
    return LocalBackend(Path(url.path), url.display)
