"""The backend contract: list, put, get, delete — and the registry of URL schemes.

Kept small on purpose (as restic's backends are): retries, verification after put, atomic put,
dry-run, par2 and fault injection are wrappers around this contract (see `stack.wrap`), so
each storage backend stays one short file and one conformance suite tests them all.

What a backend can do beyond the four operations is declared in its `capabilities`
(`Capabilities`); a caller checks the flag before calling the matching optional method
(`rename`, `stat`, `local_hash`, `get_range`, described by the small protocols below).
"""

from __future__ import annotations

import importlib
import os
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from duplicity_ng.errors import (
    BackendError,
    BackendNoSpaceError,
    BackendNotFoundError,
    BackendPermissionError,
    CommandLineError,
)

if TYPE_CHECKING:
    from duplicity_ng.backends.options import BackendOptions


@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int
    #: The service's own content hash in the scheme named by `Capabilities.content_hash`
    #: (e.g. a SHA1 hex digest on B2, the ETag on S3), when the listing or stat gave one.
    digest: str | None = None


@dataclass(frozen=True)
class Capabilities:
    """What a backend offers beyond list/put/get/delete."""

    #: put() never exposes a partial file under the final name (S3, B2, file://).
    atomic_put: bool = False
    #: rename(src, dst) replaces dst in one step (SFTP posix-rename, WebDAV MOVE).
    rename: bool = False
    #: stat(name) answers for one file without listing the whole folder.
    stat: bool = False
    #: Name of the service's content-hash scheme ("sha1", "s3-etag"); stat() fills
    #: RemoteFile.digest and local_hash(path) computes the same value for a local file.
    content_hash: str | None = None
    #: get_range(name, offset, length) reads part of a file.
    ranged_get: bool = False
    #: How many transfers the backend serves well at the same time.
    max_concurrency: int = 1


class Backend(Protocol):
    """Storage that can list, put, get and delete whole files by name."""

    #: The URL as shown to the user: never contains a password.
    display_url: str

    def list(self) -> list[RemoteFile]: ...

    def put(self, local: Path, name: str) -> None:
        """Store `local` as `name`, replacing an existing `name`."""

    def get(self, name: str, local: Path) -> None:
        """Copy `name` to the local file `local` (created or truncated).

        A missing `name` raises BackendNotFoundError."""

    def delete(self, names: list[str]) -> None:
        """Delete the names; names that do not exist are ignored."""

    def close(self) -> None: ...


class Renaming(Protocol):
    def rename(self, src: str, dst: str) -> None: ...


class Statting(Protocol):
    def stat(self, name: str) -> RemoteFile | None: ...


class Hashing(Protocol):
    def stat(self, name: str) -> RemoteFile | None: ...

    def local_hash(self, local: Path) -> str: ...


class RangedGet(Protocol):
    def get_range(self, name: str, offset: int, length: int) -> bytes: ...


def capabilities_of(backend: Backend) -> Capabilities:
    return getattr(backend, "capabilities", None) or Capabilities()


# -- errors -----------------------------------------------------------------------------------
# duplicity's codes: 50 generic, 51 permission, 52 not found, 53 no space, 56 validation.
# `permanent` errors are raised at once by the retry wrapper: trying again cannot help.


class BackendConnectionError(BackendError):
    """The host cannot be reached, or the connection broke: worth retrying."""

    permanent = False


class BackendAuthError(BackendPermissionError):
    """Credentials missing or refused."""

    permanent = True


class BackendHostKeyError(BackendError):
    """The SSH host key is unknown or does not match known_hosts."""

    permanent = True


class BackendCertificateError(BackendError):
    """The server's TLS certificate is not trusted."""

    permanent = True


class BackendArchivedError(BackendError):
    """The object is in a cold storage class (Glacier) and must be restored first."""

    permanent = True


_PERMANENT = (BackendPermissionError, BackendNotFoundError, BackendNoSpaceError, CommandLineError)


def is_permanent(exc: BaseException) -> bool:
    explicit = getattr(exc, "permanent", None)
    if explicit is not None:
        return bool(explicit)
    return isinstance(exc, _PERMANENT)


# -- URLs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedUrl:
    scheme: str
    user: str | None
    password: str | None = field(repr=False)
    host: str | None
    port: int | None
    path: str
    raw: str = field(repr=False)

    @property
    def display(self) -> str:
        """The URL with any password removed, for messages and logs."""
        if self.password is None:
            return self.raw
        netloc = self.host or ""
        if self.port:
            netloc += f":{self.port}"
        if self.user:
            netloc = f"{urllib.parse.quote(self.user, safe='')}@{netloc}"
        return f"{self.scheme}://{netloc}{self.path}"


def parse_url(url: str) -> ParsedUrl:
    if "://" not in url:
        raise CommandLineError(
            "Bad URL (no scheme://)",
            "a backend URL looks like file:///path or sftp://user@host/path",
        )
    scheme, rest = url.split("://", 1)
    if scheme == "file":
        # file://rel/dir is relative, file:///abs/dir absolute (duplicity's convention).
        return ParsedUrl("file", None, None, None, None, rest, url)
    # Split by hand rather than with urlsplit: it lower-cases the host, and bucket names
    # (which stand where the host does in s3:// and b2:// URLs) are case-sensitive.
    netloc, slash, path = rest.partition("/")
    path = slash + path
    userinfo, at, hostport = netloc.rpartition("@")
    user = password = None
    if at:
        raw_user, colon, raw_password = userinfo.partition(":")
        user = urllib.parse.unquote(raw_user)
        password = urllib.parse.unquote(raw_password) if colon else None
    host, port = _split_host_port(scheme, hostport)
    return ParsedUrl(scheme, user, password, host, port, path, url)


def _split_host_port(scheme: str, hostport: str) -> tuple[str | None, int | None]:
    if hostport.startswith("["):  # [IPv6]:port
        host, _, after = hostport[1:].partition("]")
        port_text = after[1:] if after.startswith(":") else ""
    else:
        host, _, port_text = hostport.partition(":")
    port = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            # Not quoted back: a mis-split URL may put part of a password here.
            raise CommandLineError(
                f"Bad host or port in a {scheme}:// URL",
                "percent-encode '/', '@' and ':' in user names and passwords",
            )
        port = int(port_text)
    return (host or None), port


def url_password(url: ParsedUrl, env: Mapping[str, str] | None = None) -> str | None:
    """The password from the URL, else BACKEND_PASSWORD (3.x), else FTP_PASSWORD (0.8)."""
    env = os.environ if env is None else env
    if url.password is not None:
        return url.password
    return env.get("BACKEND_PASSWORD") or env.get("FTP_PASSWORD")


# -- registry ---------------------------------------------------------------------------------

BackendFactory = Callable[[ParsedUrl, "BackendOptions"], Backend]
_REGISTRY: dict[str, BackendFactory] = {}

# Scheme -> module that registers it; imported only when used, so a run against file://
# never pays for importing boto3 or paramiko.
_MODULES = {
    "file": "local",
    "sftp": "sftp",
    "scp": "sftp",
    "paramiko+sftp": "sftp",
    "paramiko+scp": "sftp",
    "s3": "s3",
    "boto3+s3": "s3",
    "b2": "b2",
    "webdav": "webdav",
    "webdavs": "webdav",
}


def register(*schemes: str) -> Callable[[BackendFactory], BackendFactory]:
    def decorate(factory: BackendFactory) -> BackendFactory:
        for scheme in schemes:
            _REGISTRY[scheme] = factory
        return factory

    return decorate


def open_raw_backend(url: str, options: BackendOptions | None = None) -> Backend:
    """The storage backend for `url`, without the wrappers (retries, verification...)."""
    from duplicity_ng.backends.options import BackendOptions

    parsed = parse_url(url)
    module = _MODULES.get(parsed.scheme)
    if module is not None and parsed.scheme not in _REGISTRY:
        try:
            importlib.import_module(f"duplicity_ng.backends.{module}")
        except ImportError as exc:
            raise BackendError(
                f"The {parsed.scheme}:// backend cannot load: {exc}",
                "install duplicity-ng with its dependencies",
            ) from exc
    factory = _REGISTRY.get(parsed.scheme)
    if factory is None:
        known = ", ".join(sorted(set(_MODULES) | set(_REGISTRY)))
        raise CommandLineError(
            f"Unsupported backend scheme '{parsed.scheme}' in {parsed.display}",
            f"supported schemes: {known}",
        )
    return factory(parsed, options or BackendOptions())


def open_backend(
    url: str,
    options: BackendOptions | None = None,
    *,
    warn: Callable[[str], None] | None = None,
    note: Callable[[str], None] | None = None,
) -> Backend:
    """The backend for `url` inside the standard wrappers (see `stack.wrap`).

    `warn` receives one line per retried failure (e.g. Log.warning), `note` one line per
    skipped change under --dry-run (e.g. Log.notice)."""
    from duplicity_ng.backends.options import BackendOptions
    from duplicity_ng.backends.stack import wrap

    options = options or BackendOptions()
    return wrap(open_raw_backend(url, options), options, warn=warn, note=note)
