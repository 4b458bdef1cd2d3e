"""--dry-run: nothing on the backend changes; reading works as usual."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from duplicity_ng.backends.base import Backend
from duplicity_ng.backends.wrapper import BackendWrapper


class DryRunBackend(BackendWrapper):
    def __init__(self, inner: Backend, note: Callable[[str], None] | None = None) -> None:
        super().__init__(inner)
        self._note = note or (lambda _message: None)

    def put(self, local: Path, name: str) -> None:
        self._note(f"Dry run: would upload {name} ({local.stat().st_size} bytes)")

    def delete(self, names: list[str]) -> None:
        for name in names:
            self._note(f"Dry run: would delete {name}")

    def rename(self, src: str, dst: str) -> None:
        self._note(f"Dry run: would rename {src} to {dst}")
