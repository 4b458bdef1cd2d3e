"""How a volume or signature file is stored: plain, gzip (and later gpg).

Writers count and SHA1-hash the bytes exactly as stored, because the manifest records the
hash of the stored file and volumes are cut by their stored size.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path
from typing import BinaryIO

from duplicity_ng.errors import UserError


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


class Codec:
    """How this run stores files on the backend, and how it reads any stored file back.

    Writing follows the run's options (encrypt, else gzip unless told not to); reading goes
    by the remote name's suffix, so any archive can be read whatever the options say.
    """

    def __init__(self, encrypt: bool = False, compress: bool = True) -> None:
        self.encrypt = encrypt
        self.compress = compress

    def writer(self, path: Path, *, compress: bool | None = None) -> StoredFileWriter:
        """A writer for a file to store; manifests pass compress=False (never gzipped)."""
        if self.encrypt:
            raise UserError(
                "Encryption is not available in this version of duplicity-ng",
                "pass --no-encryption",
            )
        return StoredFileWriter(path, self.compress if compress is None else compress)

    def open(self, path: Path, remote_name: str) -> BinaryIO:
        """The content of a fetched file, decoded by its remote name's suffix."""
        if remote_name.endswith((".gpg", ".g", ".p7m")):
            raise UserError(
                f"{remote_name} is encrypted, and this version of duplicity-ng cannot decrypt it",
                "restore it with duplicity, or wait for gpg support",
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
