"""verify: restore the chain in memory and compare it with a local directory.

Every needed volume is fetched, hash-checked and patched exactly as for a restore. Unlike
duplicity, whose verify compares nothing without --compare-data, metadata (type, permissions,
owner, mtime, symlink target, device numbers) is always compared; --compare-data adds the
file contents.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from duplicity_ng.entry import Entry, FileType, Index, display
from duplicity_ng.log import Log
from duplicity_ng.restore import DataWriter


class _ContentComparer:
    """A writable stream that compares what is written with a local file."""

    def __init__(self, path: bytes) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        self.equal = True

    def write(self, data: bytes) -> int:
        if self.equal and self._file.read(len(data)) != data:
            self.equal = False
        return len(data)

    def close(self) -> bool:
        """True if the local file had exactly the bytes written, no more."""
        equal = self.equal and self._file.read(1) == b""
        self._file.close()
        return equal


@dataclass
class Comparer:
    """A RestoreSink that compares with the paths of a local walk (both in index order)."""

    local: Iterator[tuple[Entry, bytes]]
    log: Log
    compare_data: bool = False
    compared: int = 0
    differences: int = 0
    _head: tuple[Entry, bytes] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._head = next(self.local, None)

    def file(self, entry: Entry, write_data: DataWriter) -> None:
        local = self._match(entry.index)
        if local is None or not self._same_metadata(entry, local[0]):
            return
        if self.compare_data:
            comparer = _ContentComparer(local[1])
            try:
                write_data(comparer)  # type: ignore[arg-type]
            finally:
                equal = comparer.close()
            if not equal:
                self._difference(entry.index, "Data for file {} is different")

    def special(self, entry: Entry) -> None:
        local = self._match(entry.index)
        if local is not None:
            self._same_metadata(entry, local[0])

    def finish(self) -> None:
        while self._head is not None:
            self._new_local(self._head[0])
            self._head = next(self.local, None)

    def _match(self, index: Index) -> tuple[Entry, bytes] | None:
        self.compared += 1
        while self._head is not None and self._head[0].index < index:
            self._new_local(self._head[0])
            self._head = next(self.local, None)
        if self._head is None or self._head[0].index != index:
            self._difference(index, "File {} is missing")
            return None
        found, self._head = self._head, next(self.local, None)
        return found

    def _new_local(self, entry: Entry) -> None:
        self.compared += 1
        self._difference(entry.index, "New file {}")

    def _same_metadata(self, backup: Entry, local: Entry) -> bool:
        if backup.type is not local.type:
            return self._difference(
                backup.index, f"File {{}} has type {local.type.value}, expected {backup.type.value}"
            )
        if backup.type is FileType.SYM:
            if backup.linkname != local.linkname:
                return self._difference(
                    backup.index,
                    f"Symlink {{}} points to {_show(local.linkname)}, "
                    f"expected {_show(backup.linkname)}",
                )
            return True
        if (backup.mode, backup.uid, backup.gid) != (local.mode, local.uid, local.gid):
            return self._difference(
                backup.index,
                f"File {{}} has permissions {local.uid}:{local.gid} {local.mode:o}, "
                f"expected {backup.uid}:{backup.gid} {backup.mode:o}",
            )
        if backup.type in (FileType.CHR, FileType.BLK):
            if (backup.devmajor, backup.devminor) != (local.devmajor, local.devminor):
                return self._difference(backup.index, "Device {} has other device numbers")
            return True
        if backup.mtime != local.mtime:
            return self._difference(
                backup.index,
                f"File {{}} has mtime {_pretty(local.mtime)}, expected {_pretty(backup.mtime)}",
            )
        return True

    def _difference(self, index: Index, message: str) -> bool:
        self.differences += 1
        self.log.notice("Difference found: " + message.format(display(index)))
        return False


def _pretty(t: int) -> str:
    return time.asctime(time.localtime(t))


def _show(target: bytes) -> str:
    return os.fsdecode(target)
