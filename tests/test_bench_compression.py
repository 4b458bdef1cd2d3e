"""bench/compression.py runs from a checkout and reports every level."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_compression_table(tmp_path: Path) -> None:
    rng = random.Random(4)
    rows = (f"INSERT INTO t VALUES ({i}, '{rng.random()}');\n" for i in range(60_000))
    sample = tmp_path / "dump.sql"
    sample.write_text("".join(rows))
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench/compression.py"), str(sample), "--mib", "1"],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [
        line
        for line in run.stdout.splitlines()
        if line.startswith("| ISA") or line.startswith("| zlib")
    ]
    assert len(lines) == 8
    ratios = [float(line.split("|")[4]) for line in lines]
    assert all(0 < r < 0.6 for r in ratios)
    assert ratios[-1] < ratios[3]  # zlib 9 beats zlib 1
