"""collection-status: the chains and sets on the backend."""

from __future__ import annotations

import time

from duplicity_ng.cli.context import open_repository
from duplicity_ng.log import Log
from duplicity_ng.options import Options


def run(opts: Options, log: Log) -> int:
    with open_repository(opts, log) as repo:
        col = repo.refresh()
        last_full = col.last_full_time()
        when = time.asctime(time.localtime(last_full)) if last_full else "none"
        log.always(f"Last full backup date: {when}")
        log.always(col.status_text(str(repo.cache.directory)))
    return 0
