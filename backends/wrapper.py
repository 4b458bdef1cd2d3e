"""A backend that forwards everything to another: the base of every wrapper.

A wrapper overrides the operations it changes and inherits the rest, optional capabilities
included, so stacking wrappers never hides what the storage underneath can do.
"""

from __future__ import annotations

from pathlib import Path

from duplicity_ng.backends.base import Backend, Capabilities, RemoteFile, capabilities_of


class BackendWrapper:
    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.display_url = inner.display_url
        self.capabilities: Capabilities = capabilities_of(inner)

    def list(self) -> list[RemoteFile]:
        return self.inner.list()

    def put(self, local: Path, name: str) -> None:
        self.inner.put(local, name)

    def get(self, name: str, local: Path) -> None:
        self.inner.get(name, local)

    def delete(self, names: list[str]) -> None:
        self.inner.delete(names)

    def close(self) -> None:
        self.inner.close()

    # Optional capabilities: only called when `capabilities` says the inner backend has them.

    def rename(self, src: str, dst: str) -> None:
        self.inner.rename(src, dst)  # type: ignore[attr-defined]

    def stat(self, name: str) -> RemoteFile | None:
        return self.inner.stat(name)  # type: ignore[attr-defined]

    def local_hash(self, local: Path) -> str:
        return self.inner.local_hash(local)  # type: ignore[attr-defined]

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        return self.inner.get_range(name, offset, length)  # type: ignore[attr-defined]

    def discard_upload(self, name: str) -> None:
        discard_upload(self.inner, name)


def discard_upload(backend: Backend, name: str) -> None:
    """Remove what the last put stored under `name` after it failed verification.

    Plain delete, except on storage that keeps versions (B2), where only the newest version
    goes and an older good one stays."""
    method = getattr(backend, "discard_upload", None)
    if method is not None:
        method(name)
    else:
        backend.delete([name])


def innermost(backend: Backend) -> Backend:
    """The storage backend under all wrappers (for tests and diagnostics)."""
    while isinstance(backend, BackendWrapper):
        backend = backend.inner
    return backend
