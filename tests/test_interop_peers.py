"""Real duplicity (3.2.1 and 0.8.22) reads what we write, and chains mix both tools.

- Our full + 2 incrementals of the fixtures' `common` tree (sources/common/source-T0..2.tar,
  the awkward cases) restore exactly with both peers at every backup time;
- a multi-volume backup of ours (`--volsize 1`, a 3 MiB random file) restores with both;
- mixed chains: a peer's incremental on top of our full (the peer must accept our manifest
  and BLAKE2 signatures), then ours on top of that; and ours on top of a peer's full, then the
  peer's on top of ours. Every state restores exactly with us and with the peer;
- the peers' `list-current-files` and `collection-status` on our backend succeed and agree
  with ours.

Backups are built once per module (they are the slow part) inside the tests that use them,
so that a failing step is reported by the tests, with the tool's output.
"""

from __future__ import annotations

import os
import random
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import pytest
from interop_util import (
    IS_ROOT,
    UTC,
    assert_restored,
    listing_lines,
    replace_tree,
    status_lines,
)
from peers import DuplicityPeer, NgRunner
from treecompare import compare_trees

TIMES = (1700000000, 1700003600, 1700007200)  # T0 full, T1 and T2 incrementals
NG = "ng"
PEERS = ("3.2.1", "0.8.22")
NO_OWNER = () if IS_ROOT else ("--no-restore-ownership",)
LATIN1_NAME = b"names/latin1-caf\xe9.txt".decode("utf-8", "surrogateescape")


def _stamp(t: int) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t))


def expected_manifests(times: tuple[int, ...]) -> list[str]:
    """The manifest names of one chain: a full at times[0], then incrementals."""
    names = [f"duplicity-full.{_stamp(times[0])}.manifest"]
    names += [f"duplicity-inc.{_stamp(a)}.to.{_stamp(b)}.manifest" for a, b in pairwise(times)]
    return names


def manifests_in(backend: Path) -> list[str]:
    return sorted(n for n in os.listdir(backend) if ".manifest" in n)


@dataclass
class Tools:
    """Runs a backup or a restore with any of the three tools, each keeping its own cache
    (ours under XDG_CACHE_HOME, each peer in a private --archive-dir) like a real user."""

    ng: NgRunner
    peers: dict[str, DuplicityPeer]
    workdir: Path

    def archive_dir(self, tool: str, backend: Path) -> Path:
        return self.workdir / "peer-caches" / backend.name / tool

    def backup(self, tool: str, kind: str, src: Path, backend: Path, t: int, *extra: str) -> None:
        __tracebackhide__ = True
        url = f"file://{backend}"
        if tool == NG:
            self.ng.ok(kind, "--no-encryption", *extra, "--current-time", str(t), src, url)
        else:
            self.peers[tool].ok(
                kind,
                "--no-encryption",
                src,
                url,
                archive_dir=self.archive_dir(tool, backend),
                current_time=t,
            )

    def restore(self, tool: str, backend: Path, t: int, dest: Path) -> None:
        """Restore into `dest` with a cache of its own (so it reads the backend afresh)."""
        __tracebackhide__ = True
        url = f"file://{backend}"
        if tool == NG:
            cache = dest.parent / f"{dest.name}-cache"
            self.ng.ok("restore", *NO_OWNER, "--archive-dir", cache, "-t", str(t), url, dest)
        else:
            self.peers[tool].ok(
                "restore",
                "--no-encryption",
                "-t",
                str(t),
                url,
                dest,
                archive_dir=dest.parent / f"{dest.name}-cache",
            )

    def listing(self, tool: str, backend: Path, t: int):
        args = ("list-current-files", "-t", str(t), f"file://{backend}")
        if tool == NG:
            return self.ng.ok(*args, env=UTC)
        cache = self.workdir / "listing-caches" / f"{tool}-{t}"
        return self.peers[tool].run(*args, archive_dir=cache, env=UTC)

    def status(self, tool: str, backend: Path):
        args = ("collection-status", f"file://{backend}")
        if tool == NG:
            return self.ng.ok(*args, env=UTC)
        cache = self.workdir / "status-caches" / tool
        return self.peers[tool].ok(*args, archive_dir=cache, env=UTC)


@dataclass
class Built:
    backend: Path
    steps_done: int = 0
    error: BaseException | None = None


@dataclass
class Builds:
    """Backends built on first use and shared by the module's tests.

    A backend is built by steps (one backup each), run in order until one fails. A test asks
    for the first `upto + 1` steps: if those succeeded it gets the backend (which may hold
    later sets too), otherwise the failure is re-raised, so every test needing a failed step
    fails the same way, quickly, while tests of the earlier states still run.
    """

    tools: Tools
    done: dict[str, Built] = field(default_factory=dict)

    def get(
        self, key: str, steps: Sequence[Callable[[Path], None]], upto: int | None = None
    ) -> Path:
        __tracebackhide__ = True
        if key not in self.done:
            built = Built(self.tools.workdir / "backends" / key)
            built.backend.parent.mkdir(parents=True, exist_ok=True)
            for step in steps:
                try:
                    step(built.backend)
                except Exception as exc:  # re-raised in every test that needs this step
                    built.error = exc
                    break
                built.steps_done += 1
            self.done[key] = built
        built = self.done[key]
        if built.steps_done < (len(steps) if upto is None else upto + 1):
            assert built.error is not None
            raise built.error
        return built.backend


@pytest.fixture(scope="module")
def builds(tmp_path_factory, dup321: DuplicityPeer, dup08: DuplicityPeer) -> Builds:
    workdir = tmp_path_factory.mktemp("interop-peers")
    cache_home = workdir / "xdg-cache"
    cache_home.mkdir()
    tools = Tools(NgRunner(cache_home=cache_home), {"3.2.1": dup321, "0.8.22": dup08}, workdir)
    return Builds(tools)


@pytest.fixture(scope="module")
def common_tars(fixtures_dir: Path) -> list[Path]:
    return [fixtures_dir / "sources" / "common" / f"source-T{n}.tar" for n in range(3)]


def build_chain(
    builds: Builds, tars: list[Path], writers: tuple[str, str, str], upto: int = 2
) -> Path:
    """A backend with a full at T0 and incrementals at T1, T2 of the common tree; set n is
    written by writers[n]. All runs back up the same source path (duplicity checks it).
    Returns once sets 0..upto exist (later ones may too)."""
    src = builds.tools.workdir / "src" / "-".join(writers)

    def step(n: int) -> Callable[[Path], None]:
        def run(backend: Path) -> None:
            __tracebackhide__ = True
            tool = writers[n]
            replace_tree(src, tars[n])
            kind = "full" if n == 0 else "incremental"
            builds.tools.backup(tool, kind, src, backend, TIMES[n])
            assert manifests_in(backend) == expected_manifests(TIMES[: n + 1]), (
                f"{tool} did not write the expected set at T{n}"
            )

        return run

    return builds.get("-".join(writers), [step(n) for n in range(3)], upto)


# --- our chain, read by the peers --------------------------------------------------------


@pytest.mark.parametrize("n", range(3), ids=lambda n: f"T{n}")
@pytest.mark.parametrize("tool", (NG, *PEERS))
def test_our_chain_restores_exactly(
    tmp_path: Path, builds: Builds, common_tars: list[Path], tool: str, n: int
) -> None:
    backend = build_chain(builds, common_tars, (NG, NG, NG))
    dest = tmp_path / "restored"
    builds.tools.restore(tool, backend, TIMES[n], dest)
    assert_restored(dest, common_tars[n])


@pytest.mark.parametrize("n", range(3), ids=lambda n: f"T{n}")
def test_dup321_list_current_files_on_our_backend(
    builds: Builds, common_tars: list[Path], n: int
) -> None:
    backend = build_chain(builds, common_tars, (NG, NG, NG))
    ours = builds.tools.listing(NG, backend, TIMES[n])
    theirs = builds.tools.listing("3.2.1", backend, TIMES[n])
    assert theirs.returncode == 0, theirs.stderr
    # 3.2.1 cannot print the latin-1 name (a logging traceback instead): compare the rest.
    expected = [line for line in listing_lines(ours.stdout) if LATIN1_NAME not in line]
    assert len(expected) == len(listing_lines(ours.stdout)) - 1
    got = [line for line in listing_lines(theirs.stdout) if LATIN1_NAME not in line]
    assert got == expected


@pytest.mark.parametrize("tool", PEERS)
def test_peer_collection_status_on_our_backend(
    builds: Builds, common_tars: list[Path], tool: str
) -> None:
    backend = build_chain(builds, common_tars, (NG, NG, NG))
    theirs = status_lines(builds.tools.status(tool, backend).stdout)
    assert "Number of contained backup sets: 3" in theirs
    assert theirs == status_lines(builds.tools.status(NG, backend).stdout)


# --- multi-volume ------------------------------------------------------------------------


def _multivol_source(src: Path) -> None:
    rng = random.Random(20231114)
    (src / "sub").mkdir(parents=True)
    (src / "big.bin").write_bytes(rng.randbytes(3 * 1024 * 1024 + 12345))
    (src / "a.txt").write_text("first small file\n")
    (src / "sub" / "b.txt").write_text("second small file\n" * 100)
    (src / "sub" / "z.bin").write_bytes(rng.randbytes(70000))
    for path in (src / "sub", src):
        os.utime(path, (1699990000, 1699990000))


def _build_multivol(builds: Builds) -> tuple[Path, Path]:
    src = builds.tools.workdir / "src" / "multivol"

    def build(backend: Path) -> None:
        _multivol_source(src)
        builds.tools.ng.ok(
            "full", "--no-encryption", "--volsize", "1", "--current-time", str(TIMES[0]), src,
            f"file://{backend}",
        )  # fmt: skip

    backend = builds.get("ng-multivol", [build])
    return backend, src


def test_our_multivolume_backup_has_several_volumes(builds: Builds) -> None:
    backend, _ = _build_multivol(builds)
    volumes = [n for n in os.listdir(backend) if ".vol" in n and n.endswith(".difftar.gz")]
    assert len(volumes) >= 3, volumes


@pytest.mark.parametrize("tool", (NG, *PEERS))
def test_our_multivolume_backup_restores_exactly(tmp_path: Path, builds: Builds, tool: str) -> None:
    backend, src = _build_multivol(builds)
    dest = tmp_path / "restored"
    builds.tools.restore(tool, backend, TIMES[0], dest)
    assert compare_trees(src, dest, check_owner=IS_ROOT) == []


# --- chains mixing the tools --------------------------------------------------------------

MIXED_CHAINS = {
    # the peer continues our full, then we continue the peer's incremental
    "ng-3.2.1-ng": (NG, "3.2.1", NG),
    "ng-0.8.22-ng": (NG, "0.8.22", NG),
    # we continue the peer's full, then the peer continues our incremental
    "3.2.1-ng-3.2.1": ("3.2.1", NG, "3.2.1"),
    "0.8.22-ng-0.8.22": ("0.8.22", NG, "0.8.22"),
}


def _mixed_params() -> list:
    params = []
    for key, writers in MIXED_CHAINS.items():
        peer = next(w for w in writers if w != NG)
        for tool in (NG, peer):
            for n in range(3):
                params.append(pytest.param(writers, tool, n, id=f"{key}-by-{tool}-T{n}"))
    return params


@pytest.mark.parametrize(("writers", "tool", "n"), _mixed_params())
def test_mixed_chain_restores_exactly(
    tmp_path: Path,
    builds: Builds,
    common_tars: list[Path],
    writers: tuple[str, str, str],
    tool: str,
    n: int,
) -> None:
    backend = build_chain(builds, common_tars, writers, upto=n)
    dest = tmp_path / "restored"
    builds.tools.restore(tool, backend, TIMES[n], dest)
    assert_restored(dest, common_tars[n])


def _members(backend: Path, prefix: str) -> dict[str, int]:
    """name -> payload size of every member of the volumes whose names start with prefix."""
    members: dict[str, int] = {}
    for name in sorted(os.listdir(backend)):
        if name.startswith(prefix) and ".difftar" in name:
            with tarfile.open(backend / name) as tar:
                members.update((m.name, m.size) for m in tar)
    return members


@pytest.mark.parametrize("key", list(MIXED_CHAINS))
def test_incrementals_are_deltas_against_the_other_tools_signatures(
    builds: Builds, common_tars: list[Path], key: str
) -> None:
    """At T1 (written by the other tool than T0) medium.bin (70 KiB of 160 KiB rewritten,
    5000 bytes appended) is stored as a delta that copies from the old data, and the mode-only
    change of perms/private.txt as a tiny delta: the T0 signatures were read, not ignored."""
    backend = build_chain(builds, common_tars, MIXED_CHAINS[key], upto=1)
    members = _members(backend, f"duplicity-inc.{_stamp(TIMES[0])}.to.{_stamp(TIMES[1])}.vol")
    medium = {n: size for n, size in members.items() if n.split("/", 1)[1] == "medium.bin"}
    medium |= {n: size for n, size in members.items() if n.startswith("multivol_diff/medium.bin/")}
    assert medium and all(n.startswith(("diff/", "multivol_diff/")) for n in medium), medium
    assert 70 * 1024 < sum(medium.values()) < 0.6 * 168840
    assert "diff/perms/private.txt" in members
    assert members["diff/perms/private.txt"] < 64
    assert "deleted/to-delete.txt" in members


@pytest.mark.parametrize("peer", PEERS)
def test_we_continue_a_peer_chain_without_source_mismatch(
    tmp_path: Path, builds: Builds, peer: str
) -> None:
    """Same machine, same source path: our incremental must accept the peer's manifest."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.txt").write_text("one\n")
    backend = tmp_path / "backend"
    builds.tools.backup(peer, "full", src, backend, TIMES[0])
    (src / "sub" / "a.txt").write_text("two\n")
    os.utime(src / "sub" / "a.txt", (TIMES[0] + 10, TIMES[0] + 10))
    result = builds.tools.ng("incremental", "--no-encryption", "--current-time", str(TIMES[1]),
                             src, f"file://{backend}")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert manifests_in(backend) == expected_manifests(TIMES[:2])


def _hostname_line(manifest: Path) -> bytes:
    lines = [line for line in manifest.read_bytes().splitlines() if line.startswith(b"Hostname ")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("peer", PEERS)
def test_our_manifest_names_the_host_as_duplicity_does(
    builds: Builds, common_tars: list[Path], peer: str
) -> None:
    ours = build_chain(builds, common_tars, (NG, NG, NG), upto=0)
    theirs = build_chain(builds, common_tars, (peer, NG, peer), upto=0)
    name = f"duplicity-full.{_stamp(TIMES[0])}.manifest"
    assert _hostname_line(ours / name) == _hostname_line(theirs / name)


@pytest.mark.parametrize("peer", PEERS)
def test_allow_source_mismatch_continues_a_chain_of_another_source(
    tmp_path: Path, builds: Builds, peer: str
) -> None:
    """The peer backed up one folder; our incremental of another one is refused (exit 42,
    or 3 where the host check trips first) unless --allow-source-mismatch is given."""
    first, second = tmp_path / "first", tmp_path / "second"
    for src in (first, second):
        src.mkdir()
        (src / "a.txt").write_text(f"{src.name}\n")
    backend = tmp_path / "backend"
    builds.tools.backup(peer, "full", first, backend, TIMES[0])
    args = ("incremental", "--no-encryption", "--current-time", str(TIMES[1]))
    url = f"file://{backend}"
    refused = builds.tools.ng(*args, second, url)
    assert refused.returncode in (3, 42), refused.stderr
    assert "--allow-source-mismatch" in refused.stderr
    accepted = builds.tools.ng(*args, "--allow-source-mismatch", second, url)
    assert accepted.returncode == 0, accepted.stderr
    assert manifests_in(backend) == expected_manifests(TIMES[:2])
