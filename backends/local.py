"""file:// — a folder on a local or mounted filesystem."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from duplicity_ng.backends.base import Capabilities, ParsedUrl, RemoteFile, register
from duplicity_ng.backends.options import BackendOptions
from duplicity_ng.backends.verify import is_temp_name, temp_name
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
    # put() writes a temporary file and renames it: atomic without the wrapper.
    capabilities = Capabilities(
        atomic_put=True, rename=True, stat=True, ranged_get=True, max_concurrency=8
    )

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
                    if e.is_file(follow_symlinks=True) and not is_temp_name(e.name)
                ]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise _backend_error(exc, f"Cannot list {self.display_url}") from exc

    def put(self, local: Path, name: str) -> None:
        target = self._path(name)
        tmp = target.with_name(temp_name(name))
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

    def rename(self, src: str, dst: str) -> None:
        try:
            os.replace(self._path(src), self._path(dst))
        except OSError as exc:
            raise _backend_error(exc, f"Cannot rename {src} on {self.display_url}") from exc

    def stat(self, name: str) -> RemoteFile | None:
        try:
            return RemoteFile(name, self._path(name).stat().st_size)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _backend_error(exc, f"Cannot look up {name} on {self.display_url}") from exc

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        try:
            with open(self._path(name), "rb") as src:
                src.seek(offset)
                return src.read(length)
        except OSError as exc:
            raise _backend_error(exc, f"Cannot read {name} from {self.display_url}") from exc

    def close(self) -> None:
        pass


@register("file")
def open_local(url: ParsedUrl, options: BackendOptions) -> LocalBackend:
    return LocalBackend(Path(url.path), url.display)
