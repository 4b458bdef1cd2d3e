"""b2:// — Backblaze B2, `b2://keyID[:appKey]@bucket[/dir]` (b2sdk v2).

The key ID comes from the URL or B2_APPLICATION_KEY_ID, the application key from the URL,
B2_APPLICATION_KEY, or BACKEND_PASSWORD / FTP_PASSWORD. B2 keeps versions: uploading a name
again adds a version (the listing shows the newest), and delete() removes every version,
so a deleted file is really gone. Every upload carries its SHA1, which B2 checks on
arrival and reports back; the verification wrapper compares it with the local file's.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path

from b2sdk.v2 import B2Api, InMemoryAccountInfo
from b2sdk.v2 import exception as b2e

from duplicity_ng.backends.base import (
    BackendAuthError,
    BackendConnectionError,
    Capabilities,
    ParsedUrl,
    RemoteFile,
    register,
    url_password,
)
from duplicity_ng.backends.options import BackendOptions
from duplicity_ng.errors import (
    BackendError,
    BackendNoSpaceError,
    BackendNotFoundError,
    BackendPermissionError,
    CommandLineError,
)


def new_api() -> B2Api:
    """A fresh B2 API object; tests replace this with one on b2sdk's RawSimulator."""
    return B2Api(InMemoryAccountInfo())


def _sha1_file(path: Path) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _digest(version: object) -> str | None:
    sha1 = getattr(version, "content_sha1", None)
    if sha1 and sha1 != "none":
        return sha1
    # Large (multi-part) files have no contentSha1; b2sdk records the whole file's SHA1 here.
    info = getattr(version, "file_info", None) or {}
    return info.get("large_file_sha1")


class B2Backend:
    capabilities = Capabilities(
        atomic_put=True, stat=True, content_hash="sha1", ranged_get=True, max_concurrency=8
    )

    def __init__(self, url: ParsedUrl, options: BackendOptions) -> None:
        if not url.host:
            raise CommandLineError(f"No bucket in {url.display}", "use b2://keyID@bucket/dir")
        self.display_url = url.display
        self.bucket_name = url.host
        parts = [p for p in url.path.split("/") if p]
        self.prefix = "/".join(parts) + "/" if parts else ""
        self._key_id = url.user or os.environ.get("B2_APPLICATION_KEY_ID")
        self._app_key = (
            url.password if url.password is not None else os.environ.get("B2_APPLICATION_KEY")
        ) or url_password(url)
        if not self._key_id or not self._app_key:
            raise CommandLineError(
                f"No B2 application key for {self.display_url}",
                "put keyID:appKey in the URL or set B2_APPLICATION_KEY_ID and B2_APPLICATION_KEY",
            )
        self._lock = threading.Lock()
        self._bucket = None

    def _b2(self):  # noqa: ANN202 - b2sdk's Bucket
        with self._lock:
            if self._bucket is None:
                api = new_api()
                try:
                    api.authorize_account("production", self._key_id, self._app_key)
                    self._bucket = api.get_bucket_by_name(self.bucket_name)
                except (b2e.B2Error, OSError) as exc:
                    raise self._error(exc, "connect") from exc
            return self._bucket

    def _key(self, name: str) -> str:
        if not name or "/" in name:
            raise BackendError(f"Refusing unsafe remote file name {name!r}")
        return self.prefix + name

    def _error(self, exc: BaseException, what: str) -> BackendError:
        where = f"Cannot {what} on {self.display_url}"
        if isinstance(exc, b2e.NonExistentBucket):
            return BackendNotFoundError(f"{where}: bucket '{self.bucket_name}' does not exist")
        if isinstance(exc, b2e.FileNotPresent):
            return BackendNotFoundError(f"{where}: no such file")
        if isinstance(exc, b2e.Unauthorized | b2e.InvalidAuthToken):
            if isinstance(exc, b2e.InvalidAuthToken) and self._bucket is not None:
                # An expired token mid-run: authorize again on the next attempt.
                self._bucket = None
                return BackendConnectionError(f"{where}: authorization expired")
            return BackendAuthError(
                f"{where}: application key refused", "check the key ID and application key"
            )
        if isinstance(exc, b2e.AccessDenied | b2e.NotAllowedByAppKeyError | b2e.RestrictedBucket):
            return BackendPermissionError(f"{where}: not allowed by this application key")
        if isinstance(exc, b2e.StorageCapExceeded):
            return BackendNoSpaceError(f"{where}: storage cap exceeded")
        if isinstance(
            exc, b2e.B2ConnectionError | b2e.B2RequestTimeout | b2e.ConnectionReset | OSError
        ):
            return BackendConnectionError(f"{where}: {exc}")
        return BackendError(f"{where}: {type(exc).__name__}: {exc}")

    # -- the contract ----------------------------------------------------------------------

    def list(self) -> list[RemoteFile]:
        try:
            return [
                RemoteFile(version.file_name[len(self.prefix) :], version.size, _digest(version))
                for version, folder in self._b2().ls(self.prefix, latest_only=True)
                if folder is None
            ]
        except (b2e.B2Error, OSError) as exc:
            raise self._error(exc, "list files") from exc

    def put(self, local: Path, name: str) -> None:
        sha1 = _sha1_file(local)
        try:
            self._b2().upload_local_file(
                local_file=str(local),
                file_name=self._key(name),
                content_type="application/octet-stream",
                sha1_sum=sha1,
            )
        except (b2e.B2Error, OSError) as exc:
            if isinstance(exc, FileNotFoundError) and not local.exists():
                raise
            raise self._error(exc, f"upload {name}") from exc

    def get(self, name: str, local: Path) -> None:
        try:
            # b2sdk checks the SHA1 of what it received and raises on a mismatch.
            self._b2().download_file_by_name(self._key(name)).save_to(str(local))
        except (b2e.B2Error, OSError) as exc:
            raise self._error(exc, f"download {name}") from exc

    def delete(self, names: list[str]) -> None:
        bucket = self._b2()
        for name in names:
            try:
                for version in list(bucket.list_file_versions(self._key(name))):
                    bucket.api.delete_file_version(version.id_, version.file_name)
            except b2e.FileNotPresent:
                continue
            except (b2e.B2Error, OSError) as exc:
                raise self._error(exc, f"delete {name}") from exc

    def discard_upload(self, name: str) -> None:
        """Delete only the newest version: an older, good one becomes current again."""
        bucket = self._b2()
        try:
            for version in bucket.list_file_versions(self._key(name), fetch_count=1):
                bucket.api.delete_file_version(version.id_, version.file_name)
                break
        except b2e.FileNotPresent:
            pass
        except (b2e.B2Error, OSError) as exc:
            raise self._error(exc, f"delete {name}") from exc

    def stat(self, name: str) -> RemoteFile | None:
        try:
            version = self._b2().get_file_info_by_name(self._key(name))
        except b2e.FileNotPresent:
            return None
        except (b2e.B2Error, OSError) as exc:
            raise self._error(exc, f"look up {name}") from exc
        return RemoteFile(name, version.size, _digest(version))

    def local_hash(self, local: Path) -> str:
        return _sha1_file(local)

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        end = offset + length - 1
        for _attempt in range(2):
            out = io.BytesIO()
            try:
                self._b2().download_file_by_name(self._key(name), range_=(offset, end)).save(out)
                return out.getvalue()
            except (b2e.InvalidRange, b2e.UnsatisfiableRange) as exc:
                # Some B2 endpoints refuse a range running past the end: clamp it once.
                found = self.stat(name)
                if found is None:
                    raise self._error(b2e.FileNotPresent(), f"download part of {name}") from exc
                if offset >= found.size:
                    return b""
                end = min(end, found.size - 1)
            except (b2e.B2Error, OSError) as exc:
                raise self._error(exc, f"download part of {name}") from exc
        return b""

    def close(self) -> None:
        with self._lock:
            self._bucket = None


@register("b2")
def open_b2(url: ParsedUrl, options: BackendOptions) -> B2Backend:
    return B2Backend(url, options)
