"""Retries: each operation up to `num_retries` attempts, pauses growing exponentially with
jitter, and no retry at all for errors that cannot heal (bad credentials, a missing bucket or
file, permission denied, an untrusted host key).

Backends reconnect on their own after a broken connection, so a retry is simply the call
again. What counts as transient: a non-permanent BackendError, and the OS/socket errors
(OSError, EOFError) a library may let through; any other exception is a bug and passes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from duplicity_ng.backends.base import Backend, RemoteFile, is_permanent
from duplicity_ng.backends.wrapper import BackendWrapper
from duplicity_ng.errors import BackendError

T = TypeVar("T")

#: The longest pause, as a multiple of the first one (30 s -> at most 4 min).
MAX_BACKOFF_FACTOR = 8


class RetryBackend(BackendWrapper):
    def __init__(
        self,
        inner: Backend,
        attempts: int,
        delay: float,
        warn: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(inner)
        self.attempts = max(1, attempts)
        self.delay = max(0.0, delay)
        self._warn = warn or (lambda _message: None)
        self._sleep = sleep
        self._rng = rng or random.Random()

    def pause(self, failed_attempt: int) -> float:
        """Seconds to wait after the `failed_attempt`-th failure: 1, 2, 4... times `delay`,
        each drawn from [50 %, 100 %] of that so parallel workers do not retry in step."""
        factor = min(2 ** (failed_attempt - 1), MAX_BACKOFF_FACTOR)
        return self.delay * factor * self._rng.uniform(0.5, 1.0)

    def _call(self, what: str, operation: Callable[[], T]) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return operation()
            except (BackendError, OSError, EOFError) as exc:
                if is_permanent(exc):
                    raise
                if attempt == self.attempts:
                    raise _gave_up(exc, what, self.display_url, attempt) from exc
                pause = self.pause(attempt)
                self._warn(
                    f"Attempt {attempt} of {self.attempts} to {what} failed: "
                    f"{_line(exc)}; retrying in {pause:.1f} s"
                )
                self._sleep(pause)
        raise AssertionError("unreachable")

    def list(self) -> list[RemoteFile]:
        return self._call("list files", self.inner.list)

    def put(self, local: Path, name: str) -> None:
        self._call(f"upload {name}", lambda: self.inner.put(local, name))

    def get(self, name: str, local: Path) -> None:
        self._call(f"download {name}", lambda: self.inner.get(name, local))

    def delete(self, names: list[str]) -> None:
        what = f"delete {names[0]}" if len(names) == 1 else f"delete {len(names)} files"
        self._call(what, lambda: self.inner.delete(names))

    def rename(self, src: str, dst: str) -> None:
        self._call(f"rename {src}", lambda: self.inner.rename(src, dst))  # type: ignore[attr-defined]

    def stat(self, name: str) -> RemoteFile | None:
        return self._call(f"look up {name}", lambda: self.inner.stat(name))  # type: ignore[attr-defined]

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        return self._call(
            f"download part of {name}",
            lambda: self.inner.get_range(name, offset, length),  # type: ignore[attr-defined]
        )


def _line(exc: BaseException) -> str:
    if isinstance(exc, BackendError):
        return exc.line()
    return f"{type(exc).__name__}: {exc}"


def _gave_up(exc: BaseException, what: str, url: str, attempts: int) -> BackendError:
    suffix = f" (gave up after {attempts} attempts)" if attempts > 1 else ""
    if isinstance(exc, BackendError):
        return type(exc)(exc.message + suffix, exc.hint, exc.exit_code)
    return BackendError(f"Cannot {what} on {url}: {_line(exc)}{suffix}")
