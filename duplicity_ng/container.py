"""How a volume or signature file is stored: plain, gzip, or an OpenPGP message (gpg).

Writers count and SHA1-hash the bytes exactly as stored, because the manifest records the
hash of the stored file and volumes are cut by their stored size.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from duplicity_ng.errors import BadSignerError, UserError
from duplicity_ng.gzipstream import DEFAULT_LEVEL, GunzipReader, ParallelGzipWriter

if TYPE_CHECKING:
    from duplicity_ng.crypto import Gpg

ENCRYPTED_SUFFIXES = (".gpg", ".g")


class _CountingFile:
    """The stored file: everything written passes through SHA1 and a byte counter."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.sha1 = hashlib.sha1()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha1.update(data)
        self.size += len(data)
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class StoredFileWriter:
    """A stream whose bytes end up in `path`, gzipped or not.

    gzip deflates on the threads of `pool` (None: in the caller's thread), see gzipstream.
    """

    def __init__(
        self,
        path: Path,
        compress: bool,
        pool: ThreadPoolExecutor | None = None,
        level: int = DEFAULT_LEVEL,
    ) -> None:
        self.path = path
        self._raw = _CountingFile(path)
        self._gzip = ParallelGzipWriter(self._raw, level, pool) if compress else None

    def write(self, data: bytes | memoryview) -> int:
        if self._gzip is None:
            return self._raw.write(data)
        return self._gzip.write(data)

    @property
    def stored_size(self) -> int:
        # Data still being deflated counts at full size plus the framing of stored blocks:
        # never less than it will take.
        pending = self._gzip.unwritten if self._gzip is not None else 0
        return self._raw.size + (pending + pending // 4096 + 16 if pending else 0)

    def settled_size(self) -> int:
        if self._gzip is not None:
            self._gzip.flush()
        return self.stored_size

    def close(self) -> str:
        """Finish the file; returns the SHA1 hex of the stored bytes."""
        if self._gzip is not None:
            self._gzip.close()
        self._raw.close()
        return self._raw.sha1.hexdigest()

    def abort(self) -> None:
        if self._gzip is not None:
            self._gzip.abort()
        try:
            self._raw.close()
        finally:
            self.path.unlink(missing_ok=True)


class StoredWriter(Protocol):
    """What Codec.writer returns: StoredFileWriter, or crypto.GpgWriter when encrypting."""

    path: Path

    def write(self, data: bytes) -> int: ...

    @property
    def stored_size(self) -> int:
        """Bytes stored so far, never less than the file will hold for what was written
        (cheap: asked before every member)."""

    def settled_size(self) -> int:
        """A tighter stored_size that may take a few milliseconds (asked near the end of a
        volume)."""

    def close(self) -> str: ...

    def abort(self) -> None: ...


class Codec:
    """How this run stores files on the backend, and how it reads any stored file back.

    Writing follows the run's options (encrypt, else gzip unless told not to); reading goes
    by the remote name's suffix, so any archive can be read whatever the options say. `gpg`
    does the encrypting and decrypting; with a sign key set, every file read must be an
    OpenPGP message signed by that key.
    """

    def __init__(
        self,
        encrypt: bool = False,
        compress: bool = True,
        gpg: Gpg | None = None,
        gzip_level: int = DEFAULT_LEVEL,
    ) -> None:
        self.encrypt = encrypt
        self.compress = compress
        self.gpg = gpg
        self.gzip_level = gzip_level
        self._pool: ThreadPoolExecutor | None = None

    def writer(self, path: Path, *, compress: bool | None = None) -> StoredWriter:
        """A writer for a file to store; manifests pass compress=False (never gzipped).

        Encrypted files are compressed by gpg (manifests too, as duplicity does), unless the
        run has --no-compression.
        """
        if self.encrypt:
            return self._need_gpg("encrypt").writer(path, self.deflate_pool())
        if not (self.compress if compress is None else compress):
            return StoredFileWriter(path, compress=False)
        return StoredFileWriter(
            path, compress=True, pool=self.deflate_pool(), level=self.gzip_level
        )

    def prepare(self, path: Path) -> None:
        """A hint: a writer for `path` will be asked for soon (see Gpg.prepare)."""
        if self.encrypt:
            self._need_gpg("encrypt").prepare(path, self.deflate_pool())

    def deflate_pool(self) -> ThreadPoolExecutor:
        """Threads for deflating (gzip, and the packets gpg encrypts), one per core: they run
        beside the thread building the tar."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix="deflate")
        return self._pool

    def close(self) -> None:
        if self.gpg is not None:
            self.gpg.discard_prepared()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def check_ready(self) -> None:
        """Before a backup writes anything: gpg runs, the keys exist, the passphrase is known."""
        if self.encrypt:
            gpg = self._need_gpg("encrypt")
            gpg.check_backup_keys()
            gpg.backup_passphrase()

    def _need_gpg(self, what: str) -> Gpg:
        if self.gpg is None:
            raise UserError(f"Cannot {what}: no gpg settings were given to this run")
        return self.gpg

    def open(self, path: Path, remote_name: str, verified: bool = False) -> BinaryIO:
        """The content of a fetched file, decoded by its remote name's suffix.

        `verified`: the file matched the hash its manifest records (see Gpg.open_decrypted).
        """
        if remote_name.endswith(".p7m"):
            raise UserError(
                f"{remote_name} was encrypted with gpgsm (duplicity's --use-gpgsm), which "
                "duplicity-ng does not support",
                "restore it with duplicity 3.x",
            )
        if remote_name.endswith(ENCRYPTED_SUFFIXES):
            return self._need_gpg("decrypt").open_decrypted(path, remote_name, verified)
        if self.gpg is not None and self.gpg.settings.sign_key is not None:
            raise BadSignerError(
                f"{remote_name} is not encrypted, so not signed, but --sign-key "
                f"{self.gpg.settings.sign_key} requires a signature",
                "restore without --sign-key if this backup was made unsigned",
            )
        if remote_name.endswith((".gz", ".z")):
            return GunzipReader(path)  # type: ignore[return-value]
        return open(path, "rb")  # noqa: SIM115 - caller closes


def sha1_of(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
