"""The librsync binding against the real librsync and the `rdiff` tool."""

from __future__ import annotations

import gc
import io
import random
import struct
import subprocess
import threading
from pathlib import Path

import pytest
from rsync_util import apply_patch, make_delta, make_sig

from duplicity_ng import errors, rsync

MIB = 1 << 20


def rand(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


def rdiff(*args: str | Path) -> None:
    subprocess.run(["rdiff", "-f", *map(str, args)], check=True, capture_output=True)


def delta_commands(delta: bytes) -> list[tuple[str, int]]:
    """Parse a librsync delta (FORMAT.md 3.2) into (kind, length) commands."""
    assert delta[:4] == struct.pack(">I", rsync.MAGIC_DELTA)
    pos, cmds = 4, []
    while True:
        op = delta[pos]
        pos += 1
        if op == 0:
            assert pos == len(delta)
            return cmds
        if op <= 0x40:
            cmds.append(("literal", op))
            pos += op
        elif op <= 0x44:
            width = 1 << (op - 0x41)
            n = int.from_bytes(delta[pos : pos + width], "big")
            cmds.append(("literal", n))
            pos += width + n
        elif op <= 0x54:
            off_w, len_w = 1 << ((op - 0x45) // 4), 1 << ((op - 0x45) % 4)
            n = int.from_bytes(delta[pos + off_w : pos + off_w + len_w], "big")
            cmds.append(("copy", n))
            pos += off_w + len_w
        else:
            raise AssertionError(f"bad delta command {op:#x}")


# --- sig_params -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "block_len"),
    [(0, 2048), (1, 2048), (2049, 2048), (1 << 30, 2048), (4 << 30, 4096)],
)
def test_sig_params_match_rdiff_recommended_magic_and_maximum_strong_len(
    tmp_path: Path, size: int, block_len: int
) -> None:
    params = rsync.sig_params(size)
    assert params.magic == rsync.MAGIC_RK_BLAKE2
    assert params.block_len == block_len
    # rdiff -S 0 asks librsync for the same maximum (collision-resistant) strong length.
    src, sig = tmp_path / "src", tmp_path / "sig"
    src.write_bytes(b"\0" * min(size, 4096))
    rdiff("signature", "-H", "blake2", "-R", "rabinkarp", "-b", block_len, "-S", "0", src, sig)
    assert struct.unpack(">III", sig.read_bytes()[:12]) == (
        rsync.MAGIC_RK_BLAKE2,
        block_len,
        params.strong_len,
    )


def test_block_size_grows_as_the_square_root_past_one_gib() -> None:
    assert rsync.block_size(1 << 30) == 2048
    assert rsync.block_size(16 << 30) == 8192  # isqrt = 131072, / 16
    assert rsync.block_size(256 << 30) == 32768
    assert rsync.block_size(10**9, max_block_size=1024) == 1024
    assert rsync.block_size(10**12, max_block_size=0) == 62976
    with pytest.raises(ValueError):
        rsync.sig_params(-1)


def test_duplicity_block_size_rule() -> None:
    # isqrt(1e9) = 31622 -> rounded up to 62 * 512.
    assert rsync.duplicity_block_size(10**9) == 31744
    assert rsync.duplicity_block_size(0) == rsync.duplicity_block_size(262144) == 512
    assert rsync.duplicity_block_size(263169) == 1024


# --- signatures -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, 70_000, 3 * MIB + 17])
def test_signature_equals_rdiff(tmp_path: Path, size: int) -> None:
    data = rand(random.Random(size), size)
    params = rsync.sig_params(size)
    src, sig = tmp_path / "src", tmp_path / "sig"
    src.write_bytes(data)
    rdiff(
        "signature", "-H", "blake2", "-R", "rabinkarp",
        "-b", params.block_len, "-S", params.strong_len, src, sig,
    )  # fmt: skip
    expected = sig.read_bytes()
    assert make_sig(data, params) == expected
    # Fed in odd pieces, the streaming job gives the same bytes.
    rng = random.Random(1)
    with rsync.SignatureJob(params) as job:
        out, pos = [], 0
        while pos < size:
            step = rng.randint(1, 100_000)
            out.append(job.feed(data[pos : pos + step]))
            pos += step
        out.append(job.finish())
    assert b"".join(out) == expected


def test_signature_of_empty_file_is_header_only() -> None:
    params = rsync.sig_params(0)
    assert make_sig(b"", params) == struct.pack(">III", params.magic, 2048, params.strong_len)


def test_loaded_signature_reports_header() -> None:
    data = rand(random.Random(5), 10_000)
    params = rsync.SigParams(rsync.MAGIC_BLAKE2, 1024, 16)
    with rsync.Signature.load(io.BytesIO(make_sig(data, params))) as sig:
        assert (sig.magic, sig.block_len, sig.strong_len) == (rsync.MAGIC_BLAKE2, 1024, 16)


@pytest.mark.parametrize(
    ("rdiff_args", "magic"),
    [
        (["-H", "md4", "-R", "rollsum"], rsync.MAGIC_MD4),
        (["-H", "md4"], rsync.MAGIC_RK_MD4),  # rdiff's default rollsum is RabinKarp
        (["-H", "blake2"], rsync.MAGIC_RK_BLAKE2),
    ],
)
def test_rdiff_signatures_of_every_magic_load_and_delta(
    tmp_path: Path, rdiff_args: list[str], magic: int
) -> None:
    rng = random.Random(7)
    old = rand(rng, 200_000)
    new = old[:50_000] + rand(rng, 3000) + old[60_000:]
    src, sig_path = tmp_path / "old", tmp_path / "sig"
    src.write_bytes(old)
    rdiff("signature", *rdiff_args, "-b", "512", "-S", "8", src, sig_path)
    with rsync.Signature.load(sig_path.read_bytes()) as sig:
        assert (sig.magic, sig.block_len, sig.strong_len) == (magic, 512, 8)
        delta = io.BytesIO()
        rsync.delta_file(sig, io.BytesIO(new), delta)
    # The unchanged parts were matched against the old file, not sent again.
    assert len(delta.getvalue()) < 20_000
    assert apply_patch(tmp_path, old, delta.getvalue()) == new


def test_md4_signature_matches_format_spec(tmp_path: Path) -> None:
    """FORMAT.md 3.1: weak sum with char offset 31, then the first 8 bytes of MD4."""
    data = bytes(range(256)) * 3  # 768 bytes: one full block and a short one
    src, sig = tmp_path / "src", tmp_path / "sig"
    src.write_bytes(data)
    rdiff("signature", "-H", "md4", "-R", "rollsum", "-b", "512", "-S", "8", src, sig)
    raw = sig.read_bytes()
    assert len(raw) == 12 + 2 * 12
    for i, block in enumerate([data[:512], data[512:]]):
        s1 = s2 = 0
        for b in block:
            s1 += b + 31
            s2 += s1
        weak = ((s2 & 0xFFFF) << 16) | (s1 & 0xFFFF)
        assert struct.unpack(">I", raw[12 + 12 * i : 16 + 12 * i])[0] == weak
    with rsync.Signature.load(raw) as loaded:
        assert loaded.magic == rsync.MAGIC_MD4


# --- round trips --------------------------------------------------------------------------


def _edits(rng: random.Random) -> list[tuple[str, bytes, bytes]]:
    base = rand(rng, 300_000)
    big = rand(rng, 5 * MIB + 123)
    return [
        ("empty-empty", b"", b""),
        ("empty-new", b"", rand(rng, 5000)),
        ("old-empty", base, b""),
        ("one-byte-same", b"a", b"a"),
        ("one-byte-changed", b"a", b"b"),
        ("one-to-many", b"a", rand(rng, 2000)),
        ("identical", base, base),
        ("insertion", base, base[:1000] + rand(rng, 77) + base[1000:]),
        ("deletion", base, base[:5000] + base[9000:]),
        ("append", base, base + rand(rng, 10_000)),
        ("prepend", base, rand(rng, 3) + base),
        ("truncate", base, base[:123_457]),
        ("replace-middle", base, base[:100_000] + rand(rng, 5000) + base[105_000:]),
        ("unrelated", base, rand(rng, 250_000)),
        (
            "multi-mib",
            big,
            big[:MIB] + rand(rng, 4096) + big[MIB + 100 : 3 * MIB] + big[4 * MIB :] + b"end",
        ),
    ]


@pytest.mark.parametrize("case", range(15))
def test_round_trip(tmp_path: Path, case: int) -> None:
    name, old, new = _edits(random.Random(42))[case]
    delta = make_delta(make_sig(old), new)
    assert apply_patch(tmp_path, old, delta) == new, name


def test_round_trip_with_jobs_in_small_random_pieces(tmp_path: Path) -> None:
    rng = random.Random(3)
    old = rand(rng, 400_000)
    new = old[:7] + rand(rng, 1000) + old[7:200_000] + old[250_000:] + rand(rng, 5)

    def pieces(data: bytes) -> list[bytes]:
        out, pos = [], 0
        while pos < len(data):
            step = rng.choice([1, 2, 3, 511, 4096, 70_000])
            out.append(data[pos : pos + step])
            pos += step
        return out

    with rsync.SignatureJob(rsync.sig_params(len(old))) as job:
        sig = b"".join(job.feed(p) for p in pieces(old)) + job.finish()
    signature = rsync.Signature.load(sig)
    job = rsync.DeltaJob(signature)
    delta = b"".join(job.feed(p) for p in pieces(new)) + job.finish()
    signature.close()
    basis = tmp_path / "basis"
    basis.write_bytes(old)
    with open(basis, "rb") as f, rsync.PatchJob(f) as patch:
        result = b"".join(patch.feed(p) for p in pieces(delta)) + patch.finish()
    assert result == new


def test_patch_multi_mib_basis_with_many_copies(tmp_path: Path) -> None:
    rng = random.Random(11)
    block = 2048
    old = rand(rng, 8 * MIB)
    order = list(range(len(old) // block))
    rng.shuffle(order)
    new = b"".join(old[i * block : (i + 1) * block] for i in order)
    params = rsync.sig_params(len(old), max_block_size=block)
    assert params.block_len == block
    delta = make_delta(make_sig(old, params), new)
    copies = [n for kind, n in delta_commands(delta) if kind == "copy"]
    assert len(copies) > 1000
    assert sum(copies) == len(new)
    assert apply_patch(tmp_path, old, delta) == new


def test_patch_output_is_streamed_in_bounded_chunks(tmp_path: Path) -> None:
    old = rand(random.Random(12), 5 * MIB)
    delta = make_delta(make_sig(old), old)
    # One COPY of the whole file: 5 MiB of output from a few bytes of delta.
    assert len(delta) < 64
    basis = tmp_path / "basis"
    basis.write_bytes(old)
    with open(basis, "rb") as f:
        job = rsync.PatchJob(f)
        chunks = list(job.feed_chunks(delta)) + list(job.finish_chunks())
    assert max(len(c) for c in chunks) <= rsync.BUFFER_SIZE
    assert b"".join(chunks) == old


def test_patch_leaves_no_open_descriptors(tmp_path: Path) -> None:
    proc_fd = Path("/proc/self/fd")
    before = len(list(proc_fd.iterdir()))
    old = rand(random.Random(13), 10_000)
    delta = make_delta(make_sig(old), old + b"x")
    for _ in range(50):
        assert apply_patch(tmp_path, old, delta) == old + b"x"
        with pytest.raises(errors.RsyncError):
            apply_patch(tmp_path, old, delta[:-1])
    gc.collect()
    assert len(list(proc_fd.iterdir())) == before


# --- interoperability with rdiff ----------------------------------------------------------


def test_our_delta_applied_by_rdiff_and_rdiff_delta_by_us(tmp_path: Path) -> None:
    rng = random.Random(21)
    old = rand(rng, 2 * MIB)
    new = old[:300_000] + rand(rng, 9000) + old[310_000:] + rand(rng, 100)
    paths = {n: tmp_path / n for n in ("old", "new", "sig", "delta", "out", "rsig", "rdelta")}
    paths["old"].write_bytes(old)
    paths["new"].write_bytes(new)

    ours = make_delta(make_sig(old), new)
    paths["delta"].write_bytes(ours)
    rdiff("patch", paths["old"], paths["delta"], paths["out"])
    assert paths["out"].read_bytes() == new

    rdiff("signature", "-b", "1024", paths["old"], paths["rsig"])
    rdiff("delta", paths["rsig"], paths["new"], paths["rdelta"])
    assert apply_patch(tmp_path, old, paths["rdelta"].read_bytes()) == new


# --- errors -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample() -> tuple[bytes, bytes, bytes]:
    rng = random.Random(31)
    old = rand(rng, 100_000)
    new = old[:20_000] + rand(rng, 3000) + old[20_000:]
    sig = make_sig(old)
    return old, sig, make_delta(sig, new)


@pytest.mark.parametrize("cut", [0, 3, 4, 5, 10, -100, -1])
def test_truncated_delta_raises(
    tmp_path: Path, sample: tuple[bytes, bytes, bytes], cut: int
) -> None:
    old, _, delta = sample
    with pytest.raises(errors.RsyncError) as info:
        apply_patch(tmp_path, old, delta[:cut])
    assert info.value.exit_code == 21
    assert "code 103" in info.value.message


def test_truncated_delta_raises_from_finish(
    tmp_path: Path, sample: tuple[bytes, bytes, bytes]
) -> None:
    old, _, delta = sample
    basis = tmp_path / "basis"
    basis.write_bytes(old)
    with open(basis, "rb") as f, rsync.PatchJob(f) as job:
        job.feed(delta[:-1])
        with pytest.raises(errors.RsyncError, match="end of input"):
            job.finish()


def test_bad_delta_magic_and_corrupt_command(
    tmp_path: Path, sample: tuple[bytes, bytes, bytes]
) -> None:
    old, sig, delta = sample
    with pytest.raises(errors.RsyncError, match="code 104"):
        apply_patch(tmp_path, old, sig)  # a signature is not a delta
    with pytest.raises(errors.RsyncError, match="code 106"):
        apply_patch(tmp_path, old, delta[:4] + b"\xff" + delta[5:])


def test_delta_copying_past_basis_end_raises(
    tmp_path: Path, sample: tuple[bytes, bytes, bytes]
) -> None:
    old, _, delta = sample
    with pytest.raises(errors.RsyncError) as info:
        apply_patch(tmp_path, old[:1000], delta)
    assert "basis" in info.value.hint


def test_trailing_data_after_delta_end_raises(
    tmp_path: Path, sample: tuple[bytes, bytes, bytes]
) -> None:
    old, _, delta = sample
    with pytest.raises(errors.RsyncError, match="trailing"):
        apply_patch(tmp_path, old, delta + b"\0")


@pytest.mark.parametrize(
    ("mangle", "code"),
    [
        (lambda s: b"", 103),
        (lambda s: s[:7], 103),
        (lambda s: s[:-3], 103),
        (lambda s: b"RIFF" + s[4:], 104),
        (lambda s: struct.pack(">I", rsync.MAGIC_DELTA) + s[4:], 104),
        (lambda s: s[:4] + b"\0\0\0\0" + s[8:], 106),  # block_len 0
        (lambda s: s[:8] + b"\0\0\0\x40" + s[12:], 106),  # strong_len 64
    ],
)
def test_bad_signature_raises(sample: tuple[bytes, bytes, bytes], mangle, code: int) -> None:
    _, sig, _ = sample
    with pytest.raises(errors.RsyncError) as info:
        rsync.Signature.load(mangle(sig))
    assert f"code {code}" in info.value.message


def test_failed_job_cannot_be_reused(tmp_path: Path, sample: tuple[bytes, bytes, bytes]) -> None:
    old, _, delta = sample
    basis = tmp_path / "basis"
    basis.write_bytes(old)
    with open(basis, "rb") as f:
        job = rsync.PatchJob(f)
        with pytest.raises(errors.RsyncError):
            job.feed(b"nope" + delta[4:])
        with pytest.raises(errors.RsyncError, match="already failed"):
            job.feed(delta)
        job.close()


def test_missing_library_is_a_user_error() -> None:
    with pytest.raises(errors.UserError) as info:
        rsync._load_libraries("librsync-not-installed.so.99")
    assert "librsync2" in info.value.message
    assert "\n" not in info.value.line()
    assert info.value.exit_code == 30


# --- lifetimes ----------------------------------------------------------------------------


def test_signature_close_waits_for_delta_jobs(sample: tuple[bytes, bytes, bytes]) -> None:
    old, sig, _ = sample
    signature = rsync.Signature.load(sig)
    job = rsync.DeltaJob(signature)
    signature.close()  # must not free the sumset under the running job
    delta = job.feed(old) + job.finish()
    assert [kind for kind, _ in delta_commands(delta)] == ["copy"]
    with pytest.raises(ValueError):
        rsync.DeltaJob(signature)
    signature.close()


def test_close_without_finish_and_abandoned_chunks(sample: tuple[bytes, bytes, bytes]) -> None:
    old, sig, _ = sample
    with rsync.SignatureJob(rsync.sig_params(len(old))) as job:
        job.feed(old[:5000])
    job.close()
    with pytest.raises(ValueError, match="closed"):
        job.feed(b"x")
    with rsync.Signature.load(sig) as signature:
        job2 = rsync.DeltaJob(signature)
        chunks = job2.feed_chunks(old)
        next(chunks, None)
        chunks.close()  # abandoning a generator mid-way poisons the job rather than corrupting
        with pytest.raises(errors.RsyncError, match="already failed"):
            job2.finish()


def test_jobs_in_parallel_threads(tmp_path: Path) -> None:
    rng = random.Random(41)
    cases = []
    for i in range(4):
        old = rand(rng, MIB)
        new = old[: 1000 * i] + rand(rng, 500) + old[1000 * i :]
        cases.append((old, new))
    results: list[bytes | None] = [None] * len(cases)

    def work(i: int) -> None:
        old, new = cases[i]
        sub = tmp_path / str(i)
        sub.mkdir()
        results[i] = apply_patch(sub, old, make_delta(make_sig(old), new))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [new for _, new in cases]


def test_invalid_sig_params_are_rejected() -> None:
    with pytest.raises(ValueError):
        rsync.SigParams(0x12345678, 512, 8)
    with pytest.raises(ValueError):
        rsync.SigParams(rsync.MAGIC_BLAKE2, 0, 8)
    with pytest.raises(ValueError):
        rsync.SigParams(rsync.MAGIC_MD4, 512, 17)
    with pytest.raises(ValueError):
        rsync.SigParams(rsync.MAGIC_BLAKE2, 512, 0)
