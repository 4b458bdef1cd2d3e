"""Helpers for the end-to-end tests (test_e2e_*.py): trees, backend files, output checks.

The tests drive bin/duplicity-ng as a user types it (peers.NgRunner); these helpers only
prepare source trees, look at what landed on a file:// backend and check what was printed.
"""

from __future__ import annotations

import gzip
import io
import os
import random
import re
import shutil
import stat
import subprocess
import tarfile
import time
from collections.abc import Iterable
from pathlib import Path

from peers import REPO, NgRunner
from treecompare import extract_source_tar

T0, T1, T2 = 1700000000, 1700003600, 1700007200
FIXTURES_DIR = REPO.parent / "shared" / "fixtures" / "duplicity"
COMMON_TARS = [FIXTURES_DIR / "sources" / "common" / f"source-T{i}.tar" for i in range(3)]
AS_ROOT = os.geteuid() == 0

# The name duplicity writes for a time, e.g. 20231114T221320Z.
_STAMP = "%Y%m%dT%H%M%SZ"


def stamp(t: int) -> str:
    return time.strftime(_STAMP, time.gmtime(t))


def url(path: Path) -> str:
    return f"file://{path}"


def runner(cache_home: Path) -> NgRunner:
    """An NgRunner for fixtures wider than one test (the `ng` fixture is per test)."""
    cache_home.mkdir(parents=True, exist_ok=True)
    return NgRunner(cache_home=cache_home)


# -- trees ----------------------------------------------------------------------------------


def clear_dir(path: Path) -> None:
    """Empty a directory, read-only subdirectories included (they block deletion as non-root)."""
    for dirpath, dirnames, _ in os.walk(path):
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if not os.path.islink(full):
                os.chmod(full, 0o700)
    for child in os.listdir(path):
        full = os.path.join(path, child)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full)
        else:
            os.unlink(full)


def set_source_state(src: Path, tar_path: Path) -> None:
    """Make `src` exactly the tree of `tar_path` (deletions included)."""
    if src.exists():
        os.chmod(src, 0o700)
        clear_dir(src)
    extract_source_tar(tar_path, src)


def random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def write_file(path: Path, data: bytes, mtime: int, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    os.utime(path, (mtime, mtime))


def set_mtimes(root: Path, mtime: int) -> None:
    """Give every file and directory below root (root too) the same mtime."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (mtime, mtime), follow_symlinks=False)
    os.utime(root, (mtime, mtime))


def make_readable(root: Path) -> None:
    """Undo read-only modes a restore left, so pytest can clean tmp_path as non-root."""
    for dirpath, dirnames, _ in os.walk(root):
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if not os.path.islink(full):
                os.chmod(full, stat.S_IMODE(os.lstat(full).st_mode) | 0o700)


# -- backend --------------------------------------------------------------------------------


def backend_names(backend: Path) -> list[str]:
    return sorted(os.listdir(backend)) if backend.exists() else []


def names_matching(backend: Path, pattern: str) -> list[str]:
    rx = re.compile(pattern)
    return [n for n in backend_names(backend) if rx.search(n)]


def only_name(backend: Path, pattern: str) -> str:
    found = names_matching(backend, pattern)
    assert len(found) == 1, f"expected one name matching {pattern!r}, got {found}"
    return found[0]


def volume_members(path: Path) -> list[tarfile.TarInfo]:
    """The members of a stored volume (gzip or plain tar), names as raw-byte surrogates."""
    with tarfile.open(path, "r:*", encoding="utf-8", errors="surrogateescape") as tar:
        return list(tar)


def member_names(path: Path) -> list[str]:
    return [m.name for m in volume_members(path)]


def manifest_text(backend: Path, pattern: str) -> str:
    return (backend / only_name(backend, pattern)).read_bytes().decode("utf-8", "surrogateescape")


def manifest_volume_ranges(text: str) -> dict[int, tuple[str, str]]:
    """Volume number -> (StartingPath line rest, EndingPath line rest), as written."""
    ranges: dict[int, tuple[str, str]] = {}
    for block in re.finditer(
        r"^Volume (\d+):\n    StartingPath   (.*)\n    EndingPath     (.*)\n", text, re.M
    ):
        ranges[int(block.group(1))] = (block.group(2), block.group(3))
    return ranges


def filelist(text: str) -> list[tuple[str, str]]:
    """The manifest's Filelist entries as (action, path)."""
    head = re.search(r"^Filelist (\d+)\n", text, re.M)
    assert head is not None, f"no Filelist in manifest:\n{text}"
    lines = text[head.end() :].splitlines()
    entries = [(line[4:11].strip(), line[13:]) for line in lines if line.startswith("    ")]
    assert len(entries) == int(head.group(1)), text
    return entries


def gzip_tar_bytes(members: Iterable[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    """A gzipped PAX tar of the given members, as duplicity's volumes are."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return gzip.compress(raw.getvalue())


# -- output ---------------------------------------------------------------------------------


def one_error_line(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """Assert the exit code and that stderr is exactly one line containing every needle."""
    __tracebackhide__ = True
    context = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == code, context
    assert "Traceback" not in result.stderr + result.stdout, context
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, context
    for needle in needles:
        assert needle in lines[0], context
    return lines[0]


def listed_paths(stdout: str) -> dict[str, str]:
    """list-current-files output: path -> the asctime printed before it."""
    out: dict[str, str] = {}
    for line in stdout.splitlines():
        # asctime is always 24 characters: "Tue Nov 14 22:13:20 2023"
        assert len(line) > 25 and line[24] == " ", f"unexpected listing line {line!r}"
        out[line[25:]] = line[:24]
    return out
