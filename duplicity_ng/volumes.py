"""Cutting the stream of tar members into volumes, and uploading each one as it is finished.

The writer emits whole members until the stored volume is within one read size of its target
(FORMAT.md 2), records each volume's first and last index for the manifest, and hands the
finished file to the uploader, which stores it while the next volume is being built.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from duplicity_ng.backends.base import Backend
from duplicity_ng.container import Codec, StoredWriter
from duplicity_ng.entry import Index
from duplicity_ng.format.manifest import VolumeInfo
from duplicity_ng.format.members import CHUNK_SIZE
from duplicity_ng.format.tarstream import RECORD, TarHeader, TarWriter

# duplicity 3.x aims 50 KiB below --volsize so that gpg's top-off padding still fits.
VOLUME_MARGIN = 50 * 1024


@dataclass
class FinishedVolume:
    number: int
    path: Path
    remote_name: str
    info: VolumeInfo
    size: int


class VolumeWriter:
    """Writes members into numbered volume files in `workdir`."""

    def __init__(
        self,
        workdir: Path,
        volsize: int,
        codec: Codec,
        name_for: Callable[[int], str],
        on_finished: Callable[[FinishedVolume], None],
        first_number: int = 1,
    ) -> None:
        self._workdir = workdir
        self._target = max(volsize - VOLUME_MARGIN, CHUNK_SIZE)
        self._codec = codec
        self._name_for = name_for
        self._on_finished = on_finished
        self._number = first_number - 1
        self._out: StoredWriter | None = None
        self._tar: TarWriter | None = None
        self._start: tuple[Index, int | None] | None = None
        self._end: tuple[Index, int | None] = ((), None)
        self.raw_bytes = 0

    def add(
        self, header: TarHeader, payload: bytes | memoryview, index: Index, block: int | None
    ) -> None:
        """Add one member; `block` is the chunk number of a multivol chunk that is not the last."""
        if self._out is not None and self._full(self._out):
            self._finish_volume()
        if self._out is None:
            self._open_volume()
        assert self._tar is not None
        self._tar.add(header, payload)
        self.raw_bytes += len(payload)
        if self._start is None:
            self._start = (index, block)
        self._end = (index, block)

    def _full(self, out: StoredWriter) -> bool:
        """No room left for another read-size of data (FORMAT.md 2)."""
        if self._target - out.stored_size >= CHUNK_SIZE:
            return False
        return self._target - out.settled_size() < CHUNK_SIZE

    def close(self) -> None:
        """Finish the last volume. A set always has at least one volume, even an empty one."""
        if self._out is None and self._number == 0:
            self._open_volume()
        if self._out is not None:
            self._finish_volume()

    def abort(self) -> None:
        if self._out is not None:
            self._out.abort()
            self._out = None

    def _open_volume(self) -> None:
        self._number += 1
        self._out = self._codec.writer(self._path(self._number))
        # The next volume's encryption starts getting ready while this one fills.
        self._codec.prepare(self._path(self._number + 1))
        self._tar = TarWriter(self._out)  # type: ignore[arg-type]
        self._start = None

    def _path(self, number: int) -> Path:
        return self._workdir / f"vol{number}.tmp"

    def _finish_volume(self) -> None:
        assert self._out is not None and self._tar is not None
        # duplicity 3.x's volume footer: zeros up to the next record boundary (a whole record
        # when already aligned), not tarfile's two blocks plus padding.
        self._out.write(b"\0" * (RECORD - self._tar.offset % RECORD))
        sha1 = self._out.close()
        start_index, start_block = self._start if self._start is not None else self._end
        info = VolumeInfo(
            number=self._number,
            start_index=start_index,
            start_block=start_block,
            end_index=self._end[0],
            end_block=self._end[1],
            hashes={"SHA1": sha1},
        )
        finished = FinishedVolume(
            self._number,
            self._out.path,
            self._name_for(self._number),
            info,
            self._out.stored_size,
        )
        self._out = None
        self._tar = None
        self._on_finished(finished)


class Uploader:
    """Stores finished volumes with up to `workers` uploads at a time.

    `submit` blocks while all workers are busy, so at most workers + 1 volumes exist locally
    (the uploads plus the one being built). Volumes are reported stored strictly in order,
    from the caller's thread, because the manifest lists them in order and a checkpoint
    must never mention a volume after one that is not stored yet.
    """

    def __init__(
        self, backend: Backend, on_stored: Callable[[FinishedVolume], None], workers: int = 2
    ) -> None:
        self._backend = backend
        self._on_stored = on_stored
        self._slots = threading.Semaphore(max(workers, 1))
        self._pool = ThreadPoolExecutor(max_workers=max(workers, 1), thread_name_prefix="upload")
        self._pending: deque[tuple[FinishedVolume, Future[None]]] = deque()

    def submit(self, volume: FinishedVolume) -> None:
        self._commit(wait=False)
        self._slots.acquire()
        try:
            future = self._pool.submit(self._put, volume)
        except BaseException:
            self._slots.release()
            raise
        self._pending.append((volume, future))

    def finish(self) -> None:
        """Wait until everything submitted is stored; re-raise the first failure."""
        try:
            self._commit(wait=True)
        finally:
            self.abort()

    def abort(self) -> None:
        """Stop: wait for running uploads, drop the rest and their files."""
        for _volume, future in self._pending:
            future.cancel()
        self._pool.shutdown(wait=True)
        for volume, _future in self._pending:
            volume.path.unlink(missing_ok=True)
        self._pending.clear()

    def _commit(self, wait: bool) -> None:
        while self._pending and (wait or self._pending[0][1].done()):
            volume, future = self._pending[0]
            future.result()  # re-raises the upload's error; later volumes stay pending
            self._pending.popleft()
            self._on_stored(volume)

    def _put(self, volume: FinishedVolume) -> None:
        try:
            self._backend.put(volume.path, volume.remote_name)
        finally:
            volume.path.unlink(missing_ok=True)
            self._slots.release()
