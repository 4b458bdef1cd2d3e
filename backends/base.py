"""The backend contract: list, put, get, delete — and the registry of URL schemes.

Kept small on purpose (as restic's backends are): retries, verification after put, par2 and
dry-run are wrappers around this contract, so each storage backend stays one short file.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from duplicity_ng.errors import CommandLineError


@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int


class Backend(Protocol):
    """Storage that can list, put, get and delete whole files by name."""

    #: The URL as shown to the user: never contains a password.
    display_url: str

    def list(self) -> list[RemoteFile]: ...

    def put(self, local: Path, name: str) -> None:
        """Store `local` as `name`, replacing an existing `name` only once the new one is whole."""

    def get(self, name: str, local: Path) -> None:
        """Copy `name` to the local file `local` (created or truncated)."""

    def delete(self, names: list[str]) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ParsedUrl:
    scheme: str
    user: str | None
    password: str | None
    host: str | None
    port: int | None
    path: str
    raw: str

    @property
    def display(self) -> str:
        """The URL with any password removed, for messages and logs."""
        if self.password is None:
            return self.raw
        netloc = self.host or ""
        if self.port:
            netloc += f":{self.port}"
        if self.user:
            netloc = f"{self.user}@{netloc}"
        return f"{self.scheme}://{netloc}{self.path}"


def parse_url(url: str) -> ParsedUrl:
    if "://" not in url:
        raise CommandLineError(
            f"Bad URL '{url}'",
            "a backend URL looks like file:///path or sftp://user@host/path",
        )
    scheme, rest = url.split("://", 1)
    if scheme == "file":
        # file://rel/dir is relative, file:///abs/dir absolute (duplicity's convention).
        return ParsedUrl("file", None, None, None, None, rest, url)
    parts = urllib.parse.urlsplit(url)
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    user = urllib.parse.unquote(parts.username) if parts.username is not None else None
    try:
        port = parts.port
    except ValueError as exc:
        raise CommandLineError(f"Bad port in URL '{scheme}://{parts.hostname}'") from exc
    return ParsedUrl(scheme, user, password, parts.hostname, port, parts.path, url)


BackendFactory = Callable[[ParsedUrl], Backend]
_REGISTRY: dict[str, BackendFactory] = {}


def register(*schemes: str) -> Callable[[BackendFactory], BackendFactory]:
    def decorate(factory: BackendFactory) -> BackendFactory:
        for scheme in schemes:
            _REGISTRY[scheme] = factory
        return factory

    return decorate


def open_backend(url: str) -> Backend:
    # Importing the modules registers their schemes.
    from duplicity_ng.backends import local  # noqa: F401

    parsed = parse_url(url)
    factory = _REGISTRY.get(parsed.scheme)
    if factory is None:
        known = ", ".join(sorted(_REGISTRY))
        raise CommandLineError(
            f"Unsupported backend scheme '{parsed.scheme}' in {parsed.display}",
            f"supported schemes: {known}",
        )
    return factory(parsed)
