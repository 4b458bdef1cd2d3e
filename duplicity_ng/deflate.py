"""The deflate implementation: ISA-L for the fast levels and for inflating, zlib otherwise.

Both write standard deflate, so anything that reads zlib's output (gpg, gzip, duplicity)
reads ISA-L's. On a SQL dump, ISA-L's level 2 deflates at about 350 MB/s where zlib's
level 2 manages 80-110 MB/s, for a slightly smaller output (ratio 0.237 against 0.243), and
ISA-L inflates about twice as fast as zlib (bench/compression.py). ISA-L has levels 0-3
only, and its level 0 still compresses, so zlib keeps levels 4-9 and stored blocks.

The `isal` wheel is a dependency; if it cannot be imported, zlib does everything.
"""

from __future__ import annotations

import zlib
from typing import Any

try:
    from isal import isal_zlib
except ImportError:  # pragma: no cover - the dependency is installed with the package
    isal_zlib = None

#: The --compress-level values that ISA-L serves.
ISAL_LEVELS = range(1, 4)

#: What a corrupt deflate stream raises, from either implementation.
INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error,)
if isal_zlib is not None:
    INFLATE_ERRORS += (isal_zlib.error,)


def compressobj(level: int, wbits: int, zdict: bytes = b"") -> Any:
    """A compressor with zlib's interface for `level` 0 (stored) to 9."""
    if isal_zlib is not None and level in ISAL_LEVELS:
        if zdict:
            return isal_zlib.compressobj(level, isal_zlib.DEFLATED, wbits, zdict=zdict)
        return isal_zlib.compressobj(level, isal_zlib.DEFLATED, wbits)
    if zdict:
        return zlib.compressobj(level, zlib.DEFLATED, wbits, zdict=zdict)
    return zlib.compressobj(level, zlib.DEFLATED, wbits)


def decompressobj(wbits: int) -> Any:
    """A decompressor with zlib's interface (decompress with max_length, unconsumed_tail,
    unused_data, eof)."""
    if isal_zlib is not None:
        return isal_zlib.decompressobj(wbits)
    return zlib.decompressobj(wbits)


def crc32(data: bytes | memoryview, value: int = 0) -> int:
    if isal_zlib is not None:
        return isal_zlib.crc32(data, value)
    return zlib.crc32(data, value)
