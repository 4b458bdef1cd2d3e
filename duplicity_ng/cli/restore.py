"""restore: bring back the tree (or one path) as it was at a given time."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from duplicity_ng.cli.context import open_repository
from duplicity_ng.collection import Collection
from duplicity_ng.entry import Entry, Index, display, index_from_path
from duplicity_ng.errors import NothingToRestoreError, TargetNotEmptyError, UserError
from duplicity_ng.log import Log
from duplicity_ng.options import Options
from duplicity_ng.repository import Repository
from duplicity_ng.restore import DataWriter, Restorer, RestoreSink, SetSource
from duplicity_ng.target import DirectoryWriter
from duplicity_ng.usermap import OwnerMap


def run(opts: Options, log: Log) -> int:
    target = os.fsencode(os.path.abspath(opts.source))
    _check_target(target, opts.force)
    with open_repository(opts, log) as repo:
        col = repo.refresh()
        subtree = index_from_path(opts.path_to_restore or b"")
        sources = plan_sources(repo, col, opts, subtree, log, "Restoring")
        if opts.dry_run:
            listing = DryRunListing(log)
            run_restorer(repo, sources, subtree, listing, log, opts.concurrency)
            log.notice(f"Dry run: would restore {listing.paths} path(s); nothing was written")
            return 0
        writer = DirectoryWriter(
            target, log, OwnerMap(opts.numeric_owner), restore_ownership=opts.restore_ownership
        )
        errors = run_restorer(repo, sources, subtree, writer, log, opts.concurrency)
    errors += writer.errors
    if errors:
        raise UserError(f"Restore finished with {errors} error(s)", exit_code=1)
    return 0


@dataclass
class DryRunListing:
    """A RestoreSink for --dry-run: names what would be restored, writes nothing.

    The volumes are still fetched and checked against their manifests, so a dry run also
    tells whether the restore would succeed."""

    log: Log
    paths: int = 0

    def file(self, entry: Entry, write_data: DataWriter) -> None:
        self.special(entry)

    def special(self, entry: Entry) -> None:
        self.paths += 1
        self.log.info(f"Dry run: would restore {display(entry.index)}")

    def finish(self) -> None:
        pass


def _check_target(target: bytes, force: bool) -> None:
    if force or not os.path.lexists(target):
        return
    if os.path.isdir(target) and not os.path.islink(target) and not os.listdir(target):
        return
    raise TargetNotEmptyError(
        f"Restore destination {os.fsdecode(target)} already exists and is not empty; "
        "will not overwrite",
        "restore into a new or empty folder, or pass --force",
    )


def plan_sources(
    repo: Repository, col: Collection, opts: Options, subtree: Index, log: Log, verb: str
) -> list[SetSource]:
    """The sets to read for the requested time, and the volumes of each that are needed."""
    t = opts.restore_time if opts.restore_time is not None else int(time.time())
    chain = col.chain_for_time(t)
    sources = []
    for bset in chain.sets_up_to(t):
        if bset.manifest is None:
            log.warning(
                f"Ignoring the unfinished backup set of "
                f"{time.asctime(time.localtime(bset.end_time))}"
            )
            break
        manifest = repo.manifest(bset)
        volumes = manifest.containing_volumes(subtree) if subtree else sorted(manifest.volumes)
        sources.append(SetSource(bset, manifest, volumes))
    if not sources:
        raise NothingToRestoreError("No complete backup set to restore from", exit_code=20)
    when = time.asctime(time.localtime(sources[-1].bset.end_time))
    log.notice(f"{verb} the backup of {when}")
    return sources


def run_restorer(
    repo: Repository,
    sources: list[SetSource],
    subtree: Index,
    sink: RestoreSink,
    log: Log,
    concurrency: int,
) -> int:
    """Run the restore into `sink`; returns the number of paths that could not be rebuilt."""
    restorer = Restorer(repo, sources, subtree, sink, log, repo.workdir, concurrency)
    restorer.run()
    return restorer.stats.errors
