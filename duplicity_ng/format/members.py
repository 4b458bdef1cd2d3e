"""Tar member names and headers of volumes and signature files (FORMAT.md 2.2 and 3).

A member name is `<kind>/<path>`; multivol kinds add `/<chunk>`. This module turns names into
(kind, index, chunk) and Entry objects into tar headers, in both directions.
"""

from __future__ import annotations

import stat as statmod
from dataclasses import dataclass

from duplicity_ng.entry import Entry, FileType, Index
from duplicity_ng.format.tarstream import TarHeader

CHUNK_SIZE = 64 * 1024

SNAPSHOT = "snapshot"
DIFF = "diff"
DELETED = "deleted"
SIGNATURE = "signature"
MULTIVOL_SNAPSHOT = "multivol_snapshot"
MULTIVOL_DIFF = "multivol_diff"
_KINDS = {SNAPSHOT, DIFF, DELETED, SIGNATURE, MULTIVOL_SNAPSHOT, MULTIVOL_DIFF}

_TYPE_TO_TAR = {
    FileType.REG: b"0",
    FileType.DIR: b"5",
    FileType.SYM: b"2",
    FileType.FIFO: b"6",
    FileType.CHR: b"3",
    FileType.BLK: b"4",
}
_TAR_TO_TYPE = {v: k for k, v in _TYPE_TO_TAR.items()}
_TAR_TO_TYPE[b"\0"] = FileType.REG  # old tars mark regular files with NUL
_TAR_TO_TYPE[b"7"] = FileType.REG  # contiguous file


class MemberNameError(ValueError):
    """A member name that is not duplicity's, or that would escape the target."""


@dataclass(frozen=True, slots=True)
class MemberName:
    kind: str  # one of the kinds above, multivol_ prefix stripped
    index: Index
    chunk: int | None  # 1-based chunk number of a multivol member

    @property
    def multivol(self) -> bool:
        return self.chunk is not None


def parse_member_name(name: bytes) -> MemberName:
    kind, _, rest = name.partition(b"/")
    try:
        kind_s = kind.decode("ascii")
    except UnicodeDecodeError:
        kind_s = ""
    if kind_s not in _KINDS:
        raise MemberNameError(f"unknown member kind in {name!r}")
    parts = [c for c in rest.split(b"/") if c and c != b"."]
    if rest.startswith(b"/") or b".." in parts:
        raise MemberNameError(f"unsafe path in member {name!r}")
    chunk = None
    if kind_s.startswith("multivol_"):
        if not parts or not parts[-1].isdigit():
            raise MemberNameError(f"multivol member without chunk number: {name!r}")
        chunk = int(parts.pop())
        kind_s = kind_s.removeprefix("multivol_")
    return MemberName(kind_s, tuple(parts), chunk)


def parse_member(header: TarHeader) -> MemberName:
    """The member's name, refusing names and types duplicity never writes (e.g. hard links)."""
    if header.type not in _TAR_TO_TYPE:
        raise MemberNameError(f"unsupported tar member type {header.type!r} for {header.name!r}")
    return parse_member_name(header.name)


def member_name(
    kind: str, index: Index, chunk: int | None = None, *, sigtar: bool = False
) -> bytes:
    if chunk is not None:
        return b"multivol_%s/%s/%d" % (kind.encode(), b"/".join(index), chunk)
    if not index:
        # The root is "snapshot/./" in volumes and "snapshot/" in signature files.
        return kind.encode() if sigtar else kind.encode() + b"/."
    return kind.encode() + b"/" + b"/".join(index)


def entry_header(entry: Entry, name: bytes, size: int = 0) -> TarHeader:
    return TarHeader(
        name=name,
        type=_TYPE_TO_TAR[entry.type],
        mode=entry.mode,
        uid=entry.uid,
        gid=entry.gid,
        size=size,
        mtime=max(entry.mtime, 0),
        linkname=entry.linkname,
        uname=entry.uname,
        gname=entry.gname,
        devmajor=entry.devmajor,
        devminor=entry.devminor,
    )


def deleted_header(index: Index) -> TarHeader:
    return TarHeader(name=member_name(DELETED, index), type=b"0")


def header_entry(header: TarHeader, index: Index) -> Entry:
    ftype = _TAR_TO_TYPE.get(header.type)
    if ftype is None:
        raise MemberNameError(f"unsupported tar member type {header.type!r} for {header.name!r}")
    return Entry(
        index=index,
        type=ftype,
        mode=statmod.S_IMODE(header.mode),
        uid=header.uid,
        gid=header.gid,
        mtime=header.mtime,
        size=header.size,
        linkname=header.linkname,
        devmajor=header.devmajor,
        devminor=header.devminor,
        uname=header.uname,
        gname=header.gname,
    )
