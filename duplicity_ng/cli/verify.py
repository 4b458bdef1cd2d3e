"""verify: check the backup against a local directory."""

from __future__ import annotations

import os

from duplicity_ng.cli.context import open_repository
from duplicity_ng.cli.restore import plan_sources, run_restorer
from duplicity_ng.entry import index_from_path
from duplicity_ng.errors import SourceError
from duplicity_ng.log import Log
from duplicity_ng.options import Options
from duplicity_ng.selection import Selection
from duplicity_ng.verify import Comparer


def run(opts: Options, log: Log) -> int:
    if not os.path.lexists(opts.source):
        raise SourceError(f"Directory {opts.source} to verify against does not exist", exit_code=12)
    # As in duplicity, DIR stands for the backed-up path, whether or not -r narrows it.
    subtree = index_from_path(opts.path_to_restore or b"")
    with open_repository(opts, log) as repo:
        col = repo.refresh()
        sources = plan_sources(repo, col, opts, subtree, log, "Verifying")
        local = Selection(os.fsencode(opts.source), opts.selection).walk()
        comparer = Comparer(local, log, compare_data=opts.compare_data)
        # Not `comparer.differences += run_restorer(...)`: that reads the count before the
        # run and would drop every difference found during it.
        unrebuilt = run_restorer(repo, sources, subtree, comparer, log, opts.concurrency)
        comparer.differences += unrebuilt
    log.notice(
        f"Verify complete: {comparer.compared} file(s) compared, "
        f"{comparer.differences} difference(s) found."
    )
    return 1 if comparer.differences else 0
