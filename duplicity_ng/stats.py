"""Backup statistics, printed as duplicity prints its `[ Backup Statistics ]` block."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

_ABBREVIATIONS = ((1024**4, "TB"), (1024**3, "GB"), (1024**2, "MB"), (1024, "KB"))


def pretty_bytes(count: int) -> str:
    sign = "-" if count < 0 else ""
    count = abs(count)
    for unit, name in _ABBREVIATIONS:
        if count >= unit:
            value = count / unit
            precision = 0 if value >= 100 else 1 if value >= 10 else 2
            return f"{sign}{value:.{precision}f} {name}"
    return f"{sign}1 byte" if count == 1 else f"{sign}{count} bytes"


def pretty_seconds(seconds: float) -> str:
    parts = []
    hours, seconds = divmod(seconds, 3600)
    if hours >= 1:
        parts.append("1 hour" if int(hours) == 1 else f"{int(hours)} hours")
    minutes, seconds = divmod(seconds, 60)
    if minutes >= 1:
        parts.append("1 minute" if int(minutes) == 1 else f"{int(minutes)} minutes")
    if seconds == 1:
        parts.append("1 second")
    elif not parts or seconds > 1:
        parts.append(f"{seconds:.2f} seconds")
    return " ".join(parts)


@dataclass
class BackupStats:
    start_time: float = field(default_factory=time.time)
    end_time: float | None = None
    source_files: int = 0
    source_file_size: int = 0
    new_files: int = 0
    new_file_size: int = 0
    deleted_files: int = 0
    changed_files: int = 0
    changed_file_size: int = 0
    changed_delta_size: int = 0  # duplicity never fills this in either
    delta_entries: int = 0
    raw_delta_size: int = 0
    total_destination_size_change: int = 0
    errors: int = 0

    def report(self) -> str:
        end = self.end_time if self.end_time is not None else time.time()
        elapsed = end - self.start_time
        lines = [
            f"StartTime {self.start_time:.2f} ({time.asctime(time.localtime(self.start_time))})",
            f"EndTime {end:.2f} ({time.asctime(time.localtime(end))})",
            f"ElapsedTime {elapsed:.2f} ({pretty_seconds(elapsed)})",
            f"SourceFiles {self.source_files}",
            self._bytes("SourceFileSize", self.source_file_size),
            f"NewFiles {self.new_files}",
            self._bytes("NewFileSize", self.new_file_size),
            f"DeletedFiles {self.deleted_files}",
            f"ChangedFiles {self.changed_files}",
            self._bytes("ChangedFileSize", self.changed_file_size),
            self._bytes("ChangedDeltaSize", self.changed_delta_size),
            f"DeltaEntries {self.delta_entries}",
            self._bytes("RawDeltaSize", self.raw_delta_size),
            self._bytes("TotalDestinationSizeChange", self.total_destination_size_change),
            f"Errors {self.errors}",
        ]
        header = "--------------[ Backup Statistics ]--------------"
        return "\n".join([header, *lines, "-" * len(header)])

    @staticmethod
    def _bytes(name: str, value: int) -> str:
        return f"{name} {value} ({pretty_bytes(value)})"
