"""The OpenPGP packets made for gpg to encrypt: gpg must read them as its own."""

from __future__ import annotations

import random
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gpg_util import GpgHome

from duplicity_ng.pgpstream import CompressedLiteralWriter, definite_length

SECRET = "packets passphrase"


@pytest.fixture(scope="module")
def home() -> Iterator[GpgHome]:
    h = GpgHome.create()
    yield h
    h.kill_agent()
    h.remove()


def _encrypt(home: GpgHome, packets: bytes, out: Path) -> None:
    home.gpg(
        "--pinentry-mode", "loopback", "--passphrase", SECRET, "--symmetric",
        "--no-literal", "--compress-algo", "none", "--output", str(out),
        input=packets,
    )  # fmt: skip


def _decrypt(home: GpgHome, path: Path) -> bytes:
    return home.gpg("--pinentry-mode", "loopback", "--passphrase", SECRET, "--decrypt",
                    str(path)).stdout  # fmt: skip


def _packets(data: bytes, piece: int, pool: ThreadPoolExecutor | None, level: int = 3) -> bytes:
    out = bytearray()
    writer = CompressedLiteralWriter(out.extend, level, pool)
    for i in range(0, len(data), piece):
        writer.write(data[i : i + piece])
    writer.close()
    return bytes(out)


def _data(seed: int, size: int) -> bytes:
    rng = random.Random(seed)
    parts, total = [], 0
    while total < size:
        n = rng.choice([1, 100, 65535, 65536, 65537, 300_000])
        part = rng.randbytes(n) if rng.random() < 0.5 else (b"INSERT INTO t VALUES (1);\n" * n)[:n]
        parts.append(part)
        total += n
    return b"".join(parts)[:size]


@pytest.mark.parametrize("size", [0, 1, 65536 - 6, 65536, 3 << 20])
@pytest.mark.parametrize("threads", [0, 2])
def test_gpg_decrypts_our_packets(home: GpgHome, tmp_path: Path, size: int, threads: int):
    data = _data(size, size)
    pool = ThreadPoolExecutor(threads) if threads else None
    try:
        packets = _packets(data, 100_000, pool)
    finally:
        if pool is not None:
            pool.shutdown()
    _encrypt(home, packets, tmp_path / "v.gpg")
    assert _decrypt(home, tmp_path / "v.gpg") == data


def test_packets_look_like_gpgs_own(home: GpgHome, tmp_path: Path) -> None:
    _encrypt(home, _packets(b"x" * 200_000, 4096, None), tmp_path / "v.gpg")
    listing = home.list_packets(tmp_path / "v.gpg", SECRET)
    assert ":compressed packet: algo=1" in listing
    assert "mode b (62)" in listing and 'name=""' in listing


def test_random_data_is_stored_text_compressed() -> None:
    noise = random.Random(1).randbytes(1 << 20)
    assert len(_packets(noise, 65536, None)) < len(noise) * 1.001
    text = b"INSERT INTO public.orders VALUES (42, 'widget', 3);\n" * 20_000
    assert len(_packets(text, 65536, None)) < len(text) / 10


@pytest.mark.parametrize(
    ("n", "encoded"),
    [(0, b"\x00"), (191, b"\xbf"), (192, b"\xc0\x00"), (8383, b"\xdf\xff"),
     (8384, b"\xff\x00\x00\x20\xc0")],
)  # fmt: skip
def test_definite_lengths(n: int, encoded: bytes) -> None:
    assert definite_length(n) == encoded


def test_system_gpg_lists_a_volume_made_through_the_cli(tmp_path: Path, home: GpgHome) -> None:
    """The whole path: duplicity-ng's own volume, read back by plain gpg."""
    from peers import NgRunner

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"hello\n" * 10_000)
    ng = NgRunner(cache_home=tmp_path / "cache")
    env = {**home.env, "PASSPHRASE": SECRET}
    ng.ok("full", src, f"file://{tmp_path / 'b'}", env=env)
    (volume,) = (tmp_path / "b").glob("*.vol1.difftar.gpg")
    tar = _decrypt(home, volume)
    listed = subprocess.run(["tar", "-t"], input=tar, capture_output=True, check=True).stdout
    assert b"snapshot/a.txt" in listed


# -- reading ------------------------------------------------------------------------------------


def _unwrapped(home: GpgHome, path: Path) -> bytes:
    return home.gpg("--pinentry-mode", "loopback", "--passphrase", SECRET, "--unwrap",
                    "--output", "-", str(path)).stdout  # fmt: skip


def _read(packets: bytes, piece: int) -> bytes:
    import io

    from duplicity_ng.pgpstream import literal_data

    class Trickle(io.BytesIO):  # a pipe hands out what it has, not what was asked
        def read(self, n: int = -1) -> bytes:
            return super().read(min(n, piece) if n >= 0 else piece)

    return b"".join(literal_data(Trickle(packets)))


@pytest.mark.parametrize("algo", ["zip", "zlib", "bzip2", "uncompressed"])
def test_literal_data_of_what_gpg_itself_made(home: GpgHome, tmp_path: Path, algo: str) -> None:
    """Volumes made by duplicity (gpg compressing, or not) read back through --unwrap."""
    data = _data(9, 700_000)
    (tmp_path / "in").write_bytes(data)
    compress = ["--compress-algo", algo] if algo != "uncompressed" else ["-z", "0"]
    home.gpg("--pinentry-mode", "loopback", "--passphrase", SECRET, "--symmetric", *compress,
             "--output", str(tmp_path / "v.gpg"), str(tmp_path / "in"))  # fmt: skip
    packets = _unwrapped(home, tmp_path / "v.gpg")
    for piece in (1, 7, 65536):
        assert _read(packets, piece) == data


def test_literal_data_of_signed_data(home: GpgHome, tmp_path: Path) -> None:
    data = _data(10, 100_000)
    key = home.add_key("signer")
    signed = home.gpg("--pinentry-mode", "loopback", "--passphrase", "", "--local-user", key,
                      "--sign", input=data).stdout  # fmt: skip
    assert _read(signed, 4096) == data


def test_literal_data_of_our_packets_and_damage(home: GpgHome, tmp_path: Path) -> None:
    from duplicity_ng.pgpstream import PacketError

    data = _data(11, 2 << 20)
    packets = _packets(data, 65536, None)
    assert _read(packets, 65536) == data
    with pytest.raises(PacketError, match="truncated|ends inside"):
        _read(packets[: len(packets) // 2], 65536)
    with pytest.raises(PacketError, match="not an OpenPGP packet"):
        _read(b"\x00" + packets, 65536)
