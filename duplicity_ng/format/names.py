"""Backend file names <-> set descriptors (FORMAT.md section 1).

Writers produce only the long names duplicity 3.x writes (`duplicity-full.<T>.vol1.difftar.gz`
...). The parser also accepts 0.8's `--short-filenames` forms (base-36 times, `df.s44we8.1.dt.g`)
and the local-time W3C stamps of 0.8's `--old-filenames` (`2002-04-26T04:22:01-07:00`), since
archives with such names may still be restored.

Names are `str`: backend listings are text, and the only non-ASCII part a name can carry is a
user-given prefix.
"""

from __future__ import annotations

import calendar
import enum
import re
import time
from dataclasses import dataclass
from functools import lru_cache


class SetKind(enum.Enum):
    FULL = "full"
    INC = "inc"


class FileKind(enum.Enum):
    VOLUME = "volume"
    MANIFEST = "manifest"
    SIGNATURE = "signature"
    JSONSTAT = "jsonstat"


@dataclass(frozen=True)
class Prefixes:
    """`--file-prefix` and the per-kind prefixes; a name is `base + kind prefix + name`."""

    base: str = ""
    archive: str = ""
    manifest: str = ""
    signature: str = ""
    jsonstat: str = ""

    def for_kind(self, kind: FileKind) -> str:
        extra = {
            FileKind.VOLUME: self.archive,
            FileKind.MANIFEST: self.manifest,
            FileKind.SIGNATURE: self.signature,
            FileKind.JSONSTAT: self.jsonstat,
        }[kind]
        return self.base + extra


@dataclass(frozen=True)
class ParsedName:
    name: str
    kind: FileKind
    set_kind: SetKind
    start_time: int  # full: == end_time
    end_time: int
    volume: int | None  # volumes only
    partial: bool  # ".part" / ".p"
    encrypted: bool  # .gpg / .g / .p7m
    compressed: bool  # .gz / .z
    short: bool

    @property
    def time(self) -> int:
        """The time a set is known by: a full's time, an incremental's end time."""
        return self.end_time


# --- time strings ----------------------------------------------------------------------------

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _to_base36(n: int) -> str:
    if n < 0:
        raise ValueError(f"negative number {n} has no base-36 name form")
    digits = []
    while True:
        n, d = divmod(n, 36)
        digits.append(_B36[d])
        if n == 0:
            return "".join(reversed(digits))


def _from_base36(s: str) -> int | None:
    if not s or any(c not in _B36 for c in s):
        return None
    return int(s, 36)


def _timestamp(t: int) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t))


_UTC_RE = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z")
_W3_RE = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})T(\d{1,2}):(\d{1,2}):(\d{1,2})(?P<tzd>Z|[+-]\d{2}:\d{2})?"
)
_DATE_RES = (
    re.compile(r"(?P<year>\d{4})[-/](?P<month>\d{1,2})[-/](?P<day>\d{1,2})"),
    re.compile(r"(?P<month>\d{1,2})[-/](?P<day>\d{1,2})[-/](?P<year>\d{4})"),
    re.compile(r"(?P<year>\d{4})(?P<month>\d{2})(?P<day>\d{2})Z"),
)


def _timegm(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int | None:
    # The same plausibility limits duplicity's stringtotime asserts.
    if not (
        1900 < year < 2100
        and 1 <= month <= 12
        and 1 <= day <= 31
        and 0 <= hour <= 23
        and 0 <= minute <= 59
        and 0 <= second <= 61
    ):
        return None
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))


def _tzd_seconds_ahead(tzd: str) -> int:
    """How far UTC is ahead of a W3C zone designator, computed exactly as duplicity does.

    duplicity writes a negative half-hour zone (-07:30) as "-08:30" and reads it back with the
    minutes added to the negative hours; keeping its formula keeps those names' times right.
    """
    if tzd == "Z":
        return 0
    return -60 * (60 * int(tzd[:3]) + int(tzd[4:]))


def _parse_long_time(field: str) -> int | None:
    """A time field of a long name; what duplicity's genstrtotime accepts, minus intervals."""
    s = field.upper()
    if s.isdigit():
        return int(s)
    if m := _UTC_RE.fullmatch(s):
        return _timegm(*map(int, m.groups()))
    if m := _W3_RE.fullmatch(s):
        t = _timegm(*map(int, m.groups()[:6]))
        if t is None:
            return None
        # Without a zone duplicity assumes local standard time (it cannot know about DST).
        return t + (_tzd_seconds_ahead(m["tzd"]) if m["tzd"] else time.timezone)
    for date_re in _DATE_RES:
        if m := date_re.fullmatch(s):
            t = _timegm(int(m["year"]), int(m["month"]), int(m["day"]), 0, 0, 0)
            return None if t is None else t + time.timezone
    # Intervals ("3D") are relative to now and make no sense in a stored name.
    return None


# --- parsing ---------------------------------------------------------------------------------

# What may follow the type marker: an optional partial mark, then at most one known suffix.
# duplicity accepts any ".anything" there; being strict keeps par2 files and other strays out.
_TAIL_LONG = r"(?P<partial>\.part)?(?P<suffix>\.gpg|\.gz|\.p7m|\.g|\.z)?"
_TAIL_SHORT = r"(?P<partial>\.p)?(?P<suffix>\.gpg|\.gz|\.p7m|\.g|\.z)?"

_B36_FIELD = r"[0-9a-z]+?"

# (file kind, set kind, short?, pattern after the prefix); tried in order, short forms first
# like duplicity does.
_PATTERNS: tuple[tuple[FileKind, SetKind, bool, str], ...] = (
    (
        FileKind.VOLUME,
        SetKind.FULL,
        True,
        rf"df\.(?P<t>{_B36_FIELD})\.(?P<n>[0-9a-z]+)\.dt{_TAIL_SHORT}",
    ),
    (FileKind.MANIFEST, SetKind.FULL, True, rf"df\.(?P<t>{_B36_FIELD})\.m{_TAIL_SHORT}"),
    (
        FileKind.VOLUME,
        SetKind.FULL,
        False,
        rf"duplicity-full\.(?P<t>.+?)\.vol(?P<n>[0-9]+)\.difftar{_TAIL_LONG}",
    ),
    (FileKind.MANIFEST, SetKind.FULL, False, rf"duplicity-full\.(?P<t>.+?)\.manifest{_TAIL_LONG}"),
    (
        FileKind.VOLUME,
        SetKind.INC,
        True,
        rf"di\.(?P<t1>{_B36_FIELD})\.(?P<t2>{_B36_FIELD})\.(?P<n>[0-9a-z]+)\.dt{_TAIL_SHORT}",
    ),
    (
        FileKind.MANIFEST,
        SetKind.INC,
        True,
        rf"di\.(?P<t1>{_B36_FIELD})\.(?P<t2>{_B36_FIELD})\.m{_TAIL_SHORT}",
    ),
    (
        FileKind.VOLUME,
        SetKind.INC,
        False,
        rf"duplicity-inc\.(?P<t1>.+?)\.to\.(?P<t2>.+?)\.vol(?P<n>[0-9]+)\.difftar{_TAIL_LONG}",
    ),
    (
        FileKind.MANIFEST,
        SetKind.INC,
        False,
        rf"duplicity-inc\.(?P<t1>.+?)\.to\.(?P<t2>.+?)\.manifest{_TAIL_LONG}",
    ),
    (FileKind.SIGNATURE, SetKind.FULL, True, rf"dfs\.(?P<t>{_B36_FIELD})\.st{_TAIL_SHORT}"),
    (
        FileKind.SIGNATURE,
        SetKind.FULL,
        False,
        rf"duplicity-full-signatures\.(?P<t>.+?)\.sigtar{_TAIL_LONG}",
    ),
    (
        FileKind.SIGNATURE,
        SetKind.INC,
        True,
        rf"dns\.(?P<t1>{_B36_FIELD})\.(?P<t2>{_B36_FIELD})\.st{_TAIL_SHORT}",
    ),
    (
        FileKind.SIGNATURE,
        SetKind.INC,
        False,
        rf"duplicity-new-signatures\.(?P<t1>.+?)\.to\.(?P<t2>.+?)\.sigtar{_TAIL_LONG}",
    ),
    # 3.x's short jsonstat form keeps the ".to." of the long one.
    (FileKind.JSONSTAT, SetKind.FULL, True, rf"dfst\.(?P<t>{_B36_FIELD})\.jst{_TAIL_SHORT}"),
    (
        FileKind.JSONSTAT,
        SetKind.INC,
        True,
        rf"dist\.(?P<t1>{_B36_FIELD})\.to\.(?P<t2>{_B36_FIELD})\.jst{_TAIL_SHORT}",
    ),
    (FileKind.JSONSTAT, SetKind.FULL, False, rf"duplicity-full\.(?P<t>.+?)\.jsonstat{_TAIL_LONG}"),
    (
        FileKind.JSONSTAT,
        SetKind.INC,
        False,
        rf"duplicity-inc\.(?P<t1>.+?)\.to\.(?P<t2>.+?)\.jsonstat{_TAIL_LONG}",
    ),
)


@lru_cache(maxsize=32)
def _compiled(prefixes: Prefixes) -> tuple[tuple[FileKind, SetKind, bool, re.Pattern[str]], ...]:
    return tuple(
        (kind, set_kind, short, re.compile(re.escape(prefixes.for_kind(kind)) + body))
        for kind, set_kind, short, body in _PATTERNS
    )


def parse(name: str, prefixes: Prefixes = Prefixes()) -> ParsedName | None:  # noqa: B008
    """Describe a backend or cache file name; None for anything that is not ours."""
    for kind, set_kind, short, pattern in _compiled(prefixes):
        m = pattern.fullmatch(name)
        if m is None:
            continue
        parsed = _from_match(name, m, kind, set_kind, short)
        if parsed is not None:
            return parsed
    return None


def _from_match(
    name: str, m: re.Match[str], kind: FileKind, set_kind: SetKind, short: bool
) -> ParsedName | None:
    to_time = _from_base36 if short else _parse_long_time
    groups = m.groupdict()
    if set_kind is SetKind.FULL:
        start = end = to_time(groups["t"])
    else:
        start, end = to_time(groups["t1"]), to_time(groups["t2"])
    # duplicity treats a zero time as unparseable too.
    if not start or not end:
        return None
    volume = None
    if kind is FileKind.VOLUME:
        volume = _from_base36(groups["n"]) if short else int(groups["n"])
        if not volume:
            return None
    suffix = groups["suffix"] or ""
    return ParsedName(
        name=name,
        kind=kind,
        set_kind=set_kind,
        start_time=start,
        end_time=end,
        volume=volume,
        partial=groups["partial"] is not None,
        encrypted=suffix in (".gpg", ".g", ".p7m"),
        compressed=suffix in (".gz", ".z"),
        short=short,
    )


# --- writing ---------------------------------------------------------------------------------


def _suffix(encrypted: bool, compressed: bool) -> str:
    # Encryption wins: an encrypted file is never also named .gz.
    if encrypted:
        return ".gpg"
    return ".gz" if compressed else ""


def _times(set_kind: SetKind, start: int, end: int) -> str:
    if set_kind is SetKind.FULL:
        if start != end:
            raise ValueError(f"a full set has one time, got start {start} != end {end}")
        return _timestamp(end)
    return f"{_timestamp(start)}.to.{_timestamp(end)}"


def volume_name(
    set_kind: SetKind,
    start: int,
    end: int,
    volume: int,
    *,
    encrypted: bool,
    compressed: bool,
    prefixes: Prefixes = Prefixes(),  # noqa: B008
) -> str:
    if volume < 1:
        raise ValueError(f"volume numbers start at 1, got {volume}")
    return (
        f"{prefixes.for_kind(FileKind.VOLUME)}duplicity-{set_kind.value}."
        f"{_times(set_kind, start, end)}.vol{volume}.difftar{_suffix(encrypted, compressed)}"
    )


def manifest_name(
    set_kind: SetKind,
    start: int,
    end: int,
    *,
    encrypted: bool,
    partial: bool = False,
    prefixes: Prefixes = Prefixes(),  # noqa: B008
) -> str:
    # Manifests are never gzipped.
    part = ".part" if partial else ""
    return (
        f"{prefixes.for_kind(FileKind.MANIFEST)}duplicity-{set_kind.value}."
        f"{_times(set_kind, start, end)}.manifest{part}{_suffix(encrypted, False)}"
    )


def signature_name(
    set_kind: SetKind,
    start: int,
    end: int,
    *,
    encrypted: bool,
    compressed: bool,
    partial: bool = False,
    prefixes: Prefixes = Prefixes(),  # noqa: B008
) -> str:
    stem = "duplicity-full-signatures" if set_kind is SetKind.FULL else "duplicity-new-signatures"
    part = ".part" if partial else ""
    return (
        f"{prefixes.for_kind(FileKind.SIGNATURE)}{stem}."
        f"{_times(set_kind, start, end)}.sigtar{part}{_suffix(encrypted, compressed)}"
    )


def jsonstat_name(
    set_kind: SetKind,
    start: int,
    end: int,
    *,
    encrypted: bool,
    compressed: bool,
    partial: bool = False,
    prefixes: Prefixes = Prefixes(),  # noqa: B008
) -> str:
    """3.x `--jsonstat` statistics file of a set."""
    part = ".part" if partial else ""
    return (
        f"{prefixes.for_kind(FileKind.JSONSTAT)}duplicity-{set_kind.value}."
        f"{_times(set_kind, start, end)}.jsonstat{part}{_suffix(encrypted, compressed)}"
    )
