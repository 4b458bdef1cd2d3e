"""End to end: a restore never writes outside its target, and never half-replaces a file.

Malicious archives are hand-made on a file:// backend: correctly named volume, a manifest whose
SHA1 matches it, a minimal signature file, so that the restore really reads the bad members.
Whatever the exit code, nothing may appear (or change) outside the target directory. The
remaining tests check restores over existing trees (--force) and the order in which directory
metadata is applied (read-only directories, directory mtimes).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
from e2e_util import (
    AS_ROOT,
    COMMON_TARS,
    T0,
    T1,
    T2,
    gzip_tar_bytes,
    make_readable,
    one_error_line,
    only_name,
    random_bytes,
    set_source_state,
    stamp,
    url,
    write_file,
)
from peers import NgRunner
from treecompare import compare_nodes, compare_tree_with_tar, dir_nodes, tar_nodes

NE = "--no-encryption"
Member = tuple[tarfile.TarInfo, bytes]


# -- hand-made archives ------------------------------------------------------------------------


def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = T0 - 100
    info.uid, info.gid = os.getuid(), os.getgid()
    return info


def reg(name: str, data: bytes, mode: int = 0o644) -> Member:
    return _info(name, tarfile.REGTYPE, mode), data


def directory(name: str, mode: int = 0o755) -> Member:
    return _info(name, tarfile.DIRTYPE, mode), b""


def symlink(name: str, target: str) -> Member:
    info = _info(name, tarfile.SYMTYPE, 0o777)
    info.linkname = target
    return info, b""


def hardlink(name: str, target: str) -> Member:
    info = _info(name, tarfile.LNKTYPE, 0o644)
    info.linkname = target
    return info, b""


def craft_full_backup(backend: Path, members: list[Member], t: int = T0) -> None:
    """A full set at t whose only volume holds exactly `members`, with a matching manifest."""
    backend.mkdir(parents=True)
    volume = gzip_tar_bytes(members)
    (backend / f"duplicity-full.{stamp(t)}.vol1.difftar.gz").write_bytes(volume)
    manifest = (
        "Hostname somewhere\n"
        "Localdir /src\n"
        "Volume 1:\n"
        "    StartingPath   .  \n"
        "    EndingPath     zzz  \n"
        f"    Hash SHA1 {hashlib.sha1(volume).hexdigest()}\n"
        "Filelist 0\n"
    )
    (backend / f"duplicity-full.{stamp(t)}.manifest").write_text(manifest)
    sigtar = gzip_tar_bytes([directory("snapshot")])
    (backend / f"duplicity-full-signatures.{stamp(t)}.sigtar.gz").write_bytes(sigtar)


def _everything_below(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def _restore_evil(
    ng: NgRunner, tmp_path: Path, members: list[Member]
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Restore a crafted archive into tmp_path/case/target; return the target and the run."""
    case = tmp_path / "case"
    craft_full_backup(case / "backend", members)
    target = case / "target"
    result = ng("restore", url(case / "backend"), target)
    assert "Traceback" not in result.stdout + result.stderr
    # Whatever happened, the only things in `case` are the backend and what is in target.
    outside = _everything_below(case) - {"backend", "target"}
    outside = {p for p in outside if not p.startswith(("backend/", "target/"))}
    assert outside == set(), outside
    return target, result


ROOT = directory("snapshot/.")


def test_dotdot_member_does_not_escape(ng: NgRunner, tmp_path: Path) -> None:
    _, result = _restore_evil(
        ng,
        tmp_path,
        [ROOT, reg("snapshot/../escape.txt", b"escaped"), reg("snapshot/ok.txt", b"ok")],
    )
    assert not (tmp_path / "escape.txt").exists()
    assert result.returncode != 0  # an archive with such a name is damaged or hostile


def test_nested_dotdot_member_does_not_escape(ng: NgRunner, tmp_path: Path) -> None:
    _restore_evil(
        ng,
        tmp_path,
        [
            ROOT,
            directory("snapshot/a"),
            reg("snapshot/a/../../../escape.txt", b"escaped"),
            reg("multivol_snapshot/a/../../escape2.txt/1", b"escaped"),
        ],
    )
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path.parent / "escape.txt").exists()


def test_absolute_member_does_not_escape(ng: NgRunner, tmp_path: Path) -> None:
    outside = tmp_path / f"abs-outside-{secrets.token_hex(4)}"
    outside.mkdir()
    victim = outside / "x"
    _, result = _restore_evil(ng, tmp_path, [ROOT, reg(f"snapshot/{victim}", b"absolute")])
    assert list(outside.iterdir()) == []
    assert result.returncode != 0


def test_symlink_then_member_through_it(ng: NgRunner, tmp_path: Path) -> None:
    # One link into a directory that exists, one into /tmp where nothing exists yet.
    existing = tmp_path / f"outside-{secrets.token_hex(4)}"
    existing.mkdir()
    missing = Path(f"/tmp/outside-{secrets.token_hex(8)}")
    try:
        target, result = _restore_evil(
            ng,
            tmp_path,
            [
                ROOT,
                reg("snapshot/a.txt", b"harmless"),
                symlink("snapshot/link", str(existing)),
                reg("snapshot/link/pwned.txt", b"pwned"),
                directory("snapshot/link/sub"),
                reg("snapshot/link/sub/deeper.txt", b"pwned"),
                symlink("snapshot/link2", str(missing)),
                reg("snapshot/link2/pwned.txt", b"pwned"),
                reg("snapshot/z.txt", b"harmless"),
            ],
        )
        assert list(existing.iterdir()) == []
        assert not missing.exists() and not missing.is_symlink()
        # The archive was read: the harmless files around the attack are restored, and the
        # refusals are reported.
        assert (target / "a.txt").read_bytes() == b"harmless"
        assert (target / "z.txt").read_bytes() == b"harmless"
        assert result.returncode != 0
        assert "link/pwned.txt" in result.stderr
    finally:
        if missing.is_dir():
            for child in missing.rglob("*"):
                child.unlink()
            missing.rmdir()


def test_symlink_replaced_by_directory_member(ng: NgRunner, tmp_path: Path) -> None:
    # A later directory member with the same name must not reuse the link.
    existing = tmp_path / f"outside-{secrets.token_hex(4)}"
    existing.mkdir()
    target, _ = _restore_evil(
        ng,
        tmp_path,
        [
            ROOT,
            symlink("snapshot/link", str(existing)),
            directory("snapshot/link"),
            reg("snapshot/link/pwned.txt", b"pwned"),
        ],
    )
    assert list(existing.iterdir()) == []
    assert not (target / "link").is_symlink()


def test_hardlink_member_to_outside_file(ng: NgRunner, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    target, _ = _restore_evil(
        ng,
        tmp_path,
        [ROOT, hardlink("snapshot/hl", str(victim)), reg("snapshot/ok.txt", b"ok")],
    )
    # tmp_path/victim.txt is outside `case`, so check it by hand.
    assert victim.read_bytes() == b"precious"
    assert victim.stat().st_nlink == 1
    hl = target / "hl"
    if hl.exists():
        assert not os.path.samefile(hl, victim)


def test_hardlink_member_is_reported_as_a_damaged_volume(ng: NgRunner, tmp_path: Path) -> None:
    _, result = _restore_evil(
        ng, tmp_path, [ROOT, hardlink("snapshot/hl", "/etc/hostname"), reg("snapshot/z", b"")]
    )
    line = one_error_line(result, 21, "vol1.difftar.gz")
    assert "Unexpected error" not in line


def test_diff_without_base_is_an_error_and_the_rest_is_restored(
    ng: NgRunner, tmp_path: Path
) -> None:
    """Regression: a path whose only entry is a diff used to be skipped with exit 0."""
    target, result = _restore_evil(
        ng, tmp_path, [ROOT, reg("diff/orphan.txt", b"rs\x026\x00"), reg("snapshot/ok.txt", b"ok")]
    )
    assert result.returncode == 1
    warning, summary = result.stderr.splitlines()
    assert "orphan.txt" in warning and "without a base" in warning
    assert summary == "Restore finished with 1 error(s)"
    assert (target / "ok.txt").read_bytes() == b"ok"
    assert not (target / "orphan.txt").exists()


# -- restores over existing trees --------------------------------------------------------------


@pytest.fixture
def awkward_backend(ng: NgRunner, tmp_path: Path) -> Path:
    src, backend = tmp_path / "src", tmp_path / "backend"
    for state, t in enumerate((T0, T1, T2)):
        set_source_state(src, COMMON_TARS[state])
        ng.ok(
            "full" if state == 0 else "incremental", NE, "--current-time", str(t), src, url(backend)
        )
    return backend


def test_force_restore_over_existing_tree_gives_exact_content(
    ng: NgRunner, tmp_path: Path, awkward_backend: Path
) -> None:
    dest = tmp_path / "dest"
    ng.ok("restore", "-t", str(T0), url(awkward_backend), dest)
    # Conflicts the backup must win over: a dir where it has a file, a link where it has a
    # file, a file with other content and no permissions, a file where it has a link.
    os.unlink(dest / "text" / "lorem.txt")
    write_file(dest / "text" / "lorem.txt" / "child.txt", b"in the way", T1)
    os.unlink(dest / "small" / "hello.txt")
    os.symlink("/etc/hostname", dest / "small" / "hello.txt")
    write_file(dest / "sizes" / "f511", b"x" * 700, T2, mode=0o000)
    os.unlink(dest / "link-rel")
    write_file(dest / "link-rel", b"not a link", T2)

    ng.ok("restore", "--force", url(awkward_backend), dest)
    t2_paths = set(tar_nodes(COMMON_TARS[2]))
    diffs = compare_tree_with_tar(dest, COMMON_TARS[2], AS_ROOT)
    # Paths that only the old tree had may stay (duplicity does not delete them either).
    extra = [d for d in diffs if d.startswith("extra: ")]
    assert [d for d in diffs if d not in extra] == []
    for d in extra:
        assert d.removeprefix("extra: ").encode("utf-8", "surrogateescape") not in t2_paths
    assert not [p for p in dest.rglob("*") if p.name.endswith(".ngrestore")]
    make_readable(tmp_path)


def test_force_restore_does_not_write_through_existing_symlinks(
    ng: NgRunner, tmp_path: Path
) -> None:
    src, backend, dest = tmp_path / "src", tmp_path / "backend", tmp_path / "dest"
    write_file(src / "a.txt", b"from the backup\n", T0 - 100)
    write_file(src / "sub" / "b.txt", b"also from the backup\n", T0 - 100)
    ng.ok("full", NE, "--current-time", str(T0), src, url(backend))
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_bytes(b"precious")
    dest.mkdir()
    os.symlink(victim, dest / "a.txt")
    os.symlink(outside, dest / "sub")
    ng("restore", "--force", url(backend), dest)
    assert victim.read_bytes() == b"precious"
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
    assert (dest / "a.txt").read_bytes() == b"from the backup\n"
    assert not (dest / "a.txt").is_symlink()


def test_force_restore_of_one_file_over_existing_file(ng: NgRunner, tmp_path: Path) -> None:
    src, backend = tmp_path / "src", tmp_path / "backend"
    write_file(src / "a.txt", b"from the backup\n", T0 - 100)
    ng.ok("full", NE, "--current-time", str(T0), src, url(backend))
    dest = tmp_path / "existing.txt"
    dest.write_bytes(b"old content")
    ng.ok("restore", "--force", "-r", "a.txt", url(backend), dest)
    assert dest.read_bytes() == b"from the backup\n"


def test_failed_restore_leaves_existing_file_intact(ng: NgRunner, tmp_path: Path) -> None:
    # big.bin spans three 1 MiB volumes; volume 2 is damaged, so the restore fails while
    # writing big.bin. The old big.bin in the target must still be whole.
    src, backend, dest = tmp_path / "src", tmp_path / "backend", tmp_path / "dest"
    write_file(src / "big.bin", random_bytes(2_500_000, 11), T0 - 100)
    ng.ok("full", NE, "--volsize", "1", "--current-time", str(T0), src, url(backend))
    vol2 = backend / only_name(backend, r"\.vol2\.difftar\.gz$")
    data = bytearray(vol2.read_bytes())
    data[len(data) // 2] ^= 0xFF
    vol2.write_bytes(bytes(data))
    old = random_bytes(300_000, 12)
    write_file(dest / "big.bin", old, T1)

    result = ng("restore", "--force", url(backend), dest)
    assert result.returncode == 21, result.stdout + result.stderr
    assert (dest / "big.bin").read_bytes() == old
    assert sorted(os.listdir(dest)) == ["big.bin"]


# -- directory metadata after contents ---------------------------------------------------------


def test_read_only_dirs_and_dir_mtimes(ng: NgRunner, tmp_path: Path) -> None:
    src, backend, dest = tmp_path / "src", tmp_path / "backend", tmp_path / "dest"
    write_file(src / "ro" / "ro2" / "f.txt", b"inside two read-only dirs\n", T0 - 500, 0o444)
    write_file(src / "ro" / "g.txt", b"g\n", T0 - 400)
    write_file(src / "rw" / "h.txt", b"h\n", T0 - 300)
    (src / "ro" / "empty").mkdir()
    for rel, mtime, mode in (
        ("ro/empty", T0 - 250, 0o500),
        ("ro/ro2", T0 - 200, 0o555),
        ("ro", T0 - 150, 0o555),
        ("rw", T0 - 120, 0o700),
        (".", T0 - 100, 0o750),
    ):
        os.chmod(src / rel, mode)
        os.utime(src / rel, (mtime, mtime))
    want = dir_nodes(src)
    try:
        ng.ok("full", NE, "--current-time", str(T0), src, url(backend))
        ng.ok("restore", url(backend), dest)
        assert compare_nodes(want, dir_nodes(dest), AS_ROOT) == []
        assert stat.S_IMODE((dest / "ro").stat().st_mode) == 0o555
        assert int((dest / "ro").stat().st_mtime) == T0 - 150
        # And again over the restored read-only tree.
        ng.ok("restore", "--force", url(backend), dest)
        assert compare_nodes(want, dir_nodes(dest), AS_ROOT) == []
    finally:
        make_readable(tmp_path)


def test_awkward_read_only_dir_restored_with_contents(
    ng: NgRunner, tmp_path: Path, awkward_backend: Path
) -> None:
    dest = tmp_path / "dest"
    ng.ok("restore", "-t", str(T0), url(awkward_backend), dest)
    want = tar_nodes(COMMON_TARS[0])
    ro = dest / "perms" / "readonly-dir"
    assert stat.S_IMODE(ro.stat().st_mode) == want[b"perms/readonly-dir"].mode == 0o555
    assert int(ro.stat().st_mtime) == want[b"perms/readonly-dir"].mtime
    assert (ro / "inside.txt").is_file()
    assert int(dest.stat().st_mtime) == want[b""].mtime
    make_readable(tmp_path)
