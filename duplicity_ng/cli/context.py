"""What every command opens first: backend, cache (locked), a private temp dir, gpg."""

from __future__ import annotations

import getpass
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from duplicity_ng.backends.base import open_backend
from duplicity_ng.cache import ArchiveCache, default_name
from duplicity_ng.container import Codec
from duplicity_ng.crypto import Gpg, GpgSettings, Passphrases, Prompt
from duplicity_ng.gzipstream import DEFAULT_LEVEL
from duplicity_ng.log import Log
from duplicity_ng.options import Options
from duplicity_ng.repository import Repository


@contextmanager
def open_repository(opts: Options, log: Log) -> Iterator[Repository]:
    backend = open_backend(opts.url, opts.backend, warn=log.warning, note=log.notice)
    try:
        cache = ArchiveCache(opts.archive_dir / (opts.name or default_name(opts.url)))
        with (
            cache.lock(),
            tempfile.TemporaryDirectory(prefix="duplicity-ng-", dir=opts.tempdir) as tmp,
        ):
            codec = make_codec(opts, log)
            try:
                yield Repository(
                    backend, cache, opts.prefixes, Path(tmp), log, codec, dry_run=opts.dry_run
                )
            finally:
                codec.close()
    finally:
        backend.close()


def make_codec(opts: Options, log: Log, prompt: Prompt | None = None) -> Codec:
    """The run's Codec; gpg is set up whatever the options, since any archive may be encrypted."""
    settings = gpg_settings(opts)
    passphrases = Passphrases(
        opts.passphrase,
        opts.sign_passphrase,
        prompt if prompt is not None else terminal_prompt(),
        settings,
    )
    return Codec(
        encrypt=opts.encryption,
        compress=opts.compression,
        gpg=Gpg(settings, passphrases, log),
        gzip_level=opts.compress_level or DEFAULT_LEVEL,
    )


def gpg_settings(opts: Options) -> GpgSettings:
    return GpgSettings(
        binary=opts.gpg_binary,
        options=tuple(opts.gpg_options),
        recipients=tuple(opts.encrypt_keys),
        hidden_recipients=tuple(opts.hidden_encrypt_keys),
        sign_key=opts.sign_key,
        use_agent=opts.use_agent,
        compress=opts.compression,
        compress_level=opts.compress_level,
    )


def terminal_prompt() -> Prompt | None:
    """getpass when a user is there to answer; without a terminal nothing is asked."""
    if sys.stdin is None or not sys.stdin.isatty():
        return None
    return getpass.getpass
