"""treecompare against the real fixture source tars: faithful extraction, then every kind of
difference is reported (and what must not be compared is not)."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
from treecompare import compare_tree_with_tar, compare_trees, extract_source_tar

IS_ROOT = os.geteuid() == 0
LATIN1 = b"names/latin1-caf\xe9.txt"
T0_MTIME = 1699990000  # every member of common/source-T0.tar


@pytest.fixture(scope="module")
def sources(fixtures_dir: Path) -> Path:
    return fixtures_dir / "sources"


@pytest.fixture
def t0(tmp_path: Path, sources: Path) -> tuple[Path, Path]:
    """A fresh extraction of common/source-T0.tar, and the tar."""
    tar = sources / "common" / "source-T0.tar"
    dest = tmp_path / "t0"
    extract_source_tar(tar, dest)
    return dest, tar


def bytes_path(path: Path, rel: bytes) -> bytes:
    return os.path.join(os.fsencode(path), rel)


SOURCE_TARS = [
    "common/source-T0.tar",
    "common/source-T1.tar",
    "common/source-T2.tar",
    "multivol/source-T0.tar",
]


@pytest.mark.parametrize("tar", SOURCE_TARS)
def test_extract_then_compare_finds_no_difference(tmp_path: Path, sources: Path, tar: str) -> None:
    dest = tmp_path / "tree"
    extract_source_tar(sources / tar, dest)
    assert compare_tree_with_tar(dest, sources / tar, check_owner=IS_ROOT) == []


def test_extraction_is_faithful(t0: tuple[Path, Path]) -> None:
    dest, _ = t0
    assert os.path.isfile(bytes_path(dest, LATIN1))
    assert stat.S_ISFIFO(os.lstat(dest / "fifo").st_mode)
    ro = os.lstat(dest / "perms" / "readonly-dir")
    assert stat.S_IMODE(ro.st_mode) == 0o555
    assert int(ro.st_mtime) == T0_MTIME  # not disturbed by creating inside.txt
    assert (dest / "perms" / "readonly-dir" / "inside.txt").is_file()
    assert stat.S_IMODE(os.lstat(dest / "perms" / "private.txt").st_mode) == 0o600
    assert os.readlink(dest / "link-abs") == "/etc/hostname"
    assert int(os.lstat(dest / "link-dangling").st_mtime) == T0_MTIME
    assert int(os.lstat(dest).st_mtime) == T0_MTIME
    assert (dest / "sizes" / "f65537").stat().st_size == 65537
    owner = os.lstat(dest / "owner" / "numeric-ids.txt")
    if IS_ROOT:
        assert (owner.st_uid, owner.st_gid) == (4242, 4343)
    else:
        assert owner.st_uid == os.geteuid()


def _touch_back(path: Path | bytes, mtime: int = T0_MTIME) -> None:
    os.utime(path, (mtime, mtime), follow_symlinks=False)


def _rewrite_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    _touch_back(path)


def _append(path: Path) -> None:
    with open(path, "ab") as f:
        f.write(b"x")
    _touch_back(path)


def _file_to_dir(path: Path) -> None:
    path.unlink()
    path.mkdir()
    _touch_back(path)


def _retarget(path: Path) -> None:
    path.unlink()
    os.symlink("small/zero.bin", path)
    _touch_back(path)


def _add_file(path: Path) -> None:
    path.write_bytes(b"new")


def _in_readonly_dir(dest: Path, action) -> None:
    ro = dest / "perms" / "readonly-dir"
    ro.chmod(0o755)
    action(ro)
    ro.chmod(0o555)
    _touch_back(ro)


# (what to do to the extracted T0 tree, the one difference it must produce)
MUTATIONS = {
    "missing": (lambda d: (d / "small" / "one.txt").unlink(), "missing: small/one.txt"),
    "extra": (lambda d: _add_file(d / "text" / "new.txt"), "extra: text/new.txt"),
    "mode": (
        lambda d: (d / "perms" / "private.txt").chmod(0o644),
        "mode perms/private.txt: expected 0600, got 0644",
    ),
    "dir mode": (
        lambda d: (d / "perms" / "readonly-dir").chmod(0o755),
        "mode perms/readonly-dir: expected 0555, got 0755",
    ),
    "mtime": (
        lambda d: _touch_back(d / "small" / "hello.txt", T0_MTIME + 1),
        f"mtime small/hello.txt: expected {T0_MTIME}, got {T0_MTIME + 1}",
    ),
    "root mtime": (lambda d: _touch_back(d, T0_MTIME - 5), f"mtime .: expected {T0_MTIME}, got"),
    "size": (lambda d: _append(d / "sizes" / "f512"), "size sizes/f512: expected 512, got 513"),
    "content": (lambda d: _rewrite_byte(d / "medium.bin"), "content medium.bin: sha256"),
    "type": (
        lambda d: _file_to_dir(d / "small" / "zero.bin"),
        "type small/zero.bin: expected reg, got dir",
    ),
    "fifo type": (
        lambda d: ((d / "fifo").unlink(), _add_file(d / "fifo"), _touch_back(d / "fifo")),
        "type fifo: expected fifo, got reg",
    ),
    "link target": (
        lambda d: _retarget(d / "link-rel"),
        "link target link-rel: expected small/hello.txt, got small/zero.bin",
    ),
    "latin-1 name": (
        lambda d: os.unlink(bytes_path(d, LATIN1)),
        "missing: names/latin1-caf\\xe9.txt",
    ),
    "inside 0555 dir": (
        lambda d: _in_readonly_dir(d, lambda ro: (ro / "inside.txt").unlink()),
        "missing: perms/readonly-dir/inside.txt",
    ),
}


@pytest.mark.parametrize("case", MUTATIONS)
def test_each_mutation_is_reported(t0: tuple[Path, Path], case: str) -> None:
    dest, tar = t0
    mutate, expected = MUTATIONS[case]
    mutate(dest)
    if case != "root mtime":
        # Adding or removing an entry also bumps its directory's mtime; every directory of T0
        # has the same mtime, so putting them back leaves the mutation as the only difference.
        for root, dirs, _ in os.walk(dest):
            for d in (root, *(os.path.join(root, d) for d in dirs)):
                _touch_back(d)
    diffs = compare_tree_with_tar(dest, tar, check_owner=IS_ROOT)
    assert len(diffs) == 1, diffs
    assert diffs[0].startswith(expected)


def test_symlink_mtime_is_not_compared(t0: tuple[Path, Path]) -> None:
    dest, tar = t0
    _touch_back(dest / "link-rel", T0_MTIME + 1000)
    assert compare_tree_with_tar(dest, tar, check_owner=IS_ROOT) == []


def test_owner_only_compared_when_asked(t0: tuple[Path, Path]) -> None:
    dest, tar = t0
    path = dest / "owner" / "numeric-ids.txt"
    if IS_ROOT:
        os.chown(path, 1234, 5678)
        _touch_back(path)
    # As non-root the extraction could not give the file to 4242:4343 in the first place.
    got_uid, got_gid = (1234, 5678) if IS_ROOT else (os.geteuid(), os.getegid())
    assert compare_tree_with_tar(dest, tar, check_owner=False) == []
    diffs = compare_tree_with_tar(dest, tar, check_owner=True)
    assert f"uid owner/numeric-ids.txt: expected 4242, got {got_uid}" in diffs
    assert f"gid owner/numeric-ids.txt: expected 4343, got {got_gid}" in diffs


def test_compare_trees_t0_against_t1(tmp_path: Path, sources: Path) -> None:
    extract_source_tar(sources / "common" / "source-T0.tar", tmp_path / "a")
    extract_source_tar(sources / "common" / "source-T0.tar", tmp_path / "a2")
    extract_source_tar(sources / "common" / "source-T1.tar", tmp_path / "b")
    assert compare_trees(tmp_path / "a", tmp_path / "a2", check_owner=True) == []
    diffs = compare_trees(tmp_path / "a", tmp_path / "b", check_owner=True)
    for expected in (
        "missing: to-delete.txt",
        "extra: new-in-T1.txt",
        "mode perms/private.txt: expected 0600, got 0640",
        "link target link-rel: expected small/hello.txt, got small/one.txt",
        "size medium.bin: expected 163840, got 168840",
    ):
        assert expected in diffs
    assert not any("hardlink" in d or "f65537" in d for d in diffs)


def _tar_with_hard_link(path: Path) -> None:
    """A tar whose second file is a hard link (LNKTYPE) to the first."""
    data = b"shared content\n"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        root = tarfile.TarInfo(".")
        root.type, root.mode, root.mtime = tarfile.DIRTYPE, 0o755, T0_MTIME
        tar.addfile(root)
        first = tarfile.TarInfo("a.txt")
        first.size, first.mode, first.mtime = len(data), 0o644, T0_MTIME
        tar.addfile(first, io.BytesIO(data))
        link = tarfile.TarInfo("b.txt")
        link.type, link.linkname, link.mode, link.mtime = tarfile.LNKTYPE, "a.txt", 0o644, T0_MTIME
        tar.addfile(link)


def test_hard_links_compare_as_independent_files(tmp_path: Path) -> None:
    tar = tmp_path / "links.tar"
    _tar_with_hard_link(tar)
    linked = tmp_path / "linked"
    extract_source_tar(tar, linked)
    assert os.lstat(linked / "a.txt").st_ino == os.lstat(linked / "b.txt").st_ino
    assert compare_tree_with_tar(linked, tar, check_owner=False) == []

    # As duplicity restores them: two separate files with the same content.
    copies = tmp_path / "copies"
    shutil.copytree(linked, copies)
    assert os.lstat(copies / "a.txt").st_ino != os.lstat(copies / "b.txt").st_ino
    _touch_back(copies)
    assert compare_tree_with_tar(copies, tar, check_owner=False) == []

    changed = b"SHARED content\n"
    (copies / "b.txt").write_bytes(changed)
    _touch_back(copies / "b.txt")
    want, got = (hashlib.sha256(x).hexdigest()[:16] for x in (b"shared content\n", changed))
    assert compare_tree_with_tar(copies, tar, check_owner=False) == [
        f"content b.txt: sha256 {want}… != {got}…"
    ]


NONROOT_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
from treecompare import compare_tree_with_tar, extract_source_tar
extract_source_tar(sys.argv[2], sys.argv[3])
for line in compare_tree_with_tar(sys.argv[3], sys.argv[2], check_owner=False):
    print(line)
"""


def test_extraction_as_non_root(sources: Path) -> None:
    """Without root: no chown, and the 0555 directory still gets its contents."""
    tar = sources / "common" / "source-T0.tar"
    tests_dir = str(Path(__file__).parent)
    work = tempfile.mkdtemp(prefix="treecompare-nonroot-")  # tmp_path is private to root
    try:
        dest = os.path.join(work, "tree")
        argv = [sys.executable, "-c", NONROOT_SCRIPT, tests_dir, str(tar), dest]
        if IS_ROOT:
            os.chown(work, 65534, 65534)
            argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout == ""
        st = os.lstat(os.path.join(dest, "owner", "numeric-ids.txt"))
        assert st.st_uid == (65534 if IS_ROOT else os.geteuid())
    finally:
        for root, dirs, _ in os.walk(work):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
        shutil.rmtree(work)
