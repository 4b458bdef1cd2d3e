"""End to end: what a user sees when something is wrong.

Every error must be exactly one line on stderr, no traceback, and duplicity's exit code
(FORMAT.md 11): 2 bad command line, 6 unreadable manifest, 11 restore target not empty,
12 verify directory missing, 13 backup source missing, 17 incremental without a full, 19 path
not in the backup, 21 damaged volume, 23 user error / lock held, 30 no chains.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from e2e_util import (
    AS_ROOT,
    T0,
    T1,
    backend_names,
    listed_paths,
    one_error_line,
    only_name,
    random_bytes,
    url,
    write_file,
)
from peers import NG_SCRIPT, NgRunner, child_env
from treecompare import compare_nodes, dir_nodes

NE = "--no-encryption"


def _small_tree(src: Path) -> None:
    write_file(src / "a.txt", b"alpha\n", T0 - 100)
    write_file(src / "sub" / "b.bin", random_bytes(200_000, 7), T0 - 100)
    write_file(src / "sub" / "c.txt", b"gamma\n", T0 - 100)


@pytest.fixture
def backed_up(ng: NgRunner, tmp_path: Path) -> tuple[Path, Path]:
    """(source, backend) after a full backup of a small tree at T0."""
    src, backend = tmp_path / "src", tmp_path / "backend"
    _small_tree(src)
    ng.ok("full", NE, "--current-time", str(T0), src, url(backend))
    return src, backend


# -- no backups --------------------------------------------------------------------------------


def test_restore_from_empty_backend_dir(ng: NgRunner, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = ng("restore", url(tmp_path / "empty"), tmp_path / "dest")
    one_error_line(result, 30, "No backup chains found")
    assert not (tmp_path / "dest").exists()


def test_restore_from_nonexistent_backend_dir(ng: NgRunner, tmp_path: Path) -> None:
    result = ng("restore", url(tmp_path / "no" / "such" / "dir"), tmp_path / "dest")
    one_error_line(result, 30, "No backup chains found")


def test_list_current_files_of_empty_backend(ng: NgRunner, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = ng("list-current-files", url(tmp_path / "empty"))
    one_error_line(result, 30, "No backup chains found")


def test_verify_with_empty_backend(ng: NgRunner, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _small_tree(tmp_path / "src")
    result = ng("verify", url(tmp_path / "empty"), tmp_path / "src")
    one_error_line(result, 30, "No backup chains found")


def test_incremental_without_full(ng: NgRunner, tmp_path: Path) -> None:
    _small_tree(tmp_path / "src")
    result = ng("incremental", NE, tmp_path / "src", url(tmp_path / "backend"))
    one_error_line(result, 17)


def test_path_to_restore_not_in_backup(
    ng: NgRunner, tmp_path: Path, backed_up: tuple[Path, Path]
) -> None:
    _, backend = backed_up
    result = ng("restore", "-r", "sub/nope.txt", url(backend), tmp_path / "dest")
    one_error_line(result, 19, "sub/nope.txt")


def test_nothing_to_restore_creates_no_target(
    ng: NgRunner, tmp_path: Path, backed_up: tuple[Path, Path]
) -> None:
    _, backend = backed_up
    result = ng("restore", "-r", "sub/nope.txt", url(backend), tmp_path / "dest")
    assert result.returncode == 19
    assert not (tmp_path / "dest").exists()


# -- restore target --------------------------------------------------------------------------


def test_restore_into_non_empty_target_then_force(
    ng: NgRunner, tmp_path: Path, backed_up: tuple[Path, Path]
) -> None:
    src, backend = backed_up
    dest = tmp_path / "dest"
    write_file(dest / "a.txt", b"something else, longer than before\n", T1)
    write_file(dest / "unrelated.txt", b"not in the backup\n", T1)
    result = ng("restore", url(backend), dest)
    one_error_line(result, 11, str(dest))
    assert (dest / "a.txt").read_bytes() == b"something else, longer than before\n"

    ng.ok("restore", "--force", url(backend), dest)
    got = dir_nodes(dest)
    assert (
        compare_nodes(
            dir_nodes(src), {k: v for k, v in got.items() if k != b"unrelated.txt"}, AS_ROOT
        )
        == []
    )


def test_restore_onto_existing_file(
    ng: NgRunner, tmp_path: Path, backed_up: tuple[Path, Path]
) -> None:
    _, backend = backed_up
    dest = tmp_path / "a-file"
    dest.write_bytes(b"keep me")
    result = ng("restore", url(backend), dest)
    one_error_line(result, 11)
    assert dest.read_bytes() == b"keep me"


def test_restore_into_existing_empty_dir_is_fine(
    ng: NgRunner, tmp_path: Path, backed_up: tuple[Path, Path]
) -> None:
    src, backend = backed_up
    (tmp_path / "empty").mkdir()
    ng.ok("restore", url(backend), tmp_path / "empty")
    assert compare_nodes(dir_nodes(src), dir_nodes(tmp_path / "empty"), AS_ROOT) == []


# -- backup source ---------------------------------------------------------------------------


def test_backup_of_missing_source_dir(ng: NgRunner, tmp_path: Path) -> None:
    result = ng("full", NE, tmp_path / "missing", url(tmp_path / "backend"))
    one_error_line(result, 13, "missing")
    assert backend_names(tmp_path / "backend") == []


def test_backup_of_a_file_as_source(ng: NgRunner, tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    result = ng("backup", NE, tmp_path / "file", url(tmp_path / "backend"))
    one_error_line(result, 13, "not a directory")


def test_incremental_of_another_source_dir_exits_42(
    ng: NgRunner, tmp_path: Path, backed_up: tuple[Path, Path]
) -> None:
    _, backend = backed_up
    other = tmp_path / "other"
    _small_tree(other)
    result = ng("incremental", NE, "--current-time", str(T1), other, url(backend))
    one_error_line(result, 42, "--allow-source-mismatch")


def test_allow_source_mismatch(ng: NgRunner, tmp_path: Path, backed_up: tuple[Path, Path]) -> None:
    _, backend = backed_up
    other = tmp_path / "other"
    _small_tree(other)
    args = ("--allow-source-mismatch", "--current-time", str(T1), other, url(backend))
    ng.ok("incremental", NE, *args)


def test_missing_exclude_filelist_exits_7(ng: NgRunner, tmp_path: Path) -> None:
    _small_tree(tmp_path / "src")
    missing = tmp_path / "no-such.list"
    result = ng("full", NE, "--exclude-filelist", missing, tmp_path / "src", url(tmp_path / "b"))
    one_error_line(result, 7, str(missing))
    assert backend_names(tmp_path / "b") == []


def test_verify_against_missing_dir(
    ng: NgRunner, tmp_path: Path, backed_up: tuple[Path, Path]
) -> None:
    _, backend = backed_up
    result = ng("verify", url(backend), tmp_path / "missing")
    one_error_line(result, 12, "missing")


def test_backup_without_no_encryption(ng: NgRunner, tmp_path: Path) -> None:
    _small_tree(tmp_path / "src")
    result = ng("full", tmp_path / "src", url(tmp_path / "backend"))
    assert result.returncode != 0
    line = one_error_line(result, result.returncode, "--no-encryption")
    assert "ncryption" in line.split("--no-encryption")[0]
    assert backend_names(tmp_path / "backend") == []


def _as_nobody(*argv: str) -> list[str]:
    nobody = pwd.getpwnam("nobody")
    ids = [f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
    return ["setpriv", *ids, *argv]


def _nobody_can_run_python() -> bool:
    try:
        probe = subprocess.run(
            _as_nobody(sys.executable, "-c", "import cffi"),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
            check=False,
            cwd="/",
        )
    except (OSError, KeyError):
        return False
    return probe.returncode == 0


def _run_as_nobody(base: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = child_env({"XDG_CACHE_HOME": str(base / "cache"), "HOME": str(base)}, None)
    return subprocess.run(
        _as_nobody(sys.executable, str(NG_SCRIPT), *args),
        env=env,
        cwd=base,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        encoding="utf-8",
        errors="surrogateescape",
        timeout=120,
        check=False,
    )


def test_unreadable_source_file_is_reported_and_backup_goes_on(
    ng: NgRunner, tmp_path: Path
) -> None:
    if AS_ROOT:
        # root reads everything: run the CLI as user nobody over a tree nobody owns.
        if shutil.which("setpriv") is None or not _nobody_can_run_python():
            pytest.skip(
                "as root, a file is unreadable only to another user: needs setpriv, a "
                "user nobody and a Python that nobody can run"
            )
        nobody = pwd.getpwnam("nobody")
        base = Path(tempfile.mkdtemp(prefix="ng-e2e-nobody-"))
    else:
        base = tmp_path
    try:
        src, backend = base / "src", base / "backend"
        _small_tree(src)
        write_file(src / "locked.txt", b"secret\n", T0 - 100, mode=0o000)
        os.utime(src, (T0 - 100, T0 - 100))
        args = ("full", NE, "--current-time", str(T0), str(src), url(backend))
        if AS_ROOT:
            for p in [base, *base.rglob("*")]:
                os.chown(p, nobody.pw_uid, nobody.pw_gid, follow_symlinks=False)
            result = _run_as_nobody(base, *args)
        else:
            result = ng(*args)
        context = result.stdout + result.stderr
        assert result.returncode == 0, context
        assert "Traceback" not in context
        errors = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(errors) == 1 and "locked.txt" in errors[0], context
        assert re.search(r"^Errors 1$", result.stdout, re.M), context

        listing = ng.ok("list-current-files", url(backend)).stdout
        assert set(listed_paths(listing)) == {".", "a.txt", "sub", "sub/b.bin", "sub/c.txt"}
        ng.ok("restore", url(backend), tmp_path / "restored")
        assert (tmp_path / "restored" / "sub" / "b.bin").read_bytes() == (
            src / "sub" / "b.bin"
        ).read_bytes()
    finally:
        if AS_ROOT:
            shutil.rmtree(base)


def test_lock_held_by_another_run(ng: NgRunner, tmp_path: Path) -> None:
    _small_tree(tmp_path / "src")
    target = url(tmp_path / "backend")
    cache = ng.cache_home / "duplicity-ng" / hashlib.md5(target.encode()).hexdigest()
    cache.mkdir(parents=True)
    with open(cache / "lockfile", "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        result = ng("full", NE, tmp_path / "src", target)
    one_error_line(result, 23)
    assert backend_names(tmp_path / "backend") == []


# -- damaged volumes -------------------------------------------------------------------------


def test_corrupted_volume(ng: NgRunner, tmp_path: Path, backed_up: tuple[Path, Path]) -> None:
    _, backend = backed_up
    vol = only_name(backend, r"\.vol1\.difftar\.gz$")
    data = bytearray((backend / vol).read_bytes())
    data[len(data) // 2] ^= 0x01
    (backend / vol).write_bytes(bytes(data))
    result = ng("restore", url(backend), tmp_path / "dest")
    one_error_line(result, 21, vol)


def test_truncated_volume(ng: NgRunner, tmp_path: Path, backed_up: tuple[Path, Path]) -> None:
    _, backend = backed_up
    vol = only_name(backend, r"\.vol1\.difftar\.gz$")
    data = (backend / vol).read_bytes()
    (backend / vol).write_bytes(data[: len(data) * 2 // 3])
    result = ng("restore", url(backend), tmp_path / "dest")
    one_error_line(result, 21, vol)


def test_corrupted_volume_fails_verify_too(
    ng: NgRunner, tmp_path: Path, backed_up: tuple[Path, Path]
) -> None:
    src, backend = backed_up
    vol = only_name(backend, r"\.vol1\.difftar\.gz$")
    data = bytearray((backend / vol).read_bytes())
    data[len(data) // 2] ^= 0x80
    (backend / vol).write_bytes(bytes(data))
    result = ng("verify", "--compare-data", url(backend), src)
    one_error_line(result, 21, vol)


def test_garbled_volume_without_a_hash(
    ng: NgRunner, tmp_path: Path, backed_up: tuple[Path, Path]
) -> None:
    """With no hash in the manifest, only inflating finds the damage: ISA-L's error, like
    zlib's, is one line naming the volume."""
    _, backend = backed_up
    manifest = only_name(backend, r"\.manifest$")
    text = (backend / manifest).read_bytes()
    (backend / manifest).write_bytes(re.sub(rb"\n *Hash SHA1 [0-9a-f]+", b"", text))
    vol = only_name(backend, r"\.vol1\.difftar\.gz$")
    data = bytearray((backend / vol).read_bytes())
    data[100:400] = bytes(range(256)) + bytes(44)
    (backend / vol).write_bytes(bytes(data))
    shutil.rmtree(ng.cache_home)
    result = ng("restore", url(backend), tmp_path / "dest")
    one_error_line(result, 21, vol)


def test_missing_volume(ng: NgRunner, tmp_path: Path, backed_up: tuple[Path, Path]) -> None:
    _, backend = backed_up
    (backend / only_name(backend, r"\.vol1\.difftar\.gz$")).unlink()
    result = ng("restore", url(backend), tmp_path / "dest")
    one_error_line(result, 21, "Volume 1")


def test_unreadable_manifest_exits_6(
    ng: NgRunner, tmp_path: Path, backed_up: tuple[Path, Path]
) -> None:
    _, backend = backed_up
    manifest = only_name(backend, r"\.manifest$")
    (backend / manifest).write_bytes(b"Hostname x\nVolume one:\n")
    fresh_cache = ("--archive-dir", tmp_path / "fresh")  # read the backend's copy
    result = ng("restore", NE, *fresh_cache, url(backend), tmp_path / "dest")
    one_error_line(result, 6, manifest)


# -- command line ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["full", NE, "--no-such-option", "SRC", "URL"],
        ["restore", "--volsize", "lots", "URL", "DEST"],
        ["restore", "-t", "yesterday-ish", "URL", "DEST"],
        ["restore", "-t", "2023-13-45", "URL", "DEST"],
        ["frobnicate", NE, "SRC", "URL", "DEST"],
        ["full", NE, "SRC"],
        ["restore", "URL"],
        ["full", NE, "SRC", "not-a-url"],
        ["full", NE, "--volsize", "0", "SRC", "URL"],
        ["restore", "-v", "loud", "URL", "DEST"],
        [],
    ],
    ids=[
        "bad-option",
        "bad-option-value",
        "bad-time",
        "bad-date",
        "unknown-command",
        "missing-arg",
        "missing-dest",
        "target-not-url",
        "volsize-0",
        "bad-verbosity",
        "nothing",
    ],
)
def test_bad_command_line_exits_2(ng: NgRunner, tmp_path: Path, args: list[str]) -> None:
    _small_tree(tmp_path / "src")
    subst = {"SRC": str(tmp_path / "src"), "URL": url(tmp_path / "b"), "DEST": str(tmp_path / "d")}
    result = ng(*(subst.get(a, a) for a in args))
    one_error_line(result, 2)
    assert not (tmp_path / "b").exists() and not (tmp_path / "d").exists()


def test_version(ng: NgRunner) -> None:
    result = ng.ok("--version")
    assert result.stdout.startswith("duplicity-ng ")


# -- library threads ---------------------------------------------------------------------------

# A command during which a helper thread of some library dies, as paramiko's SFTP prefetch
# thread does when the connection drops mid-download.
_DYING_THREAD = """
import sys, threading
from duplicity_ng.cli import main as cli

run_command = cli.command

def command(name):
    def run(opts, log):
        worker = threading.Thread(target=lambda: 1 / 0, name="prefetch")
        worker.start()
        worker.join()
        return run_command(name)(opts, log)
    return run

cli.command = command
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("debug", [False, True])
def test_a_library_thread_dying_prints_no_traceback(
    tmp_path: Path, backed_up: tuple[Path, Path], debug: bool
) -> None:
    _, backend = backed_up
    argv = ["collection-status", url(backend)] + (["--debug"] if debug else [])
    result = subprocess.run(
        [sys.executable, "-c", _DYING_THREAD, *argv],
        env=child_env({"XDG_CACHE_HOME": str(tmp_path / "cache")}, None),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Full" in result.stdout  # the command itself ran
    assert ("ZeroDivisionError" in result.stderr) == debug, result.stderr
