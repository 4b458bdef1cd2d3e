"""How a volume or signature file is stored: plain, gzip, or an OpenPGP message (gpg).

Writers count and SHA1-hash the bytes exactly as stored, because the manifest records the
hash of the stored file and volumes are cut by their stored size.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from duplicity_ng.errors import BadSignerError, UserError

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
    """A stream whose bytes end up in `path`, compressed or not."""

    def __init__(self, path: Path, compress: bool) -> None:
        self.path = path
        self._raw = _CountingFile(path)
        self._out: BinaryIO | _CountingFile
        if compress:
            # No file name in the header and OS=255, as duplicity writes it.
            self._out = gzip.GzipFile(filename="", mode="wb", compresslevel=6, fileobj=self._raw)
        else:
            self._out = self._raw

    def write(self, data: bytes) -> int:
        return self._out.write(data)

    @property
    def stored_size(self) -> int:
        return self._raw.size

    def settled_size(self) -> int:
        return self._raw.size

    def close(self) -> str:
        """Finish the file; returns the SHA1 hex of the stored bytes."""
        if self._out is not self._raw:
            self._out.close()
        self._raw.close()
        return self._raw.sha1.hexdigest()

    def abort(self) -> None:
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

    def __init__(self, encrypt: bool = False, compress: bool = True, gpg: Gpg | None = None):
        self.encrypt = encrypt
        self.compress = compress
        self.gpg = gpg

    def writer(self, path: Path, *, compress: bool | None = None) -> StoredWriter:
        """A writer for a file to store; manifests pass compress=False (never gzipped).

        Encrypted files are compressed by gpg (manifests too, as duplicity does), unless the
        run has --no-compression.
        """
        if self.encrypt:
            return self._need_gpg("encrypt").writer(path)
        return StoredFileWriter(path, self.compress if compress is None else compress)

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

    def open(self, path: Path, remote_name: str) -> BinaryIO:
        """The content of a fetched file, decoded by its remote name's suffix."""
        if remote_name.endswith(".p7m"):
            raise UserError(
                f"{remote_name} was encrypted with gpgsm (duplicity's --use-gpgsm), which "
                "duplicity-ng does not support",
                "restore it with duplicity 3.x",
            )
        if remote_name.endswith(ENCRYPTED_SUFFIXES):
            return self._need_gpg("decrypt").open_decrypted(path, remote_name)
        if self.gpg is not None and self.gpg.settings.sign_key is not None:
            raise BadSignerError(
                f"{remote_name} is not encrypted, so not signed, but --sign-key "
                f"{self.gpg.settings.sign_key} requires a signature",
                "restore without --sign-key if this backup was made unsigned",
            )
        if remote_name.endswith((".gz", ".z")):
            return gzip.open(path, "rb")  # type: ignore[return-value]
        return open(path, "rb")  # noqa: SIM115 - caller closes


def sha1_of(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
