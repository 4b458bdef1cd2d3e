"""The librsync binding: signatures, deltas and patches (FORMAT.md 3.1, 3.2).

A small cffi binding in ABI mode on Debian's librsync2 (no compiler needed). Every job is
driven with `rs_job_iter` over BUFFER_SIZE output buffers; cffi releases the GIL during each
C call, so jobs in different threads run in parallel. One job must not be used from two
threads at once.

The patch job reads its basis through librsync's own `rs_file_copy_cb` on a C `FILE *`, so
no Python code runs per COPY command and no Python callback exists that could raise.

`PatchJob.feed` returns everything the given delta bytes expand to, which can be a whole
file (one COPY command may cover gigabytes); streaming callers should use `feed_chunks` /
`finish_chunks` or `patch_file`, which yield or write at most BUFFER_SIZE bytes at a time.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, BinaryIO, NamedTuple, Self

import cffi

from duplicity_ng import errors

MAGIC_MD4 = 0x72730136  # RS_MD4_SIG_MAGIC: duplicity's
MAGIC_BLAKE2 = 0x72730137  # RS_BLAKE2_SIG_MAGIC
MAGIC_RK_MD4 = 0x72730146
# RabinKarp rollsum with BLAKE2: librsync's recommendation since 2.2, and ours. Its better
# weak sum makes deltas of text about 1.5x faster; librsync 2.2+ reads it (duplicity 3.2.1
# bundles 2.3.4, Debian's 0.8.22 uses the system's 2.3.2).
MAGIC_RK_BLAKE2 = 0x72730147
MAGIC_DELTA = 0x72730236
BUFFER_SIZE = 1 << 20
SIG_HEADER_SIZE = 12  # magic, block length, strong sum length

LIBRARY_NAME = "librsync.so.2"
MIN_BLOCK_SIZE = 512
BLOCK_FLOOR = 2048

# Declarations copied from /usr/include/librsync.h (librsync 2.3.2).
_CDEF = """
typedef intmax_t rs_long_t;

typedef enum {
    RS_DELTA_MAGIC = 0x72730236,
    RS_MD4_SIG_MAGIC = 0x72730136,
    RS_BLAKE2_SIG_MAGIC = 0x72730137,
    RS_RK_MD4_SIG_MAGIC = 0x72730146,
    RS_RK_BLAKE2_SIG_MAGIC = 0x72730147,
} rs_magic_number;

typedef enum {
    RS_LOG_EMERG = 0, RS_LOG_ALERT = 1, RS_LOG_CRIT = 2, RS_LOG_ERR = 3,
    RS_LOG_WARNING = 4, RS_LOG_NOTICE = 5, RS_LOG_INFO = 6, RS_LOG_DEBUG = 7
} rs_loglevel;

typedef enum rs_result {
    RS_DONE = 0, RS_BLOCKED = 1, RS_RUNNING = 2, RS_TEST_SKIPPED = 77,
    RS_IO_ERROR = 100, RS_SYNTAX_ERROR = 101, RS_MEM_ERROR = 102, RS_INPUT_ENDED = 103,
    RS_BAD_MAGIC = 104, RS_UNIMPLEMENTED = 105, RS_CORRUPT = 106, RS_INTERNAL_ERROR = 107,
    RS_PARAM_ERROR = 108
} rs_result;

typedef struct rs_signature rs_signature_t;
typedef struct rs_job rs_job_t;
typedef struct rs_stats rs_stats_t;

struct rs_buffers_s {
    char *next_in;
    size_t avail_in;
    int eof_in;
    char *next_out;
    size_t avail_out;
};
typedef struct rs_buffers_s rs_buffers_t;

typedef rs_result rs_copy_cb(void *opaque, rs_long_t pos, size_t *len, void **buf);

void rs_trace_set_level(rs_loglevel level);
char const *rs_strerror(rs_result r);
rs_result rs_sig_args(rs_long_t old_fsize, rs_magic_number *magic,
                      size_t *block_len, size_t *strong_len);
rs_job_t *rs_sig_begin(size_t block_len, size_t strong_len, rs_magic_number sig_magic);
rs_job_t *rs_loadsig_begin(rs_signature_t **);
rs_result rs_build_hash_table(rs_signature_t *sums);
void rs_free_sumset(rs_signature_t *);
rs_job_t *rs_delta_begin(rs_signature_t *);
rs_job_t *rs_patch_begin(rs_copy_cb *copy_cb, void *copy_arg);
rs_result rs_file_copy_cb(void *arg, rs_long_t pos, size_t *len, void **buf);
rs_result rs_job_iter(rs_job_t *job, rs_buffers_t *buffers);
rs_result rs_job_free(rs_job_t *);
rs_result rs_patch_file(FILE *basis_file, FILE *delta_file, FILE *new_file, rs_stats_t *);
"""

_LIBC_CDEF = """
FILE *fdopen(int fd, const char *mode);
int fclose(FILE *stream);
int fflush(FILE *stream);
"""

_ffi = cffi.FFI()
_ffi.cdef(_CDEF)
_ffi.cdef(_LIBC_CDEF)
# Output buffers are overwritten before they are read; clearing 1 MiB per job is wasted work.
_new_uncleared = _ffi.new_allocator(should_clear_after_alloc=False)

_RS_DONE = 0
_RS_BLOCKED = 1
_RS_RUNNING = 2
_RS_INPUT_ENDED = 103
_RS_LOG_EMERG = 0
# rs_sig_args: strong_len 0 asks for the maximum (32 bytes for BLAKE2), librsync's advice
# against hash collisions forced by partly attacker-made data; -1 would give 5-11 bytes.
_STRONG_LEN_MAX = 0

# What each librsync error usually means for us, shown as the error's hint.
_CODE_HINT = {
    100: "could not read or write a file",
    102: "out of memory",
    103: "the data is truncated",
    104: "not librsync data of the expected kind",
    106: "the data is corrupt",
    107: "internal librsync error",
    108: "invalid parameters",
}


class _Libs(NamedTuple):
    rs: Any
    libc: Any


@functools.cache
def _load_libraries(name: str = LIBRARY_NAME) -> _Libs:
    try:
        rs = _ffi.dlopen(name)
    except OSError as exc:
        raise errors.UserError(
            f"cannot load librsync ({name}): install the Debian package librsync2",
            hint=str(exc).splitlines()[0] if str(exc) else "",
        ) from exc
    # librsync logs every error to stderr by default; we report errors ourselves.
    rs.rs_trace_set_level(_RS_LOG_EMERG)
    return _Libs(rs=rs, libc=_ffi.dlopen(None))


def check_available() -> None:
    """Raise errors.UserError now if librsync cannot be loaded (it is loaded lazily)."""
    _load_libraries()


def _rs() -> Any:
    return _load_libraries().rs


def _error(op: str, code: int) -> errors.RsyncError:
    text = _ffi.string(_rs().rs_strerror(code)).decode("utf-8", "replace")
    hint = _CODE_HINT.get(code, "")
    if op == "patch" and code == 103:
        # rs_file_copy_cb also reports a COPY past the end of the basis as "input ended".
        hint = "the delta is truncated or does not belong to this basis file"
    return errors.RsyncError(f"librsync {op} failed: {text} (code {code})", hint=hint)


_SIG_MAGICS = {MAGIC_MD4: 16, MAGIC_BLAKE2: 32, MAGIC_RK_MD4: 16, MAGIC_RK_BLAKE2: 32}


@dataclass(frozen=True)
class SigParams:
    magic: int
    block_len: int
    strong_len: int

    def __post_init__(self) -> None:
        # librsync would silently pick its own values for 0 or fail only at the first feed.
        max_strong = _SIG_MAGICS.get(self.magic)
        if max_strong is None:
            raise ValueError(f"not a librsync signature magic: {self.magic:#x}")
        if self.block_len < 1:
            raise ValueError(f"invalid block length {self.block_len}")
        if not 1 <= self.strong_len <= max_strong:
            raise ValueError(f"invalid strong sum length {self.strong_len}")


def block_size(file_size: int, max_block_size: int = 0) -> int:
    """The signature block length for a file of `file_size` bytes.

    2 KiB up to 1 GiB, then growing as the square root (isqrt(size) / 16, rounded up to a
    multiple of 512), capped by `max_block_size`. duplicity 3.x uses isqrt(size) itself,
    which makes 32 KiB blocks for 1 GiB: a database dump whose rows change here and there
    then has nearly every block changed, and its delta is nearly the whole file. With 2 KiB
    blocks the signature costs 1.8 % of the file (36 bytes a block) and the delta of such a
    dump is a fifth of duplicity's (bench/README.md). Any block length reads back: it is
    recorded in the signature.
    """
    size = max(BLOCK_FLOOR, _round_up(_isqrt(file_size) // 16))
    if max_block_size > 0:
        size = max(min(size, max_block_size), 1)
    return size


def duplicity_block_size(file_size: int) -> int:
    """duplicity 3.x's rule: isqrt(size) rounded up to a multiple of 512, at least 512."""
    return max(MIN_BLOCK_SIZE, _round_up(_isqrt(file_size)))


def _isqrt(file_size: int) -> int:
    if file_size < 0:
        raise ValueError(f"negative file size {file_size}")
    return math.isqrt(file_size)


def _round_up(n: int) -> int:
    """n rounded up to a multiple of MIN_BLOCK_SIZE."""
    return -(-n // MIN_BLOCK_SIZE) * MIN_BLOCK_SIZE


def sig_params(file_size: int, max_block_size: int = 0) -> SigParams:
    """Signature parameters for a file of `file_size` bytes: librsync's recommended magic
    (RabinKarp rollsum with BLAKE2), `block_size`, and the strong sum length librsync
    recommends against forced collisions (rs_sig_args with strong_len 0: the full 32-byte
    BLAKE2 sum).
    """
    return _params_for_block(block_size(file_size, max_block_size))


@functools.lru_cache(maxsize=1024)
def _params_for_block(block: int) -> SigParams:
    # Cached: a backup asks once per file, and files share a few block sizes. The maximum
    # strong length does not depend on the file size, which is passed as unknown (-1).
    ffi = _ffi
    magic = ffi.new("rs_magic_number *", 0)  # 0: the recommended one
    block_len = ffi.new("size_t *", block)
    strong_len = ffi.new("size_t *", _STRONG_LEN_MAX)
    result = _rs().rs_sig_args(-1, magic, block_len, strong_len)
    if result != _RS_DONE:
        raise _error("signature parameters", result)
    return SigParams(
        magic=int(magic[0]), block_len=int(block_len[0]), strong_len=int(strong_len[0])
    )


class _Job:
    """One rs_job_t and its buffers; the loop shared by every kind of job."""

    _op = "job"

    def __init__(self, job: Any, buffer_size: int = BUFFER_SIZE) -> None:
        """`buffer_size`: the output buffer; bigger output comes out in several pieces."""
        if job == _ffi.NULL:
            raise _error(self._op, 102)
        self._job = job
        self._bufs = _ffi.new("rs_buffers_t *")
        self._out_size = max(4096, min(buffer_size, BUFFER_SIZE))
        self._out = _new_uncleared("char[]", self._out_size)
        self._done = False
        self._broken = False

    # --- public streaming interface -------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        """Process `data`; return the output produced so far (may be b"")."""
        return b"".join(self.feed_chunks(data))

    def finish(self) -> bytes:
        """Signal end of input; return the remaining output. The job is freed."""
        return b"".join(self.finish_chunks())

    def feed_chunks(self, data: bytes) -> Iterator[bytes]:
        """Like feed(), but yield the output in pieces of at most BUFFER_SIZE bytes."""
        for view in self._views(data, eof=False):
            yield view[:]

    def finish_chunks(self) -> Iterator[bytes]:
        """Like finish(), but yield the output in pieces of at most BUFFER_SIZE bytes."""
        for view in self._views(b"", eof=True):
            yield view[:]

    def close(self) -> None:
        """Free the job without finishing it. Idempotent."""
        job, self._job = self._job, None
        if job is not None:
            _rs().rs_job_free(job)
            self._released()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # At interpreter shutdown the module globals may already be gone.
        if getattr(self, "_job", None) is not None:
            with contextlib.suppress(Exception):
                self.close()

    # --- internals ------------------------------------------------------------------------

    def _released(self) -> None:
        """Hook: free what a subclass holds besides the job."""

    def _views(self, data: bytes, eof: bool) -> Iterator[Any]:
        """Run the job over `data`; yield cffi buffer views of the output buffer.

        Each view is only valid until the next one is requested: copy or write it at once.
        """
        if self._broken:
            raise errors.RsyncError(f"librsync {self._op}: job already failed")
        if self._done:
            if len(data):
                raise errors.RsyncError(
                    f"librsync {self._op} failed: {len(data)} bytes of trailing data"
                )
            return
        if self._job is None:
            raise ValueError(f"librsync {self._op} job is closed")
        src = _ffi.from_buffer(data)
        bufs = self._bufs
        bufs.next_in = src
        bufs.avail_in = len(src)
        bufs.eof_in = 1 if eof else 0
        completed = False
        try:
            yield from self._iterate(eof)
            completed = True
        finally:
            # The C side must never keep a pointer into a buffer Python may free.
            bufs.next_in = _ffi.NULL
            bufs.avail_in = 0
            if not completed:
                self._broken = True
                self.close()

    def _iterate(self, eof: bool) -> Iterator[Any]:
        rs = _rs()
        bufs = self._bufs
        while True:
            bufs.next_out = self._out
            bufs.avail_out = self._out_size
            avail_in = bufs.avail_in
            result = rs.rs_job_iter(self._job, bufs)
            if result not in (_RS_DONE, _RS_BLOCKED, _RS_RUNNING):
                raise _error(self._op, result)
            produced = self._out_size - bufs.avail_out
            if produced:
                yield _ffi.buffer(self._out, produced)
            if result == _RS_DONE:
                trailing = bufs.avail_in
                self._done = True
                self.close()
                if trailing:
                    raise errors.RsyncError(
                        f"librsync {self._op} failed: {trailing} bytes of trailing data"
                    )
                return
            if bufs.avail_out and not bufs.avail_in:
                # Output was not full and all input is consumed: the job waits for input.
                if not eof:
                    return
                if avail_in == 0 and produced == 0:
                    raise _error(self._op, _RS_INPUT_ENDED)


class SignatureJob(_Job):
    """Streaming signature of a file fed in pieces."""

    _op = "signature"

    def __init__(self, params: SigParams, size_hint: int | None = None) -> None:
        """`size_hint`: the file's size, when known, to size the output buffer."""
        self.params = params
        out = BUFFER_SIZE
        if size_hint is not None:
            out = SIG_HEADER_SIZE + (size_hint // params.block_len + 1) * (4 + params.strong_len)
        job = _rs().rs_sig_begin(params.block_len, params.strong_len, params.magic)
        super().__init__(job, out)


_HEADER = struct.Struct(">III")


class Signature:
    """A loaded signature (sumset with its hash table), for computing deltas."""

    def __init__(self, sumset: Any, magic: int, block_len: int, strong_len: int) -> None:
        """Private: use Signature.load()."""
        self._sumset = sumset
        self.magic = magic
        self.block_len = block_len
        self.strong_len = strong_len
        self._lock = threading.Lock()
        self._users = 0
        self._closing = False

    @classmethod
    def load(cls, data: bytes | BinaryIO) -> Signature:
        """Load a signature from bytes or a binary stream (any magic, any block size)."""
        pp = _ffi.new("rs_signature_t **")
        rs = _rs()
        job = _LoadJob(rs.rs_loadsig_begin(pp))
        header = bytearray()
        try:
            with job:
                for chunk in _pieces(data):
                    if len(header) < _HEADER.size:
                        header += bytes(chunk[: _HEADER.size - len(header)])
                    for _ in job._views(chunk, eof=False):
                        pass
                for _ in job._views(b"", eof=True):
                    pass
            result = rs.rs_build_hash_table(pp[0])
            if result != _RS_DONE:
                raise _error("signature indexing", result)
        except BaseException:
            if pp[0] != _ffi.NULL:
                rs.rs_free_sumset(pp[0])
            raise
        magic, block_len, strong_len = _HEADER.unpack(header)
        return cls(pp[0], magic, block_len, strong_len)

    def close(self) -> None:
        """Free the sumset (deferred until DeltaJobs using it are freed). Idempotent."""
        with self._lock:
            self._closing = True
            self._free_if_unused()

    def _acquire(self) -> Any:
        with self._lock:
            if self._closing:
                raise ValueError("signature is closed")
            self._users += 1
            return self._sumset

    def _release(self) -> None:
        with self._lock:
            self._users -= 1
            self._free_if_unused()

    def _free_if_unused(self) -> None:
        if self._closing and self._users == 0 and self._sumset is not None:
            sumset, self._sumset = self._sumset, None
            _rs().rs_free_sumset(sumset)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_sumset", None) is not None:
            with contextlib.suppress(Exception):
                self.close()


class _LoadJob(_Job):
    _op = "signature load"


class DeltaJob(_Job):
    """Streaming delta of a new file against a loaded Signature."""

    _op = "delta"

    def __init__(self, signature: Signature, size_hint: int | None = None) -> None:
        """`size_hint`: the new file's size, when known, to size the output buffer."""
        sumset = signature._acquire()
        self._signature: Signature | None = signature
        try:
            out = BUFFER_SIZE if size_hint is None else size_hint + size_hint // 8 + 64
            super().__init__(_rs().rs_delta_begin(sumset), out)
        except BaseException:
            self._released()
            raise

    def _released(self) -> None:
        signature, self._signature = self._signature, None
        if signature is not None:
            signature._release()


def _stdio(f: BinaryIO, mode: bytes) -> Any:
    """A C `FILE *` on a duplicate of f's descriptor (so it shares the file offset)."""
    fd = os.dup(f.fileno())
    fp = _load_libraries().libc.fdopen(fd, mode)
    if fp == _ffi.NULL:
        err = _ffi.errno
        os.close(fd)
        raise OSError(err, f"fdopen: {os.strerror(err)}")
    return fp


def patch_files(basis: BinaryIO, delta: BinaryIO, out: BinaryIO) -> None:
    """Apply `delta` to `basis`, writing to `out`: all three real files, read and written
    from their current offsets entirely in C (librsync's rs_patch_file), no byte through
    Python. Flush `out` before, and seek it to its end after, if you go on writing it."""
    libs = _load_libraries()
    opened = []
    try:
        for f, mode in ((basis, b"rb"), (delta, b"rb"), (out, b"wb")):
            opened.append(_stdio(f, mode))
        result = libs.rs.rs_patch_file(opened[0], opened[1], opened[2], _ffi.NULL)
        if libs.libc.fflush(opened[2]) != 0:
            err = _ffi.errno
            raise OSError(err, f"writing the patched file: {os.strerror(err)}")
    finally:
        for fp in opened:
            libs.libc.fclose(fp)
    if result != _RS_DONE:
        raise _error("patch", result)


class PatchJob(_Job):
    """Streaming patch: basis file + delta fed in pieces → new file.

    `basis` must be a real, seekable file opened for binary reading. It is read through a
    duplicate descriptor that shares its file offset: seek() it before reading it yourself.
    """

    _op = "patch"

    def __init__(self, basis: BinaryIO) -> None:
        libs = _load_libraries()
        fp = _stdio(basis, b"rb")
        self._fp: Any = fp
        try:
            super().__init__(libs.rs.rs_patch_begin(libs.rs.rs_file_copy_cb, fp))
        except BaseException:
            self._released()
            raise

    def _released(self) -> None:
        fp, self._fp = self._fp, None
        if fp is not None:
            _load_libraries().libc.fclose(fp)


def _pieces(src: bytes | BinaryIO) -> Iterator[bytes | memoryview]:
    """`src` in pieces of up to BUFFER_SIZE, reusing one buffer for streams."""
    if isinstance(src, bytes | bytearray | memoryview):
        view = memoryview(src)
        for start in range(0, len(view), BUFFER_SIZE):
            yield view[start : start + BUFFER_SIZE]
        return
    readinto = getattr(src, "readinto", None)
    if readinto is None:
        while piece := src.read(BUFFER_SIZE):
            yield piece
        return
    buf = bytearray(BUFFER_SIZE)
    view = memoryview(buf)
    while n := readinto(buf):
        yield view[:n]


def _run_to_file(job: _Job, src: BinaryIO, dst: BinaryIO) -> None:
    with job:
        for piece in _pieces(src):
            for out in job._views(piece, eof=False):
                dst.write(out)
        for out in job._views(b"", eof=True):
            dst.write(out)


def signature_file(src: BinaryIO, dst: BinaryIO, params: SigParams) -> None:
    """Write the signature of `src` to `dst`."""
    _run_to_file(SignatureJob(params), src, dst)


def delta_file(signature: Signature, src: BinaryIO, dst: BinaryIO) -> None:
    """Write the delta from `signature`'s file to `src` to `dst`."""
    _run_to_file(DeltaJob(signature), src, dst)


def patch_file(basis: BinaryIO, delta: BinaryIO, dst: BinaryIO) -> None:
    """Apply `delta` to `basis` (a real seekable file), writing the result to `dst`."""
    _run_to_file(PatchJob(basis), delta, dst)
