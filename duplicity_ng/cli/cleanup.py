"""cleanup: delete what no restore can use (FORMAT.md 6.7).

Sets outside every chain, sets without a manifest, damaged sets nothing builds on, orphaned
signature files and stray temporary uploads; on the backend and in the local cache. Without
--force the files are only listed, as duplicity does.
"""

from __future__ import annotations

from duplicity_ng.backends.base import capabilities_of
from duplicity_ng.backends.verify import is_temp_name
from duplicity_ng.backends.wrapper import innermost
from duplicity_ng.cli.context import open_repository
from duplicity_ng.deletion import (
    SetFiles,
    find_missing_volumes,
    plan_cleanup,
    run_steps,
    set_label,
)
from duplicity_ng.log import Log
from duplicity_ng.options import Options
from duplicity_ng.repository import Repository


def run(opts: Options, log: Log) -> int:
    with open_repository(opts, log) as repo:
        col = repo.refresh()
        chained = [s for chain in col.backup_chains for s in chain.sets]
        missing = find_missing_volumes(chained, repo.manifest, log.warning)
        # Indexed after the manifests were read: reading fetches missing ones into the cache.
        files = SetFiles.index(list(repo.remote), repo.cache.names(), repo.prefixes)
        plan = plan_cleanup(col, files, missing, _stray_uploads(repo))
        for bset, volumes in plan.damaged_kept:
            log.warning(
                f"The {set_label(bset)} is missing volume(s) {', '.join(map(str, volumes))}; "
                "it is kept, since later backups build on it"
            )
        listing = plan.remote_names + [str(repo.cache.path(n)) for n in plan.local_names]
        if not listing:
            log.warning("No extraneous files found, nothing deleted in cleanup.")
            return 0
        text = "\n".join(listing)
        if not opts.force:
            log.notice(
                f"Found the following file(s) to delete:\n{text}\n"
                "Run duplicity-ng again with the --force option to actually delete."
            )
            return 0
        log.notice(f"Deleting these file(s) from backend:\n{text}")
        run_steps(plan.steps, repo.backend, repo.cache, log, dry_run=opts.dry_run)
    return 0


def _stray_uploads(repo: Repository) -> list[str]:
    """Temporary names of uploads that never finished (a crash between upload and rename).

    The wrappers hide them from listings, so this asks the storage itself; only backends
    uploading through a temporary name (those that can rename) can have any."""
    if not capabilities_of(repo.backend).rename:
        return []
    return [f.name for f in innermost(repo.backend).list() if is_temp_name(f.name)]
