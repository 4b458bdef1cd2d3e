"""The options of one run, parsed from the command line and passed explicitly.

No module reads configuration from a global: whoever needs a setting gets this object (or the
few fields it needs) as an argument.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from duplicity_ng.backends.options import BackendOptions
from duplicity_ng.format.names import Prefixes
from duplicity_ng.selection import SelectionOptions

MiB = 1024 * 1024


def default_archive_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "duplicity-ng"


@dataclass
class Options:
    # What and where
    command: str = ""
    source: str = ""  # local directory (backup) or restore target
    url: str = ""
    # Format
    encryption: bool = True
    compression: bool = True
    compress_level: int | None = None  # deflate level, gzip and gpg; None: each one's default
    volsize: int = 200 * MiB
    max_blocksize: int = 0
    prefixes: Prefixes = field(default_factory=Prefixes)
    # GnuPG (FORMAT.md 8). No key: symmetric. Passphrases come from the environment and are
    # kept out of repr, so that printing the options never shows them.
    encrypt_keys: list[str] = field(default_factory=list)
    hidden_encrypt_keys: list[str] = field(default_factory=list)
    sign_key: str | None = None
    gpg_binary: str = "gpg"
    gpg_options: list[str] = field(default_factory=list)
    use_agent: bool = False
    passphrase: str | None = field(default=None, repr=False)  # PASSPHRASE
    sign_passphrase: str | None = field(default=None, repr=False)  # SIGN_PASSPHRASE
    # Local cache
    archive_dir: Path = field(default_factory=default_archive_dir)
    name: str | None = None
    # Backup
    selection: SelectionOptions = field(default_factory=SelectionOptions)
    allow_source_mismatch: bool = False
    full_if_older_than: int | None = None  # absolute time
    current_time: int | None = None  # hidden, for tests: fixes the backup time
    # Restore / listing
    restore_time: int | None = None
    path_to_restore: bytes | None = None
    force: bool = False
    numeric_owner: bool = False
    restore_ownership: bool = True
    compare_data: bool = False
    # remove-older-than TIME / remove-all-but-n-full N / remove-all-inc-of-but-n-full N
    remove_time: int | None = None  # absolute time: chains ending before it go
    keep_chains: int | None = None  # N >= 1: the N newest full backups' chains stay whole
    # Behaviour
    tempdir: Path | None = None
    print_statistics: bool = True
    verbosity: int = 3  # duplicity's levels: 0 error .. 9 debug
    debug: bool = False
    dry_run: bool = False  # nothing on the backend or in the cache changes
    concurrency: int = 2  # parallel uploads (backup) and downloads (restore)
    backend: BackendOptions = field(default_factory=BackendOptions)
