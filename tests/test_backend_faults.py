"""Faults injected under the wrappers (tests/faults.py) on every backend: retries and
verification must end in a correct file or a clear error, never in a short file that
looks stored."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from faults import Fault, inject
from servers import KINDS, Target

from duplicity_ng.backends.base import capabilities_of
from duplicity_ng.backends.verify import is_temp_name
from duplicity_ng.errors import BackendError, BackendPermissionError, BackendValidationError

pytest_plugins = ["conftest_servers"]
pytestmark = pytest.mark.parametrize("target", KINDS, indirect=True)

VOLUME = "duplicity-full.20231114T221320Z.vol2.difftar.gz"


def content(size: int = 200_001, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def source(tmp_path: Path, data: bytes, name: str = "src") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def stored(target: Target, tmp_path: Path, name: str) -> bytes | None:
    """What a clean backend (no faults) sees under `name`."""
    backend = target.open()
    try:
        if name not in {f.name for f in backend.list()}:
            return None
        out = tmp_path / "check"
        backend.get(name, out)
        return out.read_bytes()
    finally:
        backend.close()


def raw_names(target: Target) -> list[str]:
    raw = target.open_raw()
    try:
        return sorted(f.name for f in raw.list())
    finally:
        raw.close()


def test_failed_put_is_retried(target: Target, tmp_path: Path) -> None:
    warnings: list[str] = []
    backend, faulty = inject(
        target.open_raw(), [Fault("put", "fail", times=2)], target.options, warnings.append
    )
    backend.put(source(tmp_path, content()), VOLUME)
    assert len(warnings) == 2 and all("Injected failure" in w for w in warnings)
    assert stored(target, tmp_path, VOLUME) == content()
    backend.close()


def test_truncated_put_is_caught_and_redone(target: Target, tmp_path: Path) -> None:
    warnings: list[str] = []
    backend, faulty = inject(
        target.open_raw(), [Fault("put", "truncate")], target.options, warnings.append
    )
    backend.put(source(tmp_path, content()), VOLUME)
    assert [kind for _, kind, _ in faulty.injected] == ["truncate"]
    assert (
        len(warnings) == 1 and "not intact" in warnings[0] and "100000 bytes stored" in warnings[0]
    )
    assert stored(target, tmp_path, VOLUME) == content()
    assert raw_names(target) == [VOLUME]  # no temporary or damaged leftovers
    backend.close()


def test_put_that_stays_truncated_fails_clearly_and_keeps_the_old_file(
    target: Target, tmp_path: Path
) -> None:
    old = content(5000, 2)
    target.open().put(source(tmp_path, old, "old"), VOLUME)
    backend, faulty = inject(
        target.open_raw(), [Fault("put", "truncate", times=-1)], target.options
    )
    with pytest.raises(BackendValidationError) as caught:
        backend.put(source(tmp_path, content()), VOLUME)
    assert caught.value.exit_code == 56
    assert f"gave up after {target.options.num_retries} attempts" in caught.value.line()
    assert VOLUME in caught.value.line() and "\n" not in caught.value.line()
    assert len(faulty.injected) == target.options.num_retries
    after = stored(target, tmp_path, VOLUME)
    if target.kind == "s3":
        # S3 replaced the old object with the bad one; the bad one was deleted.
        assert after is None
    else:
        # Temp name + rename (SFTP, WebDAV, file) or versions (B2): the old file is intact.
        assert after == old
    assert not any(is_temp_name(n) for n in raw_names(target))
    backend.close()


def test_corrupt_put_of_same_size(target: Target, tmp_path: Path) -> None:
    warnings: list[str] = []
    backend, faulty = inject(
        target.open_raw(), [Fault("put", "corrupt")], target.options, warnings.append
    )
    backend.put(source(tmp_path, content()), VOLUME)
    after = stored(target, tmp_path, VOLUME)
    if capabilities_of(backend).content_hash:
        # The service's checksum differs from the file's: caught and uploaded again.
        assert len(warnings) == 1 and capabilities_of(backend).content_hash in warnings[0]
        assert after == content()
    else:
        # Size is all SFTP/WebDAV/file can compare: the manifest's SHA1 catches this one at
        # restore time (engine), which is why duplicity hashes every volume.
        assert warnings == [] and after is not None and len(after) == len(content())
    backend.close()


def test_dropped_connection_during_put(target: Target, tmp_path: Path) -> None:
    warnings: list[str] = []
    backend, faulty = inject(
        target.open_raw(), [Fault("put", "drop")], target.options, warnings.append
    )
    backend.list()  # the connection is up before it breaks
    backend.put(source(tmp_path, content()), VOLUME)
    assert len(warnings) == 1, warnings
    assert stored(target, tmp_path, VOLUME) == content()
    assert raw_names(target) == [VOLUME], warnings
    backend.close()


def test_dropped_connection_during_get(target: Target, tmp_path: Path) -> None:
    target.open().put(source(tmp_path, content()), VOLUME)
    warnings: list[str] = []
    backend, faulty = inject(
        target.open_raw(), [Fault("get", "drop")], target.options, warnings.append
    )
    backend.list()
    out = tmp_path / "out"
    backend.get(VOLUME, out)
    assert len(warnings) == 1
    assert out.read_bytes() == content()
    backend.close()


def test_short_download_is_caught(target: Target, tmp_path: Path) -> None:
    target.open().put(source(tmp_path, content()), VOLUME)
    warnings: list[str] = []
    backend, faulty = inject(
        target.open_raw(), [Fault("get", "truncate")], target.options, warnings.append
    )
    out = tmp_path / "out"
    backend.get(VOLUME, out)
    assert len(warnings) == 1 and "short" in warnings[0]
    assert out.read_bytes() == content()
    backend.close()


def test_slow_listing_still_lists_everything(target: Target, tmp_path: Path) -> None:
    target.open().put(source(tmp_path, b"x" * 10), "a")
    backend, faulty = inject(target.open_raw(), [Fault("list", "slow", delay=0.3)], target.options)
    started = time.monotonic()
    assert {(f.name, f.size) for f in backend.list()} == {("a", 10)}
    assert time.monotonic() - started >= 0.3
    backend.close()


def test_permanent_error_is_not_retried(target: Target, tmp_path: Path) -> None:
    warnings: list[str] = []
    backend, faulty = inject(
        target.open_raw(), [Fault("put", "denied", times=-1)], target.options, warnings.append
    )
    with pytest.raises(BackendPermissionError):
        backend.put(source(tmp_path, b"data"), "f")
    assert warnings == [] and len(faulty.injected) == 1
    backend.close()


def test_persistent_failure_gives_a_clear_error(target: Target, tmp_path: Path) -> None:
    backend, faulty = inject(target.open_raw(), [Fault("list", "fail", times=-1)], target.options)
    with pytest.raises(BackendError) as caught:
        backend.list()
    line = caught.value.line()
    assert caught.value.exit_code == 50
    assert target.url.split("@")[-1] in line or target.kind == "file"
    assert "p@ss" not in line and ":masterKey" not in line
    assert len(faulty.injected) == target.options.num_retries
    backend.close()
