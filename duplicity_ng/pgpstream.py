"""The inside of an encrypted volume, made here so that gpg only has to encrypt it.

gpg compresses what it encrypts in its single process, at 30 MiB/s on data that does not
compress: for a backup that is most of the time. duplicity-ng builds the same packets gpg
would build itself (RFC 4880): a compressed data packet (ZIP, raw deflate) holding a literal
data packet (binary, no file name) holding the tar stream. The deflating runs on every core
and stores what does not compress (gzipstream.ParallelDeflater); gpg, given the packets with
`--no-literal --compress-algo none`, wraps them in its encryption packets unchanged. Every
OpenPGP reader, duplicity's gpg included, reads the result as if gpg had compressed it.

Both packets are streamed with partial body lengths (RFC 4880 4.2.2.4): 64 KiB pieces, and a
definite length for the rest at the end.
"""

from __future__ import annotations

import bz2
import struct
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from duplicity_ng import deflate
from duplicity_ng.gzipstream import ParallelDeflater

_TAG_COMPRESSED = 8
_TAG_LITERAL = 11
_ALGO_ZIP = 1
_PIECE_EXPONENT = 16  # partial pieces of 2**16 bytes
_PIECE = 1 << _PIECE_EXPONENT
# Literal data header: binary mode, empty file name, date 0 (as gpg writes data from a pipe).
_LITERAL_HEADER = b"b\x00" + bytes(4)


def definite_length(n: int) -> bytes:
    """The new-format length octets of a body (or last partial piece) of n bytes."""
    if n < 192:
        return bytes((n,))
    if n < 8384:
        n -= 192
        return bytes(((n >> 8) + 192, n & 0xFF))
    return b"\xff" + struct.pack(">I", n)


class PartialBody:
    """One new-format packet whose body is written in pieces of unknown total length."""

    def __init__(self, tag: int, out: Callable[[bytes], object]) -> None:
        self._out = out
        self._buffer = bytearray()
        out(bytes((0xC0 | tag,)))

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def write(self, data: bytes | memoryview) -> int:
        self._buffer += data
        while len(self._buffer) >= _PIECE:
            self._out(bytes((0xE0 | _PIECE_EXPONENT,)) + self._buffer[:_PIECE])
            del self._buffer[:_PIECE]
        return len(data)

    def close(self) -> None:
        self._out(definite_length(len(self._buffer)) + self._buffer)
        self._buffer.clear()


class CompressedLiteralWriter:
    """Turns a byte stream into compressed(literal(stream)) OpenPGP packets, for gpg to
    encrypt with --no-literal."""

    def __init__(
        self, out: Callable[[bytes], object], level: int, pool: ThreadPoolExecutor | None
    ) -> None:
        self._compressed = PartialBody(_TAG_COMPRESSED, out)
        self._compressed.write(bytes((_ALGO_ZIP,)))
        self._deflater = ParallelDeflater(self._compressed.write, level, pool)
        self._literal = PartialBody(_TAG_LITERAL, self._deflater.write)
        self._literal.write(_LITERAL_HEADER)

    @property
    def unwritten(self) -> int:
        """Bytes accepted and not yet handed to `out`, counted as if they did not shrink."""
        return self._literal.buffered + self._deflater.unwritten + self._compressed.buffered

    def write(self, data: bytes | memoryview) -> int:
        return self._literal.write(data)

    def flush(self) -> None:
        """Compress everything accepted so far (but the last literal piece, under 64 KiB)."""
        self._deflater.flush()

    def close(self) -> None:
        self._literal.close()
        self._deflater.finish()
        self._compressed.close()

    def abort(self) -> None:
        self._deflater.abort()


# -- reading --------------------------------------------------------------------------------
#
# gpg --unwrap removes only the encryption and hands back the packets inside. Reading the
# literal data out of them here lets the inflating run on a thread of ours beside gpg's
# decryption, instead of both in gpg's one process.

_TAG_SIGNATURE = 2
_TAG_ONE_PASS = 4
_TAG_MARKER = 10
_SKIPPED = (_TAG_SIGNATURE, _TAG_ONE_PASS, _TAG_MARKER)  # around signed data; nothing to keep
_READ = 1 << 20


class PacketError(ValueError):
    """The decrypted data is not the OpenPGP packets of a file."""


class _Stream(Protocol):
    def read(self, n: int = -1) -> bytes: ...


def _exact(src: _Stream, n: int) -> bytes:
    data = src.read(n)
    while len(data) < n:
        more = src.read(n - len(data))
        if not more:
            raise PacketError("OpenPGP data ends inside a packet header")
        data += more
    return data


def _new_length(src: _Stream) -> tuple[int, bool]:
    """A new-format length: (bytes, whether more pieces follow)."""
    first = _exact(src, 1)[0]
    if first < 192:
        return first, False
    if first < 224:
        return ((first - 192) << 8) + _exact(src, 1)[0] + 192, False
    if first < 255:
        return 1 << (first & 0x1F), True
    return int.from_bytes(_exact(src, 4), "big"), False


class _Body:
    """A packet's body as a stream, whatever its length encoding."""

    def __init__(self, src: _Stream, length: int | None, partial: bool) -> None:
        self._src = src
        self._remaining = length  # None: indeterminate (old format), up to the end of src
        self._partial = partial

    def read(self, n: int = -1) -> bytes:
        n = _READ if n < 0 else n
        while True:
            if self._remaining is None:
                return self._src.read(n)
            if self._remaining == 0:
                if not self._partial:
                    return b""
                self._remaining, self._partial = _new_length(self._src)
                continue
            data = self._src.read(min(n, self._remaining))
            if not data:
                raise PacketError("OpenPGP data ends inside a packet")
            self._remaining -= len(data)
            return data

    def drain(self) -> None:
        while self.read(_READ):
            pass


def _packet(src: _Stream) -> tuple[int, _Body] | None:
    first = src.read(1)
    if not first:
        return None
    ctb = first[0]
    if not ctb & 0x80:
        raise PacketError(f"not an OpenPGP packet (first byte {ctb:#04x})")
    if ctb & 0x40:  # new format
        length, partial = _new_length(src)
        return ctb & 0x3F, _Body(src, length, partial)
    length_type = ctb & 3
    if length_type == 3:
        return (ctb >> 2) & 0x0F, _Body(src, None, False)
    length = int.from_bytes(_exact(src, 1 << length_type), "big")
    return (ctb >> 2) & 0x0F, _Body(src, length, False)


class _Inflated:
    """The decompressed body of a compressed data packet (ZIP, ZLIB or BZip2)."""

    def __init__(self, body: _Body, algorithm: int) -> None:
        self._body = body
        self._zlib = None
        self._bz2 = None
        if algorithm in (1, 2):
            self._zlib = deflate.decompressobj(-15 if algorithm == 1 else 15)
        elif algorithm == 3:
            self._bz2 = bz2.BZ2Decompressor()
        elif algorithm != 0:
            raise PacketError(f"unknown OpenPGP compression algorithm {algorithm}")
        self._pending = b""
        self._capped = False

    def read(self, n: int = -1) -> bytes:
        n = _READ if n < 0 else n
        unpack = self._zlib or self._bz2
        if unpack is None:
            return self._body.read(n)
        while not (unpack.eof and not self._pending):
            if self._bz2 is not None and not self._bz2.needs_input:
                # Output left over from the last call (max_length reached): no new input.
                out = self._bz2.decompress(b"", n)
                if out:
                    return out
                continue
            if not self._pending and not self._capped:
                self._pending = self._body.read(_READ)
                if not self._pending:
                    raise PacketError("compressed OpenPGP data is truncated")
            if self._zlib is not None:  # bounded: a little input can inflate to a lot
                out = self._zlib.decompress(self._pending, n)
                self._pending = self._zlib.unconsumed_tail
                # ISA-L, unlike zlib, may keep output inside when it fills n.
                self._capped = len(out) == n and not self._zlib.eof
            else:
                assert self._bz2 is not None
                out = self._bz2.decompress(self._pending, n)
                self._pending = b""
            if out:
                return out
        return b""


def literal_data(src: _Stream) -> Iterator[bytes]:
    """The content of the literal data packets in an unencrypted OpenPGP packet stream."""
    while (found := _packet(src)) is not None:
        tag, body = found
        if tag == _TAG_COMPRESSED:
            inner = _Inflated(body, _exact(body, 1)[0])
            yield from literal_data(inner)
            body.drain()
        elif tag == _TAG_LITERAL:
            header = _exact(body, 2)
            _exact(body, header[1] + 4)  # the file name, then the date
            while data := body.read(_READ):
                yield data
        elif tag in _SKIPPED:
            body.drain()
        else:
            raise PacketError(f"unexpected OpenPGP packet (tag {tag}) in a decrypted file")
