"""One path's metadata, independent of where it came from (the walk, a tar header, a sigtar).

A path is identified by its *index*: the tuple of raw byte components below the source root
(`()` for the root itself). Tuples of bytes compare exactly as duplicity orders paths
(depth-first, names byte-sorted), so streams of entries merge by index.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

Index = tuple[bytes, ...]


class FileType(enum.Enum):
    REG = "reg"
    DIR = "dir"
    SYM = "sym"
    FIFO = "fifo"
    CHR = "chr"
    BLK = "blk"


@dataclass(slots=True)
class Entry:
    index: Index
    type: FileType
    mode: int = 0  # permission bits only (07777)
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    size: int = 0  # regular files only
    linkname: bytes = b""  # symlink target
    devmajor: int = 0
    devminor: int = 0
    uname: str = ""
    gname: str = ""

    @property
    def path(self) -> bytes:
        """The relative path as bytes, b"." for the root (duplicity's display form)."""
        return b"/".join(self.index) if self.index else b"."

    def same_as(self, other: Entry) -> bool:
        """duplicity's "unchanged" test (FORMAT.md 2.3): size and ctime are not compared."""
        if self.type is not other.type:
            return False
        if self.type is FileType.SYM:
            return self.linkname == other.linkname
        if self.type in (FileType.CHR, FileType.BLK):
            return (self.mode, self.devmajor, self.devminor) == (
                other.mode,
                other.devmajor,
                other.devminor,
            )
        return (self.mode, self.uid, self.gid, self.mtime) == (
            other.mode,
            other.uid,
            other.gid,
            other.mtime,
        )


def index_from_path(path: bytes) -> Index:
    """b"a/b" -> (b"a", b"b"); b"." and b"" -> ()."""
    return tuple(c for c in path.split(b"/") if c and c != b".")


def display(index: Index) -> str:
    """A path for messages: raw bytes decoded with surrogateescape, printable as-is."""
    return (b"/".join(index) or b".").decode("utf-8", "surrogateescape")
