"""s3:// and boto3+s3:// — `s3://bucket[/prefix]`, objects named prefix + "/" + name (boto3).

Credentials the AWS way (environment, profile, config files, instance role: boto3's chain).
`--s3-endpoint-url` selects an S3-compatible service (path-style addressing then),
`--s3-region-name` the region. Files of `--s3-multipart-chunk-size` or more go up as
multipart uploads in parts of that size. `--s3-storage-class` applies to every file, except
that the cold classes (Glacier, Deep Archive) apply to volumes only: manifests and signature
files stay STANDARD, so incrementals, listings and restores planning can read them.

S3 writes an object whole or not at all, so no temporary name is needed. Verification after
put compares the ETag: the MD5 of the file, or for a multipart upload the MD5 of the parts'
MD5s with "-<parts>" (computed locally with the same part size).
"""

from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
import botocore.session
from boto3.s3.transfer import TransferConfig
from s3transfer.utils import ChunksizeAdjuster

from duplicity_ng.backends.base import (
    BackendArchivedError,
    BackendAuthError,
    BackendCertificateError,
    BackendConnectionError,
    Capabilities,
    ParsedUrl,
    RemoteFile,
    register,
)
from duplicity_ng.backends.options import COLD_STORAGE_CLASSES, BackendOptions
from duplicity_ng.errors import (
    BackendError,
    BackendNoSpaceError,
    BackendNotFoundError,
    BackendPermissionError,
    CommandLineError,
)

# Volume names, long (`….vol3.difftar.gpg`, also their par2 files) and 0.8 short
# (`df.<t>.<n>.dt.g`, `di.<t1>.<t2>.<n>.dt`).
_VOLUME = re.compile(r"\.vol\d+\.difftar(\.|$)|(^|[^0-9a-z])d[fi]\.[0-9a-z.]+\.dt(\.|$)")

_AUTH_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
}
_PERMISSION_CODES = {"AccessDenied", "AllAccessDisabled", "403", "Forbidden"}
_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}


# Creating a boto3 session loads the service models (~0.3 s): share the model loader, but
# not the session, which would also cache the credentials it found first.
_LOADER_LOCK = threading.Lock()
_LOADER = None


def _new_client(**kwargs):  # noqa: ANN003, ANN202 - boto3's generated client class
    global _LOADER
    with _LOADER_LOCK:
        core = botocore.session.get_session()
        if _LOADER is None:
            _LOADER = core.get_component("data_loader")
        else:
            core.register_component("data_loader", _LOADER)
        return boto3.session.Session(botocore_session=core).client("s3", **kwargs)


def is_volume(name: str) -> bool:
    return _VOLUME.search(name) is not None


def _etag(value: str | None) -> str | None:
    return value.strip('"') if value else None


class S3Backend:
    capabilities = Capabilities(
        atomic_put=True, stat=True, content_hash="s3-etag", ranged_get=True, max_concurrency=8
    )

    def __init__(self, url: ParsedUrl, options: BackendOptions) -> None:
        if not url.host:
            raise CommandLineError(f"No bucket in {url.display}", "use s3://bucket/prefix")
        self.display_url = url.display
        self.bucket = url.host
        parts = [p for p in url.path.split("/") if p]
        self.prefix = "/".join(parts) + "/" if parts else ""
        self._options = options
        chunk = options.s3_multipart_chunk_size
        self._chunk = chunk
        self._transfer = TransferConfig(multipart_threshold=chunk, multipart_chunksize=chunk)
        self._lock = threading.Lock()
        self._client = None

    def _s3(self):  # noqa: ANN202 - boto3's client class is generated at run time
        with self._lock:
            if self._client is None:
                o = self._options
                config = botocore.config.Config(
                    connect_timeout=o.timeout,
                    read_timeout=o.timeout,
                    # botocore retries single requests (one part of a multipart upload, say);
                    # whole operations are retried by our wrapper.
                    retries={"mode": "standard", "total_max_attempts": 3},
                    s3={"addressing_style": "path"} if o.s3_endpoint_url else {},
                    max_pool_connections=16,
                )
                self._client = _new_client(
                    endpoint_url=o.s3_endpoint_url,
                    region_name=o.s3_region_name,
                    # None, not True: True would ignore AWS_CA_BUNDLE.
                    verify=None if o.tls_verify() is True else o.tls_verify(),
                    config=config,
                )
            return self._client

    def _key(self, name: str) -> str:
        if not name or "/" in name:
            raise BackendError(f"Refusing unsafe remote file name {name!r}")
        return self.prefix + name

    def storage_class(self, name: str) -> str:
        wanted = self._options.s3_storage_class
        if wanted in COLD_STORAGE_CLASSES and not is_volume(name):
            return "STANDARD"
        return wanted

    # -- errors ----------------------------------------------------------------------------

    def _error(self, exc: BaseException, what: str) -> BackendError:
        where = f"Cannot {what} on {self.display_url}"
        client_error = _find(exc, botocore.exceptions.ClientError)
        if client_error is not None:
            err = client_error.response.get("Error", {})
            code = str(err.get("Code", ""))
            message = err.get("Message") or code
            if code == "NoSuchBucket":
                return BackendNotFoundError(
                    f"{where}: bucket '{self.bucket}' does not exist", "create it first"
                )
            if code in _NOT_FOUND_CODES:
                return BackendNotFoundError(f"{where}: no such file")
            if code in _AUTH_CODES:
                return BackendAuthError(
                    f"{where}: credentials refused ({message})",
                    "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the profile",
                )
            if code in _PERMISSION_CODES:
                return BackendPermissionError(f"{where}: access denied")
            if code == "InvalidObjectState":
                return BackendArchivedError(
                    f"{where}: the object is in a cold storage class",
                    "restore it from Glacier first",
                )
            if code in ("EntityTooLarge", "QuotaExceeded"):
                return BackendNoSpaceError(f"{where}: {message}")
            return BackendError(f"{where}: {code}: {message}")
        if isinstance(
            exc,
            botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError,
        ):
            return BackendAuthError(
                f"{where}: no AWS credentials found",
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile or an instance role",
            )
        if isinstance(exc, botocore.exceptions.SSLError):
            return BackendCertificateError(
                f"{where}: TLS failed ({exc})",
                "use --ssl-cacert-file, or --ssl-no-check-certificate for a test server",
            )
        if isinstance(
            exc,
            botocore.exceptions.EndpointConnectionError
            | botocore.exceptions.ConnectionClosedError
            | botocore.exceptions.ConnectTimeoutError
            | botocore.exceptions.ReadTimeoutError
            | ConnectionError
            | TimeoutError,
        ):
            return BackendConnectionError(f"{where}: {exc}")
        return BackendError(f"{where}: {type(exc).__name__}: {exc}")

    # -- the contract ----------------------------------------------------------------------

    def list(self) -> list[RemoteFile]:
        files = []
        try:
            pages = (
                self._s3()
                .get_paginator("list_objects_v2")
                .paginate(Bucket=self.bucket, Prefix=self.prefix, Delimiter="/")
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(self.prefix) :]
                    if name:
                        files.append(RemoteFile(name, obj["Size"], self._digest(obj)))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(exc, "list files") from exc
        return files

    def put(self, local: Path, name: str) -> None:
        key = self._key(name)
        storage_class = self.storage_class(name)
        extra = {} if storage_class == "STANDARD" else {"StorageClass": storage_class}
        try:
            self._s3().upload_file(
                str(local), self.bucket, key, ExtraArgs=extra, Config=self._transfer
            )
        except (
            botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError,
            boto3.exceptions.S3UploadFailedError,
        ) as exc:
            raise self._error(exc, f"upload {name}") from exc

    def get(self, name: str, local: Path) -> None:
        try:
            self._s3().download_file(
                self.bucket, self._key(name), str(local), Config=self._transfer
            )
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            error = self._error(exc, f"download {name}")
            if isinstance(error, BackendNotFoundError) and not self._bucket_exists():
                error = BackendNotFoundError(
                    f"Cannot download {name} from {self.display_url}: bucket '{self.bucket}' "
                    "does not exist"
                )
            raise error from exc

    def _bucket_exists(self) -> bool:
        try:
            self._s3().head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            return str(exc.response.get("Error", {}).get("Code")) not in ("404", "NoSuchBucket")
        except botocore.exceptions.BotoCoreError:
            return True
        return True

    def delete(self, names: list[str]) -> None:
        keys = [self._key(n) for n in names]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            try:
                answer = self._s3().delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                raise self._error(exc, f"delete {len(batch)} files") from exc
            for failure in answer.get("Errors", []):
                if failure.get("Code") in _NOT_FOUND_CODES:
                    continue
                fake = botocore.exceptions.ClientError({"Error": failure}, "DeleteObjects")
                name = str(failure.get("Key", ""))[len(self.prefix) :]
                raise self._error(fake, f"delete {name}")

    def stat(self, name: str) -> RemoteFile | None:
        try:
            head = self._s3().head_object(Bucket=self.bucket, Key=self._key(name))
        except botocore.exceptions.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND_CODES:
                return None
            raise self._error(exc, f"look up {name}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._error(exc, f"look up {name}") from exc
        return RemoteFile(name, head["ContentLength"], self._digest(head))

    @staticmethod
    def _digest(obj: dict) -> str | None:
        # With SSE-KMS or customer keys the ETag is not an MD5 of the content.
        if obj.get("ServerSideEncryption") == "aws:kms" or obj.get("SSECustomerAlgorithm"):
            return None
        return _etag(obj.get("ETag"))

    def local_hash(self, local: Path) -> str:
        """The ETag S3 gives `local` when uploaded by put() (same part size)."""
        size = local.stat().st_size
        if size < self._transfer.multipart_threshold:
            return _md5_file(local)
        chunk = ChunksizeAdjuster().adjust_chunksize(self._chunk, size)
        part_digests = []
        with open(local, "rb") as f:
            while part := f.read(chunk):
                part_digests.append(hashlib.md5(part, usedforsecurity=False).digest())
        combined = hashlib.md5(b"".join(part_digests), usedforsecurity=False).hexdigest()
        return f"{combined}-{len(part_digests)}"

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        try:
            answer = self._s3().get_object(
                Bucket=self.bucket,
                Key=self._key(name),
                Range=f"bytes={offset}-{offset + length - 1}",
            )
            return answer["Body"].read()
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return b""
            raise self._error(exc, f"download part of {name}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._error(exc, f"download part of {name}") from exc

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def _md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _find(exc: BaseException | None, kind: type) -> BaseException | None:
    """`exc` or the exception it was raised from (boto3 wraps upload errors in a string)."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, kind):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


@register("s3", "boto3+s3")
def open_s3(url: ParsedUrl, options: BackendOptions) -> S3Backend:
    return S3Backend(url, options)
