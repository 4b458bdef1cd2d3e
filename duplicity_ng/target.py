"""Writing restored paths into a directory, safely.

Nothing from an archive may land outside the target: member names with `..` or a leading `/`
never reach here (format.members rejects them), and a parent that is a symlink or not a
directory is refused rather than followed. Into a target that held something (--force) file
data is written to a temporary name and renamed over the final one only when complete; into
a new or empty target, where nothing can be overwritten, straight to its name. Directory
metadata (mode, mtime) is applied at the end, deepest first, so read-only directories and
mtimes come out right.

Small files are written by a few threads: creating a file costs the kernel far more than
its data (ext4 here: 0.1-0.8 ms a file), and on several cores those costs overlap.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from duplicity_ng.entry import Entry, FileType, Index, display
from duplicity_ng.log import Log
from duplicity_ng.restore import DataWriter
from duplicity_ng.usermap import OwnerMap

# Files up to this size are handed to the writer threads, at most PENDING of them at once.
SMALL = 1 << 20
PENDING = 64
WRITERS = 4


class UnsafePathError(Exception):
    pass


class _Capture:
    """Collects a file's data in memory up to `limit` bytes; past that it opens the file
    (through `open_file`) and writes straight to it."""

    def __init__(self, limit: int, open_file: Callable[[], int]) -> None:
        self._limit = limit
        self._open_file = open_file
        self.data = bytearray()
        self.fd: int | None = None

    def write(self, data: bytes | memoryview) -> int:
        if self.fd is None and len(self.data) + len(data) <= self._limit:
            self.data += data
        else:
            _write_all(self.fileno(), data)
        return len(data)

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        """The file, opened with what was collected so far written to it. (The restore's C
        patch also asks for it: it writes to a real file.)"""
        if self.fd is None:
            self.fd = self._open_file()
            _write_all(self.fd, self.data)
            self.data = bytearray()
        return self.fd

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return os.lseek(self.fileno(), offset, whence)


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@dataclass
class DirectoryWriter:
    """A RestoreSink that writes into `root` (created if missing)."""

    root: bytes
    log: Log
    owners: OwnerMap
    restore_ownership: bool = True
    errors: int = 0
    _real_dirs: set[Index] = field(default_factory=set)
    _dirs: list[Entry] = field(default_factory=list)  # metadata applied at the end
    _is_root: bool = field(default_factory=lambda: os.geteuid() == 0)
    _pending: deque[tuple[Index, Future[None]]] = field(default_factory=deque)
    _pool: ThreadPoolExecutor | None = None

    def __post_init__(self) -> None:
        # Nothing to overwrite in a new or empty target: files go straight to their names.
        try:
            self._fresh = not os.listdir(self.root)
        except FileNotFoundError:
            self._fresh = True
        except OSError:
            self._fresh = False

    # -- RestoreSink ----------------------------------------------------------------------
    def file(self, entry: Entry, write_data: DataWriter) -> None:
        path = self._prepare(entry)
        if path is None:
            return
        opened: list[bytes] = []

        def open_file() -> int:
            fd, name = self._create(path)
            opened.append(name)
            return fd

        capture = _Capture(SMALL, open_file)
        try:
            write_data(capture)  # type: ignore[arg-type]
        except BaseException:
            if capture.fd is not None:
                os.close(capture.fd)
                _unlink(opened[0])
            raise
        if capture.fd is None:
            self._submit(entry, path, bytes(capture.data))
            return
        try:
            self._finish_file(capture.fd, opened[0], path, entry)
        except OSError as exc:
            self._fail(entry.index, exc)

    def special(self, entry: Entry) -> None:
        if entry.type is FileType.DIR:
            self._directory(entry)
            return
        path = self._prepare(entry)
        if path is None:
            return
        tmp = self._tmp_name(path)
        _unlink(tmp)
        try:
            if entry.type is FileType.SYM:
                os.symlink(entry.linkname, tmp)
            elif entry.type is FileType.FIFO:
                os.mkfifo(tmp, 0o600)
            elif self._is_root:
                kind = stat.S_IFCHR if entry.type is FileType.CHR else stat.S_IFBLK
                os.mknod(tmp, kind | 0o600, os.makedev(entry.devmajor, entry.devminor))
            else:
                self.log.warning(f"Not restoring device {display(entry.index)}: needs root")
                return
            self._apply_metadata(tmp, entry)
            self._replace(tmp, path)
        except OSError as exc:
            _unlink(tmp)
            self._fail(entry.index, exc)

    def finish(self) -> None:
        self._wait(0)
        if self._pool is not None:
            self._pool.shutdown()
        # Deepest first: a directory's mode may forbid writing its children's metadata.
        for entry in sorted(self._dirs, key=lambda e: len(e.index), reverse=True):
            try:
                self._apply_metadata(self._path(entry.index), entry)
            except OSError as exc:
                self._fail(entry.index, exc)

    # -- files ----------------------------------------------------------------------------
    def _create(self, path: bytes) -> tuple[int, bytes]:
        """Open a new file for `path`: the path itself in a fresh target, else a temporary
        name to rename over it once complete. Returns (descriptor, name opened)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        if self._fresh:
            try:
                return os.open(path, flags, 0o600), path
            except FileExistsError:
                pass  # something is there after all: go the safe way
        tmp = self._tmp_name(path)
        _unlink(tmp)  # left over from an interrupted restore
        return os.open(tmp, flags, 0o600), tmp

    def _submit(self, entry: Entry, path: bytes, data: bytes) -> None:
        self._wait(PENDING - 1)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(WRITERS, thread_name_prefix="restore")
        self._pending.append((entry.index, self._pool.submit(self._write_file, entry, path, data)))

    def _write_file(self, entry: Entry, path: bytes, data: bytes) -> None:
        fd, name = self._create(path)
        try:
            _write_all(fd, data)
        except BaseException:
            os.close(fd)
            _unlink(name)
            raise
        self._finish_file(fd, name, path, entry)

    def _wait(self, keep: int) -> None:
        """Collect finished writes until at most `keep` are still pending."""
        while len(self._pending) > keep or (self._pending and self._pending[0][1].done()):
            index, future = self._pending.popleft()
            try:
                future.result()
            except OSError as exc:
                self._fail(index, exc)

    def _finish_file(self, fd: int, name: bytes, path: bytes, entry: Entry) -> None:
        """Metadata through the descriptor (no path lookups), then the name if temporary."""
        try:
            if self.restore_ownership and self._is_root:
                os.fchown(fd, *self.owners.resolve(entry))
            os.fchmod(fd, entry.mode)
            os.utime(fd, ns=(time.time_ns(), entry.mtime * 1_000_000_000))
        except BaseException:
            os.close(fd)
            if name != path:
                _unlink(name)
            raise
        os.close(fd)
        if name != path:
            try:
                self._replace(name, path)
            except BaseException:
                _unlink(name)
                raise

    # -- paths ----------------------------------------------------------------------------
    def _path(self, index: Index) -> bytes:
        return os.path.join(self.root, *index) if index else self.root

    def _prepare(self, entry: Entry) -> bytes | None:
        """Make sure the parent is a real directory of ours."""
        try:
            self._ensure_parent(entry.index)
        except (OSError, UnsafePathError) as exc:
            self._fail(entry.index, exc)
            return None
        return self._path(entry.index)

    def _ensure_parent(self, index: Index) -> None:
        """Nothing is created until there is something to restore, not even the target."""
        if not index:
            os.makedirs(os.path.dirname(self.root), exist_ok=True)
        for depth in range(len(index)):
            parent = index[:depth]
            if parent in self._real_dirs:
                continue
            path = self._path(parent)
            try:
                st = os.lstat(path) if depth else os.stat(path)  # the user's target may be a link
            except FileNotFoundError:
                # The archive (or a --path-to-restore subset) has no entry for this directory.
                os.makedirs(path, 0o700, exist_ok=True)
            else:
                if not stat.S_ISDIR(st.st_mode):
                    raise UnsafePathError(
                        f"{display(parent)} in the target is not a directory"
                        + (" (a symlink)" if stat.S_ISLNK(st.st_mode) else "")
                    )
            self._real_dirs.add(parent)

    def _directory(self, entry: Entry) -> None:
        path = self._prepare(entry) if entry.index else self.root
        if path is None:
            return
        try:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode):
                # Only with --force can there be something here; it is replaced by the directory.
                self._wait(0)  # a pending write may be what is there
                _remove(path)
                raise FileNotFoundError
        except FileNotFoundError:
            os.makedirs(path, 0o700, exist_ok=True)
        except OSError as exc:
            self._fail(entry.index, exc)
            return
        # Owner-writable while its contents are restored; the real mode comes at the end.
        os.chmod(path, 0o700)
        self._real_dirs.add(entry.index)
        self._dirs.append(entry)

    def _tmp_name(self, path: bytes) -> bytes:
        head, tail = os.path.split(path)
        return os.path.join(head, b".%s.ngrestore" % tail[:200])

    def _replace(self, tmp: bytes, path: bytes) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            pass
        else:
            if stat.S_ISDIR(st.st_mode):
                # rename() cannot replace a directory; the new data is complete, so remove it.
                shutil.rmtree(path)
        os.rename(tmp, path)

    # -- metadata -------------------------------------------------------------------------
    def _apply_metadata(self, path: bytes, entry: Entry) -> None:
        if self.restore_ownership and self._is_root:
            uid, gid = self.owners.resolve(entry)
            os.lchown(path, uid, gid)
        if entry.type is FileType.SYM:
            return  # duplicity restores neither a symlink's mode nor its mtime
        os.chmod(path, entry.mode)
        os.utime(path, ns=(time.time_ns(), entry.mtime * 1_000_000_000), follow_symlinks=False)

    def _fail(self, index: Index, exc: BaseException) -> None:
        self.errors += 1
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        self.log.warning(f"Error restoring {display(index)}: {reason}")


def _unlink(path: bytes) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _remove(path: bytes) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)
