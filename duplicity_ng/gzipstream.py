"""Deflate on several cores, storing what does not compress; gzip written and read so.

The stream is cut into blocks that worker threads deflate independently (ISA-L and zlib
release the GIL; duplicity_ng.deflate picks one by level), each primed with the last 32 KiB
of the block before it, so the ratio stays that of one long stream. Each block ends with a
sync flush (a byte-aligned empty stored block); the concatenation is one valid deflate
stream, as pigz makes them, and any gzip reader, Python's and duplicity's included, reads it
as a single member.

A block whose sample does not shrink (media, archives, encrypted files) is stored rather than
deflated: zlib spends as much CPU on random data as on text (about 30 MiB/s) to gain nothing,
and a stored block costs nothing to inflate either.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from duplicity_ng import deflate
from duplicity_ng.readahead import ReadAhead

# Level 2 (ISA-L's), not duplicity's zlib 6: about 12x faster for 15 % more bytes on a SQL
# dump (bench/README.md); --compress-level changes it.
DEFAULT_LEVEL = 2
BLOCK_SIZE = 256 * 1024
DICT_SIZE = 32 * 1024
# A block is deflated when a zlib level 1 pass over its first SAMPLE bytes saves at least
# 1 - STORE_ABOVE of them.
SAMPLE = 4 * 1024
STORE_ABOVE = 0.9
# gzip header: magic, deflate, no flags, mtime (filled in), no extra flags, OS unknown (255),
# as duplicity's GzipFile(filename="") writes it.
_HEADER = struct.Struct("<4sIBB")
_FINAL_EMPTY_BLOCK = b"\x03\x00"  # a final, empty, fixed-Huffman block


class RawFile(Protocol):
    def write(self, data: bytes) -> int: ...


def deflate_block(data: bytes, level: int, dictionary: bytes) -> bytes:
    """Raw deflate of one block, sync-flushed so that the next block can follow it."""
    if _incompressible(data):
        level = 0
    compressor = deflate.compressobj(level, -15, dictionary if level else b"")
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


def _incompressible(data: bytes) -> bool:
    sample = data[:SAMPLE]
    return len(sample) >= 4096 and len(zlib.compress(sample, 1)) > STORE_ABOVE * len(sample)


class ParallelDeflater:
    """One raw deflate stream, its blocks deflated on `pool` (None: in this thread).

    Compressed blocks go to `out` strictly in order. At most `max_pending` blocks are being
    compressed or waiting at a time, so memory stays bounded.
    """

    def __init__(
        self,
        out: Callable[[bytes], object],
        level: int,
        pool: ThreadPoolExecutor | None = None,
        max_pending: int = 4,
    ) -> None:
        self._out = out
        self._level = level
        self._pool = pool
        self._max_pending = max(1, max_pending)
        self._buffer = bytearray()
        self._pending: deque[tuple[Future[bytes], int]] = deque()
        self._pending_bytes = 0  # input bytes of the blocks in _pending
        self._dictionary = b""

    @property
    def unwritten(self) -> int:
        """Input bytes accepted but not yet written out (in flight or buffered)."""
        return self._pending_bytes + len(self._buffer)

    def write(self, data: bytes | memoryview) -> int:
        self._buffer += data
        while len(self._buffer) >= BLOCK_SIZE:
            block = bytes(self._buffer[:BLOCK_SIZE])
            del self._buffer[:BLOCK_SIZE]
            self._submit(block)
        return len(data)

    def drain(self) -> None:
        """Wait until every submitted block is written (the buffered rest stays buffered)."""
        while self._pending:
            self._write_head()

    def flush(self) -> None:
        """Compress and write everything accepted so far (as a shorter block if need be), so
        that what was written out tells how big the data is once compressed."""
        if self._buffer:
            self._submit(bytes(self._buffer))
            self._buffer.clear()
        self.drain()

    def finish(self) -> None:
        """Compress what is left and end the stream with its final block."""
        if self._buffer:
            self._submit(bytes(self._buffer))
            self._buffer.clear()
        self.drain()
        self._out(_FINAL_EMPTY_BLOCK)

    def abort(self) -> None:
        for future, _size in self._pending:
            future.cancel()
        self._pending.clear()
        self._pending_bytes = 0

    def _submit(self, block: bytes) -> None:
        while len(self._pending) >= self._max_pending:
            self._write_head()
        args = (block, self._level, self._dictionary)
        if self._pool is None:
            future: Future[bytes] = Future()
            future.set_result(deflate_block(*args))
        else:
            future = self._pool.submit(deflate_block, *args)
        self._pending.append((future, len(block)))
        self._pending_bytes += len(block)
        self._dictionary = block[-DICT_SIZE:]
        # Blocks that are done go out at once, so the stored size keeps up with the input.
        while self._pending and self._pending[0][0].done():
            self._write_head()

    def _write_head(self) -> None:
        future, size = self._pending.popleft()
        data = future.result()
        self._pending_bytes -= size
        self._out(data)


class ParallelGzipWriter:
    """Writes one gzip member to `raw`, deflated by a ParallelDeflater."""

    def __init__(
        self,
        raw: RawFile,
        level: int,
        pool: ThreadPoolExecutor | None = None,
        max_pending: int = 4,
    ) -> None:
        self._raw = raw
        self._crc = 0
        self._size = 0
        self._closed = False
        raw.write(_HEADER.pack(b"\x1f\x8b\x08\x00", int(time.time()) & 0xFFFFFFFF, 0, 255))
        self._deflater = ParallelDeflater(raw.write, level, pool, max_pending)

    @property
    def unwritten(self) -> int:
        """Input bytes accepted but not yet written to `raw` (in flight or buffered)."""
        return self._deflater.unwritten

    def write(self, data: bytes | memoryview) -> int:
        self._crc = deflate.crc32(data, self._crc)
        self._size += len(data)
        return self._deflater.write(data)

    def flush(self) -> None:
        self._deflater.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._deflater.finish()
        self._raw.write(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))
        self._closed = True

    def abort(self) -> None:
        self._deflater.abort()
        self._closed = True


class GunzipReader(ReadAhead):
    """Reads a gzip file, inflated by a background thread a few pieces ahead.

    Concatenated members are read as one stream, as GzipFile reads them.
    """

    PIECE = 1 << 20  # most output one decompress call may produce

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        super().__init__(self._inflate, "gunzip", self._file.close)

    def _inflate(self) -> Iterator[bytes]:
        inflater = deflate.decompressobj(31)
        fed = False
        pending = b""
        capped = False  # the last call filled PIECE: output may still wait in the inflater
        while True:
            if not pending and not capped:
                pending = self._file.read(1 << 20)
                if not pending:
                    break
            if inflater.eof:  # the next member of a concatenation
                inflater = deflate.decompressobj(31)
            fed = True
            out = inflater.decompress(pending, self.PIECE)
            capped = len(out) == self.PIECE and not inflater.eof
            yield out
            pending = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
        if fed and not inflater.eof:
            raise EOFError("Compressed file ended before the end-of-stream marker was reached")
