"""remove-older-than TIME, remove-all-but-n-full N, remove-all-inc-of-but-n-full N.

Old chains (or their incremental sets) go, never the current one. Without --force the command
only lists what would go, as duplicity does. See `deletion` for what is deleted and in which
order.
"""

from __future__ import annotations

from duplicity_ng.cli.context import open_repository
from duplicity_ng.collection import Collection, build_collection
from duplicity_ng.deletion import (
    RemovalPlan,
    SetFiles,
    find_missing_volumes,
    plan_removal,
    plan_unfinished_last,
    run_steps,
)
from duplicity_ng.log import Log
from duplicity_ng.options import Options
from duplicity_ng.repository import Repository
from duplicity_ng.timefmt import asctime


def run(opts: Options, log: Log) -> int:
    with open_repository(opts, log) as repo:
        col = repo.refresh()
        col, files = _drop_unfinished_last_set(repo, col, opts, log)
        plan = plan_removal(
            col,
            _remove_time(opts, col),
            files,
            incrementals_only=opts.command == "remove-all-inc-of-but-n-full",
        )
        _warn(plan, log)
        if not plan.chains:
            log.notice("No old backup sets found, nothing deleted.")
            return 0
        times = "\n".join(asctime(c.end_time) for c in plan.chains)
        if not opts.force:
            log.notice(
                f"Found old backup chain(s) at the following time:\n{times}\n"
                "Rerun command with --force option to actually delete."
            )
            for step in plan.steps:
                for name in step.remote_names:
                    log.info(f"Would delete {name}")
            return 0
        log.notice(f"Deleting backup chain(s) at time:\n{times}")
        for group in plan.groups:
            log.notice(group.heading)
            run_steps(group.steps, repo.backend, repo.cache, log, dry_run=opts.dry_run)
    return 0


def _remove_time(opts: Options, col: Collection) -> int:
    """remove-older-than's TIME, or the time of the N-th newest full (0 if there are fewer
    fulls: nothing is older than that)."""
    if opts.command == "remove-older-than":
        assert opts.remove_time is not None
        return opts.remove_time
    assert opts.keep_chains is not None
    return col.last_full_time(opts.keep_chains)


def _drop_unfinished_last_set(
    repo: Repository, col: Collection, opts: Options, log: Log
) -> tuple[Collection, SetFiles]:
    """With --force, first delete a last set that a backup left unfinished (duplicity 3.x).

    Returns the collection and file index to plan with: as they are after the deletion (or,
    under --dry-run, as they would be)."""
    last = col.last_set()
    missing = find_missing_volumes([last] if last is not None else [], repo.manifest, log.info)
    # Listed after the manifest was read: reading fetches it into the cache when missing.
    remote, local = list(repo.remote), repo.cache.names()
    files = SetFiles.index(remote, local, repo.prefixes)
    step = plan_unfinished_last(col, files, missing)
    if step is None:
        return col, files
    if not opts.force:
        log.notice(f"The last backup ({step.label}) did not finish; --force deletes it first")
        return col, files
    log.notice(f"Deleting the unfinished {step.label} first")
    run_steps([step], repo.backend, repo.cache, log, dry_run=opts.dry_run)
    if opts.dry_run:
        # Nothing was deleted: plan with the listings as they would be.
        gone_remote, gone_local = set(step.remote_names), set(step.local)
        remote = [n for n in remote if n not in gone_remote]
        local = [n for n in local if n not in gone_local]
        col = build_collection(remote, local, repo.prefixes)
    else:
        col = repo.refresh()
        remote, local = list(repo.remote), repo.cache.names()
    return col, SetFiles.index(remote, local, repo.prefixes)


def _warn(plan: RemovalPlan, log: Log) -> None:
    if plan.required:
        times = "\n".join(asctime(s.time) for s in plan.required)
        log.warning(
            f"There are backup set(s) at time(s):\n{times}\n"
            "Which can't be deleted because newer sets depend on them."
        )
    if plan.current_is_older:
        log.warning(
            "Current active backup chain is older than specified time.  However, it will "
            "not be deleted.  To remove all your backups, manually purge the repository."
        )
