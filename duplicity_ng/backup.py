"""The backup pipeline: walk, compare with the last signatures, write volumes, sigtar, manifest.

One pass over the source: each path is compared with its previous signature record (FORMAT.md
2.3); changed regular files are read once, feeding the new signature and either the full
data (snapshot) or a librsync delta (diff) into 64 KiB tar members. Members flow into the
volume writer, signatures into the signature tar in the cache, and the manifest is
checkpointed in the cache (`.part`) after each volume is safely stored, so an interrupted run
leaves a set that is never taken for complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from duplicity_ng import rsync, segments
from duplicity_ng.backends.base import Backend
from duplicity_ng.cache import ArchiveCache
from duplicity_ng.container import Codec, StoredFileWriter
from duplicity_ng.entry import Entry, FileType, Index, display
from duplicity_ng.format import names
from duplicity_ng.format.manifest import Manifest, quote
from duplicity_ng.format.members import (
    CHUNK_SIZE,
    DIFF,
    SIGNATURE,
    SNAPSHOT,
    deleted_header,
    entry_header,
    member_name,
)
from duplicity_ng.format.tarstream import TarWriter
from duplicity_ng.log import Log
from duplicity_ng.sigstate import SigRecord
from duplicity_ng.stats import BackupStats
from duplicity_ng.volumes import FinishedVolume, Uploader, VolumeWriter

READ_SIZE = 1 << 20
SIG_IN_MEMORY = 1 << 20


@dataclass(frozen=True)
class SetPlan:
    """Which set this run writes, and how its files are stored."""

    set_kind: names.SetKind
    start_time: int
    end_time: int
    encrypted: bool
    compressed: bool
    prefixes: names.Prefixes

    def volume_name(self, number: int) -> str:
        return names.volume_name(
            self.set_kind,
            self.start_time,
            self.end_time,
            number,
            encrypted=self.encrypted,
            compressed=self.compressed,
            prefixes=self.prefixes,
        )

    def manifest_name(self, *, local: bool = False, partial: bool = False) -> str:
        return names.manifest_name(
            self.set_kind,
            self.start_time,
            self.end_time,
            encrypted=self.encrypted and not local,
            partial=partial,
            prefixes=self.prefixes,
        )

    def signature_name(self, *, local: bool = False, partial: bool = False) -> str:
        # In the cache signatures are plain while written (.part), gzipped once final.
        return names.signature_name(
            self.set_kind,
            self.start_time,
            self.end_time,
            encrypted=self.encrypted and not local,
            compressed=(local and not partial) or (not local and self.compressed),
            partial=partial,
            prefixes=self.prefixes,
        )


class Chunker:
    """Splits one payload into members by duplicity's rule (FORMAT.md 2.2).

    A payload under 64 KiB is a single `<kind>/p` member; otherwise every 64 KiB becomes a
    `multivol_<kind>/p/<k>` chunk and the remainder (possibly empty) the last one.
    """

    def __init__(self, volumes: VolumeWriter, kind: str, entry: Entry) -> None:
        self._volumes = volumes
        self._kind = kind
        self._entry = entry
        self._buf = b""
        self._chunk = 0

    def push(self, data: bytes) -> None:
        if self._buf:
            data = self._buf + data
        view = memoryview(data)
        pos = 0
        while len(view) - pos >= CHUNK_SIZE:
            self._emit(view[pos : pos + CHUNK_SIZE], final=False)
            pos += CHUNK_SIZE
        self._buf = bytes(view[pos:])

    def finish(self) -> None:
        self._emit(memoryview(self._buf), final=True)
        self._buf = b""

    def _emit(self, data: memoryview, final: bool) -> None:
        index = self._entry.index
        if final and self._chunk == 0:
            name = member_name(self._kind, index)
            block = None
        else:
            self._chunk += 1
            name = member_name(self._kind, index, self._chunk)
            block = None if final else self._chunk
        self._volumes.add(entry_header(self._entry, name, len(data)), data, index, block)


@dataclass
class SetWriter:
    """Everything one backup run writes: volumes, signature tar, manifest."""

    plan: SetPlan
    backend: Backend
    cache: ArchiveCache
    workdir: Path
    volsize: int
    codec: Codec
    log: Log
    concurrency: int = 2
    hostname: str = field(default_factory=socket.gethostname)  # what duplicity writes
    stats: BackupStats = field(default_factory=BackupStats)

    _SIGTAR_UPLOAD = "sigtar.upload"
    _MANIFEST_UPLOAD = "manifest.upload"

    def __post_init__(self) -> None:
        self._workers = os.cpu_count() or 2
        self._pool: ThreadPoolExecutor | None = None
        self.manifest = Manifest(hostname=self.hostname)
        self._filelist = open(self.workdir / "filelist", "w+b")  # noqa: SIM115
        self._filelist_count = 0
        self._sig_part = self.cache.path(self.plan.signature_name(local=True, partial=True))
        self._sig_file = open(self._sig_part, "wb")  # noqa: SIM115
        self._sigtar = TarWriter(self._sig_file)
        self._manifest_part = self.cache.path(self.plan.manifest_name(local=True, partial=True))
        self._uploader = Uploader(self.backend, self._volume_stored, self.concurrency)
        self.volumes = VolumeWriter(
            self.workdir,
            self.volsize,
            self.codec,
            self.plan.volume_name,
            self._uploader.submit,
        )

    # -- checkpoints --------------------------------------------------------------------
    def _volume_stored(self, volume: FinishedVolume) -> None:
        """Called in volume order, once a volume is safely stored: checkpoint the manifest."""
        self.manifest.volumes[volume.number] = volume.info
        self.stats.total_destination_size_change += volume.size
        mode = "ab" if volume.number > 1 else "wb"
        with open(self._manifest_part, mode) as part:
            if volume.number == 1:
                part.write(self.manifest.header_bytes())
            part.write(volume.info.to_bytes())
            part.flush()
            os.fsync(part.fileno())
        self.log.info(f"Stored volume {volume.number}: {volume.remote_name}")

    def set_localdir(self, localdir: bytes) -> None:
        self.manifest.localdir = localdir

    # -- members ------------------------------------------------------------------------
    def add_deleted(self, old: SigRecord) -> None:
        index = old.entry.index
        self.volumes.add(deleted_header(index), b"", index, None)
        self._sigtar.add(deleted_header(index))
        self.stats.deleted_files += 1
        self.stats.delta_entries += 1
        if old.entry.type is FileType.REG:
            self._filelist_line(b"deleted", index)

    def add_special(self, entry: Entry, new: bool) -> None:
        """A path without data: directory, symlink, fifo, device."""
        self.volumes.add(
            entry_header(entry, member_name(SNAPSHOT, entry.index)), b"", entry.index, None
        )
        self._sigtar.add(entry_header(entry, member_name(SNAPSHOT, entry.index, sigtar=True)))
        self._count(entry, new)

    def add_file(
        self, entry: Entry, src: BinaryIO, old_signature: bytes | None, max_blocksize: int
    ) -> None:
        """A regular file: snapshot, or diff against `old_signature`; and its new signature."""
        params = rsync.sig_params(entry.size, max_blocksize)
        kind = SNAPSHOT if old_signature is None else DIFF
        chunker = Chunker(self.volumes, kind, entry)
        if old_signature is not None and entry.size >= segments.MIN_SPLIT_SIZE:
            job = segments.SegmentedDelta(
                src.fileno(), entry.size, params, old_signature,
                self._rsync_pool(), self._workers, self.workdir,
            )  # fmt: skip
            result = job.run(chunker.push)
            size, signature = result.size, result.signature
        else:
            size, signature = self._read_once(src, params, chunker, old_signature, entry.size)
        with signature:
            chunker.finish()
            length = signature.seek(0, os.SEEK_END)
            signature.seek(0)
            header = entry_header(entry, member_name(SIGNATURE, entry.index), length)
            self._sigtar.add_from(header, signature)
        entry.size = size
        self.stats.source_file_size += size
        self._count(entry, old_signature is None)
        self._filelist_line(b"new" if old_signature is None else b"changed", entry.index)

    def _read_once(
        self,
        src: BinaryIO,
        params: rsync.SigParams,
        chunker: Chunker,
        old_signature: bytes | None,
        size_hint: int,
    ) -> tuple[int, BinaryIO]:
        """Read the file once: its data or delta for the volumes, and its new signature
        (returned open at its end; big signatures go through a file, not memory)."""
        signature = tempfile.SpooledTemporaryFile(SIG_IN_MEMORY, dir=self.workdir)  # noqa: SIM115
        try:
            with contextlib.ExitStack() as stack:
                delta = None
                if old_signature is not None:
                    basis = stack.enter_context(rsync.Signature.load(old_signature))
                    delta = rsync.DeltaJob(basis, size_hint)
                # Sized for the file: most are small, and a 1 MiB buffer each costs.
                sig_job = rsync.SignatureJob(params, size_hint)
                size = 0
                while data := src.read(READ_SIZE):
                    size += len(data)
                    signature.write(sig_job.feed(data))
                    chunker.push(delta.feed(data) if delta is not None else data)
                signature.write(sig_job.finish())
                if delta is not None:
                    chunker.push(delta.finish())
        except BaseException:
            signature.close()
            raise
        return size, signature  # type: ignore[return-value]

    def _rsync_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="rsync")
        return self._pool

    def _count(self, entry: Entry, new: bool) -> None:
        self.stats.source_files += 1
        self.stats.delta_entries += 1
        if new:
            self.stats.new_files += 1
            self.stats.new_file_size += entry.size
        else:
            self.stats.changed_files += 1
            self.stats.changed_file_size += entry.size

    def _filelist_line(self, action: bytes, index: Index) -> None:
        path = b"/".join(index) or b"."
        self._filelist.write(b"    %-7s  %s\n" % (action, quote(path)))
        self._filelist_count += 1

    # -- finishing ----------------------------------------------------------------------
    def finish(self) -> None:
        """Store the last volume, then the signatures, then the manifest, in that order."""
        self._stop_pool()
        for name in (self._SIGTAR_UPLOAD, self._MANIFEST_UPLOAD):
            self.codec.prepare(self.workdir / name)
        self.volumes.close()
        self._uploader.finish()
        self._finish_signatures()
        self._finish_manifest()
        self.stats.raw_delta_size = self.volumes.raw_bytes

    def _stop_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def abort(self) -> None:
        self._stop_pool()
        self.volumes.abort()
        self._uploader.abort()
        self._sig_file.close()
        self._filelist.close()

    def _finish_signatures(self) -> None:
        self._sigtar.close()
        self._sig_file.close()
        upload = self.workdir / self._SIGTAR_UPLOAD
        self._copy_through(self._sig_part, self.codec.writer(upload))
        self._store(upload, self.plan.signature_name())
        # The cache keeps signatures gzipped, whatever the backend has.
        final = self.cache.path(self.plan.signature_name(local=True))
        if self.plan.compressed and not self.plan.encrypted:
            os.replace(upload, final)
        else:
            upload.unlink()
            self._copy_through(self._sig_part, StoredFileWriter(final, compress=True))
        self._sig_part.unlink()

    def _finish_manifest(self) -> None:
        self._filelist.seek(0)
        with open(self._manifest_part, "ab") as part:
            part.write(b"Filelist %d\n" % self._filelist_count)
            shutil.copyfileobj(self._filelist, part)
        self._filelist.close()
        upload = self.workdir / self._MANIFEST_UPLOAD
        self._copy_through(self._manifest_part, self.codec.writer(upload, compress=False))
        self._store(upload, self.plan.manifest_name())
        upload.unlink()
        os.replace(self._manifest_part, self.cache.path(self.plan.manifest_name(local=True)))

    def _store(self, path: Path, remote_name: str) -> None:
        self.backend.put(path, remote_name)
        self.stats.total_destination_size_change += path.stat().st_size

    @staticmethod
    def _copy_through(src: Path, out: StoredFileWriter) -> None:
        with open(src, "rb") as f:
            while data := f.read(READ_SIZE):
                out.write(data)
        out.close()


def run_set(
    writer: SetWriter,
    walk: Iterator[tuple[Entry, bytes]],
    old_state: Iterator[SigRecord],
    max_blocksize: int,
    on_error: Callable[[Index, str], None],
    unreadable: set[Index] | None = None,
) -> None:
    """Compare the walk with the previous state and write every difference (FORMAT.md 2.3).

    `unreadable` holds the paths the walk could not read (filled while it runs): they and
    everything below them keep their previous state instead of being recorded as deleted.
    """
    unreadable = unreadable if unreadable is not None else set()
    for new, path, old in _collate(walk, old_state):
        if new is None:
            assert old is not None
            index = old.entry.index
            if index and not any(index[:k] in unreadable for k in range(1, len(index) + 1)):
                writer.log.info(f"D {display(index)}")
                writer.add_deleted(old)
            continue
        if old is not None and new.same_as(old.entry):
            writer.stats.source_files += 1
            writer.stats.source_file_size += new.size
            continue
        is_new = old is None
        if new.type is not FileType.REG:
            writer.log.info(f"{'A' if is_new else 'M'} {display(new.index)}")
            writer.add_special(new, is_new)
            continue
        basis = (
            old.signature
            if old is not None and old.entry.type is FileType.REG and old.signature is not None
            else None
        )
        try:
            src = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            on_error(new.index, f"cannot read: {exc.strerror or exc}")
            continue
        with src:
            writer.log.info(f"{'A' if is_new else 'M'} {display(new.index)}")
            writer.add_file(new, src, basis, max_blocksize)


def _collate(
    walk: Iterator[tuple[Entry, bytes]], old_state: Iterator[SigRecord]
) -> Iterator[tuple[Entry | None, bytes, SigRecord | None]]:
    """Pair the walk with the previous state by index (both are in index order)."""
    new = next(walk, None)
    old = next(old_state, None)
    while new is not None or old is not None:
        if old is None or (new is not None and new[0].index < old.entry.index):
            assert new is not None
            yield new[0], new[1], None
            new = next(walk, None)
        elif new is None or old.entry.index < new[0].index:
            yield None, b"", old
            old = next(old_state, None)
        else:
            yield new[0], new[1], old
            new = next(walk, None)
            old = next(old_state, None)
