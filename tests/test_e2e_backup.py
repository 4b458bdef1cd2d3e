"""End to end: backups and restores through bin/duplicity-ng, as a user types them.

Every test runs the real CLI in a subprocess against a file:// backend under tmp_path and
checks what a user can see: the files on the backend, what was printed, and the restored
trees (compared with the fixture source tars or with the source as it was backed up).
Backup times are fixed with --current-time. Owners are compared only when running as root.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from e2e_util import (
    AS_ROOT,
    COMMON_TARS,
    FIXTURES_DIR,
    T0,
    T1,
    T2,
    backend_names,
    filelist,
    listed_paths,
    make_readable,
    manifest_text,
    manifest_volume_ranges,
    member_names,
    names_matching,
    one_error_line,
    only_name,
    random_bytes,
    runner,
    set_mtimes,
    set_source_state,
    stamp,
    url,
    volume_members,
    write_file,
)
from peers import NgRunner
from treecompare import Node, compare_nodes, compare_tree_with_tar, dir_nodes, tar_nodes

NE = "--no-encryption"
TIMES = (T0, T1, T2)
T3 = T2 + 3600


def asctime(t: int) -> str:
    return time.asctime(time.localtime(t))


def show(rel: bytes) -> str:
    return rel.decode("utf-8", "surrogateescape") if rel else "."


# -- the awkward tree: full at T0, incrementals at T1 and T2 -----------------------------------


@dataclass
class Backed:
    """A source directory backed up to a file:// backend by one runner."""

    ng: NgRunner
    src: Path
    backend: Path
    base: Path
    outputs: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return url(self.backend)


def _back_up_common_states(ng: NgRunner, base: Path, *extra: str) -> Backed:
    b = Backed(ng, base / "src", base / "backend", base)
    for state, tar_path in enumerate(COMMON_TARS):
        set_source_state(b.src, tar_path)
        command = "full" if state == 0 else "incremental"
        b.outputs.append(
            ng.ok(command, NE, *extra, "--current-time", str(TIMES[state]), b.src, b.url)
        )
    return b


@pytest.fixture(scope="module")
def awkward(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backed]:
    base = tmp_path_factory.mktemp("awkward")
    yield _back_up_common_states(runner(base / "xdg-cache"), base)
    make_readable(base)


def test_awkward_backend_holds_one_full_and_two_incrementals(awkward: Backed) -> None:
    s0, s1, s2 = (stamp(t) for t in TIMES)
    assert backend_names(awkward.backend) == sorted(
        [
            f"duplicity-full-signatures.{s0}.sigtar.gz",
            f"duplicity-full.{s0}.manifest",
            f"duplicity-full.{s0}.vol1.difftar.gz",
            f"duplicity-inc.{s0}.to.{s1}.manifest",
            f"duplicity-inc.{s0}.to.{s1}.vol1.difftar.gz",
            f"duplicity-inc.{s1}.to.{s2}.manifest",
            f"duplicity-inc.{s1}.to.{s2}.vol1.difftar.gz",
            f"duplicity-new-signatures.{s0}.to.{s1}.sigtar.gz",
            f"duplicity-new-signatures.{s1}.to.{s2}.sigtar.gz",
        ]
    )
    for result in awkward.outputs:
        assert "[ Backup Statistics ]" in result.stdout
        assert re.search(r"^Errors 0$", result.stdout, re.M), result.stdout


@pytest.mark.parametrize("state", [0, 1, 2])
def test_awkward_restore_at_each_backup_time(awkward: Backed, tmp_path: Path, state: int) -> None:
    dest = tmp_path / "restored"
    awkward.ng.ok("restore", "-t", str(TIMES[state]), awkward.url, dest)
    assert compare_tree_with_tar(dest, COMMON_TARS[state], AS_ROOT) == []


def test_awkward_restore_latest_without_time(awkward: Backed, tmp_path: Path) -> None:
    dest = tmp_path / "restored"
    awkward.ng.ok("restore", awkward.url, dest)
    assert compare_tree_with_tar(dest, COMMON_TARS[2], AS_ROOT) == []


def test_awkward_verify_compare_data_right_after_backup(awkward: Backed) -> None:
    result = awkward.ng("verify", "--compare-data", awkward.url, awkward.src)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 difference" in result.stdout


def test_no_compression_variant(ng: NgRunner, tmp_path: Path) -> None:
    b = _back_up_common_states(ng, tmp_path, "--no-compression")
    names = backend_names(b.backend)
    assert len(names) == 9
    assert not [n for n in names if n.endswith(".gz")], names
    assert len(names_matching(b.backend, r"\.vol1\.difftar$")) == 3
    assert len(names_matching(b.backend, r"\.sigtar$")) == 3
    full_vol = b.backend / only_name(b.backend, r"^duplicity-full\..*\.vol1\.difftar$")
    with tarfile.open(full_vol, "r:") as tar:  # a plain tar, not gzip
        assert "multivol_snapshot/medium.bin/1" in tar.getnames()
    ng.ok("restore", "-t", str(T0), b.url, tmp_path / "first")
    assert compare_tree_with_tar(tmp_path / "first", COMMON_TARS[0], AS_ROOT) == []
    ng.ok("restore", b.url, tmp_path / "latest")
    assert compare_tree_with_tar(tmp_path / "latest", COMMON_TARS[2], AS_ROOT) == []
    make_readable(tmp_path)


def test_file_prefix_variant(ng: NgRunner, tmp_path: Path) -> None:
    prefixes = ("--file-prefix=pfx-", "--file-prefix-archive=data_")
    src, backend = tmp_path / "src", tmp_path / "backend"
    for state in (0, 1):
        set_source_state(src, COMMON_TARS[state])
        command = "full" if state == 0 else "incremental"
        ng.ok(command, NE, *prefixes, "--current-time", str(TIMES[state]), src, url(backend))
    s0, s1 = stamp(T0), stamp(T1)
    assert backend_names(backend) == sorted(
        [
            f"pfx-data_duplicity-full.{s0}.vol1.difftar.gz",
            f"pfx-duplicity-full.{s0}.manifest",
            f"pfx-duplicity-full-signatures.{s0}.sigtar.gz",
            f"pfx-data_duplicity-inc.{s0}.to.{s1}.vol1.difftar.gz",
            f"pfx-duplicity-inc.{s0}.to.{s1}.manifest",
            f"pfx-duplicity-new-signatures.{s0}.to.{s1}.sigtar.gz",
        ]
    )
    ng.ok("restore", *prefixes, "-t", str(T0), url(backend), tmp_path / "r0")
    assert compare_tree_with_tar(tmp_path / "r0", COMMON_TARS[0], AS_ROOT) == []
    ng.ok("restore", *prefixes, url(backend), tmp_path / "r1")
    assert compare_tree_with_tar(tmp_path / "r1", COMMON_TARS[1], AS_ROOT) == []
    result = ng("restore", url(backend), tmp_path / "no-prefix")
    one_error_line(result, 30, "No backup chains found")
    make_readable(tmp_path)


# -- multi-volume ----------------------------------------------------------------------------

BIG = 2_500_000  # more than two 1 MiB volumes: split across three


@pytest.fixture(scope="module")
def multivol(tmp_path_factory: pytest.TempPathFactory) -> Backed:
    base = tmp_path_factory.mktemp("multivol")
    b = Backed(runner(base / "xdg-cache"), base / "src", base / "backend", base)
    write_file(b.src / "a-small.txt", b"first file\n", T0 - 50)
    write_file(b.src / "b-big.bin", random_bytes(BIG, 1), T0 - 40)
    write_file(b.src / "c-mid.bin", random_bytes(300_000, 2), T0 - 30)
    write_file(b.src / "d-small.txt", b"sits in a late volume\n", T0 - 20)
    write_file(b.src / "e-dir" / "f.txt", b"in a directory\n", T0 - 10)
    set_mtimes(b.src / "e-dir", T0 - 5)
    os.utime(b.src, (T0 - 5, T0 - 5))
    b.outputs.append(b.ng.ok("full", NE, "--volsize", "1", "--current-time", str(T0), b.src, b.url))
    return b


def _volumes(backend: Path) -> dict[int, str]:
    vols = {}
    for name in names_matching(backend, r"^duplicity-full\..*\.vol\d+\.difftar\.gz$"):
        vols[int(re.search(r"\.vol(\d+)\.", name).group(1))] = name
    return vols


def test_multivol_volumes_and_manifest(multivol: Backed) -> None:
    vols = _volumes(multivol.backend)
    assert sorted(vols) == list(range(1, len(vols) + 1))
    assert len(vols) >= 3, vols
    for name in vols.values():
        # 1 MiB volumes, never much more (whole 64 KiB members are added up to the limit)
        assert (multivol.backend / name).stat().st_size < 1024 * 1024 + 70_000
    text = manifest_text(multivol.backend, r"^duplicity-full\..*\.manifest$")
    ranges = manifest_volume_ranges(text)
    assert sorted(ranges) == sorted(vols)
    assert ranges[1][0] == ".  "
    # The big file is split: a volume ends inside it and the next starts with the next chunk.
    first_end = re.fullmatch(r"b-big\.bin (\d+)", ranges[1][1])
    assert first_end, ranges
    assert ranges[2][0] == f"b-big.bin {int(first_end.group(1)) + 1}"
    assert len(re.findall(r"^    Hash SHA1 [0-9a-f]{40}$", text, re.M)) == len(vols)
    assert sorted(filelist(text)) == [
        ("new", "a-small.txt"),
        ("new", "b-big.bin"),
        ("new", "c-mid.bin"),
        ("new", "d-small.txt"),
        ("new", "e-dir/f.txt"),
    ]
    vol2_names = member_names(multivol.backend / vols[2])
    assert vol2_names[0] == f"multivol_snapshot/b-big.bin/{int(first_end.group(1)) + 1}"


def test_multivol_restore_is_exact(multivol: Backed, tmp_path: Path) -> None:
    multivol.ng.ok("restore", multivol.url, tmp_path / "restored")
    assert compare_nodes(dir_nodes(multivol.src), dir_nodes(tmp_path / "restored"), AS_ROOT) == []


def test_multivol_path_to_restore_fetches_only_needed_volumes(
    multivol: Backed, tmp_path: Path
) -> None:
    vols = _volumes(multivol.backend)
    last = max(vols)
    text = manifest_text(multivol.backend, r"^duplicity-full\..*\.manifest$")
    start, end = manifest_volume_ranges(text)[last]
    assert start.split()[0] <= "d-small.txt" <= end.split()[0], (start, end)
    assert last >= 2
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    moved = [n for number, n in vols.items() if number != last]
    for name in moved:
        (multivol.backend / name).rename(hidden / name)
    try:
        dest = tmp_path / "d.txt"
        multivol.ng.ok("restore", "-r", "d-small.txt", multivol.url, dest)
        assert dest.read_bytes() == (multivol.src / "d-small.txt").read_bytes()
        assert int(dest.stat().st_mtime) == T0 - 20
    finally:
        for name in moved:
            (hidden / name).rename(multivol.backend / name)


def test_multivol_path_to_restore_of_the_split_file(multivol: Backed, tmp_path: Path) -> None:
    dest = tmp_path / "big"
    multivol.ng.ok("restore", "--path-to-restore", "b-big.bin", multivol.url, dest)
    assert dest.read_bytes() == (multivol.src / "b-big.bin").read_bytes()


# -- --path-to-restore -----------------------------------------------------------------------


def test_path_to_restore_file_makes_dest_the_file(awkward: Backed, tmp_path: Path) -> None:
    dest = tmp_path / "lorem-copy.txt"
    awkward.ng.ok("restore", "-r", "text/lorem.txt", awkward.url, dest)
    want = tar_nodes(COMMON_TARS[2])[b"text/lorem.txt"]
    assert compare_nodes({b"": want}, dir_nodes(dest), AS_ROOT) == []


def test_path_to_restore_file_with_odd_name(awkward: Backed, tmp_path: Path) -> None:
    dest = tmp_path / "quoted"
    awkward.ng.ok("restore", "-r", 'names/it\'s "quoted".txt', awkward.url, dest)
    want = tar_nodes(COMMON_TARS[2])[b'names/it\'s "quoted".txt']
    assert compare_nodes({b"": want}, dir_nodes(dest), AS_ROOT) == []


def _subtree(nodes: dict[bytes, Node], prefix: bytes) -> dict[bytes, Node]:
    out = {}
    for rel, node in nodes.items():
        if rel == prefix:
            out[b""] = node
        elif rel.startswith(prefix + b"/"):
            out[rel[len(prefix) + 1 :]] = node
    return out


def test_path_to_restore_directory(awkward: Backed, tmp_path: Path) -> None:
    dest = tmp_path / "perms-copy"
    awkward.ng.ok("restore", "--path-to-restore", "perms", "-t", str(T0), awkward.url, dest)
    want = _subtree(tar_nodes(COMMON_TARS[0]), b"perms")
    assert b"readonly-dir/inside.txt" in want
    assert compare_nodes(want, dir_nodes(dest), AS_ROOT) == []
    make_readable(tmp_path)


def test_path_to_restore_not_in_backup_exits_19(awkward: Backed, tmp_path: Path) -> None:
    result = awkward.ng("restore", "-r", "no/such/path", awkward.url, tmp_path / "x")
    one_error_line(result, 19, "no/such/path")


def test_path_to_restore_deleted_at_that_time_exits_19(awkward: Backed, tmp_path: Path) -> None:
    # to-delete.txt exists at T0 and is deleted at T1
    awkward.ng.ok("restore", "-r", "to-delete.txt", "-t", str(T0), awkward.url, tmp_path / "a")
    assert (tmp_path / "a").is_file()
    result = awkward.ng("restore", "-r", "to-delete.txt", awkward.url, tmp_path / "b")
    one_error_line(result, 19, "to-delete.txt")


# -- backup / incremental / full and chains ----------------------------------------------------


def _state(src: Path, content: bytes, mtime: int) -> dict[bytes, Node]:
    """Write one version of a small tree; return it as a restore must reproduce it."""
    write_file(src / "f.txt", content, mtime)
    write_file(src / "sub" / "g.txt", content * 3, mtime)
    os.utime(src / "sub", (mtime, mtime))
    os.utime(src, (mtime, mtime))
    return dir_nodes(src)


def _restored(ng: NgRunner, backend: Path, dest: Path, *opts: str) -> dict[bytes, Node]:
    ng.ok("restore", *opts, url(backend), dest)
    return dir_nodes(dest)


def test_backup_command_does_full_then_incremental(ng: NgRunner, tmp_path: Path) -> None:
    src, backend = tmp_path / "src", tmp_path / "backend"
    _state(src, b"one", T0 - 100)
    ng.ok("backup", NE, "--current-time", str(T0), src, url(backend))
    assert names_matching(backend, r"^duplicity-full\.") and not names_matching(backend, "inc")
    want = _state(src, b"two", T1 - 100)
    ng.ok("backup", NE, "--current-time", str(T1), src, url(backend))
    inc = f"duplicity-inc.{stamp(T0)}.to.{stamp(T1)}"
    assert f"{inc}.manifest" in backend_names(backend)
    assert f"{inc}.vol1.difftar.gz" in backend_names(backend)
    assert len(names_matching(backend, r"^duplicity-full\..*\.manifest$")) == 1
    assert len(names_matching(backend, r"^duplicity-inc\..*\.manifest$")) == 1
    assert compare_nodes(want, _restored(ng, backend, tmp_path / "r"), AS_ROOT) == []


def test_incremental_without_full_exits_17(ng: NgRunner, tmp_path: Path) -> None:
    src, backend = tmp_path / "src", tmp_path / "backend"
    _state(src, b"one", T0 - 100)
    result = ng("incremental", NE, "--current-time", str(T0), src, url(backend))
    one_error_line(result, 17)
    assert backend_names(backend) == []


def test_two_fulls_make_two_chains_and_restore_picks_the_right_one(
    ng: NgRunner, tmp_path: Path
) -> None:
    src, backend = tmp_path / "src", tmp_path / "backend"
    states = {}
    for t, content, command in ((T0, b"A", "full"), (T1, b"B", "inc"), (T2, b"C", "full")):
        states[t] = _state(src, content, t - 100)
        ng.ok(command, NE, "--current-time", str(t), src, url(backend))
    states[T3] = _state(src, b"D", T3 - 100)
    ng.ok("incremental", NE, "--current-time", str(T3), src, url(backend))
    assert len(names_matching(backend, r"^duplicity-full\..*\.manifest$")) == 2

    status = ng.ok("collection-status", url(backend)).stdout
    assert "Found 1 secondary backup chain(s)." in status
    assert "Secondary chain 1 of 1:" in status
    primary = status.split("Found primary backup chain with matching signature chain:")[1]
    assert f"Chain start time: {asctime(T2)}" in primary
    assert f"Chain end time: {asctime(T3)}" in primary
    secondary = status.split("Secondary chain 1 of 1:")[1].split("Found primary")[0]
    assert f"Chain start time: {asctime(T0)}" in secondary
    assert f"Chain end time: {asctime(T1)}" in secondary

    cases = {str(T1): T1, str(T1 + 60): T1, str(T2 + 60): T2}
    for i, (when, expected) in enumerate(cases.items()):
        got = _restored(ng, backend, tmp_path / f"r{i}", "-t", when)
        assert compare_nodes(states[expected], got, AS_ROOT) == [], when
    got = _restored(ng, backend, tmp_path / "latest")
    assert compare_nodes(states[T3], got, AS_ROOT) == []


def test_time_before_first_backup_restores_oldest_full(ng: NgRunner, tmp_path: Path) -> None:
    # duplicity: no chain covers t, none ends before it -> the oldest chain, its full set.
    src, backend = tmp_path / "src", tmp_path / "backend"
    first = _state(src, b"A", T0 - 100)
    ng.ok("full", NE, "--current-time", str(T0), src, url(backend))
    _state(src, b"B", T1 - 100)
    ng.ok("incremental", NE, "--current-time", str(T1), src, url(backend))
    got = _restored(ng, backend, tmp_path / "r", "-t", str(T0 - 3600))
    assert compare_nodes(first, got, AS_ROOT) == []


@pytest.mark.parametrize(
    "when,state",
    [
        ("1700003600", 1),
        ("2023-11-14T23:13:20Z", 1),
        ("2023-11-14T23:43:20Z", 1),  # between T1 and T2
        ("2023-11-15T01:13:20+01:00", 2),  # = T2 with an offset
    ],
)
def test_restore_time_formats(awkward: Backed, tmp_path: Path, when: str, state: int) -> None:
    dest = tmp_path / "restored"
    awkward.ng.ok("restore", "-t", when, awkward.url, dest)
    assert compare_tree_with_tar(dest, COMMON_TARS[state], AS_ROOT) == []
    make_readable(tmp_path)


def test_restore_time_interval_relative_to_now(ng: NgRunner, tmp_path: Path) -> None:
    src, backend = tmp_path / "src", tmp_path / "backend"
    now = int(time.time())
    old = _state(src, b"two hours ago", now - 7300)
    ng.ok("full", NE, "--current-time", str(now - 7200), src, url(backend))
    recent = _state(src, b"ten minutes ago", now - 700)
    ng.ok("incremental", NE, "--current-time", str(now - 600), src, url(backend))
    assert compare_nodes(old, _restored(ng, backend, tmp_path / "a", "-t", "1h"), AS_ROOT) == []
    got = _restored(ng, backend, tmp_path / "b", "-t", "1h30m")
    assert compare_nodes(old, got, AS_ROOT) == []
    got = _restored(ng, backend, tmp_path / "c", "-t", "5m")
    assert compare_nodes(recent, got, AS_ROOT) == []


# -- without the local cache ------------------------------------------------------------------


def test_everything_works_without_local_cache(ng: NgRunner, tmp_path: Path) -> None:
    src, backend = tmp_path / "src", tmp_path / "backend"
    states = {T0: _state(src, b"A", T0 - 100)}
    ng.ok("full", NE, "--current-time", str(T0), src, url(backend))
    states[T1] = _state(src, b"B", T1 - 100)
    ng.ok("incremental", NE, "--current-time", str(T1), src, url(backend))

    shutil.rmtree(ng.cache_home)
    states[T2] = _state(src, b"C", T2 - 100)
    (src / "f.txt").unlink()
    states[T2] = dir_nodes(src)
    ng.ok("incremental", NE, "--current-time", str(T2), src, url(backend))
    assert names_matching(backend, rf"^duplicity-inc\.{stamp(T1)}\.to\.{stamp(T2)}\.vol1\.")

    for t in (T0, T1, T2):
        shutil.rmtree(ng.cache_home, ignore_errors=True)
        got = _restored(ng, backend, tmp_path / f"r{t}", "-t", str(t))
        assert compare_nodes(states[t], got, AS_ROOT) == [], t

    shutil.rmtree(ng.cache_home, ignore_errors=True)
    listing = ng.ok("list-current-files", url(backend)).stdout
    assert set(listed_paths(listing)) == {".", "sub", "sub/g.txt"}
    shutil.rmtree(ng.cache_home, ignore_errors=True)
    listing = ng.ok("list-current-files", "-t", str(T1), url(backend)).stdout
    assert set(listed_paths(listing)) == {".", "f.txt", "sub", "sub/g.txt"}


def test_archive_dir_and_name(ng: NgRunner, tmp_path: Path) -> None:
    src, backend, arch = tmp_path / "src", tmp_path / "backend", tmp_path / "arch"
    cache_opts = ("--archive-dir", str(arch), "--name", "mybackup")
    _state(src, b"A", T0 - 100)
    ng.ok("full", NE, *cache_opts, "--current-time", str(T0), src, url(backend))
    cached = sorted(os.listdir(arch / "mybackup"))
    assert f"duplicity-full.{stamp(T0)}.manifest" in cached
    assert f"duplicity-full-signatures.{stamp(T0)}.sigtar.gz" in cached
    default_cache = [p for p in ng.cache_home.rglob("*") if "manifest" in p.name]
    assert default_cache == []

    shutil.rmtree(arch)
    latest = _state(src, b"B", T1 - 100)
    ng.ok("incremental", NE, *cache_opts, "--current-time", str(T1), src, url(backend))
    assert f"duplicity-inc.{stamp(T0)}.to.{stamp(T1)}.manifest" in os.listdir(arch / "mybackup")
    shutil.rmtree(arch)
    got = _restored(ng, backend, tmp_path / "r", *cache_opts)
    assert compare_nodes(latest, got, AS_ROOT) == []
    listing = ng.ok("list-current-files", *cache_opts, url(backend)).stdout
    assert set(listed_paths(listing)) == {".", "f.txt", "sub", "sub/g.txt"}


# -- selection -------------------------------------------------------------------------------


def _selection_tree(src: Path) -> None:
    for rel in (
        "keep/a.txt",
        "keep/b.log",
        "skip/c.txt",
        "data/x.txt",
        "data/y.tmp",
        "marked/.nobackup",
        "marked/inner.txt",
        "listed.txt",
        "other.txt",
    ):
        write_file(src / rel, rel.encode(), T0 - 100)


def _listed(ng: NgRunner, backend: Path) -> set[str]:
    return set(listed_paths(ng.ok("list-current-files", url(backend)).stdout))


@pytest.mark.parametrize(
    "rules,expected",
    [
        (
            ["--include", "{src}/keep", "--exclude", "{src}/keep/b.log", "--exclude", "**"],
            {".", "keep", "keep/a.txt", "keep/b.log"},
        ),
        (
            [
                "--exclude",
                "{src}/keep/b.log",
                "--include",
                "{src}/keep",
                "--include",
                "{src}/data/*.txt",
                "--exclude",
                "**",
            ],
            {".", "keep", "keep/a.txt", "data", "data/x.txt"},
        ),
        (
            ["--exclude", "**/*.t?p", "--exclude", "{src}/skip", "--exclude", "{src}/marked"],
            {".", "keep", "keep/a.txt", "keep/b.log", "data", "data/x.txt"}
            | {"listed.txt", "other.txt"},
        ),
    ],
)
def test_include_exclude_first_match_wins(
    ng: NgRunner, tmp_path: Path, rules: list[str], expected: set[str]
) -> None:
    src, backend = tmp_path / "src", tmp_path / "backend"
    _selection_tree(src)
    args = [r.format(src=src) for r in rules]
    ng.ok("full", NE, *args, "--current-time", str(T0), src, url(backend))
    assert _listed(ng, backend) == expected


def test_filelist_if_present_sockets_and_devices(ng: NgRunner, tmp_path: Path) -> None:
    src, backend = tmp_path / "src", tmp_path / "backend"
    _selection_tree(src)
    exclude_list = tmp_path / "exclude.list"
    exclude_list.write_text(f"{src}/listed.txt\n{src}/skip\n")
    sock = socket.socket(socket.AF_UNIX)
    sock_path = src / "a.sock"
    sock.bind(str(sock_path))
    if AS_ROOT:
        os.mknod(src / "null-dev", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    try:
        result = ng.ok(
            "full",
            NE,
            "--exclude-filelist",
            exclude_list,
            "--exclude-if-present",
            ".nobackup",
            "--exclude-device-files",
            "--current-time",
            str(T0),
            src,
            url(backend),
        )
    finally:
        sock.close()
    notices = [line for line in (result.stdout + result.stderr).splitlines() if "a.sock" in line]
    assert len(notices) == 1 and "socket" in notices[0].lower(), result.stdout + result.stderr
    assert re.search(r"^Errors 0$", result.stdout, re.M), result.stdout
    assert _listed(ng, backend) == {
        ".",
        "keep",
        "keep/a.txt",
        "keep/b.log",
        "data",
        "data/x.txt",
        "data/y.tmp",
        "other.txt",
    }


@pytest.mark.skipif(not AS_ROOT, reason="creating a device file needs root")
def test_device_files_are_backed_up_unless_excluded(ng: NgRunner, tmp_path: Path) -> None:
    src, backend = tmp_path / "src", tmp_path / "backend"
    write_file(src / "plain.txt", b"x", T0 - 100)
    os.mknod(src / "null-dev", stat.S_IFCHR | 0o640, os.makedev(1, 3))
    os.utime(src / "null-dev", (T0 - 100, T0 - 100))
    os.utime(src, (T0 - 100, T0 - 100))
    want = dir_nodes(src)
    ng.ok("full", NE, "--current-time", str(T0), src, url(backend))
    assert _listed(ng, backend) == {".", "plain.txt", "null-dev"}
    got = _restored(ng, backend, tmp_path / "r")
    assert compare_nodes(want, got, AS_ROOT) == []
    assert got[b"null-dev"].kind == "chr" and got[b"null-dev"].rdev == (1, 3)


# -- list-current-files and collection-status -------------------------------------------------


_LISTING_LINE = re.compile(r"^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} ")


def _duplicity_listing(state: int) -> list[str]:
    """The listing lines real duplicity 3.2.1 printed for the same backups (TZ=UTC)."""
    out = FIXTURES_DIR / "3.2.1" / "plain" / "outputs" / f"list-current-files-T{state}.txt"
    text = out.read_bytes().decode("utf-8", "surrogateescape")
    return [line for line in text.splitlines() if _LISTING_LINE.match(line)]


@pytest.mark.parametrize("state", [0, 1, 2])
def test_list_current_files_every_path_with_mtime(awkward: Backed, state: int) -> None:
    args = ["-t", str(TIMES[state])] if state < 2 else []
    result = awkward.ng("list-current-files", *args, awkward.url, env={"TZ": "UTC"})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    # Exactly what duplicity prints, latin-1 name included (where duplicity has a traceback).
    assert lines == _duplicity_listing(state)
    assert "Tue Nov 14 19:26:40 2023 names/latin1-caf\udce9.txt" in lines
    # Every live path of that state, no more; non-links with their mtime (a symlink whose
    # target did not change keeps the mtime of the backup that stored it, as in duplicity).
    listed = listed_paths(result.stdout)
    nodes = tar_nodes(COMMON_TARS[state])
    assert set(listed) == {show(rel) for rel in nodes}
    for rel, node in nodes.items():
        if node.kind != "sym":
            assert listed[show(rel)] == time.asctime(time.gmtime(node.mtime)), show(rel)


def test_list_current_files_lines_are_in_index_order(awkward: Backed) -> None:
    lines = list(listed_paths(awkward.ng.ok("list-current-files", awkward.url).stdout))
    assert lines[0] == "."
    indexes = [tuple(p.encode("utf-8", "surrogateescape").split(b"/")) for p in lines[1:]]
    assert indexes == sorted(indexes)


def _status_lines(awkward: Backed) -> list[str]:
    result = awkward.ng("collection-status", awkward.url)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return result.stdout.splitlines()


def test_collection_status_structure(awkward: Backed) -> None:
    lines = _status_lines(awkward)
    expected_in_order = [
        "Collection Status",
        "-----------------",
        "Found 0 secondary backup chain(s).",
        "Found primary backup chain with matching signature chain:",
        f"Chain start time: {asctime(T0)}",
        f"Chain end time: {asctime(T2)}",
        "Number of contained backup sets: 3",
        "Total number of contained volumes: 3",
        " Type of backup set:                            Time:      Num volumes:",
        f"{'Full':>20}   {asctime(T0):>30}   {1:>15}",
        f"{'Incremental':>20}   {asctime(T1):>30}   {1:>15}",
        f"{'Incremental':>20}   {asctime(T2):>30}   {1:>15}",
        "No orphaned or incomplete backup sets found.",
    ]
    positions = [lines.index(line) for line in expected_in_order]
    assert positions == sorted(positions), lines
    assert any(line.startswith("Archive dir: ") for line in lines)


def test_collection_status_starts_with_last_full_backup_date(awkward: Backed) -> None:
    assert _status_lines(awkward)[0] == f"Last full backup date: {asctime(T0)}"


# -- verify ----------------------------------------------------------------------------------


def test_verify_finds_data_and_mode_differences(ng: NgRunner, tmp_path: Path) -> None:
    src, backend = tmp_path / "src", tmp_path / "backend"
    write_file(src / "a.txt", b"hello world\n", T0 - 100)
    write_file(src / "b.bin", random_bytes(100_000, 3), T0 - 100)
    write_file(src / "sub" / "c.txt", b"c\n", T0 - 100)
    ng.ok("full", NE, "--current-time", str(T0), src, url(backend))

    result = ng("verify", "--compare-data", url(backend), src)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 difference" in result.stdout

    # Same size, same mtime, other bytes: only a data comparison can see it.
    (src / "b.bin").write_bytes(random_bytes(100_000, 4))
    os.utime(src / "b.bin", (T0 - 100, T0 - 100))
    result = ng("verify", "--compare-data", url(backend), src)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Data for file b.bin is different" in result.stdout
    assert "1 difference" in result.stdout
    assert ng("verify", url(backend), src).returncode == 0

    (src / "b.bin").write_bytes(random_bytes(100_000, 3))
    os.utime(src / "b.bin", (T0 - 100, T0 - 100))
    os.chmod(src / "sub" / "c.txt", 0o600)
    result = ng("verify", url(backend), src)
    assert result.returncode == 1, result.stdout + result.stderr
    diffs = [line for line in result.stdout.splitlines() if "sub/c.txt" in line]
    assert len(diffs) == 1, result.stdout
    assert "Traceback" not in result.stderr


def test_verify_path_to_restore_pairs_path_with_dir(ng: NgRunner, tmp_path: Path) -> None:
    src, backend = tmp_path / "src", tmp_path / "backend"
    write_file(src / "a.txt", b"a\n", T0 - 100)
    write_file(src / "sub" / "c.txt", b"c\n", T0 - 100)
    ng.ok("full", NE, "--current-time", str(T0), src, url(backend))
    result = ng("verify", "--compare-data", "-r", "sub", url(backend), src / "sub")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 difference" in result.stdout


# -- incremental semantics -------------------------------------------------------------------


def test_incremental_members_delta_size_and_filelist(ng: NgRunner, tmp_path: Path) -> None:
    src, backend = tmp_path / "src", tmp_path / "backend"
    big = bytearray(random_bytes(5 * 1024 * 1024, 5))
    write_file(src / "big.bin", bytes(big), T0 - 100)
    write_file(src / "meta.txt", b"only the mode changes\n", T0 - 100)
    write_file(src / "gone.txt", b"deleted at T1\n", T0 - 100)
    write_file(src / "gone-dir" / "inner.txt", b"deleted with its dir\n", T0 - 100)
    write_file(src / "same.txt", b"untouched\n", T0 - 100)
    os.symlink("same.txt", src / "link")
    ng.ok("full", NE, "--current-time", str(T0), src, url(backend))
    before = dir_nodes(src)

    os.chmod(src / "meta.txt", 0o600)
    big[2_500_000] ^= 0xFF
    write_file(src / "big.bin", bytes(big), T1 - 100)
    (src / "gone.txt").unlink()
    shutil.rmtree(src / "gone-dir")
    os.unlink(src / "link")
    write_file(src / "new.txt", b"new at T1\n", T1 - 100)
    after = dir_nodes(src)
    ng.ok("incremental", NE, "--current-time", str(T1), src, url(backend))

    vol = backend / only_name(backend, r"^duplicity-inc\..*\.vol1\.difftar\.gz$")
    with tarfile.open(vol, "r:gz") as tar:
        members = {m.name: m for m in tar}
    assert "diff/meta.txt" in members
    assert stat.S_IMODE(members["diff/meta.txt"].mode) == 0o600
    assert "diff/big.bin" in members
    assert "snapshot/new.txt" in members
    for gone in ("deleted/gone.txt", "deleted/gone-dir", "deleted/gone-dir/inner.txt"):
        assert gone in members, sorted(members)
        assert (members[gone].size, members[gone].mode, members[gone].mtime) == (0, 0, 0)
    assert "deleted/link" in members
    assert not [n for n in members if "same.txt" in n]
    assert vol.stat().st_size < 64 * 1024, "a 1-byte change in 5 MB must give a small delta"

    text = manifest_text(backend, r"^duplicity-inc\..*\.manifest$")
    assert sorted(filelist(text)) == [
        ("changed", "big.bin"),
        ("changed", "meta.txt"),
        ("deleted", "gone-dir/inner.txt"),
        ("deleted", "gone.txt"),
        ("new", "new.txt"),
    ]

    assert compare_nodes(after, _restored(ng, backend, tmp_path / "r1"), AS_ROOT) == []
    got = _restored(ng, backend, tmp_path / "r0", "-t", str(T0))
    assert compare_nodes(before, got, AS_ROOT) == []


def test_unchanged_tree_gives_an_incremental_without_file_members(
    ng: NgRunner, tmp_path: Path
) -> None:
    src, backend = tmp_path / "src", tmp_path / "backend"
    write_file(src / "a.txt", b"a", T0 - 100)
    os.utime(src, (T0 - 100, T0 - 100))
    ng.ok("full", NE, "--current-time", str(T0), src, url(backend))
    ng.ok("incremental", NE, "--current-time", str(T1), src, url(backend))
    vol = backend / only_name(backend, r"^duplicity-inc\..*\.vol1\.difftar\.gz$")
    assert [m.name for m in volume_members(vol)] == []
    assert filelist(manifest_text(backend, r"^duplicity-inc\..*\.manifest$")) == []


# -- --dry-run ----------------------------------------------------------------------------------


def _tree_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_dry_run_changes_neither_backend_nor_cache(ng: NgRunner, tmp_path: Path) -> None:
    src, backend = tmp_path / "src", tmp_path / "backend"
    write_file(src / "a.txt", b"alpha\n", T0 - 100)
    write_file(src / "b.bin", random_bytes(300_000, 1), T0 - 100)

    result = ng.ok("full", NE, "--dry-run", "--current-time", str(T0), src, url(backend))
    assert "Dry run: would upload duplicity-full." in result.stdout
    assert "SourceFiles 3" in result.stdout  # the statistics of what would be stored
    assert backend_names(backend) == []
    cache = ng.cache_home / "duplicity-ng"
    assert not [p for p in cache.rglob("*") if p.is_file() and p.name != "lockfile"]

    ng.ok("full", NE, "--current-time", str(T0), src, url(backend))
    stored, cached = backend_names(backend), _tree_files(cache)
    write_file(src / "a.txt", b"alpha, changed\n", T1 - 100)
    result = ng.ok("incremental", NE, "--dry-run", "--current-time", str(T1), src, url(backend))
    assert "Dry run: would upload duplicity-inc." in result.stdout
    assert "ChangedFiles 1" in result.stdout
    assert backend_names(backend) == stored
    assert _tree_files(cache) == cached


def test_output_to_a_closed_pipe_ends_quietly(awkward: Backed) -> None:
    """`list-current-files | head -1`: no traceback and no error line when head exits."""
    command = shlex.join(awkward.ng.command("list-current-files", NE, url(awkward.backend)))
    for _ in range(3):  # the listing is long enough to outlast head most times
        result = subprocess.run(
            ["bash", "-o", "pipefail", "-c", f"{command} | head -c 1 >/dev/null"],
            capture_output=True,
            text=True,
            env=awkward.ng.environment(),
        )
        assert result.stderr == ""
        assert result.returncode in (0, 141)


def test_restore_dry_run_writes_nothing(awkward: Backed, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    result = awkward.ng.ok("restore", NE, "--dry-run", "-v", "info", url(awkward.backend), dest)
    assert not dest.exists()
    assert "Dry run: would restore" in result.stdout and "nothing was written" in result.stdout
    assert "Dry run: would restore names/" in result.stdout  # each path, at -v info


def test_source_given_as_a_symlink_to_a_directory(ng: NgRunner, tmp_path: Path) -> None:
    """The directory behind the link is backed up, not the bare link (duplicity's trap)."""
    real = tmp_path / "real"
    write_file(real / "a.txt", b"alpha\n", T0 - 100)
    write_file(real / "sub" / "b.txt", b"beta\n", T0 - 100)
    (tmp_path / "link").symlink_to(real)
    backend = tmp_path / "backend"
    result = ng.ok("full", NE, "--current-time", str(T0), tmp_path / "link", url(backend))
    assert "SourceFiles 4" in result.stdout
    ng.ok("restore", NE, url(backend), tmp_path / "restored")
    assert (tmp_path / "restored" / "sub" / "b.txt").read_bytes() == b"beta\n"
    assert not (tmp_path / "restored").is_symlink()


def test_compress_level(ng: NgRunner, tmp_path: Path) -> None:
    src = tmp_path / "src"
    text = b"".join(
        b"INSERT INTO t VALUES (%d, 'row %d', %d);\n" % (i, i * 7, i % 13) for i in range(60_000)
    )
    write_file(src / "dump.sql", text, T0 - 100)
    sizes = {}
    for level in ("1", "9"):
        backend = tmp_path / f"b{level}"
        ng.ok("full", NE, "--compress-level", level, "--current-time", str(T0), src, url(backend))
        sizes[level] = (backend / only_name(backend, r"\.vol1\.difftar\.gz$")).stat().st_size
        ng.ok("restore", NE, url(backend), tmp_path / f"r{level}")
        assert (tmp_path / f"r{level}" / "dump.sql").read_bytes() == text
    assert sizes["9"] < sizes["1"]
    result = ng("full", NE, "--compress-level", "0", src, url(tmp_path / "b0"))
    one_error_line(result, 2, "--compress-level")
