"""Messages to the user, filtered by duplicity's verbosity levels.

Notices and info go to stdout, warnings and errors to stderr, as duplicity does. A Log is
passed to whoever needs it; there is no global logger state.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from typing import TextIO

ERROR = 0
WARNING = 2
NOTICE = 3
INFO = 5
DEBUG = 9

LEVEL_NAMES = {
    "e": ERROR,
    "error": ERROR,
    "w": WARNING,
    "warning": WARNING,
    "n": NOTICE,
    "notice": NOTICE,
    "i": INFO,
    "info": INFO,
    "d": DEBUG,
    "debug": DEBUG,
}


def parse_level(value: str) -> int | None:
    value = value.lower()
    if value in LEVEL_NAMES:
        return LEVEL_NAMES[value]
    if value.isdigit() and 0 <= int(value) <= 9:
        return int(value)
    return None


@dataclass
class Log:
    verbosity: int = NOTICE
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _emit(self, level: int, message: str, stream: TextIO) -> None:
        if level > self.verbosity:
            return
        with self._lock:
            # Paths carry undecodable bytes as surrogates: print them, never crash on them.
            data = (message + "\n").encode("utf-8", "surrogateescape")
            stream.flush()
            buffer = getattr(stream, "buffer", None)
            if buffer is not None:
                buffer.write(data)
                buffer.flush()
            else:
                stream.write(data.decode("utf-8", "replace"))

    def error(self, message: str) -> None:
        self._emit(ERROR, message, self.err)

    def warning(self, message: str) -> None:
        self._emit(WARNING, message, self.err)

    def notice(self, message: str) -> None:
        self._emit(NOTICE, message, self.out)

    def info(self, message: str) -> None:
        self._emit(INFO, message, self.out)

    def debug(self, message: str) -> None:
        self._emit(DEBUG, message, self.out)

    def always(self, message: str) -> None:
        """Command output proper (listings, status): printed whatever the verbosity."""
        self._emit(ERROR, message, self.out)
