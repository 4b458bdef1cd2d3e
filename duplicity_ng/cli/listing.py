"""list-current-files: the paths alive at a time, from the signature files alone."""

from __future__ import annotations

import time

from duplicity_ng.cli.context import open_repository
from duplicity_ng.entry import display
from duplicity_ng.log import Log
from duplicity_ng.options import Options
from duplicity_ng.sigstate import merge_chain, read_signatures
from duplicity_ng.timefmt import asctime


def run(opts: Options, log: Log) -> int:
    t = opts.restore_time if opts.restore_time is not None else int(time.time())
    with open_repository(opts, log) as repo:
        col = repo.refresh()
        chain = col.chain_for_time(t)
        sig_chain = col.sig_chain_for_time(t)
        t = min(t, chain.end_time)
        files = [read_signatures(repo.open_signatures(n), n) for n in sig_chain.names_up_to(t)]
        for record in merge_chain(files):
            log.always(f"{asctime(record.entry.mtime)} {display(record.entry.index)}")
    return 0
