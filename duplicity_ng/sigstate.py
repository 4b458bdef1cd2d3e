"""The signature state of a chain: what every path looked like at the last backup.

A full-signatures file lists every path; each new-signatures file only the paths that changed.
Merging them by index, later files winning and `deleted` removing, gives the state at the
chain's end (FORMAT.md 3). Incrementals diff against it; list-current-files prints it.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from duplicity_ng.deflate import INFLATE_ERRORS
from duplicity_ng.entry import Entry, FileType
from duplicity_ng.errors import UserError
from duplicity_ng.format.members import (
    DELETED,
    SIGNATURE,
    SNAPSHOT,
    MemberNameError,
    header_entry,
    parse_member,
)
from duplicity_ng.format.tarstream import TarFormatError, TarReader


class SignatureFileError(UserError):
    exit_code = 21


@dataclass(slots=True)
class SigRecord:
    entry: Entry
    signature: bytes | None = None  # librsync signature, regular files only
    deleted: bool = False


def read_signatures(stream: BinaryIO, name: str) -> Iterator[SigRecord]:
    """The records of one signature tar, in index order."""
    try:
        for member in TarReader(stream):
            parsed = parse_member(member.header)
            if parsed.kind == DELETED:
                yield SigRecord(Entry(parsed.index, FileType.REG), deleted=True)
            elif parsed.kind in (SIGNATURE, SNAPSHOT):
                entry = header_entry(member.header, parsed.index)
                if parsed.kind == SIGNATURE:
                    entry.size = 0  # the header's size is the signature's, not the file's
                    yield SigRecord(entry, member.data)
                else:
                    yield SigRecord(entry)
    except (TarFormatError, MemberNameError, OSError, EOFError, *INFLATE_ERRORS) as exc:
        raise SignatureFileError(
            f"Signature file {name} is corrupt: {exc}",
            "run `cleanup`, or start a new chain with `full`",
        ) from exc


def merge_chain(files: Iterable[Iterator[SigRecord]]) -> Iterator[SigRecord]:
    """Merge signature files given oldest first into the live state (deleted paths dropped)."""
    tagged = [((r.entry.index, order, r) for r in it) for order, it in enumerate(files)]
    pending: SigRecord | None = None
    for index, _order, record in heapq.merge(*tagged, key=lambda t: (t[0], t[1])):
        if pending is not None and pending.entry.index != index and not pending.deleted:
            yield pending
        pending = record
    if pending is not None and not pending.deleted:
        yield pending
