"""ISA-L and zlib behind one interface: standard deflate both ways, errors of either caught."""

from __future__ import annotations

import gzip
import random
import zlib
from pathlib import Path

import pytest

from duplicity_ng import deflate
from duplicity_ng.gzipstream import GunzipReader, ParallelGzipWriter


def _text(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    words = [b"INSERT INTO t VALUES", b"(1, 'x');\n", b"alpha", b"beta", b"42"]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) + b" "
    return bytes(out[:size])


def test_isal_is_installed_with_the_package() -> None:
    assert deflate.isal_zlib is not None
    assert type(deflate.compressobj(2, -15)).__module__ != type(zlib.compressobj()).__module__


@pytest.mark.parametrize("level", range(10))
def test_every_level_writes_standard_deflate(level: int) -> None:
    data = _text(600_000, level)
    compressor = deflate.compressobj(level, -15, zdict=b"INSERT INTO t VALUES" * 10)
    stream = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    reader = zlib.decompressobj(-15, zdict=b"INSERT INTO t VALUES" * 10)
    assert reader.decompress(stream) == data
    if level == 0:
        assert len(stream) > len(data)  # stored, not ISA-L's level 0 (which compresses)
    else:
        assert len(stream) < len(data) / 3


@pytest.mark.parametrize("piece", [1, 1000, 65536])
def test_inflating_with_a_cap_gets_everything(piece: int) -> None:
    """ISA-L may keep output inside when it fills the cap, with no input left over (the
    OpenPGP reader tests fail without the fix in pgpstream._Inflated)."""
    data = _text(3_000_000, 7) + bytes(2_000_000)
    stream = zlib.compress(data, 9)
    inflater = deflate.decompressobj(15)
    out, pending = [], stream
    while not inflater.eof:
        chunk = inflater.decompress(pending, piece if piece > 1 else 4096)
        pending = inflater.unconsumed_tail
        out.append(chunk)
    assert b"".join(out) == data and inflater.unused_data == b""


def test_gunzip_reader_drains_output_held_after_the_last_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(GunzipReader, "PIECE", 4096)  # many calls capped by the piece size
    data = _text(200_000, 3) + bytes(1_000_000)
    path = tmp_path / "f.gz"
    path.write_bytes(gzip.compress(data, 6))  # far less than one input read
    with GunzipReader(path) as reader:
        assert reader.read(len(data) + 1) == data


def test_corrupt_stream_raises_an_inflate_error(tmp_path: Path) -> None:
    path = tmp_path / "c.gz"
    stored = bytearray(gzip.compress(_text(500_000, 5)))
    stored[20:220] = bytes(200)
    path.write_bytes(stored)
    with pytest.raises(deflate.INFLATE_ERRORS), GunzipReader(path) as reader:
        reader.read(1 << 30)


def test_default_level_output_reads_with_pythons_gzip(tmp_path: Path) -> None:
    data = _text(1_000_000, 9)
    path = tmp_path / "d.gz"
    with open(path, "wb") as raw:
        writer = ParallelGzipWriter(raw, 2)
        writer.write(data)
        writer.close()
    assert gzip.decompress(path.read_bytes()) == data
    assert path.stat().st_size < len(data) / 3
