"""The tar dialect of duplicity's volumes and signature files (FORMAT.md 2, 2.1, 2.2, 3).

Writing must be byte-identical to Python's `tarfile` in PAX format with UTF-8 and
surrogateescape, because that is what duplicity uses: the common header is built here with
`struct`, anything unusual (long or non-ASCII names, numeric overflow) goes through
`tarfile.TarInfo.tobuf` itself so the pax records cannot drift from the reference.

Reading works on non-seekable streams (gzip readers, gpg pipes), in large blocks, and stops
at the first all-zero header or at EOF on a member boundary: 0.8 volumes have no end marker
and decrypted volumes carry garbage after it.
"""

from __future__ import annotations

import struct
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

BLOCK = 512
RECORD = 10240

_ZERO_BLOCK = bytes(BLOCK)
_READ_SIZE = 1 << 20
_MAX_READ = 16 << 20
_COPY_SIZE = 1 << 16
_MAGIC = b"ustar\x0000"
_MAX7 = 8**7  # largest octal value + 1 of an 8-byte numeric field
_MAX11 = 8**11  # same for the 12-byte size and mtime fields
_DEVICE_TYPES = (b"3", b"4")
# Types whose size field counts payload bytes that follow the header (tarfile's rule: regular
# types and anything it does not know; links, dirs, devices and fifos never carry data).
_NO_PAYLOAD_TYPES = frozenset((b"1", b"2", b"3", b"4", b"5", b"6"))
_GNU_TYPES = (b"L", b"K", b"S")

# name mode uid gid size mtime chksum type linkname magic uname gname devmajor devminor prefix
_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s8s32s32s8s8s155s12x")


class TarFormatError(Exception):
    """Malformed or truncated tar input."""


@dataclass(slots=True)
class TarHeader:
    name: bytes
    type: bytes
    mode: int = 0
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime: int = 0
    linkname: bytes = b""
    uname: str = ""
    gname: str = ""
    devmajor: int = 0
    devminor: int = 0


@dataclass(slots=True)
class TarMember:
    header: TarHeader
    data: bytes


# ---------------------------------------------------------------------------------------------
# Writing


def encode_header(h: TarHeader) -> bytes:
    """The header block(s) tarfile writes for `h` in PAX format (pax `x` header only if needed)."""
    name = h.name
    if h.type == b"5" and not name.endswith(b"/"):
        name += b"/"
    if (
        len(name) <= 100
        and name.isascii()
        and len(h.linkname) <= 100
        and h.linkname.isascii()
        and len(h.uname) <= 32
        and h.uname.isascii()
        and len(h.gname) <= 32
        and h.gname.isascii()
        and 0 <= h.uid < _MAX7
        and 0 <= h.gid < _MAX7
        and 0 <= h.size < _MAX11
        and 0 <= h.mtime < _MAX11
    ):
        if h.type in _DEVICE_TYPES:
            if not (0 <= h.devmajor < _MAX7 and 0 <= h.devminor < _MAX7):
                return _encode_with_tarfile(h)
            devmajor = b"%07o" % h.devmajor
            devminor = b"%07o" % h.devminor
        else:
            devmajor = devminor = b""
        buf = _HEADER.pack(
            name,
            b"%07o" % (h.mode & 0o7777),
            b"%07o" % h.uid,
            b"%07o" % h.gid,
            b"%011o" % h.size,
            b"%011o" % h.mtime,
            b"        ",
            h.type,
            h.linkname,
            _MAGIC,
            h.uname.encode("ascii"),
            h.gname.encode("ascii"),
            devmajor,
            devminor,
            b"",
        )
        # The checksum field holds 8 spaces while summing, as tarfile's calc_chksums assumes.
        return b"%s%06o\0 %s" % (buf[:148], sum(buf), buf[156:])
    return _encode_with_tarfile(h)


def _encode_with_tarfile(h: TarHeader) -> bytes:
    info = tarfile.TarInfo(h.name.decode("utf-8", "surrogateescape"))
    info.type = h.type
    info.mode = h.mode
    info.uid = h.uid
    info.gid = h.gid
    info.size = h.size
    info.mtime = h.mtime
    info.linkname = h.linkname.decode("utf-8", "surrogateescape")
    info.uname = h.uname
    info.gname = h.gname
    info.devmajor = h.devmajor
    info.devminor = h.devminor
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def end_marker(bytes_written: int) -> bytes:
    """What TarFile.close() appends: two zero blocks, then zeros to the next RECORD boundary."""
    total = bytes_written + 2 * BLOCK
    return bytes(2 * BLOCK + (-total) % RECORD)


def _check_payload_type(header: TarHeader) -> None:
    # tarfile would write the data, but every reader skips it for these types and desyncs.
    if header.size and header.type in _NO_PAYLOAD_TYPES:
        raise ValueError(f"tar type {header.type!r} carries no data, size must be 0")


def _padding(size: int) -> bytes:
    return bytes(-size % BLOCK)


class TarWriter:
    """Writes members to `out` exactly as tarfile.TarFile(format=PAX_FORMAT) would."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._offset = 0
        self._closed = False

    @property
    def offset(self) -> int:
        return self._offset

    def add(self, header: TarHeader, payload: bytes = b"") -> None:
        if len(payload) != header.size:
            raise ValueError(f"payload is {len(payload)} bytes, header says {header.size}")
        self._check_open()
        _check_payload_type(header)
        block = encode_header(header)
        self._out.write(block)
        if payload:
            self._out.write(payload)
            pad = _padding(len(payload))
            if pad:
                self._out.write(pad)
        self._offset += len(block) + len(payload) + -len(payload) % BLOCK

    def add_from(self, header: TarHeader, src: BinaryIO) -> None:
        """Stream `header.size` bytes from `src`.

        If `src` ends early the member is completed with zeros, so the stream stays a valid
        tar, and TarFormatError is raised.
        """
        self._check_open()
        _check_payload_type(header)
        block = encode_header(header)
        self._out.write(block)
        self._offset += len(block)
        remaining = header.size
        while remaining:
            chunk = src.read(min(remaining, _COPY_SIZE))
            if not chunk:
                break
            self._out.write(chunk)
            remaining -= len(chunk)
        if remaining:
            self._write_zeros(remaining)
        pad = _padding(header.size)
        if pad:
            self._out.write(pad)
        self._offset += header.size + len(pad)
        if remaining:
            raise TarFormatError(
                f"source ended {remaining} bytes short of {header.size} for "
                f"{header.name.decode('utf-8', 'surrogateescape')}"
            )

    def close(self) -> None:
        if self._closed:
            return
        marker = end_marker(self._offset)
        self._out.write(marker)
        self._offset += len(marker)
        self._closed = True

    def _write_zeros(self, n: int) -> None:
        while n:
            step = min(n, _COPY_SIZE)
            self._out.write(bytes(step))
            n -= step

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("TarWriter is closed")


# ---------------------------------------------------------------------------------------------
# Reading


class TarReader:
    """Iterates over the members of a tar stream (see the module docstring for where it stops)."""

    def __init__(self, src: BinaryIO) -> None:
        self._src = src
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._done = False

    def __iter__(self) -> Iterator[TarMember]:
        while not self._done:
            member = self._next_member()
            if member is None:
                self._done = True
                return
            yield member

    # -- buffering

    def _fill(self, n: int) -> int:
        """Make at least `n` bytes available if the stream has them; return how many are."""
        avail = len(self._buf) - self._pos
        if avail >= n or self._eof:
            return avail
        parts = [self._buf[self._pos :]]
        while avail < n:
            # Capped so a corrupt size field cannot make one read() allocate gigabytes.
            chunk = self._src.read(min(max(_READ_SIZE, n - avail), _MAX_READ))
            if not chunk:
                self._eof = True
                break
            parts.append(chunk)
            avail += len(chunk)
        self._buf = b"".join(parts)
        self._pos = 0
        return avail

    def _take(self, n: int, what: str) -> bytes:
        if self._fill(n) < n:
            raise TarFormatError(f"truncated tar stream: end of data inside {what}")
        start = self._pos
        self._pos = start + n
        return self._buf[start : self._pos]

    def _take_padded(self, size: int, what: str) -> bytes:
        """Payload of `size` bytes plus its padding to the block boundary."""
        total = size + (-size % BLOCK)
        if self._fill(total) < total:
            raise TarFormatError(f"truncated tar stream: end of data inside {what}")
        start = self._pos
        self._pos = start + total
        return self._buf[start : start + size]

    # -- parsing

    def _next_member(self) -> TarMember | None:
        pax: dict[str, bytes] = {}
        long_name: bytes | None = None
        long_link: bytes | None = None
        first = True
        while True:
            avail = self._fill(BLOCK)
            if avail == 0 and first:
                return None  # clean EOF at a member boundary (0.8 volumes: no end marker)
            if avail < BLOCK:
                raise TarFormatError("truncated tar stream: end of data inside a header")
            block = self._take(BLOCK, "a header")
            if block == _ZERO_BLOCK:
                if first:
                    return None
                raise TarFormatError("tar stream: end marker right after an extended header")
            first = False
            header = _parse_block(block)
            kind = header.type
            if kind in (b"x", b"X"):
                pax.update(_parse_pax(self._take_padded(header.size, "a pax header")))
            elif kind == b"g":
                self._take_padded(header.size, "a pax global header")
            elif kind == b"L":
                long_name = _cstr(self._take_padded(header.size, "a GNU long name"))
            elif kind == b"K":
                long_link = _cstr(self._take_padded(header.size, "a GNU long link"))
            else:
                break
        if long_name is not None:
            header.name = long_name
        if long_link is not None:
            header.linkname = long_link
        if pax:
            _apply_pax(header, pax)
        if header.type == b"5":
            header.name = header.name.rstrip(b"/")
        if header.size < 0:
            raise TarFormatError(f"negative size in tar header of {header.name!r}")
        if header.type in _NO_PAYLOAD_TYPES:
            data = b""
        else:
            data = self._take_padded(header.size, f"the data of {header.name!r}")
        return TarMember(header, data)


def _cstr(field: bytes) -> bytes:
    return field.partition(b"\0")[0]


def _number(field: bytes) -> int:
    # The common case, octal digits up to a NUL (int() skips surrounding spaces), is tried
    # first: a sigtar of 20,000 files has 160,000 of these fields.
    try:
        return int(field.partition(b"\0")[0], 8)
    except ValueError:
        return _number_slow(field)


def _number_slow(field: bytes) -> int:
    first = field[0]
    if first == 0o200 or first == 0o377:
        n = int.from_bytes(field[1:], "big")
        return n - 256 ** (len(field) - 1) if first == 0o377 else n
    digits = _cstr(field).strip()
    if not digits:
        return 0
    try:
        if not digits.isascii():
            raise ValueError
        return int(digits, 8)
    except ValueError:
        raise TarFormatError(f"bad numeric field in tar header: {field!r}") from None


def _parse_block(block: bytes) -> TarHeader:
    (
        name,
        mode,
        uid,
        gid,
        size,
        mtime,
        chksum,
        kind,
        linkname,
        _magic,
        uname,
        gname,
        devmajor,
        devminor,
        prefix,
    ) = _HEADER.unpack(block)
    expected = _number(chksum)
    unsigned = sum(block) - sum(chksum) + 256
    if expected != unsigned and expected != _signed_checksum(block):
        raise TarFormatError("bad tar header checksum")
    header = TarHeader(
        name=_cstr(name),
        type=kind,
        mode=_number(mode),
        uid=_number(uid),
        gid=_number(gid),
        size=_number(size),
        mtime=_number(mtime),
        linkname=_cstr(linkname),
        uname=_cstr(uname).decode("utf-8", "surrogateescape"),
        gname=_cstr(gname).decode("utf-8", "surrogateescape"),
        devmajor=_number(devmajor),
        devminor=_number(devminor),
    )
    if kind == b"\0":
        # Old V7 archives: regular file, or directory when the name ends with "/".
        header.type = b"5" if header.name.endswith(b"/") else b"0"
    prefix = _cstr(prefix)
    if prefix and kind not in _GNU_TYPES:
        header.name = prefix + b"/" + header.name
    return header


def _signed_checksum(block: bytes) -> int:
    # Some old tars summed signed chars; tarfile accepts both, so do we.
    return 256 + sum(struct.unpack_from("148b8x356b", block))


def _parse_pax(buf: bytes) -> dict[str, bytes]:
    """pax records "<len> <key>=<value>\\n" -> {key: raw value bytes}."""
    records: dict[str, bytes] = {}
    pos = 0
    end = len(buf)
    while pos < end and buf[pos] != 0:
        space = buf.find(b" ", pos, pos + 20)
        if space < 0:
            raise TarFormatError("bad pax record")
        try:
            length = int(buf[pos:space])
        except ValueError:
            raise TarFormatError("bad pax record length") from None
        stop = pos + length
        equals = buf.find(b"=", space + 1, stop)
        if length <= 0 or stop > end or equals < 0 or buf[stop - 1] != 0x0A:
            raise TarFormatError("bad pax record")
        key = buf[space + 1 : equals].decode("utf-8", "surrogateescape")
        records[key] = buf[equals + 1 : stop - 1]
        pos = stop
    return records


def _pax_int(value: bytes, key: str) -> int:
    # mtime may be fractional ("1700000000.25"); truncate toward zero like int(float(...)).
    whole = value.partition(b".")[0].strip()
    try:
        return int(whole) if whole not in (b"", b"-", b"+") else 0
    except ValueError:
        raise TarFormatError(f"bad pax {key} value: {value!r}") from None


def _apply_pax(header: TarHeader, pax: dict[str, bytes]) -> None:
    # Names stay raw bytes whether or not hdrcharset=BINARY: UTF-8 text is its own bytes.
    if "path" in pax:
        header.name = pax["path"].rstrip(b"/")
    if "linkpath" in pax:
        header.linkname = pax["linkpath"]
    if "uname" in pax:
        header.uname = pax["uname"].decode("utf-8", "surrogateescape")
    if "gname" in pax:
        header.gname = pax["gname"].decode("utf-8", "surrogateescape")
    for key in ("size", "mtime", "uid", "gid"):
        if key in pax:
            setattr(header, key, _pax_int(pax[key], key))
