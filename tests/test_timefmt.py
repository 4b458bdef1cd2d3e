"""duplicity_ng.timefmt, checked against duplicity 0.8.22's own dup_time where it is installed.

The reference runs in one child process per time zone under the system Python (where Debian's
duplicity lives), so duplicity's module-global state never touches this process.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from duplicity_ng import timefmt
from duplicity_ng.errors import CommandLineError

NOW = 1700000000  # 2023-11-14T22:13:20Z
SYSTEM_PYTHON = "/usr/bin/python3"
HAVE_REFERENCE = (
    Path(SYSTEM_PYTHON).exists()
    and Path("/usr/lib/python3/dist-packages/duplicity/dup_time.py").exists()
)
needs_reference = pytest.mark.skipif(not HAVE_REFERENCE, reason="duplicity 0.8 not installed")

# POSIX rules, so the tests need no tzdata: a plain zone, one with DST, one with a negative
# half-hour offset (Newfoundland) and one with a positive one (India).
ZONES = [
    "UTC0",
    "EST5EDT,M3.2.0,M11.1.0",
    "NST3:30NDT,M3.2.0,M11.1.0",
    "IST-5:30",
    "CET-1CEST,M3.5.0,M10.5.0/3",
]

_REFERENCE_SCRIPT = r"""
import builtins, json, sys
builtins._ = lambda s: s
from duplicity import dup_time, file_naming
now, calls = json.load(sys.stdin)
out = []
for func, arg in calls:
    try:
        if func == "genstrtotime":
            out.append(dup_time.genstrtotime(arg, override_curtime=now))
        elif func == "intstringtoseconds":
            out.append(dup_time.intstringtoseconds(arg))
        elif func == "filename_time":
            out.append(dup_time.genstrtotime(arg.upper(), override_curtime=now))
        elif func == "timetostring":
            out.append(dup_time.timetostring(arg))
        elif func == "timetopretty":
            out.append(dup_time.timetopretty(arg))
        elif func == "inttopretty":
            out.append(dup_time.inttopretty(arg))
        elif func == "to_base36":
            out.append(file_naming.to_base36(arg).decode())
        else:
            raise SystemExit("unknown " + func)
    except dup_time.TimeException:
        out.append("error")
json.dump(out, sys.stdout)
"""


def reference(zone: str, calls: list[tuple[str, object]]) -> list[object]:
    env = {**os.environ, "TZ": zone}
    done = subprocess.run(
        [SYSTEM_PYTHON, "-c", _REFERENCE_SCRIPT],
        input=json.dumps([NOW, calls]),
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd="/",
    )
    return json.loads(done.stdout)


@contextmanager
def local_zone(zone: str) -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def ours(func: str, arg: object) -> object:
    try:
        if func == "genstrtotime":
            return timefmt.parse_time(str(arg), now=NOW)
        if func == "intstringtoseconds":
            return timefmt.parse_interval(str(arg))
        if func == "timetostring":
            return timefmt.timestamp(int(arg))  # type: ignore[call-overload]
        if func == "timetopretty":
            return timefmt.asctime(int(arg))  # type: ignore[call-overload]
        if func == "inttopretty":
            return timefmt.pretty_duration(arg)  # type: ignore[arg-type]
        if func == "to_base36":
            return timefmt.to_base36(int(arg))  # type: ignore[call-overload]
    except CommandLineError:
        return "error"
    raise AssertionError(func)


HAND_PICKED = [
    "now",
    "0",
    "1700000000",
    "20231114",  # an all-digit string is epoch seconds, not a date
    "2023-11-14T22:13:20Z",
    "2023-11-14T22:13:20+01:00",
    "2023-11-14T22:13:20-07:00",
    "2023-11-14T22:13:20-03:30",
    "2023-11-14T22:13:20+05:30",
    "2023-07-14T22:13:20",  # no zone, summer
    "2023-11-14T22:13:20",  # no zone, winter
    "20231114T221320Z",
    "20231114T221320",
    "2023-11-14",
    "2023/11/14",
    "2023-7-4",
    "2023/07-04",
    "11/14/2023",
    "7/4/2023",
    "11-14-2023",
    "20231114Z",
    "2023-02-30",  # rolls over into March, as in duplicity
    "2023-13-01",
    "2023-00-10",
    "2100-01-01",
    "1900-06-01",
    "1901-06-01",
    "3D",
    "3D2h",
    "1W",
    "10s",
    "2M",
    "1Y",
    "2h30m",
    "0s",
    "5",
    "s",
    "3d",
    "3D2",
    "D3",
    "",
    "yesterday",
    "2023-11-14T25:00:00Z",
    "2023-11-14T22:13:61Z",
    "2023-11-14T22:13:20+0100",
    "2023-11-14 22:13:20",
    " 2023-11-14",
]


def _random_cases(rng: random.Random, n: int) -> list[str]:
    cases = []
    for _ in range(n):
        year = rng.choice([1901, 1969, 2000, 2023, 2038, 2099, rng.randint(1971, 2099)])
        month = rng.randint(0, 13)
        day = rng.randint(0, 32)
        hh, mm, ss = rng.randint(0, 24), rng.randint(0, 60), rng.randint(0, 62)
        zone = rng.choice(
            ["Z", "", "+01:00", "-07:00", "-03:30", "+05:45", "+14:00", "-12:00", "+00:00"]
        )
        form = rng.randrange(6)
        if form == 0:
            cases.append(f"{year:04d}-{month:02d}-{day:02d}T{hh:02d}:{mm:02d}:{ss:02d}{zone}")
        elif form == 1:
            cases.append(f"{year:04d}{month:02d}{day:02d}T{hh:02d}{mm:02d}{ss:02d}Z")
        elif form == 2:
            sep1, sep2 = rng.choice("-/"), rng.choice("-/")
            cases.append(f"{year}{sep1}{month}{sep2}{day}")
        elif form == 3:
            cases.append(f"{month}/{day}/{year}")
        elif form == 4:
            units = rng.sample("smhDWMY", rng.randint(1, 3))
            cases.append("".join(f"{rng.randint(0, 400)}{u}" for u in units))
        else:
            cases.append(f"{year:04d}{month:02d}{day:02d}Z")
    return cases


@needs_reference
@pytest.mark.parametrize("zone", ZONES)
def test_parse_time_matches_duplicity(zone: str) -> None:
    strings = HAND_PICKED + _random_cases(random.Random(zone), 400)
    calls: list[tuple[str, object]] = [("genstrtotime", s) for s in strings]
    expected = reference(zone, calls)
    with local_zone(zone):
        got = [ours(f, a) for f, a in calls]
    mismatches = [(s, e, g) for s, e, g in zip(strings, expected, got, strict=True) if e != g]
    assert not mismatches, mismatches[:10]
    assert expected.count("error") > 10 and len(set(expected)) > 100  # the cases are varied


@needs_reference
def test_intervals_and_display_match_duplicity() -> None:
    zone = "EST5EDT,M3.2.0,M11.1.0"
    intervals = ["3D", "3D2h", "1W", "2M", "1Y", "10s", "2h30m", "1m1s", "5", "", "x1D", "1D "]
    times = [0, 1, 1700000000, 1688000000, 2000000000, 951782400, 2147483647, 4102444799]
    durations = [0, 1, 59, 60, 61, 3600, 3661, 7322, 0.5, 1.0, 3723.456, 86400 * 3 + 5.25]
    calls: list[tuple[str, object]] = (
        [("intstringtoseconds", s) for s in intervals]
        + [("timetostring", t) for t in times]
        + [("timetopretty", t) for t in times]
        + [("inttopretty", d) for d in durations]
        + [("to_base36", t) for t in times]
    )
    expected = reference(zone, calls)
    with local_zone(zone):
        got = [ours(f, a) for f, a in calls]
    assert got == expected


@needs_reference
@pytest.mark.parametrize("zone", ["UTC0", "NST3:30NDT,M3.2.0,M11.1.0", "IST-5:30"])
def test_filename_times_match_duplicity(zone: str) -> None:
    """File-name stamps, upper-cased as duplicity's file_naming does; no intervals."""
    stamps = [
        "20231114T221320Z",
        "20231114t221320z",
        "2002-04-26T04:22:01-07:00",
        "2002-04-26t04:22:01-03:30",
        "2002-04-26T04:22:01+05:30",
        "2002-04-26T04:22:01",
        "1700000000",
        "2023-11-14",
        "20231114Z",
        "garbage",
        "2023-11-14T22:13:20+01",
    ] + [s for s in _random_cases(random.Random(7), 300) if not s[-1].isalpha() or "T" in s]
    expected = reference(zone, [("filename_time", s) for s in stamps])
    with local_zone(zone):
        for s, want in zip(stamps, expected, strict=True):
            if want == "error":
                with pytest.raises(ValueError):
                    timefmt.parse_timestamp(s)
            else:
                assert timefmt.parse_timestamp(s) == want, s


def test_known_values_utc() -> None:
    with local_zone("UTC0"):
        assert timefmt.parse_time("2023-11-14T22:13:20Z") == NOW
        assert timefmt.parse_time("2023-11-14T22:13:20") == NOW
        assert timefmt.parse_time("2023-11-14") == NOW - (22 * 3600 + 13 * 60 + 20)
        assert timefmt.parse_time("11/14/2023") == timefmt.parse_time("2023/11/14")
        assert timefmt.asctime(NOW) == "Tue Nov 14 22:13:20 2023"


def test_zone_offsets() -> None:
    assert timefmt.parse_time("2023-11-14T23:13:20+01:00") == NOW
    assert timefmt.parse_time("2023-11-14T15:13:20-07:00") == NOW
    # duplicity's reading of a negative half-hour offset: -03:30 counts as -2.5 hours
    # (a strict W3C reading would give NOW + 3600).
    assert timefmt.parse_time("2023-11-14T19:43:20-03:30") == NOW
    assert timefmt.parse_time("2023-11-15T03:43:20+05:30") == NOW


def test_no_zone_uses_standard_time_even_in_summer() -> None:
    with local_zone("CET-1CEST,M3.5.0,M10.5.0/3"):
        # 2023-07-01 00:00 CET (+01:00) although July is CEST: duplicity's rule.
        assert timefmt.parse_time("2023-07-01") == 1688166000
        assert timefmt.parse_time("2023-07-01T00:00:00") == 1688166000
        assert timefmt.parse_time("2023-01-01") == 1672527600


def test_intervals_count_back_from_now() -> None:
    assert timefmt.parse_time("3D2h", now=NOW) == NOW - 3 * 86400 - 2 * 3600
    assert timefmt.parse_time("2M", now=NOW) == NOW - 60 * 86400
    assert timefmt.parse_time("1Y", now=NOW) == NOW - 365 * 86400
    assert timefmt.parse_time("now", now=NOW) == NOW
    assert abs(timefmt.parse_time("now") - time.time()) < 5
    assert abs(timefmt.parse_time("10s") - (time.time() - 10)) < 5
    assert timefmt.parse_interval("1W2D3h4m5s") == 9 * 86400 + 3 * 3600 + 4 * 60 + 5


@pytest.mark.parametrize("bad", ["", "yesterday", "3d", "2023-13-45", "1D 2h", "-5", "2023-11"])
def test_bad_time_names_string_and_forms(bad: str) -> None:
    with pytest.raises(CommandLineError) as info:
        timefmt.parse_time(bad, now=NOW)
    assert f'"{bad}"' in info.value.line()
    assert "2023-11-14" in info.value.line() and "3D2h" in info.value.line()
    assert info.value.exit_code == 2


@pytest.mark.parametrize("bad", ["", "D", "3", "3d", "3D-1h", "1.5D", "3D "])
def test_bad_interval(bad: str) -> None:
    with pytest.raises(CommandLineError) as info:
        timefmt.parse_interval(bad)
    assert f'"{bad}"' in info.value.message


def test_timestamp_and_w3() -> None:
    assert timefmt.timestamp(NOW) == "20231114T221320Z"
    assert timefmt.w3(NOW) == "2023-11-14T22:13:20Z"
    assert timefmt.parse_timestamp("20231114T221320Z") == NOW
    assert timefmt.parse_timestamp("2023-11-14T14:13:20-08:00") == NOW


@pytest.mark.parametrize("junk", ["", "3D", "NOW", "now", "vol1", "20231114T2213", "s44we8"])
def test_parse_timestamp_junk(junk: str) -> None:
    with pytest.raises(ValueError):
        timefmt.parse_timestamp(junk)


def test_base36() -> None:
    assert timefmt.to_base36(1700000000) == "s44we8"
    assert timefmt.from_base36("s44we8") == 1700000000
    assert timefmt.to_base36(0) == "0"
    assert timefmt.to_base36(35) == "z"
    for bad in ["", "S44WE8", "s4-4", " 1"]:
        with pytest.raises(ValueError):
            timefmt.from_base36(bad)
    with pytest.raises(ValueError):
        timefmt.to_base36(-1)


@given(st.integers(min_value=-(2**31), max_value=4102444799))
def test_timestamp_round_trip(t: int) -> None:
    stamp = timefmt.timestamp(t)
    if 1900 < int(stamp[:4]) < 2100:
        assert timefmt.parse_timestamp(stamp) == t
        assert timefmt.parse_time(timefmt.w3(t)) == t


@given(st.integers(min_value=0, max_value=2**64))
def test_base36_round_trip(n: int) -> None:
    assert timefmt.from_base36(timefmt.to_base36(n)) == n


@given(st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from("smhDWMY")), min_size=1))
def test_interval_sum(parts: list[tuple[int, str]]) -> None:
    s = "".join(f"{n}{u}" for n, u in parts)
    units = {"s": 1, "m": 60, "h": 3600, "D": 86400, "W": 604800, "M": 2592000, "Y": 31536000}
    if len(s) >= 2:
        assert timefmt.parse_interval(s) == sum(n * units[u] for n, u in parts)
