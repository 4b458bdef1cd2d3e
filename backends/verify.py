"""Verification after put (and get), and atomic put through a temporary name.

VerifyBackend checks every upload against the service's own record of it: the size always,
and the service's content hash when it keeps one (S3 ETag, B2 SHA1). A file that fails is
deleted and the put raises BackendValidationError, which the retry wrapper retries: a short
or corrupt upload never stays behind looking like a good one.

AtomicPutBackend uploads to a temporary name, lets the verification run on it, and renames
it over the final name only then: whatever was stored under the name before stays whole
until its replacement is known good.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
from pathlib import Path

from duplicity_ng.backends.base import Backend, RemoteFile
from duplicity_ng.backends.wrapper import BackendWrapper, discard_upload
from duplicity_ng.errors import BackendError, BackendValidationError, UserError

TEMP_PREFIX = ".ngtmp-"


def temp_name(name: str) -> str:
    # A leading dot and a prefix no duplicity file name has: readers ignore these names.
    return f"{TEMP_PREFIX}{secrets.token_hex(4)}-{name}"


def is_temp_name(name: str) -> bool:
    return name.startswith(TEMP_PREFIX)


class VerifyBackend(BackendWrapper):
    def put(self, local: Path, name: str) -> None:
        size = local.stat().st_size
        self.inner.put(local, name)
        problem = self._check_upload(local, name, size)
        if problem is not None:
            self._discard(name)
            raise BackendValidationError(
                f"Upload of {name} to {self.display_url} is not intact: {problem}",
                "the damaged copy was deleted",
            )

    def _lookup(self, name: str) -> RemoteFile | None:
        if self.capabilities.stat:
            return self.inner.stat(name)  # type: ignore[attr-defined]
        return next((f for f in self.inner.list() if f.name == name), None)

    def _check_upload(self, local: Path, name: str, size: int) -> str | None:
        remote = self._lookup(name)
        if remote is None:
            return "it is missing right after the upload"
        if remote.size != size:
            return f"{remote.size} bytes stored, {size} sent"
        if self.capabilities.content_hash and remote.digest:
            expected = self.inner.local_hash(local)  # type: ignore[attr-defined]
            if remote.digest != expected:
                scheme = self.capabilities.content_hash
                return f"{scheme} {remote.digest} stored, {expected} sent"
        return None

    def _discard(self, name: str) -> None:
        # The validation error is the one to report, not a failure to clean up after it.
        with contextlib.suppress(BackendError, OSError):
            discard_upload(self.inner, name)

    def get(self, name: str, local: Path) -> None:
        self.inner.get(name, local)
        if not self.capabilities.stat:
            return
        remote = self.inner.stat(name)  # type: ignore[attr-defined]
        got = local.stat().st_size
        if remote is not None and remote.size != got:
            raise BackendValidationError(
                f"Download of {name} from {self.display_url} is short: {got} of {remote.size} bytes"
            )


class RenameLostError(BackendValidationError):
    """The rename reported success but the file is not under its name: a server that
    mangles the name (wsgidav 4.4 truncates a MOVE destination at '?' or ';'). Retrying
    would only do the same again."""

    permanent = True


class AtomicPutBackend(BackendWrapper):
    """For backends that can rename but whose put writes in place (SFTP, WebDAV)."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.capabilities = dataclasses.replace(self.capabilities, atomic_put=True)

    def put(self, local: Path, name: str) -> None:
        tmp = temp_name(name)
        size = local.stat().st_size
        try:
            self.inner.put(local, tmp)
            self.inner.rename(tmp, name)  # type: ignore[attr-defined]
            if self.capabilities.stat:
                found = self.inner.stat(name)  # type: ignore[attr-defined]
                if found is None or found.size != size:
                    raise RenameLostError(
                        f"Upload of {name} to {self.display_url} failed: the server accepted "
                        "the rename to that name, but no such file appeared",
                        "the server mishandles this file name; try a --file-prefix without "
                        "'?', ';' or '#'",
                    )
        except BaseException as exc:
            # A stray temporary file is harmless: listings hide it.
            with contextlib.suppress(BackendError, OSError):
                self.inner.delete([tmp])
            if isinstance(exc, UserError) and tmp in exc.message:
                # Name the file the user knows, not its temporary name.
                renamed = type(exc)(exc.message.replace(tmp, name), exc.hint, exc.exit_code)
                raise renamed from exc
            raise

    def list(self) -> list[RemoteFile]:
        return [f for f in self.inner.list() if not is_temp_name(f.name)]
