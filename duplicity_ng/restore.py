"""The restore pipeline: fetch the volumes a restore needs, collate the sets, patch, hand over.

Each backup set of the chain becomes a `SetCursor` over its member stream (volumes fetched
one after another and hash-checked before use). The cursors advance together by index; for
each path the entries from the last snapshot (or deletion) onward are applied (FORMAT.md 2.4)
and the result goes to a sink: the directory writer for restore, the comparer for verify.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from duplicity_ng import rsync
from duplicity_ng.collection import BackupSet
from duplicity_ng.container import sha1_of
from duplicity_ng.deflate import INFLATE_ERRORS
from duplicity_ng.entry import Entry, FileType, Index, display
from duplicity_ng.errors import NothingToRestoreError, RsyncError, VolumeHashError
from duplicity_ng.format.manifest import Manifest
from duplicity_ng.format.members import (
    DELETED,
    DIFF,
    MemberName,
    MemberNameError,
    header_entry,
    parse_member,
)
from duplicity_ng.format.tarstream import TarFormatError, TarMember, TarReader
from duplicity_ng.log import Log
from duplicity_ng.repository import Repository

DataWriter = Callable[[BinaryIO], None]


class RestoreSink(Protocol):
    """Receives the restored tree in index order, each path exactly once."""

    def file(self, entry: Entry, write_data: DataWriter) -> None:
        """A regular file; `write_data(out)` writes its content into `out`."""

    def special(self, entry: Entry) -> None:
        """A directory, symlink, fifo or device."""

    def finish(self) -> None: ...


@dataclass
class SetSource:
    """One backup set to read: its name for messages, manifest, and the volumes needed."""

    bset: BackupSet
    manifest: Manifest
    volumes: list[int]


class VolumeStream:
    """The members of a set's needed volumes, in order, each volume checked before it is read.

    Up to `depth` next volumes are fetched, hash-checked and decrypted in the background while
    this one is read, so at most depth + 1 of the set's volumes are on local disk at once.
    """

    def __init__(
        self,
        repo: Repository,
        source: SetSource,
        workdir: Path,
        pool: ThreadPoolExecutor,
        depth: int = 1,
    ) -> None:
        self._repo = repo
        self._source = source
        self._workdir = workdir
        self._pool = pool
        self._depth = max(depth, 1)

    def members(self) -> Generator[tuple[MemberName, TarMember]]:
        numbers = iter(self._source.volumes)
        ahead: deque[tuple[str, Future[BinaryIO]]] = deque()

        def fetch_ahead() -> None:
            while len(ahead) < self._depth and (number := next(numbers, None)) is not None:
                name = self._remote_name(number)
                ahead.append((name, self._pool.submit(self._fetch_opened, number, name)))

        fetch_ahead()
        try:
            while ahead:
                name, future = ahead.popleft()
                stream = future.result()
                fetch_ahead()
                with stream:
                    yield from self._read_volume(name, stream)
        finally:
            for _name, future in ahead:
                future.cancel()
                with contextlib.suppress(BaseException):
                    future.result().close()

    def _remote_name(self, number: int) -> str:
        bset = self._source.bset
        name = bset.volumes.get(number)
        if name is None:
            raise VolumeHashError(
                f"Volume {number} of the backup set of {bset.end_time} is missing on "
                f"{self._repo.backend.display_url}",
                "the set is damaged; restore from another time or chain",
            )
        return name

    def _fetch_opened(self, number: int, name: str) -> BinaryIO:
        """Fetch, check against the manifest and open (decrypted) one volume.

        The files are unlinked once open: nothing is left behind whatever happens next."""
        path = self._workdir / f"{name}.fetch"
        try:
            self._repo.fetch(name, path)
            verified = self._check_hash(number, name, path)
            return self._repo.codec.open(path, name, verified)
        finally:
            path.unlink(missing_ok=True)

    def _read_volume(self, name: str, stream: BinaryIO) -> Iterator[tuple[MemberName, TarMember]]:
        try:
            for member in TarReader(stream):
                yield parse_member(member.header), member
        except (TarFormatError, MemberNameError, OSError, EOFError, *INFLATE_ERRORS) as exc:
            raise VolumeHashError(
                f"Volume {name} is corrupt: {exc}", "the backend copy is damaged"
            ) from exc

    def _check_hash(self, number: int, name: str, path: Path) -> bool:
        """Raise if the volume does not match its manifest; False if there is no hash."""
        info = self._source.manifest.volumes.get(number)
        expected = info.hashes.get("SHA1") if info else None
        if expected is None:
            return False
        actual = sha1_of(path)
        if actual.lower() != expected.lower():
            raise VolumeHashError(
                f"Volume {name} does not match its manifest (SHA1 {actual}, expected {expected})",
                "the backend copy is corrupt or truncated",
            )
        return True


class SetCursor:
    """A position in one set's member stream: the entry at the head, and its payload."""

    def __init__(self, members: Generator[tuple[MemberName, TarMember]], label: str) -> None:
        self._members = members
        self.label = label
        self.head: tuple[MemberName, TarMember] | None = None
        self._advance()

    def _advance(self) -> None:
        self.head = next(self._members, None)

    @property
    def index(self) -> Index | None:
        return self.head[0].index if self.head is not None else None

    def payload(self) -> Iterator[bytes]:
        """The head entry's data, chunk by chunk across volumes; leaves the cursor past it."""
        assert self.head is not None
        name, member = self.head
        yield member.data
        self._advance()
        if name.chunk is None:
            return
        expected = name.chunk + 1
        while self.head is not None:
            nxt, member = self.head
            if nxt.chunk is None or nxt.index != name.index or nxt.kind != name.kind:
                break
            if nxt.chunk != expected:
                raise VolumeHashError(
                    f"{self.label}: chunk {nxt.chunk} of {display(name.index)} follows "
                    f"chunk {expected - 1}",
                    "the set is damaged",
                )
            yield member.data
            expected += 1
            self._advance()

    def close(self) -> None:
        """Stop reading: background fetches are dropped and their files deleted."""
        self._members.close()  # type: ignore[attr-defined]

    def skip(self) -> None:
        for _ in self.payload():
            pass


@dataclass
class RestoreStats:
    files: int = 0
    errors: int = 0


class Restorer:
    """Collates the sets of a chain and feeds the result for one subtree to a sink."""

    def __init__(
        self,
        repo: Repository,
        sources: list[SetSource],
        subtree: Index,
        sink: RestoreSink,
        log: Log,
        workdir: Path,
        concurrency: int = 2,
    ) -> None:
        self._repo = repo
        self._sources = sources
        self._subtree = subtree
        self._sink = sink
        self._log = log
        self._workdir = workdir
        self._concurrency = max(concurrency, 1)
        self.stats = RestoreStats()

    def run(self) -> None:
        with ThreadPoolExecutor(self._concurrency, thread_name_prefix="fetch") as pool:
            cursors = [
                SetCursor(
                    VolumeStream(
                        self._repo, s, self._workdir, pool, depth=self._concurrency
                    ).members(),
                    _label(s.bset),
                )
                for s in self._sources
            ]
            try:
                self._collate(cursors)
            finally:
                for cursor in cursors:
                    cursor.close()
        if self.stats.files == 0 and self._subtree:
            raise NothingToRestoreError(
                f"{display(self._subtree)} not found in archive - no files restored."
            )
        if self.stats.files == 0:
            raise NothingToRestoreError(
                "No files found in archive - nothing restored.", exit_code=20
            )
        self._sink.finish()

    def _collate(self, cursors: list[SetCursor]) -> None:
        while True:
            live = [c for c in cursors if c.index is not None]
            if not live:
                break
            index = min(c.index for c in live)  # type: ignore[type-var]
            group = [c for c in live if c.index == index]
            if index[: len(self._subtree)] == self._subtree:
                self._restore_path(index, group)
            else:
                for cursor in group:
                    cursor.skip()

    def _restore_path(self, index: Index, group: list[SetCursor]) -> None:
        """Apply the entries for one path: the last snapshot or deletion, then later diffs."""
        kinds = [c.head[0].kind for c in group]  # type: ignore[index]
        base = max((i for i, k in enumerate(kinds) if k != DIFF), default=None)
        for cursor in group[: base or 0]:
            cursor.skip()
        if base is None or kinds[base] == DELETED:
            if base is None:
                self._log.warning(f"Skipping {display(index)}: a diff without a base snapshot")
                self.stats.errors += 1
            for cursor in group[base or 0 :]:
                cursor.skip()
            return
        chain = group[base:]
        last_header = chain[-1].head[1].header  # type: ignore[index]
        entry = header_entry(last_header, index[len(self._subtree) :])
        self.stats.files += 1
        if entry.type is not FileType.REG:
            for cursor in chain:
                cursor.skip()
            self._sink.special(entry)
            return
        data = _PatchedData(chain, self._workdir, display(index))
        self._sink.file(entry, data.write_to)
        if not data.consumed:  # the sink skipped the file; move the cursors past it anyway
            for cursor in chain:
                cursor.skip()


class _PatchedData:
    """Writes a file's content: the base snapshot, patched by each following diff in turn."""

    def __init__(self, chain: list[SetCursor], workdir: Path, label: str) -> None:
        self._chain = chain
        self._workdir = workdir
        self._label = label
        self.consumed = False

    def write_to(self, out: BinaryIO) -> None:
        assert not self.consumed, "a payload can be read once"
        self.consumed = True
        base, diffs = self._chain[0], self._chain[1:]
        if not diffs:
            for data in base.payload():
                out.write(data)
            return
        basis = tempfile.TemporaryFile(dir=self._workdir)  # noqa: SIM115 - closed below
        try:
            for data in base.payload():
                basis.write(data)
            for cursor in diffs[:-1]:
                patched = tempfile.TemporaryFile(dir=self._workdir)  # noqa: SIM115
                self._patch(basis, cursor, patched)
                basis.close()
                basis = patched
            self._patch(basis, diffs[-1], out)
        finally:
            basis.close()

    def _patch(self, basis: BinaryIO, cursor: SetCursor, out: BinaryIO) -> None:
        basis.flush()
        basis.seek(0)
        try:
            if _is_real_file(out):
                self._patch_in_c(basis, cursor, out)
                return
            job = rsync.PatchJob(basis)
            # In pieces: one COPY command of the delta can stand for gigabytes of output.
            for data in cursor.payload():
                for piece in job.feed_chunks(data):
                    out.write(piece)
            for piece in job.finish_chunks():
                out.write(piece)
        except RsyncError as exc:
            raise VolumeHashError(
                f"Cannot patch {self._label}: {exc.message}", "the diff in the archive is damaged"
            ) from exc

    def _patch_in_c(self, basis: BinaryIO, cursor: SetCursor, out: BinaryIO) -> None:
        """The delta goes to a file first; then librsync patches file to file, without a
        byte passing through Python (a third of a big file's restore time)."""
        with tempfile.TemporaryFile(dir=self._workdir) as delta:
            for data in cursor.payload():
                delta.write(data)
            delta.flush()
            delta.seek(0)
            out.flush()
            rsync.patch_files(basis, delta, out)
        out.seek(0, os.SEEK_END)


def _is_real_file(f: BinaryIO) -> bool:
    try:
        f.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    return True


def _label(bset: BackupSet) -> str:
    return f"{bset.set_kind.value} set of {bset.end_time}"
