"""A test-only wrapper that injects faults into a storage backend.

It sits where a real network would fail: between the verification wrapper and the storage
backend (`inject` builds the standard stack around it). Kinds of fault:

- ``fail``: the call raises a transient BackendConnectionError before reaching the storage.
- ``denied``: the call raises BackendPermissionError (permanent: must not be retried).
- ``truncate``: put stores only the first half of the file and reports success; get writes
  only the first half of the local file and reports success.
- ``corrupt``: put stores a same-size copy with one byte flipped, and reports success.
- ``drop``: the connection breaks during the transfer. On SFTP the real socket is shut down
  halfway through (from the backend's progress callback) and the storage call fails on its
  own (or, if paramiko had already moved all the data, fails with ConnectionResetError after
  it); elsewhere half of the data is transferred and the call raises ConnectionResetError,
  as a reset mid-transfer does.
- ``slow``: the call waits `delay` seconds first (a slow listing).

Each Fault hits `times` calls (-1: every call) of its operation whose name contains `match`.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from duplicity_ng.backends.base import Backend, BackendConnectionError, RemoteFile
from duplicity_ng.backends.options import BackendOptions
from duplicity_ng.backends.stack import wrap
from duplicity_ng.backends.wrapper import BackendWrapper
from duplicity_ng.errors import BackendPermissionError


@dataclass
class Fault:
    op: str  # list, put, get, delete, rename, stat
    kind: str  # fail, denied, truncate, corrupt, drop, slow
    times: int = 1
    match: str = ""
    delay: float = 0.3
    hits: int = 0

    def applies(self, op: str, name: str) -> bool:
        return op == self.op and self.match in name and (self.times < 0 or self.hits < self.times)


@dataclass
class FaultyBackend(BackendWrapper):
    inner: Backend
    faults: list[Fault]
    sever: Callable[[], None] | None = None
    calls: list[tuple[str, str]] = field(default_factory=list)
    injected: list[tuple[str, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        BackendWrapper.__init__(self, self.inner)
        self._lock = threading.Lock()

    def _fault(self, op: str, name: str = "") -> Fault | None:
        with self._lock:
            self.calls.append((op, name))
            for fault in self.faults:
                if fault.applies(op, name):
                    fault.hits += 1
                    self.injected.append((op, fault.kind, name))
                    return fault
        return None

    def _can_sever(self) -> bool:
        return self.sever is not None and hasattr(self.inner, "on_progress")

    def _transfer_then_sever(self, call: Callable[[], None]) -> None:
        """Run a put/get and break the connection once half of it is through."""
        done = False

        def progress(sent: int, total: int) -> None:
            nonlocal done
            if not done and sent >= total // 2:
                done = True
                self.sever()  # type: ignore[misc]

        self.inner.on_progress = progress  # type: ignore[attr-defined]
        try:
            call()
        finally:
            self.inner.on_progress = None  # type: ignore[attr-defined]
        if done:
            # paramiko had already received (or sent) the rest when the socket went down, so
            # the call finished: fail it anyway, or the fault would depend on timing.
            raise ConnectionResetError(104, "Connection reset by peer (injected, after the data)")

    def _generic(self, fault: Fault | None, what: str) -> None:
        if fault is None:
            return
        if fault.kind == "fail":
            raise BackendConnectionError(f"Injected failure: {what} on {self.display_url}")
        if fault.kind == "denied":
            raise BackendPermissionError(f"Injected: permission denied to {what}")
        if fault.kind == "slow":
            time.sleep(fault.delay)
        if fault.kind == "drop" and self.sever is not None:
            self.sever()  # breaks it between calls; put/get break it halfway instead

    def list(self) -> list[RemoteFile]:
        self._generic(self._fault("list"), "list")
        return self.inner.list()

    def put(self, local: Path, name: str) -> None:
        fault = self._fault("put", name)
        if fault is not None and fault.kind == "drop" and self._can_sever():
            self._transfer_then_sever(lambda: self.inner.put(local, name))
            return
        if fault is not None and fault.kind in ("truncate", "corrupt", "drop"):
            with tempfile.TemporaryDirectory() as tmp:
                damaged = Path(tmp) / "damaged"
                _damaged_copy(local, damaged, fault.kind)
                self.inner.put(damaged, name)
            if fault.kind == "drop":
                raise ConnectionResetError(104, "Connection reset by peer (injected)")
            return
        self._generic(fault, f"upload {name}")
        self.inner.put(local, name)

    def get(self, name: str, local: Path) -> None:
        fault = self._fault("get", name)
        if fault is not None and fault.kind == "drop" and self._can_sever():
            self._transfer_then_sever(lambda: self.inner.get(name, local))
            return
        if fault is not None and fault.kind in ("truncate", "drop"):
            self.inner.get(name, local)
            with open(local, "r+b") as f:
                f.truncate(local.stat().st_size // 2)
            if fault.kind == "drop":
                raise ConnectionResetError(104, "Connection reset by peer (injected)")
            return
        self._generic(fault, f"download {name}")
        self.inner.get(name, local)

    def delete(self, names: list[str]) -> None:
        self._generic(self._fault("delete", ",".join(names)), "delete")
        self.inner.delete(names)

    def rename(self, src: str, dst: str) -> None:
        self._generic(self._fault("rename", dst), f"rename {src}")
        self.inner.rename(src, dst)  # type: ignore[attr-defined]

    def stat(self, name: str) -> RemoteFile | None:
        self._generic(self._fault("stat", name), f"look up {name}")
        return self.inner.stat(name)  # type: ignore[attr-defined]


def _damaged_copy(src: Path, dst: Path, kind: str) -> None:
    if kind == "corrupt":
        shutil.copyfile(src, dst)
        size = dst.stat().st_size
        if size:
            with open(dst, "r+b") as f:
                f.seek(size // 2)
                byte = f.read(1)
                f.seek(size // 2)
                f.write(bytes([byte[0] ^ 0xFF]))
        return
    with open(src, "rb") as f:
        dst.write_bytes(f.read(src.stat().st_size // 2))


def inject(
    raw: Backend,
    faults: list[Fault],
    options: BackendOptions,
    warn: Callable[[str], None] | None = None,
) -> tuple[Backend, FaultyBackend]:
    """The standard stack with a FaultyBackend right above the storage backend."""
    sever = getattr(raw, "sever_connection", None)
    faulty = FaultyBackend(raw, faults, sever)
    return wrap(faulty, options, warn=warn), faulty
