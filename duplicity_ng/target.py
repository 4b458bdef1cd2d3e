"""Writing restored paths into a directory, safely.

Nothing from an archive may land outside the target: member names with `..` or a leading `/`
never reach here (format.members rejects them), and a parent that is a symlink or not a
directory is refused rather than followed. File data is written to a temporary name and
renamed over the final one only when complete. Directory metadata (mode, mtime) is applied
after the directory's contents, so read-only directories and mtimes come out right.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
from dataclasses import dataclass, field

from duplicity_ng.entry import Entry, FileType, Index, display
from duplicity_ng.log import Log
from duplicity_ng.restore import DataWriter
from duplicity_ng.usermap import OwnerMap


class UnsafePathError(Exception):
    pass


@dataclass
class DirectoryWriter:
    """A RestoreSink that writes into `root` (created if missing)."""

    root: bytes
    log: Log
    owners: OwnerMap
    restore_ownership: bool = True
    errors: int = 0
    _real_dirs: set[Index] = field(default_factory=set)
    _pending_dirs: list[Entry] = field(default_factory=list)
    _is_root: bool = field(default_factory=lambda: os.geteuid() == 0)

    # -- RestoreSink ----------------------------------------------------------------------
    def file(self, entry: Entry, write_data: DataWriter) -> None:
        path = self._prepare(entry)
        if path is None:
            return
        tmp = self._tmp_name(path)
        _unlink(tmp)  # left over from an interrupted restore
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            self._fail(entry.index, exc)
            return
        try:
            with os.fdopen(fd, "wb", buffering=1 << 20) as out:
                write_data(out)
            self._apply_metadata(tmp, entry)
            self._replace(tmp, path)
        except BaseException:
            _unlink(tmp)
            raise

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
        while self._pending_dirs:
            self._close_dir(self._pending_dirs.pop())

    # -- paths ----------------------------------------------------------------------------
    def _path(self, index: Index) -> bytes:
        return os.path.join(self.root, *index) if index else self.root

    def _prepare(self, entry: Entry) -> bytes | None:
        """Close finished directories and make sure the parent is a real directory of ours."""
        self._leave_dirs(entry.index)
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
        self._pending_dirs.append(entry)

    def _leave_dirs(self, index: Index) -> None:
        while self._pending_dirs:
            top = self._pending_dirs[-1].index
            if index[: len(top)] == top and len(index) > len(top):
                return
            self._close_dir(self._pending_dirs.pop())

    def _close_dir(self, entry: Entry) -> None:
        try:
            self._apply_metadata(self._path(entry.index), entry)
        except OSError as exc:
            self._fail(entry.index, exc)

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
