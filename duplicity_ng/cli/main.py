"""Entry point: parse the command line, run the command, turn errors into exit codes.

Every error a user can cause is a UserError and prints as one line; anything else is a bug,
reported in one line too (with a traceback only under --debug) and exit code 30, duplicity's
"unexpected exception".
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable

from duplicity_ng import __version__
from duplicity_ng.cli import backup, cleanup, listing, remove, restore, status, verify
from duplicity_ng.cli.options import parse_args
from duplicity_ng.errors import UserError
from duplicity_ng.log import Log
from duplicity_ng.options import Options

Command = Callable[[Options, Log], int]

COMMANDS: dict[str, Command] = {
    "full": backup.run,
    "incremental": backup.run,
    "backup": backup.run,
    "restore": restore.run,
    "verify": verify.run,
    "collection-status": status.run,
    "list-current-files": listing.run,
    "cleanup": cleanup.run,
    "remove-older-than": remove.run,
    "remove-all-but-n-full": remove.run,
    "remove-all-inc-of-but-n-full": remove.run,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    log = Log()
    try:
        opts = parse_args(argv)
        if opts.command == "version":
            log.always(f"duplicity-ng {__version__}")
            return 0
        log.verbosity = opts.verbosity
        debug = opts.debug
        return COMMANDS[opts.command](opts, log)
    except UserError as exc:
        if debug:
            traceback.print_exc()
        log.error(exc.line())
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("Interrupted")
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`list-current-files | head`): stop quietly,
        # and keep Python from complaining again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a process killed by it
    except Exception as exc:  # noqa: BLE001 - the one place that turns bugs into a line
        if debug:
            traceback.print_exc()
        log.error(f"Unexpected error: {type(exc).__name__}: {exc} (run with --debug for details)")
        return 30


if __name__ == "__main__":
    sys.exit(main())
