"""Signature, delta and patch of in-memory data, for the librsync and segment tests."""

from __future__ import annotations

import io
from pathlib import Path

from duplicity_ng import rsync


def make_sig(data: bytes, params: rsync.SigParams | None = None) -> bytes:
    out = io.BytesIO()
    rsync.signature_file(io.BytesIO(data), out, params or rsync.sig_params(len(data)))
    return out.getvalue()


def make_delta(sig: bytes, new: bytes) -> bytes:
    out = io.BytesIO()
    with rsync.Signature.load(sig) as signature:
        rsync.delta_file(signature, io.BytesIO(new), out)
    return out.getvalue()


def apply_patch(tmp_path: Path, old: bytes, delta: bytes) -> bytes:
    basis = tmp_path / "basis"
    basis.write_bytes(old)
    out = io.BytesIO()
    with open(basis, "rb") as f:
        rsync.patch_file(f, io.BytesIO(delta), out)
    return out.getvalue()
