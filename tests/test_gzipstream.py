"""The parallel gzip writer: one valid gzip member whatever the data and the block layout."""

from __future__ import annotations

import gzip
import io
import random
import subprocess
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from duplicity_ng.container import StoredFileWriter
from duplicity_ng.deflate import INFLATE_ERRORS
from duplicity_ng.gzipstream import BLOCK_SIZE, GunzipReader, ParallelGzipWriter


def _text(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    words = [b"alpha", b"beta", b"gamma", b"delta", b"INSERT INTO t VALUES", b"(1, 'x');\n"]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) + b" "
    return bytes(out[:size])


def _mixed(seed: int) -> bytes:
    rng = random.Random(seed)
    parts = []
    for _ in range(12):
        size = rng.choice([0, 1, 511, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 300_000])
        parts.append(rng.randbytes(size) if rng.random() < 0.5 else _text(size, rng.random()))
    return b"".join(parts)


def _gzip(data: bytes, pool: ThreadPoolExecutor | None, piece: int) -> bytes:
    out = io.BytesIO()
    writer = ParallelGzipWriter(out, 6, pool)
    for i in range(0, len(data), piece):
        writer.write(data[i : i + piece])
    writer.close()
    return out.getvalue()


@pytest.mark.parametrize("piece", [1, 4096, 65536, 1 << 20])
@pytest.mark.parametrize("threads", [0, 2])
def test_round_trip_is_one_gzip_member(piece: int, threads: int) -> None:
    data = _mixed(piece + threads)[: 200_000 if piece == 1 else None]
    pool = ThreadPoolExecutor(threads) if threads else None
    try:
        stored = _gzip(data, pool, piece)
    finally:
        if pool is not None:
            pool.shutdown()
    assert gzip.decompress(stored) == data
    reader = zlib.decompressobj(31)  # a single member: nothing may follow its trailer
    assert reader.decompress(stored) == data and reader.eof and reader.unused_data == b""


def test_empty_stream() -> None:
    stored = _gzip(b"", None, 1)
    assert gzip.decompress(stored) == b""
    assert stored[:4] == b"\x1f\x8b\x08\x00" and stored[9] == 255  # no name, OS unknown


def test_random_data_is_stored_and_text_deflated() -> None:
    noise = random.Random(1).randbytes(4 * BLOCK_SIZE)
    assert len(_gzip(noise, None, 1 << 20)) < len(noise) * 1.001
    text = _text(4 * BLOCK_SIZE, 2)
    assert len(_gzip(text, None, 1 << 20)) < len(text) / 4


def test_ratio_matches_one_long_stream() -> None:
    """Blocks are primed with the previous block's tail: no ratio lost at the boundaries."""
    text = _text(8 * BLOCK_SIZE, 3)
    single = len(gzip.compress(text, 6))
    assert len(_gzip(text, None, 1 << 20)) < single * 1.01


def test_system_gzip_and_stored_size(tmp_path: Path) -> None:
    path = tmp_path / "vol.difftar.gz"
    data = _mixed(7)
    with ThreadPoolExecutor(2) as pool:
        writer = StoredFileWriter(path, compress=True, pool=pool)
        for i in range(0, len(data), 65536):
            writer.write(data[i : i + 65536])
            assert writer.stored_size >= writer.settled_size()
        sha1 = writer.close()
    assert writer.stored_size == path.stat().st_size
    assert subprocess.run(["gzip", "-t", str(path)], capture_output=True).returncode == 0
    assert gzip.decompress(path.read_bytes()) == data
    import hashlib

    assert sha1 == hashlib.sha1(path.read_bytes()).hexdigest()


# -- reading ----------------------------------------------------------------------------------


def _read_all(path: Path, piece: int) -> bytes:
    out = []
    with GunzipReader(path) as reader:
        while data := reader.read(piece):
            out.append(data)
    return b"".join(out)


@pytest.mark.parametrize("piece", [1, 512, 65536, 10 << 20])
def test_reader_round_trip_with_members_concatenated(tmp_path: Path, piece: int) -> None:
    data = _mixed(11)[: 300_000 if piece == 1 else None]
    path = tmp_path / "f.gz"
    half = len(data) // 2
    path.write_bytes(_gzip(data[:half], None, 65536) + gzip.compress(data[half:]))
    assert _read_all(path, piece) == data


def test_reader_bounds_what_one_piece_expands_to(tmp_path: Path) -> None:
    path = tmp_path / "zeros.gz"
    path.write_bytes(gzip.compress(bytes(64 << 20)))  # 64 MiB of zeros in 64 KiB
    with GunzipReader(path) as reader:
        first = reader.read(1 << 30)
    assert first == bytes(64 << 20)  # one read() gathers pieces of at most PIECE bytes each


def test_reader_errors_reach_the_reader(tmp_path: Path) -> None:
    stored = gzip.compress(_text(500_000, 5))
    truncated, corrupt = tmp_path / "t.gz", tmp_path / "c.gz"
    truncated.write_bytes(stored[: len(stored) // 2])
    corrupt.write_bytes(stored[:20] + bytes(200) + stored[220:])
    with pytest.raises(EOFError):
        _read_all(truncated, 65536)
    with pytest.raises(INFLATE_ERRORS):
        _read_all(corrupt, 65536)
    (tmp_path / "empty.gz").write_bytes(b"")
    assert _read_all(tmp_path / "empty.gz", 10) == b""


def test_reader_closed_early_stops_its_thread(tmp_path: Path) -> None:
    path = tmp_path / "big.gz"
    path.write_bytes(gzip.compress(_text(8 * GunzipReader.PIECE, 6), 1))
    reader = GunzipReader(path)
    assert len(reader.read(10)) == 10
    reader.close()  # the thread is blocked on a full queue: close must still return
    assert not reader._thread.is_alive()
