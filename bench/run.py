#!/usr/bin/env python3
"""Benchmark duplicity-ng against duplicity 3.2.1 on the datasets of generate.py.

For each dataset (tree, dump) and mode (plain = --no-encryption, gpg = symmetric with
PASSPHRASE), each tool runs --repeat times, the tools alternating (ng, dup, then dup, ng...):
full backup of the base version, incremental of the mutated version (the "day of changes",
pre-generated once so both tools see identical data), restore of the latest state (checked
exact against the source: content, mode, mtime) and verify --compare-data. Every command is
measured on its own: wall time, CPU (user+sys of it and its waited-for children, from
os.wait4), peak RSS (largest single process in its tree) and bytes added to the backend
directory. Prints a table of medians with ng/dup ratios and writes JSON to the work dir.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STEPS = ("full", "incremental", "restore", "verify")
MODES = ("plain", "gpg")
PEER_VERSION = "3.2.1"
PASSPHRASE = "duplicity-ng benchmark passphrase"
MIB = 1 << 20


# --------------------------------------------------------------------------------------------
# Measuring one command


@dataclass
class Measurement:
    argv: list[str]
    exit_code: int
    wall: float  # seconds
    user: float  # CPU seconds of the command and every child it waited for
    sys: float
    maxrss_kib: int  # largest resident set of any single process in the command's tree
    written: int  # bytes the backend directory grew by
    archive_bytes: int  # size of the private archive dir (cache) afterwards
    log: str

    @property
    def cpu(self) -> float:
        return self.user + self.sys


def dir_bytes(path: Path) -> int:
    """Total size of the regular files under path (0 if it does not exist)."""
    total = 0
    stack = [path]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
    return total


# Runs one command and reports its rusage. The command is spawned from this small process, not
# from the harness: on Linux a process's ru_maxrss starts at the RSS of the process that
# forked it (exec keeps the maximum), so spawning from the harness, whose pools and buffers
# take tens of MiB, would hide the tools' own peaks. The floor here is about 8 MiB.
_MEASURE = """
import os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
try:
    pid = os.posix_spawnp(argv[0], argv, os.environ)
except OSError as exc:
    sys.stderr.write(f"cannot run {argv[0]}: {exc}\\n")
    code, usage = 127, None
else:
    _, status, usage = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status)
wall = time.perf_counter() - start
import json
fields = ("ru_utime", "ru_stime", "ru_maxrss")
result = {"exit": code, "wall": wall} | {k: getattr(usage, k, 0) for k in fields}
with open(out, "w") as f:
    json.dump(result, f)
"""


def run_measured(
    argv: list[str], env: dict[str, str], log_path: Path, backend: Path, archive: Path
) -> Measurement:
    """Run argv to completion and measure it alone.

    wait4 on the command's pid gives its own rusage, which on Linux includes every
    descendant it reaped (gpg, ...) and, for ru_maxrss, the largest of them: the
    per-command figures that RUSAGE_CHILDREN deltas cannot give for memory.
    """
    before = dir_bytes(backend)
    result_path = log_path.with_suffix(".rusage.json")
    result_path.unlink(missing_ok=True)
    with open(log_path, "wb") as log:
        log.write(f"$ {shlex.join(argv)}\n".encode())
        log.flush()
        wrapper = [sys.executable, "-I", "-S", "-c", _MEASURE, str(result_path), *argv]
        subprocess.run(wrapper, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
    try:
        r = json.loads(result_path.read_text())
    except (OSError, ValueError):
        r = {"exit": -1, "wall": 0.0, "ru_utime": 0.0, "ru_stime": 0.0, "ru_maxrss": 0}
    return Measurement(
        argv=argv,
        exit_code=r["exit"],
        wall=r["wall"],
        user=r["ru_utime"],
        sys=r["ru_stime"],
        maxrss_kib=r["ru_maxrss"],
        written=dir_bytes(backend) - before,
        archive_bytes=dir_bytes(archive),
        log=str(log_path),
    )


def log_tail(path: str, lines: int = 15) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    | " + line for line in text[-lines:])


# --------------------------------------------------------------------------------------------
# Checking a restore


def _same_content(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(MIB), fb.read(MIB)
            if ca != cb:
                return False
            if not ca:
                return True


def compare_trees(expected: Path, actual: Path, limit: int = 20) -> list[str]:
    """Differences between two trees in names, types, modes, integer mtimes and content."""
    diffs: list[str] = []
    stack = [""]
    while stack and len(diffs) < limit:
        rel = stack.pop()
        shown = rel or "."
        try:
            es = os.lstat(expected / rel)
        except FileNotFoundError:
            diffs.append(f"{shown}: not in source")
            continue
        try:
            st = os.lstat(actual / rel)
        except FileNotFoundError:
            diffs.append(f"{shown}: missing")
            continue
        if stat.S_IFMT(es.st_mode) != stat.S_IFMT(st.st_mode):
            diffs.append(f"{shown}: type {es.st_mode:o} != {st.st_mode:o}")
            continue
        if stat.S_IMODE(es.st_mode) != stat.S_IMODE(st.st_mode):
            diffs.append(f"{shown}: mode {es.st_mode:o} != {st.st_mode:o}")
        if not stat.S_ISLNK(es.st_mode) and es.st_mtime_ns // 10**9 != st.st_mtime_ns // 10**9:
            diffs.append(f"{shown}: mtime {es.st_mtime_ns // 10**9} != {st.st_mtime_ns // 10**9}")
        if stat.S_ISLNK(es.st_mode):
            if os.readlink(expected / rel) != os.readlink(actual / rel):
                diffs.append(f"{shown}: symlink target differs")
        elif stat.S_ISREG(es.st_mode):
            if es.st_size != st.st_size:
                diffs.append(f"{shown}: size {es.st_size} != {st.st_size}")
            elif not _same_content(expected / rel, actual / rel):
                diffs.append(f"{shown}: content differs")
        elif stat.S_ISDIR(es.st_mode):
            names_e, names_a = set(os.listdir(expected / rel)), set(os.listdir(actual / rel))
            diffs += [f"{os.path.join(rel, n)}: missing" for n in sorted(names_e - names_a)]
            diffs += [f"{os.path.join(rel, n)}: not in source" for n in sorted(names_a - names_e)]
            stack += [os.path.join(rel, n) for n in sorted(names_e & names_a, reverse=True)]
    return diffs[:limit]


# --------------------------------------------------------------------------------------------
# The tools


@dataclass(frozen=True)
class Tool:
    name: str  # "ng" or "dup"
    argv: list[str]


def peer_command(peers: Path) -> list[str]:
    """duplicity 3.2.1 in its own venv, installed there if missing."""
    venv = peers / f"duplicity-{PEER_VERSION}"
    exe = venv / "bin" / "duplicity"
    if not exe.exists():
        print(f"installing duplicity {PEER_VERSION} into {venv}", flush=True)
        python = shutil.which("python3") or sys.executable
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        # --no-deps: a plain install pulls every backend's dependencies and takes minutes;
        # the local file backend needs only fasteners (and the wheel brings its librsync).
        pip = [str(venv / "bin" / "pip"), "install", "-q", "--no-deps"]
        subprocess.run([*pip, f"duplicity=={PEER_VERSION}", "fasteners"], check=True)
    return [str(exe)]


def ng_command() -> list[str]:
    installed = REPO / ".venv" / "bin" / "duplicity-ng"
    if installed.exists():
        return [str(installed)]
    return [sys.executable, str(REPO / "bin" / "duplicity-ng")]


def tool_version(tool: Tool, env: dict[str, str]) -> str:
    try:
        out = subprocess.run(
            [*tool.argv, "--version"], env=env, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else f"unknown (exit {out.returncode})"


# --------------------------------------------------------------------------------------------
# One run: full, incremental, restore, verify of one dataset by one tool


@dataclass
class Run:
    dataset: str
    mode: str
    tool: str
    rep: int
    steps: dict[str, Measurement] = field(default_factory=dict)
    restore_diffs: list[str] | None = None  # None: not restored
    verify_exit: int | None = None
    error: str | None = None
    error_detail: str = ""

    def ok(self, step: str) -> bool:
        m = self.steps.get(step)
        return m is not None and m.exit_code == 0


@dataclass(frozen=True)
class Settings:
    runs_dir: Path  # one per invocation, so logs of earlier invocations stay as they were
    steps: tuple[str, ...]  # to run: the requested ones and every step before them
    env: dict[str, str]
    keep: bool


def step_argv(
    tool: Tool, step: str, mode: str, src: Path, url: str, restore: Path, archive: Path
) -> list[str]:
    common = ["--archive-dir", str(archive), "--name", "bench"]
    if mode == "plain":
        common.append("--no-encryption")
    # Restoring owners needs root; verify compares them, so both steps get the flag.
    owner = ["--no-restore-ownership"] if os.geteuid() != 0 else []
    if step in ("full", "incremental"):
        return [*tool.argv, step, *common, str(src), url]
    if step == "restore":
        return [*tool.argv, "restore", *common, *owner, url, str(restore)]
    return [*tool.argv, "verify", "--compare-data", *common, *owner, url, str(src)]


def run_one(ds: generate.Dataset, mode: str, tool: Tool, rep: int, settings: Settings) -> Run:
    run = Run(ds.name, mode, tool.name, rep)
    run_dir = settings.runs_dir / f"{ds.name}-{mode}-{tool.name}-{rep}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    target, archive, restore = run_dir / "target", run_dir / "archive", run_dir / "restore"
    target.mkdir()
    url = target.as_uri()
    full_ended = 0.0

    def step(name: str, src: Path) -> bool:
        nonlocal full_ended
        if name not in settings.steps:
            return False
        if name == "incremental":
            # Backup times are whole seconds: an incremental in the second of its full would
            # make the tool sleep (duplicity sleeps 2 s) inside the measured time.
            time.sleep(max(0.0, int(full_ended) + 1.05 - time.time()))
        argv = step_argv(tool, name, mode, src, url, restore, archive)
        # What earlier steps (or runs) left for the disk to write back is not this step's.
        os.sync()
        m = run_measured(argv, settings.env, run_dir / f"{name}.log", target, archive)
        if name == "full":
            full_ended = time.time()
        run.steps[name] = m
        if name == "verify":
            run.verify_exit = m.exit_code
        if m.exit_code != 0:
            run.error = f"{name} exited {m.exit_code}, log {m.log}"
            run.error_detail = log_tail(m.log)
        return m.exit_code == 0

    try:
        with ds.as_source(ds.base) as src:
            if not step("full", src):
                return run
        with ds.as_source(ds.mutated) as src:
            if not step("incremental", src):
                return run
            if step("restore", src):
                run.restore_diffs = compare_trees(src, restore)
                if run.restore_diffs:
                    run.error = "restore differs from source"
                    run.error_detail = "\n".join("    | " + d for d in run.restore_diffs)
            elif "restore" in run.steps:
                return run
            step("verify", src)
    finally:
        if not settings.keep:
            for d in (target, archive, restore):
                if d.exists():
                    shutil.rmtree(d)
            os.sync()
    return run


def describe(run: Run) -> str:
    parts = []
    for name, m in run.steps.items():
        text = f"{name} {m.wall:.2f}s"
        if m.exit_code != 0:
            text += f" (exit {m.exit_code})"
        elif name == "restore" and run.restore_diffs is not None:
            text += " (exact)" if not run.restore_diffs else " (DIFFERS)"
        parts.append(text)
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------
# Summary


METRICS = (
    ("wall s", lambda m: m.wall),
    ("CPU s", lambda m: m.cpu),
    ("peak RSS MiB", lambda m: m.maxrss_kib / 1024),
    ("written MiB", lambda m: m.written / MIB),
)


def summarize(runs: list[Run], steps: tuple[str, ...]) -> list[dict]:
    rows = []
    keys = dict.fromkeys((r.dataset, r.mode) for r in runs)
    for dataset, mode in keys:
        for step in steps:
            row: dict = {"dataset": dataset, "mode": mode, "step": step}
            for tool in ("ng", "dup"):
                done = [
                    r.steps[step]
                    for r in runs
                    if (r.dataset, r.mode, r.tool) == (dataset, mode, tool) and r.ok(step)
                ]
                row[tool] = {"n": len(done)} | {
                    label: median(get(m) for m in done) if done else None for label, get in METRICS
                }
            row["ratio"] = {
                label: row["ng"][label] / row["dup"][label]
                if row["ng"][label] is not None and row["dup"][label]
                else None
                for label, _ in METRICS
            }
            rows.append(row)
    return rows


def _num(value: float | None, width: int = 7) -> str:
    if value is None:
        return "-".rjust(width)
    if value >= 100:
        return f"{value:{width}.0f}"
    return f"{value:{width}.2f}"


def format_table(rows: list[dict]) -> str:
    label_w = max([len("dataset/mode/step")] + [len(_row_label(r)) for r in rows])
    head1 = " " * label_w + " |" + "|".join(f" {label:<22}" for label, _ in METRICS) + "|  runs"
    head2 = (
        "dataset/mode/step".ljust(label_w)
        + " |"
        + "|".join(f" {'ng':>7}{'dup':>7} {'ng/dup':>7}" for _ in METRICS)
        + "| ng/dup"
    )
    lines = [head1, head2, "-" * len(head2)]
    for r in rows:
        cells = [
            " " + _num(r["ng"][label]) + _num(r["dup"][label]) + " " + _num(r["ratio"][label])
            for label, _ in METRICS
        ]
        runs = f" {r['ng']['n']}/{r['dup']['n']}"
        lines.append(_row_label(r).ljust(label_w) + " |" + "|".join(cells) + "|" + runs)
    return "\n".join(lines)


def _row_label(row: dict) -> str:
    return f"{row['dataset']}/{row['mode']}/{row['step']}"


def compile_bytecode() -> None:
    """Both tools run from bytecode, as installed packages do: pip compiled the peer's, and
    the checkout's editable install gets its own here (PYTHONDONTWRITEBYTECODE, when set,
    would otherwise make every command compile the whole package first)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "compileall",
            "-q",
            str(REPO / "duplicity_ng"),
            str(REPO / "backends"),
        ],
        capture_output=True,
        check=False,
    )


def warm_up(tool: Tool, settings: Settings) -> None:
    """One unmeasured gpg backup and restore of a tiny tree, so that neither tool's first
    measured run pays for loading its code (and gpg's) from disk."""
    root = settings.runs_dir / f"warm-up-{tool.name}"
    src, target, archive = root / "src", root / "target", root / "archive"
    src.mkdir(parents=True)
    (src / "file").write_bytes(b"warm up\n" * 1000)
    with open(root / "warm-up.log", "wb") as log:
        for step in ("full", "restore"):
            argv = step_argv(tool, step, "gpg", src, target.as_uri(), root / "restore", archive)
            subprocess.run(argv, env=settings.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    for d in (src, target, archive, root / "restore"):
        shutil.rmtree(d, ignore_errors=True)


def prime_cache(ds: generate.Dataset) -> None:
    """Read both versions once, so the first run does not read from disk and the others
    from the page cache."""
    for version in (ds.base, ds.mutated):
        for parent, _, files in os.walk(version):
            for name in files:
                with open(os.path.join(parent, name), "rb") as f:
                    while f.read(4 * MIB):
                        pass


# --------------------------------------------------------------------------------------------
# Command line


def _choices(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    chosen = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [x for x in chosen if x not in allowed]
    if bad or not chosen:
        raise argparse.ArgumentTypeError(
            f"{what}: {', '.join(bad) or 'none given'} (choose from {', '.join(allowed)})"
        )
    return chosen


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=1.0, help="dataset size, 1.0 = full (default)")
    p.add_argument("--repeat", type=int, default=2, help="runs per tool and case (default 2)")
    p.add_argument(
        "--datasets",
        type=lambda s: _choices(s, generate.DATASETS, "datasets"),
        default=generate.DATASETS,
        help="comma-separated, from tree,dump (default both)",
    )
    p.add_argument(
        "--modes",
        type=lambda s: _choices(s, MODES, "modes"),
        default=MODES,
        help="comma-separated, from plain,gpg (default both)",
    )
    p.add_argument(
        "--steps",
        type=lambda s: _choices(s, STEPS, "steps"),
        default=STEPS,
        help="steps to report, from full,incremental,restore,verify (the steps before the "
        "last one given run anyway, unreported)",
    )
    p.add_argument("--ng-cmd", help="duplicity-ng command (default: the project's)")
    p.add_argument(
        "--dup-cmd", help=f"duplicity command (default: {PEER_VERSION}, installed in bench/.peers)"
    )
    p.add_argument("--workdir", type=Path, default=HERE / ".work")
    p.add_argument(
        "--clustered", action="store_true", help="dump rows change in runs instead of scattered"
    )
    p.add_argument("--seed", default="1", help="dataset seed (default 1)")
    p.add_argument("--keep", action="store_true", help="keep backends and restores of each run")
    args = p.parse_args(argv)
    if args.scale <= 0 or args.repeat < 1:
        p.error("--scale must be positive and --repeat at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    gnupg, tmp = workdir / "gnupg", workdir / "tmp"
    gnupg.mkdir(mode=0o700, exist_ok=True)
    tmp.mkdir(exist_ok=True)
    # A private gpg home and temp dir: the user's keyring and agent stay out of it, and both
    # tools put their temporary volumes on the same disk.
    env = dict(os.environ, PASSPHRASE=PASSPHRASE, GNUPGHOME=str(gnupg), TMPDIR=str(tmp))
    tools = {
        "ng": Tool("ng", shlex.split(args.ng_cmd) if args.ng_cmd else ng_command()),
        "dup": Tool(
            "dup", shlex.split(args.dup_cmd) if args.dup_cmd else peer_command(HERE / ".peers")
        ),
    }
    last = max(STEPS.index(s) for s in args.steps)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    settings = Settings(workdir / "runs" / stamp, STEPS[: last + 1], env, args.keep)
    out_path = workdir / f"results-{stamp}.json"
    meta = {
        "started": stamp,
        "scale": args.scale,
        "seed": args.seed,
        "repeat": args.repeat,
        "clustered": args.clustered,
        "steps": list(args.steps),
        "tools": {
            name: {"argv": t.argv, "version": tool_version(t, env)} for name, t in tools.items()
        },
        "host": {
            "machine": platform.machine(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
        },
    }
    for name, t in tools.items():
        print(f"{name}: {shlex.join(t.argv)}  ({meta['tools'][name]['version']})")

    datasets = {}
    for name in args.datasets:
        ds = generate.ensure_dataset(workdir, name, args.seed, args.scale, args.clustered)
        datasets[name] = ds
        print(f"dataset {name}: {ds.root}  {json.dumps(ds.stats)}", flush=True)

    runs: list[Run] = []
    try:
        # The agent and the keyring files are made up front, so the first run does not pay
        # for them (the agent stays up until the end).
        for cmd in (["gpgconf", "--launch", "gpg-agent"], ["gpg", "--batch", "--list-keys"]):
            argv = [cmd[0], "--homedir", str(gnupg), *cmd[1:]]
            subprocess.run(argv, capture_output=True, env=env, check=False)
        compile_bytecode()
        for tool in tools.values():
            warm_up(tool, settings)
        for name, ds in datasets.items():
            prime_cache(ds)
            for mode in args.modes:
                for rep in range(args.repeat):
                    order = ("ng", "dup") if rep % 2 == 0 else ("dup", "ng")
                    for tool_name in order:
                        print(f"[{name}/{mode}] {tool_name} #{rep + 1} ...", end=" ", flush=True)
                        run = run_one(ds, mode, tools[tool_name], rep, settings)
                        runs.append(run)
                        print(describe(run), flush=True)
                        if run.error:
                            print(f"  FAILED: {run.error}\n{run.error_detail}", flush=True)
                        _write_results(out_path, meta, datasets, runs, args.steps)
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(gnupg), "--kill", "gpg-agent"],
            capture_output=True,
            check=False,
        )

    print()
    print(format_table(summarize(runs, args.steps)))
    print(f"\nresults: {out_path}")
    failed = [r for r in runs if r.error]
    for r in failed:
        print(f"FAILED: {r.dataset}/{r.mode} {r.tool} #{r.rep + 1}: {r.error}")
    return 1 if failed else 0


def _write_results(
    path: Path,
    meta: dict,
    datasets: dict[str, generate.Dataset],
    runs: list[Run],
    steps: tuple[str, ...],
) -> None:
    def run_json(r: Run) -> dict:
        d = asdict(r)
        for name, m in r.steps.items():
            d["steps"][name]["cpu"] = m.cpu
        return d

    data = {
        "meta": meta,
        "datasets": {n: {"root": str(ds.root), "stats": ds.stats} for n, ds in datasets.items()},
        "summary": summarize(runs, steps),
        "runs": [run_json(r) for r in runs],
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
