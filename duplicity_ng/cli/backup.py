"""full, incremental, backup: write a new backup set."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

from duplicity_ng.backup import SetPlan, SetWriter, run_set
from duplicity_ng.cache import ArchiveCache
from duplicity_ng.cli.context import open_repository
from duplicity_ng.collection import BackupSet, Collection
from duplicity_ng.crypto import GpgDecryptError
from duplicity_ng.entry import Index, display
from duplicity_ng.errors import (
    CommandLineError,
    HostnameMismatchError,
    NoSignaturesError,
    SourceError,
    SourceMismatchError,
)
from duplicity_ng.format.names import SetKind, parse
from duplicity_ng.log import Log
from duplicity_ng.options import Options
from duplicity_ng.repository import Repository
from duplicity_ng.selection import Selection
from duplicity_ng.sigstate import SigRecord, merge_chain, read_signatures


def run(opts: Options, log: Log) -> int:
    source = _check_source(opts.source)
    with open_repository(opts, log) as repo:
        # gpg runs, the keys exist, the passphrase is known: checked before anything is written.
        repo.codec.check_ready()
        col = repo.refresh()
        col = _set_aside_unfinished(repo, col, log)
        now = _backup_time(opts, col)
        full = _want_full(opts, col, now, log)
        if full:
            plan = SetPlan(SetKind.FULL, now, now, opts.encryption, opts.compression, opts.prefixes)
            old_state: list[Iterator[SigRecord]] = []
        else:
            chain = col.matched_chain
            assert chain is not None and col.matched_sig_chain is not None
            with _explain_missing_metadata(repo, opts):
                _check_same_source(repo, chain.last, source, opts)
                old_state = [
                    read_signatures(repo.open_signatures(name), name)
                    for name in col.matched_sig_chain.names()
                ]
            plan = SetPlan(
                SetKind.INC, chain.end_time, now, opts.encryption, opts.compression, opts.prefixes
            )
        log.notice(
            f"{'Full' if full else 'Incremental'} backup of {opts.source} to "
            f"{repo.backend.display_url}"
        )
        if opts.dry_run:
            log.notice("Dry run: nothing is stored on the backend or in the local cache")
        writer = SetWriter(
            plan,
            repo.backend,
            # A dry run's signatures and manifest go to a throw-away cache.
            ArchiveCache(repo.workdir / "dry-run-cache") if opts.dry_run else repo.cache,
            repo.workdir,
            opts.volsize,
            repo.codec,
            log,
            concurrency=opts.concurrency,
        )
        writer.set_localdir(source)
        selection = Selection(os.fsencode(opts.source), opts.selection)

        unreadable: set[Index] = set()

        def on_skip(index: Index, reason: str) -> None:
            if reason == "socket":
                log.notice(f"Skipping socket {display(index)}")
                return
            unreadable.add(index)
            writer.stats.errors += 1
            log.warning(f"Error reading {display(index)}: {reason}")

        try:
            state = merge_chain(old_state) if old_state else iter(())
            walk = selection.walk(on_skip)
            run_set(writer, walk, state, opts.max_blocksize, on_skip, unreadable)
            writer.finish()
        except BaseException:
            writer.abort()
            raise
        writer.stats.end_time = time.time()
        if opts.print_statistics:
            log.notice(writer.stats.report())
    return 0


@contextmanager
def _explain_missing_metadata(repo: Repository, opts: Options) -> Iterator[None]:
    """An incremental reads the last sets' signatures and manifest from the local cache; when
    the cache lacks them they are decrypted from the backend, which public-key encryption
    cannot do without the secret key. Say so in terms of what the user can do."""
    try:
        yield
    except GpgDecryptError as exc:
        if not exc.no_secret_key:
            raise
        raise GpgDecryptError(
            "An incremental backup needs the signatures of the previous backups; they are not "
            f"in the local cache ({repo.cache.directory}) and decrypting them from the backend "
            f"needs a secret key that is not here ({exc.message})",
            "restore that cache folder (--archive-dir/--name), import the secret key (and set "
            "PASSPHRASE if it has one), or run a full backup",
            no_secret_key=True,
        ) from exc


def _check_source(source: str) -> bytes:
    if not os.path.isdir(source):
        what = "does not exist" if not os.path.lexists(source) else "is not a directory"
        raise SourceError(f"Source directory {source} {what}", "check the path you gave")
    return os.fsencode(os.path.abspath(source))


def _set_aside_unfinished(repo: Repository, col: Collection, log: Log) -> Collection:
    """A set interrupted before its manifest was stored is never built upon.

    Its local checkpoint files are removed so that the set counts as incomplete; its volumes
    stay on the backend until `cleanup`.
    """
    last = col.last_set()
    if last is None or last.manifest is not None:
        return col
    log.warning(
        f"The last backup (of {time.asctime(time.localtime(last.end_time))}) did not finish; "
        "starting a new set beside it (`cleanup --force` removes its volumes)"
    )
    if repo.dry_run:
        return col
    for name in repo.cache.names():
        parsed = parse(name, repo.prefixes)
        if parsed is not None and parsed.partial and parsed.end_time == last.end_time:
            repo.cache.remove(name)
    return repo.refresh()


def _backup_time(opts: Options, col: Collection) -> int:
    last_end = max((c.end_time for c in col.backup_chains), default=0)
    if opts.current_time is not None:
        if opts.current_time <= last_end:
            raise CommandLineError(
                f"--current-time {opts.current_time} is not after the last backup ({last_end})"
            )
        return opts.current_time
    now = int(time.time())
    if now <= last_end:
        # Set names have one-second resolution: never give two sets the same time.
        time.sleep(last_end + 1 - time.time())
        now = last_end + 1
    return now


def _want_full(opts: Options, col: Collection, now: int, log: Log) -> bool:
    chain = col.matched_chain
    if opts.command == "full":
        return True
    if chain is None or col.matched_sig_chain is None:
        if opts.command == "incremental":
            raise NoSignaturesError(
                "Unable to start incremental backup: no previous full backup with its "
                "signatures was found",
                "run `duplicity-ng full` first",
            )
        log.notice("No previous backup chain found: doing a full backup")
        return True
    if opts.full_if_older_than is not None and chain.start_time < opts.full_if_older_than:
        log.notice("Last full backup is older than --full-if-older-than: doing a full backup")
        return True
    return False


def _check_same_source(repo: Repository, last: BackupSet, source: bytes, opts: Options) -> None:
    if opts.allow_source_mismatch:
        return
    manifest = repo.manifest(last)
    # duplicity writes gethostname() and accepts that or the FQDN, as we do.
    hostnames = {socket.gethostname(), socket.getfqdn()}
    if manifest.hostname and manifest.hostname not in hostnames:
        raise HostnameMismatchError(
            f"The last backup to this target was made on host {manifest.hostname}, "
            f"this is {socket.gethostname()}",
            "pass --allow-source-mismatch if that is intended",
        )
    if manifest.localdir and manifest.localdir != source:
        raise SourceMismatchError(
            f"The last backup to this target was of {os.fsdecode(manifest.localdir)}, "
            f"not {os.fsdecode(source)}",
            "pass --allow-source-mismatch if that is intended",
        )
