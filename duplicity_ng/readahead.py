"""A stream produced by a background thread a few pieces ahead of its reader.

Restores spend as much time decompressing as parsing and writing; zlib and bz2 release the
GIL, so producing the next pieces overlaps with using the last ones. The producer is a
generator of byte pieces; an exception it raises reaches the reader at that point of the
stream, and closing the reader early stops the producer.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator

AHEAD = 4  # pieces produced before the reader asks for them


class ReadAhead:
    def __init__(
        self, produce: Callable[[], Iterator[bytes]], name: str, on_close: Callable[[], None]
    ) -> None:
        """`produce()` runs on the thread; `on_close` releases what it reads from."""
        self._produce = produce
        self._on_close = on_close
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(AHEAD)
        self._closing = threading.Event()
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
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
        self._on_close()
        self._thread.join()

    def __enter__(self) -> ReadAhead:
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

    def _run(self) -> None:
        try:
            for piece in self._produce():
                if piece and not self._put(piece):
                    return
            self._put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
            if not self._closing.is_set():
                self._put(exc)
