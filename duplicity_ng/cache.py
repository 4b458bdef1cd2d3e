"""The local archive dir: decrypted manifests and signatures of one backup target.

`<archive-dir>/<name>/`, with duplicity's inner layout (FORMAT.md 5). Only a cache: every
file in it can be fetched again from the backend, so a machine without one works too.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from duplicity_ng.errors import LockError, UserError


def default_name(url: str) -> str:
    """duplicity names the cache folder after the md5 of the target URL as typed."""
    return hashlib.md5(url.encode("utf-8", "surrogateescape"), usedforsecurity=False).hexdigest()


class ArchiveCache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            _make_private_dir(directory)
        except OSError as exc:
            raise UserError(
                f"Cannot create the archive dir {directory}: {exc.strerror or exc}",
                "choose another with --archive-dir",
            ) from exc

    def path(self, name: str) -> Path:
        return self.directory / name

    def names(self) -> list[str]:
        return [e.name for e in os.scandir(self.directory) if e.is_file()]

    def remove(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One duplicity-ng at a time per target (duplicity's exit code 23 otherwise)."""
        with open(self.path("lockfile"), "a+b") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    raise LockError(
                        f"Another duplicity-ng is using the archive dir {self.directory}",
                        "wait for it to finish",
                    ) from exc
                raise
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _make_private_dir(directory: Path) -> None:
    """Create `directory` (and missing parents) readable by its owner only.

    The cache holds decrypted manifests and signatures (every path name of the backup), so
    the folder is 0700 even when it already existed with wider permissions.
    """
    missing = []
    path = directory
    while not path.exists():
        missing.append(path)
        path = path.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            path.mkdir(mode=0o700)
    st = directory.stat()
    if stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == os.geteuid():
        directory.chmod(stat.S_IMODE(st.st_mode) & 0o700)
