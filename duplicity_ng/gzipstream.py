"""A gzip writer that compresses on several cores and stores what does not compress.

The stream is cut into blocks that worker threads deflate independently (zlib releases the
GIL), each primed with the last 32 KiB of the block before it, so the ratio stays that of one
long stream. Each block ends with a sync flush (a byte-aligned empty stored block); the
concatenation is one valid deflate stream, as pigz makes them, and any gzip reader, Python's
and duplicity's included, reads it as a single member.

A block whose sample does not shrink (media, archives, encrypted files) is stored rather than
deflated: zlib spends as much CPU on random data as on text (about 30 MiB/s) to gain nothing.
"""

from __future__ import annotations

import contextlib
import os
import queue
import struct
import threading
import time
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

BLOCK_SIZE = 256 * 1024
DICT_SIZE = 32 * 1024
# A block is deflated when a zlib level 1 pass over its first SAMPLE bytes saves at least
# 1 - STORE_ABOVE of them.
SAMPLE = 16 * 1024
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
    if level == 0:
        compressor = zlib.compressobj(0, zlib.DEFLATED, -15)
    elif dictionary:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15, zdict=dictionary)
    else:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


def _incompressible(data: bytes) -> bool:
    sample = data[:SAMPLE]
    return len(sample) >= 4096 and len(zlib.compress(sample, 1)) > STORE_ABOVE * len(sample)


class ParallelGzipWriter:
    """Writes one gzip member to `raw`; `pool` runs the deflating (None: this thread does).

    At most `max_pending` blocks are compressed or waiting at a time, so memory stays
    bounded; blocks are written to `raw` strictly in order.
    """

    def __init__(
        self,
        raw: RawFile,
        level: int,
        pool: ThreadPoolExecutor | None = None,
        max_pending: int = 4,
    ) -> None:
        self._raw = raw
        self._level = level
        self._pool = pool
        self._max_pending = max(1, max_pending)
        self._buffer = bytearray()
        self._pending: deque[tuple[Future[bytes], int]] = deque()
        self._pending_bytes = 0  # input bytes of the blocks in _pending
        self._dictionary = b""
        self._crc = 0
        self._size = 0
        self._closed = False
        raw.write(_HEADER.pack(b"\x1f\x8b\x08\x00", int(time.time()) & 0xFFFFFFFF, 0, 255))

    @property
    def unwritten(self) -> int:
        """Input bytes accepted but not yet written to `raw` (in flight or buffered)."""
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

    def close(self) -> None:
        if self._closed:
            return
        if self._buffer:
            self._submit(bytes(self._buffer))
            self._buffer.clear()
        self.drain()
        self._raw.write(_FINAL_EMPTY_BLOCK)
        self._raw.write(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))
        self._closed = True

    def abort(self) -> None:
        for future, _size in self._pending:
            future.cancel()
        self._pending.clear()
        self._closed = True

    def _submit(self, block: bytes) -> None:
        while len(self._pending) >= self._max_pending:
            self._write_head()
        self._crc = zlib.crc32(block, self._crc)
        self._size += len(block)
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
        self._raw.write(data)


class GunzipReader:
    """Reads a gzip file decompressed by a background thread a few pieces ahead.

    Restores spend as much time inflating as parsing and writing; zlib releases the GIL, so
    the two overlap. Concatenated members are read as one stream, as GzipFile reads them.
    """

    PIECE = 4 << 20  # most output one decompress call may produce
    AHEAD = 4  # pieces decompressed before the reader asks for them

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(self.AHEAD)
        self._closing = threading.Event()
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._thread = threading.Thread(target=self._inflate, name="gunzip", daemon=True)
        self._thread.start()

    def read(self, n: int = -1) -> bytes:
        parts = []
        want = n if n >= 0 else float("inf")
        while want > 0:
            if self._pos == len(self._buf) and not self._next_piece():
                break
            take = self._buf[self._pos : self._pos + want] if n >= 0 else self._buf[self._pos :]
            self._pos += len(take)
            want -= len(take)
            parts.append(take)
        return b"".join(parts)

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(queue.Empty):
            while True:  # let a blocked put() through so the thread sees _closing
                self._queue.get_nowait()
        self._thread.join()
        self._file.close()

    def __enter__(self) -> GunzipReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _next_piece(self) -> bool:
        if self._eof:
            return False
        item = self._queue.get()
        if item is None:
            self._eof = True
            return False
        if isinstance(item, BaseException):
            self._eof = True
            raise item
        self._buf, self._pos = item, 0
        return True

    def _put(self, item: bytes | BaseException | None) -> bool:
        while not self._closing.is_set():
            with contextlib.suppress(queue.Full):
                self._queue.put(item, timeout=0.1)
                return True
        return False

    def _inflate(self) -> None:
        try:
            inflater = zlib.decompressobj(31)
            fed = False
            pending = b""
            while True:
                if not pending:
                    pending = self._file.read(1 << 20)
                    if not pending:
                        break
                if inflater.eof:  # the next member of a concatenation
                    inflater = zlib.decompressobj(31)
                fed = True
                out = inflater.decompress(pending, self.PIECE)
                pending = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
                if out and not self._put(out):
                    return
            if fed and not inflater.eof:
                raise EOFError("Compressed file ended before the end-of-stream marker was reached")
            self._put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
            self._put(exc)
