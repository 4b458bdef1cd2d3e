"""The delta and new signature of a big changed file, computed on several cores.

The file is cut into segments whose boundaries are multiples of the signature block lengths.
Worker threads each read one segment (pread: they share the descriptor, not its offset) and
compute that segment's part of the delta against the old signature and its part of the new
signature. librsync runs without the GIL, so segments run in parallel; each worker has its
own copy of the loaded old signature, since librsync's lookups update counters inside it.

The parts join into exactly what one job over the whole file gives, except for matches that
would straddle a segment boundary:
* a signature is a 12-byte header, then one sum per block from the start of the file: the
  parts after the first drop their header;
* a delta is a 4-byte magic, commands, and an END byte (0): the parts after the first drop
  the magic, the parts before the last drop their END.
Delta parts are spooled to temporary files, not kept in memory, and at most workers + 1
segments are in flight. Signature and delta both come from the bytes a worker read, so they
always agree with each other, even if the file changes while it is read.

Which block length the new signature gets is decided by what this delta showed (see
`choose_block`): each segment computes the signature at a fine and at a coarse block length,
and the one that should make the next delta plus signature smallest is kept. A database
dump whose rows change all over keeps fine blocks; one whose changes come in a few runs, or
that was rewritten, gets coarse ones and a signature a sixteenth of the size.
"""

from __future__ import annotations

import contextlib
import os
import queue
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from duplicity_ng import errors, rsync

SEGMENT_SIZE = 32 << 20
# Files at least this big are split; smaller ones are not worth a second signature copy.
MIN_SPLIT_SIZE = 2 * SEGMENT_SIZE
# The stored size of literal delta data, as a part of its raw size (gzip or gpg's zlib on
# text); only used to weigh the block lengths against each other.
LITERAL_RATIO = 0.3
_READ = 1 << 20
_DELTA_MAGIC = 4
_SPOOL_IN_MEMORY = 1 << 20


@dataclass
class DeltaStats:
    """What a delta says about the change: how many changed regions, how many new bytes."""

    runs: int = 0  # literal runs, each one changed region of the file
    literal: int = 0  # bytes of literal data

    def add(self, other: DeltaStats) -> None:
        self.runs += other.runs
        self.literal += other.literal


class DeltaScanner:
    """Counts the literal runs and bytes of a librsync delta fed in pieces (FORMAT.md 3.2)."""

    def __init__(self) -> None:
        self.stats = DeltaStats()
        self._skip = _DELTA_MAGIC  # bytes to pass over: the magic, then literal data
        self._need = 0  # parameter bytes still to read
        self._param = bytearray()
        self._literal_command = False  # the parameter being read is a literal's length
        self._in_literal = False

    def feed(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        i, n = 0, len(view)
        while i < n:
            if self._skip:
                take = min(self._skip, n - i)
                self._skip -= take
                i += take
            elif self._need:
                take = min(self._need, n - i)
                self._param += view[i : i + take]
                self._need -= take
                i += take
                if not self._need:
                    self._parameters_read()
            else:
                self._command(view[i])
                i += 1

    def _command(self, cmd: int) -> None:
        if cmd == 0:  # END
            return
        if cmd <= 0x40:
            self._literal(cmd)
        elif cmd <= 0x44:
            self._literal_command = True
            self._need = 1 << (cmd - 0x41)
        elif cmd <= 0x54:
            k = cmd - 0x45
            self._literal_command = False
            self._need = (1 << (k // 4)) + (1 << (k % 4))
        else:
            raise errors.RsyncError(f"librsync delta has an unknown command {cmd:#x}")

    def _parameters_read(self) -> None:
        if self._literal_command:
            self._literal(int.from_bytes(self._param, "big"))
        else:
            self._in_literal = False
        self._param.clear()

    def _literal(self, length: int) -> None:
        if not self._in_literal:
            self.stats.runs += 1
            self._in_literal = True
        self.stats.literal += length
        self._skip = length


def choose_block(
    stats: DeltaStats, old_block: int, size: int, candidates: list[int], sum_len: int = 36
) -> int:
    """The block length expected to make the next delta plus signature of this file smallest,
    if the next change looks like this one.

    A changed region costs its own length plus about one block of literal data, so each
    region's literal grows or shrinks with the block length; the signature costs `sum_len`
    bytes a block (weak sum and strong sum).
    """

    def cost(block: int) -> float:
        literal = max(stats.literal + stats.runs * (block - old_block), stats.runs * block)
        return literal * LITERAL_RATIO + (size // block + 1) * sum_len

    return min(candidates, key=cost)


@dataclass
class SegmentedResult:
    size: int  # bytes read
    params: rsync.SigParams  # of the signature kept
    signature: BinaryIO  # the new signature, positioned at 0; the caller closes it
    stats: DeltaStats = field(default_factory=DeltaStats)


@dataclass
class _Part:
    signatures: list[bytes]  # one per candidate block length
    delta: BinaryIO  # positioned at 0, already trimmed
    size: int  # bytes read
    short: bool  # ended before the planned length
    stats: DeltaStats


def segment_bounds(size: int, block_len: int, segment_size: int = SEGMENT_SIZE) -> list[int]:
    """Start offsets of the segments of a file of `size` bytes (block-aligned)."""
    step = max(block_len, segment_size // block_len * block_len)
    return list(range(0, max(size, 1), step))


def candidate_params(size: int, fine: rsync.SigParams) -> list[rsync.SigParams]:
    """The fine block length, and a coarse one (duplicity's square-root rule) a multiple of
    it when that is at least four times as long."""
    coarse = -(-rsync.duplicity_block_size(size) // fine.block_len) * fine.block_len
    if coarse < 4 * fine.block_len:
        return [fine]
    return [fine, rsync.SigParams(fine.magic, coarse, fine.strong_len)]


class SegmentedDelta:
    """The delta of one file against `old_signature`, its segments run on `pool`."""

    def __init__(
        self,
        fd: int,
        size: int,
        params: rsync.SigParams,
        old_signature: bytes,
        pool: ThreadPoolExecutor,
        workers: int,
        workdir: Path,
        segment_size: int = SEGMENT_SIZE,
    ) -> None:
        self._fd = fd
        self._candidates = candidate_params(size, params)
        self._workdir = workdir
        starts = segment_bounds(size, self._candidates[-1].block_len, segment_size)
        ends = [*starts[1:], None]
        self._plan = [(s, None if e is None else e - s) for s, e in zip(starts, ends, strict=True)]
        self._pool = pool
        self._in_flight = max(1, workers) + 1
        loaded = [rsync.Signature.load(old_signature)]
        loaded += [rsync.Signature.load(old_signature) for _ in range(workers - 1)]
        self._old_block = loaded[0].block_len
        self._signatures: queue.Queue[rsync.Signature] = queue.Queue()
        for signature in loaded[: len(self._plan)]:
            self._signatures.put(signature)
        for signature in loaded[len(self._plan) :]:
            signature.close()

    def run(self, on_delta: Callable[[bytes], None]) -> SegmentedResult:
        """Feed the joined delta to `on_delta`, in order; return the new signature.

        A segment that ends early (the file shrank while it was read) ends the file: what
        later segments read is left out, so that the delta and the signature describe the
        same bytes."""
        spools = [self._spool() for _ in self._candidates]
        stats, total, ended = DeltaStats(), 0, False
        try:
            for part in self._parts():
                with part.delta:
                    if ended:
                        continue
                    total += part.size
                    stats.add(part.stats)
                    for spool, signature in zip(spools, part.signatures, strict=True):
                        spool.write(signature)
                    while data := part.delta.read(_READ):
                        on_delta(data)
                    if part.short:
                        on_delta(b"\0")  # the END that its trimmed delta lacks
                        ended = True
            blocks = [p.block_len for p in self._candidates]
            sum_len = 4 + self._candidates[0].strong_len
            chosen = blocks.index(choose_block(stats, self._old_block, total, blocks, sum_len))
        except BaseException:
            for spool in spools:
                spool.close()
            raise
        finally:
            while not self._signatures.empty():
                self._signatures.get_nowait().close()
        for i, spool in enumerate(spools):
            if i != chosen:
                spool.close()
        spools[chosen].seek(0)
        return SegmentedResult(total, self._candidates[chosen], spools[chosen], stats)

    def _spool(self) -> BinaryIO:
        return tempfile.SpooledTemporaryFile(_SPOOL_IN_MEMORY, dir=self._workdir)  # type: ignore[return-value]

    def _parts(self) -> Iterator[_Part]:
        pending: deque[Future[_Part]] = deque()
        plan = iter(enumerate(self._plan))
        try:
            while True:
                while len(pending) < self._in_flight and (nxt := next(plan, None)) is not None:
                    index, (start, length) = nxt
                    pending.append(self._pool.submit(self._segment, index, start, length))
                if not pending:
                    return
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
                if not future.cancelled():
                    # Only its spool is wanted now; the error that stopped us is the one to report.
                    with contextlib.suppress(BaseException):
                        future.result().delta.close()

    def _segment(self, index: int, start: int, length: int | None) -> _Part:
        last = length is None
        signature = self._signatures.get()
        spool = tempfile.TemporaryFile(dir=self._workdir)  # noqa: SIM115 - returned open
        try:
            sig_jobs = [rsync.SignatureJob(p) for p in self._candidates]
            sig_parts: list[list[bytes]] = [[] for _ in sig_jobs]
            delta_job = rsync.DeltaJob(signature)
            trim = _Trim(spool, _DELTA_MAGIC if index else 0)
            scanner = DeltaScanner()
            size = 0
            while length is None or size < length:
                want = _READ if length is None else min(_READ, length - size)
                data = os.pread(self._fd, want, start + size)
                if not data:
                    break
                size += len(data)
                for job, parts in zip(sig_jobs, sig_parts, strict=True):
                    parts.append(job.feed(data))
                for piece in delta_job.feed_chunks(data):
                    scanner.feed(piece)
                    trim.write(piece)
            for job, parts in zip(sig_jobs, sig_parts, strict=True):
                parts.append(job.finish())
            for piece in delta_job.finish_chunks():
                scanner.feed(piece)
                trim.write(piece)
            trim.finish(keep_end=last)
            spool.seek(0)
            header = rsync.SIG_HEADER_SIZE if index else 0
            signatures = [b"".join(parts)[header:] for parts in sig_parts]
            short = not last and size < (length or 0)
            return _Part(signatures, spool, size, short, scanner.stats)
        except BaseException:
            spool.close()
            raise
        finally:
            self._signatures.put(signature)


class _Trim:
    """Writes a delta part, leaving out its first `skip` bytes and, unless asked to keep it,
    its final END byte."""

    def __init__(self, out: BinaryIO, skip: int) -> None:
        self._out = out
        self._skip = skip
        self._held = b""

    def write(self, data: bytes) -> None:
        if self._skip:
            cut = min(self._skip, len(data))
            data, self._skip = data[cut:], self._skip - cut
        if not data:
            return
        # The last byte stays back until we know whether it is the END.
        self._out.write(self._held)
        self._out.write(memoryview(data)[:-1])
        self._held = data[-1:]

    def finish(self, keep_end: bool) -> None:
        if self._held != b"\0":
            raise errors.RsyncError("librsync delta did not end with an END command")
        if keep_end:
            self._out.write(self._held)
        self._held = b""
