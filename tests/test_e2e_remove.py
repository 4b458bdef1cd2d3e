"""End to end: remove-older-than, remove-all-but-n-full, remove-all-inc-of-but-n-full, cleanup.

The CLI runs as a user types it against a file:// backend holding three chains, made once per
module with --current-time (full T0 + inc T1, full T2 + inc T3, full T4 + inc T5; the last is
the current chain) and copied for every test. The tests check the files left on the backend
and in the local cache, what was printed, and that the kept backups still restore. A deletion
that fails halfway runs in-process, with a fault injected under the backend wrappers; the
last test hands the result of our remove-all-but-n-full to real duplicity 3.2.1.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e_util import T0, backend_names, one_error_line, random_bytes, stamp, url, write_file
from faults import Fault, inject
from gpg_util import GpgHome
from peers import DuplicityPeer, NgRunner

from duplicity_ng.backends.base import open_raw_backend
from duplicity_ng.backends.options import BackendOptions
from duplicity_ng.timefmt import w3

NE = "--no-encryption"
NAME = "target"  # --name: the cache folder, the same in every copy of the template
TIMES = [T0 + 3600 * i for i in range(6)]
T1, T2, T3, T4, T5 = TIMES[1:]


def asctime(t: int) -> str:
    return time.asctime(time.localtime(t))


# -- expected file names -------------------------------------------------------------------------


def full_files(t: int) -> list[str]:
    s = stamp(t)
    return [
        f"duplicity-full.{s}.manifest",
        f"duplicity-full.{s}.vol1.difftar.gz",
        f"duplicity-full-signatures.{s}.sigtar.gz",
    ]


def inc_files(a: int, b: int) -> list[str]:
    sa, sb = stamp(a), stamp(b)
    return [
        f"duplicity-inc.{sa}.to.{sb}.manifest",
        f"duplicity-inc.{sa}.to.{sb}.vol1.difftar.gz",
        f"duplicity-new-signatures.{sa}.to.{sb}.sigtar.gz",
    ]


def chain_files(i: int) -> list[str]:
    """Chain i (0, 1, 2): the full at TIMES[2i] and the incremental to TIMES[2i+1]."""
    a, b = TIMES[2 * i], TIMES[2 * i + 1]
    return full_files(a) + inc_files(a, b)


def metadata(files: Iterable[str]) -> list[str]:
    """What the cache keeps of these backend files (no volumes; unencrypted: same names)."""
    return sorted(n for n in files if ".difftar" not in n)


def expect(*groups: list[str]) -> list[str]:
    return sorted(n for g in groups for n in g)


ALL = expect(chain_files(0), chain_files(1), chain_files(2))


# -- the backend -------------------------------------------------------------------------------


@dataclass
class Target:
    ng: NgRunner
    base: Path

    @property
    def backend(self) -> Path:
        return self.base / "backend"

    @property
    def archive(self) -> Path:
        return self.base / "archive"

    @property
    def cache(self) -> Path:
        return self.archive / NAME

    @property
    def url(self) -> str:
        return url(self.backend)

    def argv(self, *args: str | Path) -> list[str]:
        """A command line on this target: `CMD ARGS --archive-dir A --name N URL`."""
        return [str(a) for a in args] + [
            "--archive-dir",
            str(self.archive),
            "--name",
            NAME,
            self.url,
        ]

    def __call__(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return self.ng(*self.argv(*args))

    def ok(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        __tracebackhide__ = True
        return self.ng.ok(*self.argv(*args))

    def remote(self) -> list[str]:
        return backend_names(self.backend)

    def cached(self) -> list[str]:
        return sorted(n for n in os.listdir(self.cache) if n != "lockfile")

    def restore(self, t: int | None = None) -> str:
        """Restore (at t) into a new folder; returns the restored state.txt."""
        dest = self.base / f"restored-{t}-{time.monotonic_ns()}"
        when = ["-t", str(t)] if t is not None else []
        self.ng.ok("restore", *when, "--archive-dir", self.base / "restore-cache", self.url, dest)
        return (dest / "state.txt").read_text()

    def drop(self, *names: str) -> None:
        """Delete files from the backend and the cache, as a crash or a user might have."""
        for name in names:
            for folder in (self.backend, self.cache):
                (folder / name).unlink(missing_ok=True)


def make_state(src: Path, i: int) -> None:
    """State i of the source: state.txt says which, and one more data file per state."""
    write_file(src / "state.txt", f"state {i}\n".encode(), TIMES[i] - 10)
    write_file(src / "data" / f"file{i}.bin", random_bytes(20_000, i), TIMES[i] - 10)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("remove-template")
    ng = NgRunner(cache_home=base / "xdg-cache")
    t = Target(ng, base)
    for i, when in enumerate(TIMES):
        make_state(base / "src", i)
        kind = "full" if i % 2 == 0 else "incremental"
        ng.ok(kind, NE, "--current-time", str(when), *t.argv(base / "src"))
    assert t.remote() == ALL
    return base


@pytest.fixture
def target(template: Path, tmp_path: Path, ng: NgRunner) -> Target:
    for part in ("backend", "archive"):
        shutil.copytree(template / part, tmp_path / part)
    return Target(ng, tmp_path)


def test_template_holds_three_chains(target: Target) -> None:
    out = target.ok("collection-status").stdout
    assert "Found 2 secondary backup chain(s)." in out
    assert "No orphaned or incomplete backup sets found." in out
    assert target.cached() == metadata(ALL)


# -- remove-older-than ---------------------------------------------------------------------------


def test_remove_older_than_without_force_only_lists(target: Target) -> None:
    result = target.ok("remove-older-than", str(T4))
    assert (
        "Found old backup chain(s) at the following time:\n"
        f"{asctime(T1)}\n{asctime(T3)}\n"
        "Rerun command with --force option to actually delete.\n"
    ) in result.stdout
    assert target.remote() == ALL and target.cached() == metadata(ALL)


def test_remove_older_than_force_deletes_old_chains_remote_and_local(target: Target) -> None:
    result = target.ok("remove-older-than", w3(T4), "--force")  # a W3C time this time
    assert f"Deleting backup chain(s) at time:\n{asctime(T1)}\n{asctime(T3)}\n" in result.stdout
    assert f"Deleting complete backup chain {asctime(T3)}" in result.stdout
    assert result.stderr == ""
    assert target.remote() == sorted(chain_files(2))
    assert target.cached() == metadata(chain_files(2))
    status = target.ok("collection-status").stdout
    assert "Found 0 secondary backup chain(s)." in status
    assert "No orphaned or incomplete backup sets found." in status
    assert target.restore() == "state 5\n"
    assert target.restore(T4) == "state 4\n"


def test_remove_older_than_keeps_sets_a_newer_set_needs(target: Target) -> None:
    # T3 falls inside the second chain: only the first goes; the full of T2 stays for T3.
    result = target.ok("remove-older-than", str(T3), "--force")
    assert (
        f"There are backup set(s) at time(s):\n{asctime(T2)}\n"
        "Which can't be deleted because newer sets depend on them."
    ) in result.stderr
    assert target.remote() == expect(chain_files(1), chain_files(2))
    assert target.cached() == metadata(expect(chain_files(1), chain_files(2)))
    assert target.restore(T2) == "state 2\n"
    assert target.restore(T3) == "state 3\n"


def test_current_chain_is_never_deleted(target: Target) -> None:
    result = target.ok("remove-older-than", "now", "--force")
    assert "Current active backup chain is older than specified time." in result.stderr
    assert target.remote() == sorted(chain_files(2))
    assert target.restore() == "state 5\n"
    again = target.ok("remove-older-than", "now", "--force")
    assert "No old backup sets found, nothing deleted." in again.stdout
    assert target.remote() == sorted(chain_files(2))


def test_nothing_older_deletes_nothing(target: Target) -> None:
    result = target.ok("remove-older-than", str(T0), "--force")
    assert "No old backup sets found, nothing deleted." in result.stdout
    assert target.remote() == ALL and target.cached() == metadata(ALL)


# -- remove-all-but-n-full, remove-all-inc-of-but-n-full ---------------------------------------


@pytest.mark.parametrize(
    ("n", "kept_chains"), [(1, [2]), (2, [1, 2]), (3, [0, 1, 2]), (7, [0, 1, 2])]
)
def test_remove_all_but_n_full(target: Target, n: int, kept_chains: list[int]) -> None:
    result = target.ok("remove-all-but-n-full", str(n), "--force")
    kept = expect(*(chain_files(i) for i in kept_chains))
    assert target.remote() == kept
    assert target.cached() == metadata(kept)
    if len(kept_chains) == 3:
        assert "No old backup sets found, nothing deleted." in result.stdout
    assert target.restore() == "state 5\n"
    assert target.restore(TIMES[2 * kept_chains[0]]) == f"state {2 * kept_chains[0]}\n"


def test_remove_all_inc_of_but_n_full_keeps_the_fulls(target: Target) -> None:
    listed = target.ok("remove-all-inc-of-but-n-full", "1")
    assert f"{asctime(T1)}\n{asctime(T3)}\nRerun command with --force" in listed.stdout
    assert target.remote() == ALL
    result = target.ok("remove-all-inc-of-but-n-full", "1", "--force")
    assert f"Deleting any incremental backup chain rooted at {asctime(T0)}" in result.stdout
    kept = expect(full_files(T0), full_files(T2), chain_files(2))
    assert target.remote() == kept
    assert target.cached() == metadata(kept)
    assert target.restore(T1) == "state 0\n"  # the incremental of T1 is gone
    assert target.restore(T2) == "state 2\n"
    assert target.restore() == "state 5\n"
    again = target.ok("remove-all-inc-of-but-n-full", "1", "--force")
    assert "No old backup sets found, nothing deleted." in again.stdout


@pytest.mark.parametrize(
    ("alias", "arg", "kept_chains"),
    [("ro", str(T2), [1, 2]), ("ra", "1", [2]), ("ri", "2", None)],
)
def test_aliases(target: Target, alias: str, arg: str, kept_chains: list[int] | None) -> None:
    target.ok(alias, arg, "--force")
    if kept_chains is None:  # ri 2: the incrementals of the chain of T0 go
        assert target.remote() == expect(full_files(T0), chain_files(1), chain_files(2))
    else:
        assert target.remote() == expect(*(chain_files(i) for i in kept_chains))


# -- --dry-run ---------------------------------------------------------------------------------


def snapshot(target: Target) -> dict[str, tuple[int, int]]:
    files = {}
    for folder in (target.backend, target.cache):
        for name in os.listdir(folder):
            st = os.stat(folder / name)
            files[f"{folder.name}/{name}"] = (st.st_size, st.st_mtime_ns)
    return files


@pytest.mark.parametrize(
    "command",
    [
        ("remove-older-than", str(T4)),
        ("remove-all-but-n-full", "1"),
        ("remove-all-inc-of-but-n-full", "1"),
        ("cleanup",),
    ],
    ids=lambda c: c[0],
)
def test_dry_run_deletes_nothing(target: Target, command: tuple[str, ...]) -> None:
    # Something for cleanup too: the incremental of T3 loses its manifest.
    target.drop(inc_files(T2, T3)[0])
    before = snapshot(target)
    result = target.ok(*command, "--force", "--dry-run")
    assert "Dry run: would delete duplicity-" in result.stdout, result.stdout
    assert f"Dry run: would delete {target.cache}/duplicity-" in result.stdout
    assert snapshot(target) == before


def test_dry_run_of_the_unfinished_last_set_plans_as_if_it_were_gone(target: Target) -> None:
    # The full of T4 was interrupted after its volume: only the cache's checkpoint (.part)
    # files say so. With --force it goes first, so the newest full left is the one of T2
    # and only the chain of T0 is old; --dry-run must plan the same, without deleting.
    target.drop(*inc_files(T4, T5), full_files(T4)[0], full_files(T4)[2])
    s = stamp(T4)
    (target.cache / f"duplicity-full.{s}.manifest").write_bytes(b"")
    (target.cache / f"duplicity-full.{s}.manifest").rename(
        target.cache / f"duplicity-full.{s}.manifest.part"
    )
    (target.cache / f"duplicity-full-signatures.{s}.sigtar.part").write_bytes(b"")
    before = snapshot(target)
    dry = target.ok("remove-all-but-n-full", "1", "--force", "--dry-run")
    assert snapshot(target) == before
    plan = (
        f"Deleting the unfinished full backup set of {asctime(T4)} first\n"
        f"Dry run: would delete {full_files(T4)[1]}\n"
    )
    assert plan in dry.stdout
    old = f"Deleting backup chain(s) at time:\n{asctime(T1)}\nDeleting complete backup chain"
    assert old in dry.stdout
    result = target.ok("remove-all-but-n-full", "1", "--force")
    assert plan.replace(f"Dry run: would delete {full_files(T4)[1]}\n", "") in result.stdout
    assert old in result.stdout
    assert target.remote() == sorted(chain_files(1))
    assert target.cached() == metadata(chain_files(1))


# -- the unfinished last set -------------------------------------------------------------------


def test_unfinished_last_set_is_deleted_first_with_force(target: Target) -> None:
    # A backup stopped after storing the volume and signatures of T5, before its manifest.
    target.drop(inc_files(T4, T5)[0])
    listed = target.ok("remove-older-than", str(T2))
    assert "did not finish; --force deletes it first" in listed.stdout
    assert target.remote() == [n for n in ALL if n != inc_files(T4, T5)[0]]
    result = target.ok("remove-older-than", str(T2), "--force")
    assert f"Deleting the unfinished incremental backup set of {asctime(T5)} first" in result.stdout
    assert target.remote() == expect(chain_files(1), full_files(T4))
    assert target.cached() == metadata(expect(chain_files(1), full_files(T4)))
    assert target.restore() == "state 4\n"


# -- cleanup -----------------------------------------------------------------------------------


def test_cleanup_with_nothing_to_do(target: Target) -> None:
    result = target.ok("cleanup")
    assert "No extraneous files found, nothing deleted in cleanup." in result.stderr
    assert target.remote() == ALL


def test_cleanup_deletes_incomplete_and_orphaned_sets(target: Target) -> None:
    # The full of T2 loses its manifest: it is incomplete and the incremental of T3 orphaned.
    target.drop(full_files(T2)[0])
    status = target.ok("collection-status").stdout
    assert "Also found 1 backup set(s) not part of any chain," in status
    assert "and 1 incomplete backup set(s)." in status
    doomed = expect(full_files(T2)[1:], inc_files(T2, T3))
    listed = target.ok("cleanup")
    assert listed.stdout.startswith("Found the following file(s) to delete:\n")
    assert "Run duplicity-ng again with the --force option to actually delete." in listed.stdout
    shown = listed.stdout.splitlines()[1:-1]
    assert sorted(n for n in shown if "/" not in n) == doomed
    assert sorted(Path(n).name for n in shown if "/" in n) == metadata(doomed)
    assert target.remote() == [n for n in ALL if n != full_files(T2)[0]]

    result = target.ok("cleanup", "--force")
    assert "Deleting these file(s) from backend:" in result.stdout
    assert target.remote() == expect(chain_files(0), chain_files(2))
    assert target.cached() == metadata(expect(chain_files(0), chain_files(2)))
    status = target.ok("collection-status").stdout
    assert "No orphaned or incomplete backup sets found." in status
    assert target.restore(T1) == "state 1\n"
    assert target.restore() == "state 5\n"


def test_cleanup_after_a_backup_stopped_before_its_manifest(target: Target, tmp_path: Path) -> None:
    # Volume and signatures of T5 stored, the manifest never: the signature chain now runs
    # past the backup chain, so an incremental finds no chain to continue.
    target.drop(inc_files(T4, T5)[0])
    assert "No backup chains with active signatures found" in target.ok("collection-status").stdout
    target.ok("cleanup", "--force")
    assert target.remote() == expect(chain_files(0), chain_files(1), full_files(T4))
    assert target.cached() == metadata(target.remote())
    # The chain can be continued again.
    src = tmp_path / "src"
    for i in range(5):
        make_state(src, i)
    target.ok("incremental", NE, "--allow-source-mismatch", "--current-time", str(T5 + 60), src)
    assert f"duplicity-inc.{stamp(T4)}.to.{stamp(T5 + 60)}.manifest" in target.remote()


def test_cleanup_deletes_a_damaged_last_set_and_keeps_one_others_build_on(
    target: Target,
) -> None:
    target.drop(inc_files(T4, T5)[1])  # the only volume of the last incremental
    target.drop(full_files(T2)[1])  # the volume of a full an incremental builds on
    result = target.ok("cleanup", "--force")
    assert (
        f"The full backup set of {asctime(T2)} is missing volume(s) 1; it is kept" in result.stderr
    )
    kept = expect(chain_files(0), full_files(T2), inc_files(T2, T3), full_files(T4))
    kept.remove(full_files(T2)[1])
    assert target.remote() == kept
    assert target.cached() == metadata(kept)
    assert target.restore() == "state 4\n"


# -- encrypted backups ---------------------------------------------------------------------------


@pytest.fixture
def gpg_home() -> Iterator[GpgHome]:
    home = GpgHome.create()
    yield home
    home.remove()


def test_encrypted_chains_are_removed_on_another_machine_without_the_passphrase(
    ng: NgRunner, tmp_path: Path, gpg_home: GpgHome
) -> None:
    src, backend = tmp_path / "src", tmp_path / "backend"
    secret = {**gpg_home.env, "PASSPHRASE": "remove me not"}
    for i in range(3):
        make_state(src, i)
        ng.ok("full", "--current-time", str(TIMES[i]), src, url(backend), env=secret)
    # A machine with neither the cache nor the passphrase: names are all remove-* needs.
    other = ("--archive-dir", tmp_path / "other-machine")
    ng.ok("remove-all-but-n-full", "1", "--force", *other, url(backend), env=gpg_home.env)
    s = stamp(T2)
    kept = [
        f"duplicity-full-signatures.{s}.sigtar.gpg",
        f"duplicity-full.{s}.manifest.gpg",
        f"duplicity-full.{s}.vol1.difftar.gpg",
    ]
    assert backend_names(backend) == kept
    # cleanup cannot read the manifests there: it says so once and deletes nothing.
    result = ng.ok("cleanup", "--force", *other, url(backend), env=gpg_home.env)
    warnings = result.stderr.splitlines()
    assert len(warnings) == 2, result.stderr
    assert warnings[0].startswith("Cannot check the sets for missing volumes:")
    assert "PASSPHRASE" in warnings[0]
    assert warnings[1] == "No extraneous files found, nothing deleted in cleanup."
    assert backend_names(backend) == kept
    dest = tmp_path / "restored"
    ng.ok("restore", *other, url(backend), dest, env=secret)
    assert (dest / "state.txt").read_text() == "state 2\n"


# -- bad arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("remove-older-than", "last tuesday"), 'Bad time string "last tuesday"'),
        (("remove-older-than", "2023-13-45"), "Bad time string"),
        (("remove-all-but-n-full", "0"), "number of full backups to keep (1 or more), got '0'"),
        (("remove-all-but-n-full", "-1"), "got '-1'"),
        (("remove-all-inc-of-but-n-full", "two"), "got 'two'"),
        (("ra", "1.5"), "got '1.5'"),
        (("remove-older-than",), "'remove-older-than' takes 2 argument(s), got 1"),
        (("cleanup", "extra"), "'cleanup' takes 1 argument(s), got 2"),
    ],
)
def test_bad_arguments(ng: NgRunner, tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    result = ng(*args, url(tmp_path / "backend"))
    one_error_line(result, 2, needle)
    assert not (tmp_path / "backend").exists()


def test_url_must_come_after_the_time(ng: NgRunner, tmp_path: Path) -> None:
    one_error_line(ng("remove-older-than", "1D", str(tmp_path)), 2, "is not a backend URL")
    one_error_line(
        ng("remove-older-than", url(tmp_path), "1D"), 2, f'Bad time string "{url(tmp_path)}"'
    )


def test_usage_names_the_commands(ng: NgRunner) -> None:
    result = ng("--help")
    assert "remove-older-than TIME" in result.stdout and "cleanup" in result.stdout


# -- a deletion that fails halfway -------------------------------------------------------------


def run_with_faults(
    faults: list[Fault],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> subprocess.CompletedProcess[str]:
    """cli.main in-process, its backend opened with a fault injector under the wrappers."""
    from duplicity_ng.cli import context
    from duplicity_ng.cli import main as cli_main

    def open_with_faults(address: str, options: BackendOptions | None = None, **kwargs):  # noqa: ANN003, ANN202
        options = dataclasses.replace(options or BackendOptions(), retry_delay=0.01)
        stack, _ = inject(open_raw_backend(address, options), faults, options, kwargs.get("warn"))
        return stack

    monkeypatch.setattr(context, "open_backend", open_with_faults)
    code = cli_main.main(argv)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out.out, out.err)


def test_deletion_failing_halfway_stops_with_one_line_and_loses_nothing(
    target: Target, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Deleting a volume is refused: the first set (the incremental of T3, newest first) has
    # lost its manifest by then, nothing else has been touched.
    denied = Fault("delete", "denied", times=-1, match="difftar")
    argv = target.argv("remove-older-than", str(T4), "--force")
    result = run_with_faults([denied], monkeypatch, capsys, argv)
    line = one_error_line(result, 51, "Deleting the incremental backup set of", asctime(T3))
    assert "run the same command again, then `cleanup --force`" in line
    assert target.remote() == [n for n in ALL if n != inc_files(T2, T3)[0]]
    # What is left is consistent: the half-deleted set is incomplete, the rest restores.
    status = target.ok("collection-status").stdout
    assert "and 1 incomplete backup set(s)." in status
    assert target.restore(T1) == "state 1\n"
    assert target.restore(T3) == "state 2\n"  # the incremental of T3 is gone, its full is not
    assert target.restore() == "state 5\n"
    # Running it again, then cleanup, finishes the job.
    target.ok("remove-older-than", str(T4), "--force")
    assert target.remote() == expect(chain_files(2), inc_files(T2, T3)[1:2])
    target.ok("cleanup", "--force")
    assert target.remote() == sorted(chain_files(2))
    assert target.cached() == metadata(chain_files(2))


# -- real duplicity reads what is left ---------------------------------------------------------


def test_duplicity_321_agrees_after_remove_all_but_one_full(
    target: Target, template: Path, tmp_path: Path, dup321: DuplicityPeer
) -> None:
    target.ok("remove-all-but-n-full", "1", "--force")
    status = dup321.ok("collection-status", target.url, archive_dir=tmp_path / "dup-status").stdout
    assert "Found 0 secondary backup chain(s)." in status
    assert f"Chain start time: {asctime(T4)}" in status
    assert f"Chain end time: {asctime(T5)}" in status
    assert "Number of contained backup sets: 2" in status
    assert "No orphaned or incomplete backup sets found." in status
    for when, state in ((T5, 5), (T4, 4)):
        dest = tmp_path / f"dup-restored-{when}"
        dup321.ok(
            "restore", NE, "-t", str(when), target.url, dest, archive_dir=tmp_path / f"dc-{when}"
        )
        assert (dest / "state.txt").read_text() == f"state {state}\n"
    # duplicity itself, on a copy of the same three chains, leaves the same files.
    theirs = tmp_path / "theirs"
    shutil.copytree(template / "backend", theirs)
    dup321.ok("remove-all-but-n-full", "1", "--force", url(theirs), archive_dir=tmp_path / "dup-rm")
    assert backend_names(theirs) == target.remote()
