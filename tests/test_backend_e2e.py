"""End to end on every backend: full, incremental and restore through the command line, and
backups that meet injected faults.

The CLI runs are subprocesses of bin/duplicity-ng (the `ng` fixture), except on B2, whose
simulator lives in this process: there `cli.main.main` runs in-process. Each target adds the
backend options its server needs (--ssh-options, --s3-endpoint-url, --ssl-cacert-file...).
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from faults import Fault, inject
from gpg_util import GpgHome
from peers import NgRunner
from servers import KINDS, LOOPBACK, Target, free_port
from treecompare import compare_trees

from duplicity_ng.backends.base import open_raw_backend
from duplicity_ng.backends.options import BackendOptions
from duplicity_ng.cli import main as cli_main

pytest_plugins = ["conftest_servers"]

T0, T1 = 1700000000, 1700003600
AS_ROOT = os.geteuid() == 0


# -- source trees -----------------------------------------------------------------------------


def make_source(src: Path) -> None:
    rng = random.Random(5)
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "big.bin").write_bytes(rng.randbytes(2_500_000))  # 3 volumes at --volsize 1
    (src / "sub" / "text.txt").write_text("hello\n" * 1000)
    (src / "sub" / "deeper" / "ünï cødé.dat").write_bytes(rng.randbytes(10_000))
    (src / "gone-later").write_text("deleted by the incremental")
    os.symlink("sub/text.txt", src / "link")
    for path in [*src.rglob("*"), src]:
        if not path.is_symlink():
            os.utime(path, (T0 - 100, T0 - 100))


def change_source(src: Path) -> None:
    with open(src / "big.bin", "r+b") as f:
        f.seek(1_000_000)
        f.write(b"changed in the middle")
    (src / "gone-later").unlink()
    (src / "sub" / "new.txt").write_text("new in the incremental")
    for path in [*src.rglob("*"), src]:
        if not path.is_symlink():
            os.utime(path, (T1 - 100, T1 - 100))


def snapshot(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, symlinks=True)
    for path in [*dest.rglob("*"), dest]:  # copytree keeps mtimes of files, not of dirs
        original = src / path.relative_to(dest)
        if not path.is_symlink():
            st = original.stat()
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    return dest


# -- running the CLI --------------------------------------------------------------------------

Run = Callable[..., tuple[int, str]]


def cli_runner(target: Target, tmp_path: Path, ng: NgRunner, capsys) -> Run:  # noqa: ANN001
    """run(*args) -> (exit code, stdout+stderr), with the target's options added."""
    if target.in_process_only:
        archive = tmp_path / "archive"

        def run_in_process(*args: str | Path) -> tuple[int, str]:
            argv = [str(a) for a in args] + ["--archive-dir", str(archive), *target.cli_args]
            code = cli_main.main(argv)
            out = capsys.readouterr()
            return code, out.out + out.err

        return run_in_process

    def run_subprocess(*args: str | Path) -> tuple[int, str]:
        result = ng(*[str(a) for a in args], *target.cli_args, env=target.env)
        return result.returncode, result.stdout + result.stderr

    return run_subprocess


def check(result: tuple[int, str]) -> str:
    code, output = result
    assert code == 0, output
    return output


def backup_restore_cycle(run: Run, target: Target, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    make_source(src)
    at_t0 = snapshot(src, tmp_path / "at-t0")
    ne = "--no-encryption"
    check(run("full", ne, "--volsize", "1", "--current-time", T0, src, target.url))
    change_source(src)
    check(run("incremental", ne, "--volsize", "1", "--current-time", T1, src, target.url))

    raw = open_raw_backend(target.url, target.options)
    names = sorted(f.name for f in raw.list())
    raw.close()
    assert sum(".vol" in n for n in names) >= 4, names  # 3 full volumes + incremental
    assert sum(".manifest" in n for n in names) == 2 and sum(".sigtar" in n for n in names) == 2
    assert not any(n.startswith(".") for n in names), names  # no temporary leftovers

    check(run("restore", ne, target.url, tmp_path / "now"))
    assert compare_trees(src, tmp_path / "now", AS_ROOT) == []
    check(run("restore", ne, "-t", T0, target.url, tmp_path / "then"))
    assert compare_trees(at_t0, tmp_path / "then", AS_ROOT) == []


@pytest.mark.parametrize("target", KINDS, indirect=True)
def test_full_incremental_restore(
    target: Target, tmp_path: Path, ng: NgRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    run = cli_runner(target, tmp_path, ng, capsys)
    backup_restore_cycle(run, target, tmp_path)


@pytest.mark.parametrize("target", ["sftp"], indirect=True)
def test_backend_errors_through_the_cli(target: Target, ng: NgRunner, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    result = ng(
        "full",
        "--no-encryption",
        f"--ssh-options=-oIdentityFile={target.options.ssh_identity_files[0]}",
        f"--ssh-options=-oUserKnownHostsFile={empty}",
        src,
        target.url,
    )
    assert result.returncode == 50, result.stderr
    assert "Unknown SSH host key" in result.stderr and "Traceback" not in result.stderr
    result = ng(
        "full",
        "--no-encryption",
        f"--ssh-options=-oIdentityFile={target.options.ssh_identity_files[0]}",
        f"--ssh-options=-oUserKnownHostsFile={empty}",
        "--ssh-accept-new-host-key",
        src,
        target.url,
    )
    assert result.returncode == 0, result.stderr
    assert empty.read_text().count("\n") == 1


def test_retry_options_reach_the_backend(ng: NgRunner, tmp_path: Path) -> None:
    """--num-retries and --backend-retry-delay from the command line: each failed attempt is
    a warning, the last one error line names the URL without its password (exit 50)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    secret = "pa55-w0rd-in-url"
    url = f"sftp://someone:{secret}@{LOOPBACK}:{free_port()}//tmp/nowhere"
    result = ng(
        "full", "--no-encryption", "--num-retries", "3", "--backend-retry-delay", "0.01",
        src, url,
    )  # fmt: skip
    assert result.returncode == 50, result.stderr
    lines = result.stderr.splitlines()
    assert [line for line in lines if line.startswith("Attempt ")] == [
        line for line in lines[:-1]
    ], result.stderr
    assert len(lines) == 3 and "Attempt 2 of 3" in lines[1], result.stderr
    assert "gave up after 3 attempts" in lines[-1] and f"{LOOPBACK}:" in lines[-1]
    assert secret not in result.stdout + result.stderr and "Traceback" not in result.stderr


# -- faults under the engine ------------------------------------------------------------------


def run_with_faults(
    target: Target,
    faults: list[Fault],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    archive: Path,
    *args: str | Path,
    calls: list[tuple[str, str]] | None = None,
) -> tuple[int, str]:
    """cli.main in-process, its backend opened with a fault injector under the wrappers;
    `calls` receives every (operation, name) that reached the storage."""
    from duplicity_ng.cli import context

    def open_with_faults(url: str, cli_options: BackendOptions | None = None, **kwargs: object):  # noqa: ANN202
        # The target's options (keys, endpoint...), not the ones of this in-process command
        # line, which names none.
        options = dataclasses.replace(target.options, retry_delay=0.005, num_retries=3)
        stack, faulty = inject(open_raw_backend(url, options), faults, options, kwargs.get("warn"))
        if calls is not None:
            faulty.calls = calls
        return stack

    monkeypatch.setattr(context, "open_backend", open_with_faults)
    code = cli_main.main([str(a) for a in args] + ["--archive-dir", str(archive)])
    out = capsys.readouterr()
    return code, out.out + out.err


def run_recorded(
    target: Target,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    archive: Path,
    *args: str | Path,
) -> tuple[int, str, list[tuple[str, str]]]:
    calls: list[tuple[str, str]] = []
    code, output = run_with_faults(target, [], monkeypatch, capsys, archive, *args, calls=calls)
    return code, output, calls


@pytest.mark.parametrize("target", ["s3"], indirect=True)
@pytest.mark.parametrize("encrypt", [False, True], ids=["no-encryption", "symmetric"])
def test_incremental_on_a_machine_without_cache_reads_only_metadata(
    target: Target,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    encrypt: bool,
) -> None:
    """The ephemeral cloud instance: a fresh machine, no archive dir, an incremental to S3.
    It downloads the manifest and the signature files, never a volume."""
    home = GpgHome.create()
    monkeypatch.setenv("GNUPGHOME", str(home.path))
    monkeypatch.setenv("PASSPHRASE", "ephemeral instance passphrase")
    mode = [] if encrypt else ["--no-encryption"]
    src = tmp_path / "src"
    src.mkdir()
    make_source(src)
    try:
        code, output, _ = run_recorded(
            target, monkeypatch, capsys, tmp_path / "first-machine",
            "full", *mode, "--volsize", "1", "--current-time", T0, src, target.url,
        )  # fmt: skip
        assert code == 0, output
        change_source(src)
        code, output, calls = run_recorded(
            target, monkeypatch, capsys, tmp_path / "second-machine",
            "incremental", *mode, "--volsize", "1", "--current-time", T1, src, target.url,
        )  # fmt: skip
        assert code == 0, output
        fetched = [name for op, name in calls if op == "get"]
        assert any(".manifest" in n for n in fetched) and any(".sigtar" in n for n in fetched)
        assert not [n for n in fetched if ".difftar" in n], fetched
        code, output, _ = run_recorded(
            target, monkeypatch, capsys, tmp_path / "third-machine",
            "restore", *mode, target.url, tmp_path / "restored",
        )  # fmt: skip
        assert code == 0, output
        assert compare_trees(src, tmp_path / "restored", AS_ROOT) == []
    finally:
        home.kill_agent()
        home.remove()


FAULT_KINDS = ["file", "sftp", "s3", "b2", "webdav"]


@pytest.mark.parametrize("target", FAULT_KINDS, indirect=True)
def test_backup_through_faults_is_correct(
    target: Target,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    make_source(src)
    archive = tmp_path / "archive"
    faults = [
        Fault("put", "truncate", match=".vol2."),
        Fault("put", "drop", match=".vol3."),
        Fault("put", "fail", match=".manifest"),
        Fault("list", "slow", delay=0.2),
    ]
    code, output = run_with_faults(
        target, faults, monkeypatch, capsys, archive,
        "full", "--no-encryption", "--volsize", "1", "--current-time", T0, src, target.url,
    )  # fmt: skip
    assert code == 0, output
    assert all(f.hits == 1 for f in faults), faults
    restore_faults = [
        Fault("get", "drop", match=".vol1."),
        Fault("get", "truncate", match=".vol2."),
    ]
    code, output = run_with_faults(
        target, restore_faults, monkeypatch, capsys, tmp_path / "fresh-archive",
        "restore", "--no-encryption", target.url, tmp_path / "restored",
    )  # fmt: skip
    assert code == 0, output
    assert all(f.hits == 1 for f in restore_faults)
    assert compare_trees(src, tmp_path / "restored", AS_ROOT) == []


@pytest.mark.parametrize("target", FAULT_KINDS, indirect=True)
def test_backup_that_cannot_store_a_volume_fails_clearly(
    target: Target,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    make_source(src)
    archive = tmp_path / "archive"
    code, output = run_with_faults(
        target, [Fault("put", "truncate", times=-1, match=".vol2.")], monkeypatch, capsys,
        archive, "full", "--no-encryption", "--volsize", "1", "--current-time", T0, src,
        target.url,
    )  # fmt: skip
    assert code == 56, output
    error_lines = [line for line in output.splitlines() if "vol2" in line and "gave up" in line]
    assert len(error_lines) == 1 and "not intact" in error_lines[0], output
    assert "Traceback" not in output
    raw = open_raw_backend(target.url, target.options)
    names = [f.name for f in raw.list()]
    raw.close()
    # No manifest claims the set, and no short volume 2 is left behind.
    assert not any(".manifest" in n for n in names), names
    assert not any(".vol2." in n for n in names), names
    # A later run without faults ends with a correct backup.
    code, output = run_with_faults(
        target, [], monkeypatch, capsys, archive,
        "full", "--no-encryption", "--volsize", "1", "--current-time", T1, src, target.url,
    )  # fmt: skip
    assert code == 0, output
    code, output = run_with_faults(
        target, [], monkeypatch, capsys, archive,
        "restore", "--no-encryption", target.url, tmp_path / "restored",
    )  # fmt: skip
    assert code == 0, output
    assert compare_trees(src, tmp_path / "restored", AS_ROOT) == []
