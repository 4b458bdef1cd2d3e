#!/usr/bin/env python3
"""How fast gpg encrypts at each compression level, and whether a backup keeps both cores busy.

1. ``levels``: gpg --symmetric on three samples (a tar of the ``tree`` dataset: text, source
   and random files mixed; the ``dump`` dataset: SQL text; random bytes) at --compress-algo
   none and zlib levels 1, 3, 6 (6 is gpg's default). Reports the output/input ratio and the
   speed per CPU second of gpg (user+sys from its rusage), so that other load on the machine
   does not distort the numbers; wall-clock speed beside it.
2. ``pipeline``: a full symmetric backup of a dataset through bin/duplicity-ng, sampling every
   20 ms the scheduler statistics (/proc/PID/task/*/schedstat: time on a CPU and time waiting
   for one) of the duplicity-ng process and of every gpg child. "Wants a CPU" = running or
   runnable; when Python and gpg each want a CPU most of the wall time, the pipeline keeps
   two cores busy (a loaded machine shows up as run-queue wait, not as idle time).

Usage: bench/gpg_compression.py [--workdir bench/.work] [--scale 0.5] [levels] [pipeline]
Datasets come from generate.py (same workdir and seed).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MIB = 1 << 20
PASSPHRASE = "duplicity-ng benchmark passphrase"
LEVELS = {
    "none": ["--compress-algo", "none"],
    "zlib 1": ["--compress-level", "1"],
    "zlib 3": ["--compress-level", "3"],
    "zlib 6": ["--compress-level", "6"],
}


@contextmanager
def gnupg_home() -> Iterator[dict[str, str]]:
    home = tempfile.mkdtemp(prefix="ngbench-", dir="/tmp")
    Path(home, "gpg-agent.conf").write_text("allow-loopback-pinentry\n")
    try:
        yield {**os.environ, "GNUPGHOME": home}
    finally:
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"], check=False)
        shutil.rmtree(home, ignore_errors=True)


def make_samples(workdir: Path, scale: float, limit: int) -> dict[str, Path]:
    tree = generate.ensure_dataset(workdir, "tree", "1", scale, False)
    dump = generate.ensure_dataset(workdir, "dump", "1", scale, False)
    out = workdir / "gpg-samples"
    out.mkdir(parents=True, exist_ok=True)
    samples = {"tree (tar)": out / "tree.tar", "dump (SQL)": out / "dump.sql"}
    samples["random"] = out / "random.bin"
    if not samples["tree (tar)"].exists():
        with tarfile.open(samples["tree (tar)"], "w") as tar:
            tar.add(tree.base, arcname=".")
    if not samples["dump (SQL)"].exists():
        src = next(p for p in Path(dump.base).rglob("*") if p.is_file())
        with open(src, "rb") as f, open(samples["dump (SQL)"], "wb") as g:
            g.write(f.read(limit))
    if not samples["random"].exists():
        samples["random"].write_bytes(os.urandom(limit // 2))
    return samples


def measure_level(sample: Path, options: list[str], env: dict[str, str], limit: int):
    r, w = os.pipe()
    os.write(w, PASSPHRASE.encode() + b"\n")
    os.close(w)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(sample, "rb") as src:
        proc = subprocess.Popen(
            ["gpg", "--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase-fd",
             str(r), "--cipher-algo", "AES256", *options, "--symmetric"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            pass_fds=(r,), env=env,
        )  # fmt: skip
        os.close(r)
        size_in = size_out = 0

        def feed() -> None:
            nonlocal size_in
            assert proc.stdin is not None
            while size_in < limit and (data := src.read(MIB)):
                proc.stdin.write(data)
                size_in += len(data)
            proc.stdin.close()

        import threading

        feeder = threading.Thread(target=feed)
        feeder.start()
        assert proc.stdout is not None
        while data := proc.stdout.read(MIB):
            size_out += len(data)
        feeder.join()
        proc.wait()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return size_in, size_out, cpu, wall


def run_levels(samples: dict[str, Path], limit: int) -> None:
    print("gpg --symmetric, AES256 (speed in MiB per CPU second of gpg; wall in brackets)")
    print(f"{'sample':12} {'level':8} {'ratio':>7} {'MiB/cpu-s':>10} {'(wall MiB/s)':>13}")
    with gnupg_home() as env:
        for label, sample in samples.items():
            for level, options in LEVELS.items():
                size_in, size_out, cpu, wall = measure_level(sample, options, env, limit)
                print(
                    f"{label:12} {level:8} {size_out / size_in:7.3f} "
                    f"{size_in / MIB / cpu:10.1f} {size_in / MIB / wall:12.1f}"
                )


def random_tree(workdir: Path, size: int) -> Path:
    """Incompressible files (like photos or video): 20 files making up `size` bytes."""
    root = workdir / "gpg-samples" / "random-tree"
    if not root.exists():
        root.mkdir(parents=True)
        for n in range(20):
            (root / f"file{n:02}.bin").write_bytes(os.urandom(size // 20))
    return root


def _schedstat(pid: int) -> tuple[int, int]:
    """(ns on a CPU, ns waiting for one) summed over the process's threads; (0, 0) if gone."""
    run = wait = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                fields = f.read().split()
            run += int(fields[0])
            wait += int(fields[1])
    except (FileNotFoundError, ProcessLookupError, IndexError):
        pass
    return run, wait


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def run_pipeline(source: Path, gpg_options: str, env: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory(prefix="ngbench-") as tmp:
        argv = [sys.executable, str(REPO / "bin" / "duplicity-ng"), "full",
                "--archive-dir", f"{tmp}/cache", "--no-print-statistics", str(source),
                f"file://{tmp}/backend"]  # fmt: skip
        if gpg_options:
            argv[3:3] = ["--gpg-options", gpg_options]
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env={**env, "PASSPHRASE": PASSPHRASE},
                                stdout=subprocess.DEVNULL)  # fmt: skip
        gpg_last: dict[int, tuple[int, int]] = {}
        main_last = (0, 0)
        while proc.poll() is None:
            main_last = _schedstat(proc.pid) or main_last
            for child in _children(proc.pid):
                stat = _schedstat(child)
                if stat != (0, 0):
                    gpg_last[child] = stat
            time.sleep(0.02)
        wall = time.perf_counter() - start
        stored = sum(p.stat().st_size for p in Path(tmp, "backend").iterdir())
    gpg_run = sum(s[0] for s in gpg_last.values()) / 1e9
    gpg_wait = sum(s[1] for s in gpg_last.values()) / 1e9
    py_run, py_wait = main_last[0] / 1e9, main_last[1] / 1e9
    size = sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
    print(
        f"{gpg_options or '(default)':24} wall {wall:6.1f} s  {size / MIB / wall:6.1f} MiB/s  "
        f"stored {stored / size:.3f}  python: cpu {py_run:5.1f} s wants-cpu "
        f"{(py_run + py_wait) / wall:4.0%}  gpg: cpu {gpg_run:5.1f} s wants-cpu "
        f"{(gpg_run + gpg_wait) / wall:4.0%}  (samples {len(gpg_last)} gpg processes)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=HERE / ".work")
    parser.add_argument("--scale", type=float, default=0.5)
    parser.add_argument("--sample-mib", type=int, default=200)
    parser.add_argument("what", nargs="*", default=["levels", "pipeline"])
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    limit = args.sample_mib * MIB
    if "levels" in args.what:
        run_levels(make_samples(workdir, args.scale, limit), limit)
    if "pipeline" in args.what:
        print("full backup, symmetric, through bin/duplicity-ng")
        with gnupg_home() as env:
            sources = {
                name: Path(generate.ensure_dataset(workdir, name, "1", args.scale, False).base)
                for name in ("tree", "dump")
            }
            sources["random"] = random_tree(workdir, limit)
            for name, source in sources.items():
                print(f"dataset {name}: {source}")
                for options in ("", "-z 6", "--compress-algo none"):
                    run_pipeline(source, options, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
