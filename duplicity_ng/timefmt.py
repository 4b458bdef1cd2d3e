"""duplicity's time strings: file-name stamps, user-typed times and intervals, display forms.

Parsing follows duplicity's dup_time (genstrtotime, stringtotime, intstringtoseconds) closely
enough that `-t`/`remove-older-than` values select the same sets as duplicity, including two
of its habits that users would otherwise see as differences:

* times without a zone, and plain dates, are read in the local zone's *standard* offset
  (`time.timezone`): duplicity never applies DST there, so in summer `2023-07-01` means
  01:00 local daylight time;
* an offset `-hh:mm` with non-zero minutes is read as `-(hh*60 - mm)` minutes, which is
  what duplicity's `tzdtoseconds` does. Its `--old-filenames` writer has the mirror-image
  slip, so stamps it wrote for zones like -03:30 still come out right.
"""

from __future__ import annotations

import calendar
import re
import time

from duplicity_ng.errors import CommandLineError

_INTERVAL_UNITS = {
    "s": 1,
    "m": 60,
    "h": 3600,
    "D": 86400,
    "W": 7 * 86400,
    "M": 30 * 86400,
    "Y": 365 * 86400,
}
_INTERVAL_PART = re.compile(r"([0-9]+)([smhDWMY])")
_DIGITS = re.compile(r"[0-9]+")
_DATE_FORMS = (
    re.compile(r"(?P<year>[0-9]{4})[-/](?P<month>[0-9]{1,2})[-/](?P<day>[0-9]{1,2})"),
    re.compile(r"(?P<month>[0-9]{1,2})[-/](?P<day>[0-9]{1,2})[-/](?P<year>[0-9]{4})"),
    re.compile(r"(?P<year>[0-9]{4})(?P<month>[0-9]{2})(?P<day>[0-9]{2})Z"),
)
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"

_TIME_FORMS = (
    "now, seconds since the epoch, an interval ago like 3D2h (units s m h D W M Y), "
    "2023-11-14T22:13:20Z or with a -07:00 offset (no zone: local time), "
    "or a date 2023-11-14, 2023/11/14, 11/14/2023"
)
_INTERVAL_FORMS = "like 2Y or 2h30m; units s, m, h, D (day), W (week), M (30 days), Y (365 days)"


def parse_time(s: str, now: int | None = None) -> int:
    """A user-typed time (`-t`, `remove-older-than`) in epoch seconds, like genstrtotime."""
    current = int(time.time()) if now is None else now
    if s == "now":
        return current
    t = _absolute_time(s, allow_dates=False)
    if t is not None:
        return t
    seconds = _interval_seconds(s)
    if seconds is not None:
        return current - seconds
    t = _date(s)
    if t is not None:
        return t
    raise CommandLineError(f'Bad time string "{s}"', hint=f"accepted: {_TIME_FORMS}")


def parse_interval(s: str) -> int:
    """An interval like `3D2h` in seconds (duplicity's intstringtoseconds)."""
    seconds = _interval_seconds(s)
    if seconds is None:
        raise CommandLineError(f'Bad interval string "{s}"', hint=_INTERVAL_FORMS)
    return seconds


def timestamp(t: int) -> str:
    """The stamp used in backend file names: `YYYYMMDDTHHMMSSZ`, UTC."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t))


def parse_timestamp(s: str) -> int:
    """The time in a long file name. ValueError if it is not one.

    duplicity runs genstrtotime on the upper-cased field, so besides the usual UTC stamp it
    takes 0.8 `--old-filenames` stamps (`2002-04-26T04:22:01-07:00`), epoch integers and
    dates. Intervals and `now` are refused: a name cannot mean "relative to today".
    """
    upper = s.upper()
    t = _absolute_time(upper, allow_dates=True)
    if t is None:
        raise ValueError(f"not a duplicity time stamp: {s!r}")
    return t


def to_base36(t: int) -> str:
    """Lower-case base 36 as in short file names (`1700000000` -> `s44we8`)."""
    if t < 0:
        raise ValueError(f"cannot write a negative number in base 36: {t}")
    digits = []
    while True:
        t, digit = divmod(t, 36)
        digits.append(_BASE36[digit])
        if t == 0:
            return "".join(reversed(digits))


def from_base36(s: str) -> int:
    if not s or any(c not in _BASE36 for c in s):
        raise ValueError(f"not a lower-case base 36 number: {s!r}")
    return int(s, 36)


def asctime(t: int) -> str:
    """Local time as duplicity's timetopretty prints it: `Tue Nov 14 22:13:20 2023`."""
    return time.asctime(time.localtime(t))


def w3(t: int) -> str:
    """UTC W3C datetime for messages: `2023-11-14T22:13:20Z`."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def pretty_duration(seconds: float) -> str:
    """`2 hours 1 minute 3.50 seconds`, duplicity's inttopretty (statistics ElapsedTime)."""
    parts = []
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    for count, unit in ((int(hours), "hour"), (int(minutes), "minute")):
        if count > 1:
            parts.append(f"{count} {unit}s")
        elif count == 1:
            parts.append(f"1 {unit}")
    if seconds == 1:
        parts.append("1 second")
    elif not parts or seconds > 1:
        parts.append(f"{seconds} seconds" if isinstance(seconds, int) else f"{seconds:.2f} seconds")
    return " ".join(parts)


def _absolute_time(s: str, allow_dates: bool) -> int | None:
    """Epoch integers and W3C datetimes (dates too if asked), in genstrtotime's order."""
    if _DIGITS.fullmatch(s):
        return int(s)
    t = _stringtotime(s)
    if t is None:
        t = _stringtotime(s + _standard_tzd())
    if t is None and allow_dates:
        t = _date(s)
    return t


def _interval_seconds(s: str) -> int | None:
    if len(s) < 2:
        return None
    total = 0
    pos = 0
    while pos < len(s):
        m = _INTERVAL_PART.match(s, pos)
        if not m:
            return None
        total += int(m.group(1)) * _INTERVAL_UNITS[m.group(2)]
        pos = m.end()
    return total


def _date(s: str) -> int | None:
    """A calendar date at midnight, local standard time."""
    for form in _DATE_FORMS:
        m = form.fullmatch(s)
        if m:
            year, month, day = (int(m.group(k)) for k in ("year", "month", "day"))
            return _stringtotime(f"{year:04d}-{month:02d}-{day:02d}T00:00:00{_standard_tzd()}")
    return None


def _stringtotime(s: str) -> int | None:
    """duplicity's stringtotime: a 16-character UTC stamp, or W3C with a `Z`/`±hh:mm` zone.

    Like duplicity, the 16-character form does not look at its last character, and days past
    the end of a month roll over into the next one.
    """
    parts = s[:19].split("T")
    if len(parts) != 2:
        return None
    date, daytime = parts
    if len(s) == 16:
        fields = [date[0:4], date[4:6], date[6:8], daytime[0:2], daytime[2:4], daytime[4:6]]
    else:
        fields = date.split("-") + daytime.split(":")
        if len(fields) != 6:
            return None
    if not all(_DIGITS.fullmatch(f) for f in fields):
        return None
    year, month, day, hour, minute, second = map(int, fields)
    if not (
        1900 < year < 2100
        and 1 <= month <= 12
        and 1 <= day <= 31
        and hour <= 23
        and minute <= 59
        and second <= 61
    ):
        return None
    utc = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if len(s) == 16:
        return utc
    offset = _tzd_to_seconds(s[19:])
    return None if offset is None else utc + offset


def _tzd_to_seconds(tzd: str) -> int | None:
    """How far UTC is ahead of a `Z`/`±hh:mm` zone, with duplicity's sign handling."""
    if tzd == "Z":
        return 0
    if len(tzd) != 6 or tzd[0] not in "+-" or tzd[3] != ":":
        return None
    if not (_DIGITS.fullmatch(tzd[1:3]) and _DIGITS.fullmatch(tzd[4:])):
        return None
    # int("-03") * 60 + 30: the minutes are added even for a negative offset (duplicity's way).
    return -60 * (60 * int(tzd[:3]) + int(tzd[4:]))


def _standard_tzd() -> str:
    """duplicity's gettzd(0): the local standard offset as `Z` or `±hh:mm`."""
    offset = -time.timezone // 60
    if offset == 0:
        return "Z"
    sign = "+" if offset > 0 else "-"
    # divmod of a negative offset, then abs(): -210 -> (-4, 30) -> "-04:30", as duplicity writes.
    hours, minutes = (abs(v) for v in divmod(offset, 60))
    return f"{sign}{hours:02d}:{minutes:02d}"
