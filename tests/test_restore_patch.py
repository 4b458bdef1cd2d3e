"""The restore's patching step on its own: a file rebuilt from a snapshot and its diffs."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from pathlib import Path

from duplicity_ng import rsync
from duplicity_ng.restore import _PatchedData


class _Payload:
    """Stands where a SetCursor stands: the member payload of one set, in pieces."""

    def __init__(self, data: bytes, piece: int = 65536) -> None:
        self._pieces = [data[i : i + piece] for i in range(0, len(data), piece)] or [b""]

    def payload(self) -> Iterator[bytes]:
        yield from self._pieces


class _Recorder(io.BytesIO):
    largest = 0

    def write(self, data) -> int:  # noqa: ANN001
        self.largest = max(self.largest, len(data))
        return super().write(data)


def _delta(old: bytes, new: bytes) -> bytes:
    params = rsync.sig_params(len(old))
    sig = rsync.SignatureJob(params)
    signature = sig.feed(old) + sig.finish()
    with rsync.Signature.load(signature) as loaded:
        job = rsync.DeltaJob(loaded)
        return job.feed(new) + job.finish()


def test_patched_file_is_written_in_bounded_pieces(tmp_path: Path) -> None:
    """Regression: the patch output was handed over whole per delta piece, and one COPY
    command of an unchanged 1 GiB dump stands for the whole file: memory grew with it."""
    old = random.Random(1).randbytes(12 << 20)
    new = old[:5000] + b"changed" + old[5007:]
    delta = _delta(old, new)
    assert len(delta) < 64 * 1024  # a handful of COPY commands, arriving in one piece
    out = _Recorder()
    _PatchedData([_Payload(old), _Payload(delta)], tmp_path, "f").write_to(out)  # type: ignore[list-item]
    assert out.getvalue() == new
    assert out.largest <= rsync.BUFFER_SIZE


def test_two_diffs_apply_in_order(tmp_path: Path) -> None:
    v0 = random.Random(2).randbytes(300_000)
    v1 = v0[:1000] + b"one" + v0[1000:]
    v2 = v1 + b"two"
    out = _Recorder()
    chain = [_Payload(v0), _Payload(_delta(v0, v1)), _Payload(_delta(v1, v2))]
    _PatchedData(chain, tmp_path, "f").write_to(out)  # type: ignore[arg-type]
    assert out.getvalue() == v2


def test_patching_into_a_real_file_runs_in_c(tmp_path: Path) -> None:
    """Into a file (the restore target), the patch runs file to file in librsync; the
    result, and the chain of intermediate files for several diffs, must be the same."""
    v0 = random.Random(4).randbytes(3 << 20)
    v1 = v0[:100_000] + b"first" + v0[100_000:]
    v2 = v1[: 2 << 20] + b"second" + v1[(2 << 20) + 50 :]
    chain = [_Payload(v0), _Payload(_delta(v0, v1)), _Payload(_delta(v1, v2))]
    target = tmp_path / "restored"
    with open(target, "wb") as out:
        _PatchedData(chain, tmp_path, "f").write_to(out)  # type: ignore[arg-type]
    assert target.read_bytes() == v2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["restored"]  # no temporary leftovers
