"""Deltas of big files computed in segments on several threads: the joined parts must patch
the old file into the new one, and the joined signature must equal one job's signature."""

from __future__ import annotations

import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from rsync_util import apply_patch, make_sig

from duplicity_ng import rsync
from duplicity_ng.segments import (
    DeltaScanner,
    DeltaStats,
    SegmentedDelta,
    choose_block,
    segment_bounds,
)


def _versions(seed: int, size: int) -> tuple[bytes, bytes]:
    rng = random.Random(seed)
    old = bytearray(rng.randbytes(size))
    new = bytearray(old)
    for _ in range(40):  # scattered edits, inserts and deletes
        at = rng.randrange(len(new))
        kind = rng.randrange(3)
        if kind == 0:
            new[at : at + 100] = rng.randbytes(100)
        elif kind == 1:
            new[at:at] = rng.randbytes(rng.randrange(1, 5000))
        else:
            del new[at : at + rng.randrange(1, 5000)]
    return bytes(old), bytes(new)


@pytest.mark.parametrize("segment", [2048 * 7, 100_000, 1 << 20, 8 << 20])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_joined_parts_equal_one_job(tmp_path: Path, segment: int, workers: int) -> None:
    old, new = _versions(segment + workers, 3 << 20)
    params = rsync.SigParams(rsync.MAGIC_RK_BLAKE2, 2048, 32)
    path = tmp_path / "new"
    path.write_bytes(new)
    delta = bytearray()
    with open(path, "rb") as f, ThreadPoolExecutor(workers) as pool:
        job = SegmentedDelta(
            f.fileno(), len(new), params, make_sig(old, params), pool, workers, tmp_path,
            segment_size=segment,
        )  # fmt: skip
        result = job.run(delta.extend)
    assert result.size == len(new)
    assert result.params == params  # scattered edits: the fine blocks are kept
    assert result.signature.read() == make_sig(new, params)
    assert apply_patch(tmp_path, old, bytes(delta)) == new
    assert not [p for p in tmp_path.iterdir() if p.name not in ("new", "basis")]  # no spools


def test_empty_and_one_segment_files(tmp_path: Path) -> None:
    params = rsync.SigParams(rsync.MAGIC_RK_BLAKE2, 2048, 32)
    for new in (b"", b"short", os.urandom(5000)):
        path = tmp_path / "new"
        path.write_bytes(new)
        delta = bytearray()
        with open(path, "rb") as f, ThreadPoolExecutor(2) as pool:
            job = SegmentedDelta(
                f.fileno(), len(new), params, make_sig(b"old", params), pool, 2, tmp_path,
                segment_size=4096,
            )  # fmt: skip
            result = job.run(delta.extend)
        assert result.signature.read() == make_sig(new, result.params)
        assert apply_patch(tmp_path, b"old", bytes(delta)) == new


def test_file_that_shrank_after_its_size_was_taken(tmp_path: Path) -> None:
    """The stat said 1 MiB, the file now holds less: the delta and the signature both
    describe what was read, so the next incremental diffs against the stored bytes."""
    old, new = _versions(5, 1 << 20)
    params = rsync.SigParams(rsync.MAGIC_RK_BLAKE2, 2048, 32)
    path = tmp_path / "new"
    path.write_bytes(new[:300_000])
    delta = bytearray()
    with open(path, "rb") as f, ThreadPoolExecutor(2) as pool:
        job = SegmentedDelta(
            f.fileno(), len(new), params, make_sig(old, params), pool, 2, tmp_path,
            segment_size=2048 * 50,
        )  # fmt: skip
        result = job.run(delta.extend)
    assert result.size == 300_000
    assert apply_patch(tmp_path, old, bytes(delta)) == new[:300_000]
    assert result.signature.read() == make_sig(new[:300_000], result.params)


def test_segment_bounds_are_block_aligned() -> None:
    assert segment_bounds(0, 2048) == [0]
    assert segment_bounds(10_000, 2048, segment_size=5000) == [0, 4096, 8192]
    assert segment_bounds(10_000, 2048, segment_size=100) == [0, 2048, 4096, 6144, 8192]


def _delta(old: bytes, new: bytes, params: rsync.SigParams) -> bytes:
    with rsync.Signature.load(make_sig(old, params)) as loaded:
        job = rsync.DeltaJob(loaded)
        return job.feed(new) + job.finish()


def test_scanner_counts_changed_regions_and_literal_bytes() -> None:
    rng = random.Random(3)
    old = rng.randbytes(1 << 20)
    new = bytearray(old)
    for at in (100_000, 400_000, 900_000):
        new[at : at + 3000] = rng.randbytes(3000)
    scanner = DeltaScanner()
    delta = _delta(old, bytes(new), rsync.SigParams(rsync.MAGIC_RK_BLAKE2, 2048, 32))
    for i in range(0, len(delta), 777):  # commands split across pieces
        scanner.feed(delta[i : i + 777])
    assert scanner.stats.runs == 3
    assert 3 * 3000 <= scanner.stats.literal <= 3 * (3000 + 2 * 2048)


def test_choose_block_by_the_shape_of_the_change() -> None:
    size = 1 << 30
    scattered = DeltaStats(runs=100_000, literal=180 << 20)  # a row here, a row there
    clustered = DeltaStats(runs=500, literal=15 << 20)  # a few long runs of rows
    assert choose_block(scattered, 2048, size, [2048, 32768]) == 2048
    assert choose_block(clustered, 2048, size, [2048, 32768]) == 32768
    assert choose_block(DeltaStats(1, size), 2048, size, [2048, 32768]) == 32768  # rewritten


@pytest.mark.parametrize(("edits", "coarse"), [(2, True), (2000, False)])
def test_signature_block_follows_the_change(tmp_path: Path, edits: int, coarse: bool) -> None:
    rng = random.Random(edits)
    old = rng.randbytes(4 << 20)
    new = bytearray(old)
    for _ in range(edits):
        at = rng.randrange(len(new) - 20_000)
        span = 20_000 if edits < 10 else 8
        new[at : at + span] = rng.randbytes(span)
    fine = rsync.SigParams(rsync.MAGIC_RK_BLAKE2, 512, 32)
    path = tmp_path / "new"
    path.write_bytes(new)
    delta = bytearray()
    with open(path, "rb") as f, ThreadPoolExecutor(2) as pool:
        job = SegmentedDelta(
            f.fileno(), len(new), fine, make_sig(old, fine), pool, 2, tmp_path,
            segment_size=1 << 20,
        )  # fmt: skip
        result = job.run(delta.extend)
    assert (result.params.block_len > fine.block_len) is coarse
    assert result.signature.read() == make_sig(bytes(new), result.params)
    assert apply_patch(tmp_path, old, bytes(delta)) == new
