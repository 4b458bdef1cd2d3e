"""What every command opens first: backend, cache (locked), a private temp dir."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from duplicity_ng.backends.base import open_backend
from duplicity_ng.cache import ArchiveCache, default_name
from duplicity_ng.container import Codec
from duplicity_ng.log import Log
from duplicity_ng.options import Options
from duplicity_ng.repository import Repository


@contextmanager
def open_repository(opts: Options, log: Log) -> Iterator[Repository]:
    backend = open_backend(opts.url)
    try:
        cache = ArchiveCache(opts.archive_dir / (opts.name or default_name(opts.url)))
        with (
            cache.lock(),
            tempfile.TemporaryDirectory(prefix="duplicity-ng-", dir=opts.tempdir) as tmp,
        ):
            codec = Codec(encrypt=opts.encryption, compress=opts.compression)
            yield Repository(backend, cache, opts.prefixes, Path(tmp), log, codec)
    finally:
        backend.close()
