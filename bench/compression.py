"""The compression trade-off: speed and ratio of each deflate level, as duplicity-ng runs it.

Deflates the first --mib MiB of a file in 256 KiB blocks primed with the previous block's
tail (gzipstream's layout), on one thread, with ISA-L (levels 1-3, what duplicity-ng uses
there) and zlib (every level; gpg and duplicity use zlib 6), then inflates the result.

    .venv/bin/python bench/compression.py [FILE] [--mib 200]

FILE defaults to the dump of the benchmark dataset (bench/.work/data/dump-seed1-x1).
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from pathlib import Path

from isal import isal_zlib

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from duplicity_ng.gzipstream import BLOCK_SIZE, DICT_SIZE  # noqa: E402

DEFAULT_FILE = Path(__file__).parent / ".work/data/dump-seed1-x1/base/dump.sql"


def deflate(module, level: int, blocks: list[bytes]) -> tuple[bytes, float]:
    start = time.perf_counter()
    out = []
    dictionary = b""
    for block in blocks:
        args = {"zdict": dictionary} if dictionary else {}
        compressor = module.compressobj(level, module.DEFLATED, -15, **args)
        out.append(compressor.compress(block) + compressor.flush(zlib.Z_SYNC_FLUSH))
        dictionary = block[-DICT_SIZE:]
    return b"".join(out), time.perf_counter() - start


def inflate(module, stream: bytes) -> float:
    start = time.perf_counter()
    module.decompressobj(-15).decompress(stream)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--mib", type=int, default=200)
    args = parser.parse_args()
    if not args.file.is_file():
        sys.exit(f"{args.file}: no such file; run bench/run.py once, or name a file")
    with open(args.file, "rb") as f:
        data = f.read(args.mib << 20)
    blocks = [data[i : i + BLOCK_SIZE] for i in range(0, len(data), BLOCK_SIZE)]
    mb = len(data) / 1e6
    print(f"{args.file.name}: {mb:.0f} MB, one thread")
    print("| deflate | level | deflate MB/s | ratio | inflate MB/s |")
    print("|---|---|---|---|---|")
    cases = [(isal_zlib, "ISA-L", lv) for lv in (1, 2, 3)]
    cases += [(zlib, "zlib", lv) for lv in (1, 2, 3, 6, 9)]
    for module, name, level in cases:
        stream, seconds = deflate(module, level, blocks)
        # Inflate with the library duplicity-ng would use for it: ISA-L reads both.
        inflated = inflate(isal_zlib, stream)
        print(
            f"| {name} | {level} | {mb / seconds:.0f} | {len(stream) / len(data):.3f} "
            f"| {mb / inflated:.0f} (zlib: {mb / inflate(zlib, stream):.0f}) |"
        )


if __name__ == "__main__":
    main()
