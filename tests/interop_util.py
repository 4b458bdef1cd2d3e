"""Helpers for the interop tests (test_interop_fixtures.py, test_interop_peers.py).

- ``FixtureCase``: one ``<version>/<case>/`` archive of ../shared/fixtures/duplicity with its
  fixture.json, copied to a writable place before use (the fixtures are read-only);
- ``listing_lines`` / ``status_lines``: the parts of ``list-current-files`` and
  ``collection-status`` output that both tools must print identically (duplicity adds log
  noise, a traceback for the latin-1 name, and lines that name its own archive dir);
- ``replace_tree``: turn a source directory into the state of another source tar, as the
  fixtures' T0 → T1 → T2 backups did;
- ``assert_restored``: compare a restored tree with a source tar (owners only as root).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from treecompare import compare_tree_with_tar, extract_source_tar

IS_ROOT = os.geteuid() == 0
FIXTURE_VERSIONS = ("3.2.1", "0.8.22")
# Environment for commands whose output shows local times: the fixtures were made in UTC.
UTC = {"TZ": "UTC"}


@dataclass(frozen=True)
class State:
    """One backup of a fixture: when it was taken and which source tar it reproduces."""

    number: int
    backup_time: int
    backup_type: str  # "full" or "inc"
    source_tar: Path


@dataclass(frozen=True)
class FixtureCase:
    version: str
    case: str
    directory: Path
    meta: dict

    @property
    def states(self) -> list[State]:
        return [
            State(
                number=s["state"],
                backup_time=s["backup_time"],
                backup_type=s["backup_type"],
                source_tar=(self.directory / s["source_tar"]).resolve(),
            )
            for s in self.meta["states"]
        ]

    @property
    def restore_env(self) -> dict[str, str]:
        return dict(self.meta["restore_env"])

    def copy_backend(self, dest: Path) -> str:
        """Copy the backend to `dest` (writable) and return its file:// URL."""
        shutil.copytree(self.directory / self.meta["backend_dir"], dest)
        _make_writable(dest)
        return f"file://{dest}"

    def copy_archive_dir(self, dest: Path) -> tuple[Path, str]:
        """Copy the fixture's local cache; returns (--archive-dir, --name) to use it."""
        cache = self.directory / self.meta["archive_dir"]
        shutil.copytree(cache.parent, dest)
        _make_writable(dest)
        return dest, cache.name

    def output(self, name: str) -> str:
        """One of the outputs/*.txt files, bytes kept as surrogate escapes (latin-1 name)."""
        data = (self.directory / "outputs" / name).read_bytes()
        return data.decode("utf-8", "surrogateescape")


def load_case(fixtures_dir: Path, version: str, case: str) -> FixtureCase:
    directory = fixtures_dir / version / case
    meta = json.loads((directory / "fixture.json").read_text())
    assert meta["case"] == case and meta["duplicity_version"] == version
    return FixtureCase(version=version, case=case, directory=directory, meta=meta)


def _make_writable(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            os.chmod(path, os.stat(path).st_mode | stat.S_IWUSR)


# `<asctime> <path>`, e.g. "Tue Nov 14 19:26:40 2023 names/with space.txt".
_ASCTIME_LINE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4} .+$"
)


def listing_lines(text: str) -> list[str]:
    """The `<asctime> <path>` lines of list-current-files output, in order.

    This drops duplicity's other lines, including the logging traceback it prints for a
    non-UTF-8 name (its "Message: '…'" line does not start with a date).
    """
    return [line for line in text.splitlines() if _ASCTIME_LINE.match(line)]


_STATUS_PREFIXES = (
    "Found primary backup chain",
    "Found backup chain",
    "Chain start time:",
    "Chain end time:",
    "Number of contained backup sets:",
    "Total number of contained volumes:",
    "Type of backup set:",
    "Full ",
    "Incremental ",
    "No orphaned or incomplete backup sets found.",
    "Also found ",
)
_SECONDARY = re.compile(r"^Found (\d+) secondary backup chains?(\(s\))?\.$")


def status_lines(text: str) -> list[str]:
    """The chain and set lines of collection-status output, whitespace-normalised.

    0.8 says "Found 0 secondary backup chains.", 3.x "chain(s)": both become "chain(s)".
    Lines naming the archive dir or the backend wrapper are left out.
    """
    result: list[str] = []
    for raw in text.splitlines():
        line = " ".join(raw.split())
        match = _SECONDARY.match(line)
        if match:
            result.append(f"Found {match.group(1)} secondary backup chain(s).")
        elif line.startswith(_STATUS_PREFIXES):
            result.append(line)
    return result


def remove_tree(path: Path) -> None:
    """rmtree that also empties read-only directories (the trees have a 0555 one)."""
    if not path.exists():
        return
    for dirpath, dirnames, _ in os.walk(path):
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                os.chmod(full, 0o700)
    os.chmod(path, 0o700)
    shutil.rmtree(path)


def replace_tree(src: Path, tar: Path) -> None:
    """Make `src` (same path) hold exactly the state recorded in `tar`."""
    remove_tree(src)
    extract_source_tar(tar, src)


def assert_restored(restored: Path, tar: Path) -> None:
    __tracebackhide__ = True
    diffs = compare_tree_with_tar(restored, tar, check_owner=IS_ROOT)
    assert diffs == [], f"{restored} differs from {tar.name}:\n" + "\n".join(diffs)


def stderr_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]
