"""The duplicity peers and the CLI runner behave as the rest of the suite relies on."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from peers import NG_SCRIPT, DuplicityPeer, NgRunner, PeerMissingError, peer_321
from treecompare import compare_trees

IS_ROOT = os.geteuid() == 0
BACKUP_TIME = 1700000000


def test_both_peers_report_their_version(dup321: DuplicityPeer, dup08: DuplicityPeer) -> None:
    assert dup321.ok("--version").stdout.startswith("duplicity 3.2.1")
    assert dup08.ok("--version").stdout.startswith("duplicity 0.8.22")


def _small_tree(root: Path) -> None:
    (root / "sub" / "empty").mkdir(parents=True)
    (root / "hello.txt").write_text("hello\n")
    (root / "sub" / "data.bin").write_bytes(bytes(range(256)) * 300)
    (root / "sub" / "private").write_text("secret\n")
    (root / "sub" / "private").chmod(0o600)
    os.symlink("../hello.txt", root / "sub" / "link")
    os.mkfifo(root / "fifo")
    with open(os.path.join(os.fsencode(root), b"caf\xe9.txt"), "wb") as f:
        f.write(b"latin-1 name\n")
    for path in (root / "sub" / "empty", root / "sub", root):  # directories last
        os.utime(path, (1699990000, 1699990000))


@pytest.fixture
def peer_backup(tmp_path: Path, dup321: DuplicityPeer) -> tuple[Path, str]:
    """A small tree and a --no-encryption full backup of it written by duplicity 3.2.1."""
    src = tmp_path / "src"
    _small_tree(src)
    url = f"file://{tmp_path / 'target'}"
    result = dup321.ok(
        "full",
        "--no-encryption",
        src,
        url,
        archive_dir=tmp_path / "cache321",
        current_time=BACKUP_TIME,
    )
    assert "Backup Statistics" in result.stdout
    return src, url


def test_dup321_full_and_restore(tmp_path: Path, dup321: DuplicityPeer, peer_backup) -> None:
    src, url = peer_backup
    names = sorted(os.listdir(tmp_path / "target"))
    assert "duplicity-full.20231114T221320Z.manifest" in names  # --current-time was applied
    restored = tmp_path / "restored"
    dup321.ok("restore", "--no-encryption", url, restored, archive_dir=tmp_path / "cache321")
    assert compare_trees(src, restored, check_owner=IS_ROOT) == []


def test_dup08_restores_what_dup321_wrote(
    tmp_path: Path, dup08: DuplicityPeer, peer_backup
) -> None:
    src, url = peer_backup
    restored = tmp_path / "restored08"
    dup08.ok("restore", "--no-encryption", url, restored, archive_dir=tmp_path / "cache08")
    assert compare_trees(src, restored, check_owner=IS_ROOT) == []


def test_peer_failure_message_shows_output(tmp_path: Path, dup321: DuplicityPeer) -> None:
    with pytest.raises(AssertionError) as info:
        dup321.ok("restore", f"file://{tmp_path / 'empty'}", tmp_path / "out", archive_dir=tmp_path)
    message = str(info.value)
    assert message.startswith("duplicity 3.2.1 exited 30: ")  # "No backup chains found"
    assert "No backup chains found" in message and "--- stderr ---" in message


def test_peer_commands_need_a_private_archive_dir(dup321: DuplicityPeer) -> None:
    with pytest.raises(ValueError, match="archive_dir"):
        dup321.command(["restore", "file:///x", "/tmp/y"])
    argv = dup321.command(["restore", "file:///x", "/y"], archive_dir="/a", current_time=5)
    options = ["--archive-dir", "/a", "--current-time", "5"]
    assert argv[:6] == [str(dup321.executable), "restore", *options]
    assert argv[-2:] == ["file:///x", "/y"]
    assert ("--no-restore-ownership" in argv) is not IS_ROOT


def test_missing_peer_is_a_clear_error(tmp_path: Path) -> None:
    peer = peer_321(repo=tmp_path)
    with pytest.raises(PeerMissingError, match=r"not found at .*scripts/setup\.sh"):
        peer.check_installed()


def test_ng_runner_isolates_the_cache(tmp_path: Path, ng: NgRunner, monkeypatch) -> None:
    monkeypatch.setenv("PASSPHRASE", "from-the-developer-shell")
    env = ng.environment({"FOO": "1", "HOME": None})
    assert Path(env["XDG_CACHE_HOME"]).is_relative_to(tmp_path)
    assert Path(env["XDG_CACHE_HOME"]).is_dir()
    assert "PASSPHRASE" not in env and "HOME" not in env and env["FOO"] == "1"
    assert ng.command("full", Path("/src")) == [sys.executable, str(NG_SCRIPT), "full", "/src"]


def test_ng_ok_reports_a_failing_command(ng: NgRunner) -> None:
    with pytest.raises(AssertionError, match=r"^duplicity-ng exited [1-9]\d*: ") as info:
        ng.ok("no-such-command")
    assert str(NG_SCRIPT) in str(info.value) and "--- stderr ---" in str(info.value)
