"""Entry point: parse the command line, run the command, turn errors into exit codes.

Every error a user can cause is a UserError and prints as one line; anything else is a bug,
reported in one line too (with a traceback only under --debug) and exit code 30, duplicity's
"unexpected exception".
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterator

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


@contextlib.contextmanager
def library_threads_quiet(debug: bool) -> Iterator[None]:
    """Keep a library's helper thread that dies from printing a traceback.

    paramiko's SFTP prefetch thread raises EOFError when the connection drops during a
    download; the download itself then fails (and is retried) with a clear error of its
    own. Our own threads hand their exceptions to the caller and never end up here.
    """
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if debug:
            previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


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
        with library_threads_quiet(debug):
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
