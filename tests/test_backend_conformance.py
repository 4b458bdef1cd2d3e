"""One conformance suite, run against every backend on a real server on loopback.

Each test gets a fresh target (folder, bucket or prefix) and goes through `open_backend`,
i.e. the storage backend inside the standard wrappers (retry, atomic put, verification).
"""

from __future__ import annotations

import hashlib
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from servers import KINDS, Target

from duplicity_ng.backends.base import RemoteFile, capabilities_of
from duplicity_ng.backends.verify import is_temp_name
from duplicity_ng.backends.wrapper import innermost
from duplicity_ng.errors import BackendNotFoundError

pytest_plugins = ["conftest_servers"]
pytestmark = pytest.mark.parametrize("target", KINDS, indirect=True)

# Names duplicity writes, and what --file-prefix can add to them.
ODD_NAMES = [
    "duplicity-full.20231114T221320Z.vol1.difftar.gpg",
    "duplicity-inc.20231114T221320Z.to.20231115T000000Z.manifest",
    "duplicity-new-signatures.20231114T221320Z.to.20231115T000000Z.sigtar.gz",
    "pfx data+ü%20#&='~!$,@(x)_duplicity-full-signatures.20231114T221320Z.sigtar.gz",
    "df.s44we8.1.dt.g",
    "名前 ünï.manifest",
    "-leading-dash..double.dot",
]
# wsgidav 4.4 unquotes a MOVE destination before parsing it, so '?' and ';' in a name cut it
# short there; test_backend_errors checks that this ends in a clear error.
ODD_NAMES_NOT_WSGIDAV = ["query?semi;colon.manifest"]


def data(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def local_file(directory: Path, name: str, content: bytes) -> Path:
    path = directory / name
    path.write_bytes(content)
    return path


def listing(backend) -> dict[str, int]:  # noqa: ANN001
    files = backend.list()
    assert all(isinstance(f, RemoteFile) for f in files)
    return {f.name: f.size for f in files}


def fetch(backend, name: str, tmp_path: Path) -> bytes:  # noqa: ANN001
    out = tmp_path / f"got-{hashlib.sha1(name.encode()).hexdigest()}"
    backend.get(name, out)
    return out.read_bytes()


def test_fresh_target_lists_nothing(target: Target) -> None:
    backend = target.open()
    try:
        assert backend.list() == []
    finally:
        backend.close()


def test_put_list_get_round_trip(target: Target, tmp_path: Path) -> None:
    backend = target.open()
    contents = {f"file-{size}": data(size, size) for size in (0, 1, 1000, 100_003)}
    for name, content in contents.items():
        backend.put(local_file(tmp_path, name, content), name)
    assert listing(backend) == {name: len(c) for name, c in contents.items()}
    for name, content in contents.items():
        assert fetch(backend, name, tmp_path) == content
    backend.close()


def test_overwrite_replaces_the_whole_file(target: Target, tmp_path: Path) -> None:
    backend = target.open()
    backend.put(local_file(tmp_path, "long", data(20_000, 1)), "name")
    short = data(3_000, 2)
    backend.put(local_file(tmp_path, "short", short), "name")
    assert listing(backend) == {"name": 3_000}
    assert fetch(backend, "name", tmp_path) == short
    backend.close()


def test_odd_names_survive(target: Target, tmp_path: Path) -> None:
    backend = target.open()
    names = ODD_NAMES + ([] if target.kind.startswith("webdav") else ODD_NAMES_NOT_WSGIDAV)
    for i, name in enumerate(names):
        backend.put(local_file(tmp_path, f"src{i}", data(100 + i, i)), name)
    assert listing(backend) == {name: 100 + i for i, name in enumerate(names)}
    for i, name in enumerate(names):
        assert fetch(backend, name, tmp_path) == data(100 + i, i)
    backend.delete(names)
    assert backend.list() == []
    backend.close()


def test_delete_ignores_missing_names(target: Target, tmp_path: Path) -> None:
    backend = target.open()
    for name in ("a", "b", "c"):
        backend.put(local_file(tmp_path, name, name.encode() * 10), name)
    backend.delete(["a", "never-was"])
    backend.delete([])
    assert listing(backend) == {"b": 10, "c": 10}
    backend.close()


def test_missing_file_raises_not_found_without_retrying(target: Target, tmp_path: Path) -> None:
    warnings: list[str] = []
    from duplicity_ng.backends.base import open_backend

    backend = open_backend(target.url, target.options, warn=warnings.append)
    backend.put(local_file(tmp_path, "x", b"x"), "present")
    with pytest.raises(BackendNotFoundError) as caught:
        backend.get("absent", tmp_path / "out")
    assert caught.value.exit_code == 52
    assert warnings == []  # a missing file is not worth a second attempt
    message = caught.value.line()
    assert "absent" in message and "\n" not in message
    assert "p@ss" not in message and "masterKey" not in message
    backend.close()


def test_big_file(target: Target, tmp_path: Path) -> None:
    # S3: 12 MiB in 5 MiB parts is a 3-part multipart upload. The B2 simulator is slow per
    # part, so it gets 1 MiB (16 parts of its 64 KiB).
    size = (1 << 20) + 17 if target.kind == "b2" else 12 * (1 << 20) + 17
    content = data(size, 7)
    backend = target.open()
    backend.put(
        local_file(tmp_path, "big", content), "duplicity-full.20231114T221320Z.vol1.difftar"
    )
    assert listing(backend) == {"duplicity-full.20231114T221320Z.vol1.difftar": size}
    got = fetch(backend, "duplicity-full.20231114T221320Z.vol1.difftar", tmp_path)
    assert hashlib.sha256(got).digest() == hashlib.sha256(content).digest()
    caps = capabilities_of(backend)
    if caps.content_hash:
        remote = backend.stat("duplicity-full.20231114T221320Z.vol1.difftar")
        assert remote is not None and remote.digest == backend.local_hash(tmp_path / "big")
    if target.kind == "s3":
        assert remote.digest.endswith("-3")  # really went up as 3 parts
    backend.close()


def test_stat_and_content_hash(target: Target, tmp_path: Path) -> None:
    backend = target.open()
    caps = capabilities_of(backend)
    assert caps.stat, "every backend here answers stat() without a listing"
    path = local_file(tmp_path, "f", data(5000, 3))
    backend.put(path, "f")
    found = backend.stat("f")
    assert found is not None and (found.name, found.size) == ("f", 5000)
    assert backend.stat("missing") is None
    if caps.content_hash:
        assert found.digest == backend.local_hash(path)
    backend.close()


def test_ranged_get(target: Target, tmp_path: Path) -> None:
    backend = target.open()
    assert capabilities_of(backend).ranged_get
    content = data(10_000, 4)
    backend.put(local_file(tmp_path, "r", content), "r")
    assert backend.get_range("r", 1234, 100) == content[1234:1334]
    assert backend.get_range("r", 9_990, 100) == content[9_990:]
    backend.close()


def test_puts_are_atomic_and_leave_no_temporary_files(target: Target, tmp_path: Path) -> None:
    backend = target.open()
    assert capabilities_of(backend).atomic_put
    for i in range(3):
        backend.put(local_file(tmp_path, f"p{i}", data(1000, i)), "same")
    raw_names = [f.name for f in innermost(backend).list()]
    assert raw_names == ["same"], raw_names
    assert not any(is_temp_name(n) for n in raw_names)
    backend.close()


def test_concurrent_transfers(target: Target, tmp_path: Path) -> None:
    backend = target.open()
    workers = min(4, capabilities_of(backend).max_concurrency)
    contents = {f"c{i}": data(50_000 + i, i) for i in range(8)}
    paths = {n: local_file(tmp_path, n, c) for n, c in contents.items()}
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda n: backend.put(paths[n], n), contents))
    assert listing(backend) == {n: len(c) for n, c in contents.items()}
    with ThreadPoolExecutor(workers) as pool:
        got = dict(
            zip(contents, pool.map(lambda n: fetch(backend, n, tmp_path), contents), strict=True)
        )
    assert got == contents
    backend.close()


def test_dry_run_changes_nothing(target: Target, tmp_path: Path) -> None:
    real = target.open()
    real.put(local_file(tmp_path, "keep", b"kept"), "keep")
    dry = target.open(dry_run=True)
    dry.put(local_file(tmp_path, "new", b"new"), "new")
    dry.delete(["keep"])
    assert listing(dry) == {"keep": 4}
    assert fetch(dry, "keep", tmp_path) == b"kept"
    dry.close()
    real.close()
