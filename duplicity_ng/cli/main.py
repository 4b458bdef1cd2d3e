"""Entry point: parse the command line, run the command, turn errors into exit codes.

Every error a user can cause is a UserError and prints as one line; anything else is a bug,
reported in one line too (with a traceback only under --debug) and exit code 30, duplicity's
"unexpected exception".
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Callable

from duplicity_ng import __version__
from duplicity_ng.cli.options import parse_args
from duplicity_ng.errors import UserError
from duplicity_ng.log import Log
from duplicity_ng.options import Options

Command = Callable[[Options, Log], int]

# Command -> the module of duplicity_ng.cli whose run() does it. Only the module of the
# command being run is imported: start-up time is paid by every cron run.
COMMANDS: dict[str, str] = {
    "full": "backup",
    "incremental": "backup",
    "backup": "backup",
    "restore": "restore",
    "verify": "verify",
    "collection-status": "status",
    "list-current-files": "listing",
    "cleanup": "cleanup",
    "remove-older-than": "remove",
    "remove-all-but-n-full": "remove",
    "remove-all-inc-of-but-n-full": "remove",
}


def command(name: str) -> Command:
    return importlib.import_module(f"duplicity_ng.cli.{COMMANDS[name]}").run


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
        return command(opts.command)(opts, log)
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
