"""collection-status: the chains and sets on the backend."""

from __future__ import annotations

from duplicity_ng.cli.context import open_repository
from duplicity_ng.log import Log
from duplicity_ng.options import Options


def run(opts: Options, log: Log) -> int:
    with open_repository(opts, log) as repo:
        col = repo.refresh()
        log.always(col.status_text(str(repo.cache.directory)))
    return 0
