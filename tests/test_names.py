"""Backend file names: writing, parsing, prefixes, short and old-style names."""

from __future__ import annotations

import calendar
import json
import os
import subprocess
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from duplicity_ng.format import names
from duplicity_ng.format.names import FileKind, ParsedName, Prefixes, SetKind

FIXTURES = Path("/work/shared/fixtures/duplicity")
T0, T1 = 1700000000, 1700003600  # 20231114T221320Z, 20231114T231320Z
FULL, INC = SetKind.FULL, SetKind.INC


@pytest.fixture
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _build(kind: FileKind, set_kind: SetKind, start: int, end: int, **kw) -> str:
    if kind is FileKind.VOLUME:
        kw.pop("partial", None)
        return names.volume_name(set_kind, start, end, kw.pop("volume"), **kw)
    kw.pop("volume", None)
    if kind is FileKind.MANIFEST:
        kw.pop("compressed", None)
        return names.manifest_name(set_kind, start, end, **kw)
    if kind is FileKind.SIGNATURE:
        return names.signature_name(set_kind, start, end, **kw)
    return names.jsonstat_name(set_kind, start, end, **kw)


# --- exact names as duplicity writes them ---------------------------------------------------


def test_long_names_match_duplicity_fixture_names():
    assert (
        names.volume_name(FULL, T0, T0, 1, encrypted=False, compressed=True)
        == "duplicity-full.20231114T221320Z.vol1.difftar.gz"
    )
    assert (
        names.volume_name(INC, T0, T1, 12, encrypted=True, compressed=True)
        == "duplicity-inc.20231114T221320Z.to.20231114T231320Z.vol12.difftar.gpg"
    )
    assert (
        names.volume_name(FULL, T0, T0, 3, encrypted=False, compressed=False)
        == "duplicity-full.20231114T221320Z.vol3.difftar"
    )
    assert (
        names.manifest_name(FULL, T0, T0, encrypted=True)
        == "duplicity-full.20231114T221320Z.manifest.gpg"
    )
    assert (
        names.manifest_name(INC, T0, T1, encrypted=False, partial=True)
        == "duplicity-inc.20231114T221320Z.to.20231114T231320Z.manifest.part"
    )
    assert (
        names.signature_name(FULL, T0, T0, encrypted=False, compressed=True)
        == "duplicity-full-signatures.20231114T221320Z.sigtar.gz"
    )
    assert (
        names.signature_name(INC, T0, T1, encrypted=False, compressed=False, partial=True)
        == "duplicity-new-signatures.20231114T221320Z.to.20231114T231320Z.sigtar.part"
    )
    assert (
        names.jsonstat_name(INC, T0, T1, encrypted=False, compressed=True)
        == "duplicity-inc.20231114T221320Z.to.20231114T231320Z.jsonstat.gz"
    )


def test_prefixes_go_on_their_own_kinds():
    p = Prefixes(base="pfx-", archive="data_", manifest="man_", signature="sig_", jsonstat="js_")
    assert names.volume_name(FULL, T0, T0, 1, encrypted=False, compressed=True, prefixes=p) == (
        "pfx-data_duplicity-full.20231114T221320Z.vol1.difftar.gz"
    )
    assert names.manifest_name(FULL, T0, T0, encrypted=False, prefixes=p) == (
        "pfx-man_duplicity-full.20231114T221320Z.manifest"
    )
    assert names.signature_name(FULL, T0, T0, encrypted=True, compressed=True, prefixes=p) == (
        "pfx-sig_duplicity-full-signatures.20231114T221320Z.sigtar.gpg"
    )
    assert names.jsonstat_name(FULL, T0, T0, encrypted=False, compressed=True, prefixes=p) == (
        "pfx-js_duplicity-full.20231114T221320Z.jsonstat.gz"
    )


def test_writer_rejects_nonsense():
    with pytest.raises(ValueError):
        names.volume_name(FULL, T0, T0, 0, encrypted=False, compressed=True)
    with pytest.raises(ValueError):
        names.manifest_name(FULL, T0, T1, encrypted=False)


# --- round trips ----------------------------------------------------------------------------

PREFIX_SETS = [
    Prefixes(),
    Prefixes(base="pfx-"),
    Prefixes(base="a.b*", archive="[vol]", manifest="m+", signature="s?", jsonstat="j("),
]


# Volumes are never written with .part.
KIND_PARTIAL = [(k, p) for k in FileKind for p in (False, True) if not (k is FileKind.VOLUME and p)]


@pytest.mark.parametrize("prefixes", PREFIX_SETS, ids=["none", "base", "regex-chars"])
@pytest.mark.parametrize("kind,partial", KIND_PARTIAL)
@pytest.mark.parametrize("set_kind", list(SetKind))
@pytest.mark.parametrize("encrypted", [False, True])
@pytest.mark.parametrize("compressed", [False, True])
def test_round_trip(prefixes, kind, partial, set_kind, encrypted, compressed):
    start = T0 if set_kind is FULL else T0 - 86400
    name = _build(
        kind,
        set_kind,
        start,
        T0,
        volume=7,
        encrypted=encrypted,
        compressed=compressed,
        partial=partial,
        prefixes=prefixes,
    )
    p = names.parse(name, prefixes)
    assert p == ParsedName(
        name=name,
        kind=kind,
        set_kind=set_kind,
        start_time=start,
        end_time=T0,
        volume=7 if kind is FileKind.VOLUME else None,
        partial=partial,
        encrypted=encrypted,
        # Encryption wins over compression; manifests are never compressed.
        compressed=compressed and not encrypted and kind is not FileKind.MANIFEST,
        short=False,
    )
    # Another prefix configuration does not see the file at all.
    other = Prefixes(base="zz-") if prefixes == Prefixes() else Prefixes()
    assert names.parse(name, other) is None


_prefix_text = st.text(alphabet="abcxyz_-.+*0129", max_size=6)


@given(
    start=st.integers(min_value=86400 * 365, max_value=4102444799 - 86400),
    delta=st.integers(min_value=1, max_value=86400),
    volume=st.integers(min_value=1, max_value=100000),
    kind=st.sampled_from(list(FileKind)),
    set_kind=st.sampled_from(list(SetKind)),
    encrypted=st.booleans(),
    compressed=st.booleans(),
    base=_prefix_text,
    archive=_prefix_text,
)
def test_round_trip_property(
    start, delta, volume, kind, set_kind, encrypted, compressed, base, archive
):
    prefixes = Prefixes(base=base, archive=archive)
    end = start if set_kind is FULL else start + delta
    name = _build(
        kind,
        set_kind,
        start,
        end,
        volume=volume,
        encrypted=encrypted,
        compressed=compressed,
        prefixes=prefixes,
    )
    p = names.parse(name, prefixes)
    assert p is not None
    assert (p.kind, p.set_kind, p.start_time, p.end_time) == (kind, set_kind, start, end)
    assert p.volume == (volume if kind is FileKind.VOLUME else None)
    assert p.encrypted == encrypted


# --- every real file name -------------------------------------------------------------------


def _fixture_files() -> list[tuple[Path, str]]:
    out = []
    for case in sorted(FIXTURES.glob("*/*/fixture.json")):
        d = case.parent
        for sub in ("backend", "cache/fixture"):
            out += [(case, n) for n in sorted(os.listdir(d / sub))]
    return out


def test_fixture_listing_is_not_empty():
    assert len(_fixture_files()) > 60


@pytest.mark.parametrize(
    "case,name", _fixture_files(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_parse_every_fixture_file(case, name):
    info = json.loads(case.read_text())
    times = [s["backup_time"] for s in info["states"]]
    p = names.parse(name)
    assert p is not None, name
    assert p.end_time in times
    if p.set_kind is FULL:
        assert p.start_time == p.end_time == times[0]
    else:
        # An incremental starts where the previous backup ended.
        assert times.index(p.start_time) == times.index(p.end_time) - 1
    assert p.encrypted == name.endswith(".gpg")
    assert p.compressed == name.endswith(".gz")
    assert not p.partial and not p.short
    # Rebuilding the name from what was parsed gives the very same name.
    rebuilt = _build(
        p.kind,
        p.set_kind,
        p.start_time,
        p.end_time,
        volume=p.volume,
        encrypted=p.encrypted,
        compressed=p.compressed,
    )
    assert rebuilt == name


def test_fixture_volume_numbers():
    listing = os.listdir(FIXTURES / "3.2.1/multivol/backend")
    vols = sorted(p.volume for p in map(names.parse, listing) if p.kind is FileKind.VOLUME)
    assert vols == [1, 2, 3]


# --- short names (0.8 --short-filenames) ----------------------------------------------------


@pytest.mark.parametrize(
    "name,kind,set_kind,start,end,volume,partial,encrypted,compressed",
    [
        ("df.s44we8.1.dt.g", FileKind.VOLUME, FULL, T0, T0, 1, False, True, False),
        ("df.s44we8.a.dt.z", FileKind.VOLUME, FULL, T0, T0, 10, False, False, True),
        ("df.s44we8.m", FileKind.MANIFEST, FULL, T0, T0, None, False, False, False),
        ("df.s44we8.m.p", FileKind.MANIFEST, FULL, T0, T0, None, True, False, False),
        ("df.s44we8.m.g", FileKind.MANIFEST, FULL, T0, T0, None, False, True, False),
        ("dfs.s44we8.st.z", FileKind.SIGNATURE, FULL, T0, T0, None, False, False, True),
        ("dfs.s44we8.st.p", FileKind.SIGNATURE, FULL, T0, T0, None, True, False, False),
        ("di.s44we8.s44z68.1z.dt.g", FileKind.VOLUME, INC, T0, T1, 71, False, True, False),
        ("di.s44we8.s44z68.m", FileKind.MANIFEST, INC, T0, T1, None, False, False, False),
        ("dns.s44we8.s44z68.st.g", FileKind.SIGNATURE, INC, T0, T1, None, False, True, False),
        ("dfst.s44we8.jst.z", FileKind.JSONSTAT, FULL, T0, T0, None, False, False, True),
        ("dist.s44we8.to.s44z68.jst", FileKind.JSONSTAT, INC, T0, T1, None, False, False, False),
    ],
)
def test_short_names(name, kind, set_kind, start, end, volume, partial, encrypted, compressed):
    assert names._to_base36(T1) == "s44z68"
    p = names.parse(name)
    assert p == ParsedName(
        name, kind, set_kind, start, end, volume, partial, encrypted, compressed, True
    )


def test_short_names_with_prefix():
    p = names.parse("pre-df.s44we8.1.dt.g", Prefixes(base="pre-"))
    assert p is not None and p.short and p.volume == 1 and p.start_time == T0
    assert names.parse("pre-df.s44we8.1.dt.g") is None


def test_base36():
    assert names._to_base36(1700000000) == "s44we8"
    assert names._to_base36(0) == "0"
    assert names._to_base36(35) == "z"
    assert names._from_base36("s44we8") == 1700000000
    assert names._from_base36("S44WE8") is None
    assert names._from_base36("") is None


# --- 0.8 --old-filenames and other time forms duplicity's parser accepts --------------------


@pytest.mark.parametrize(
    "field,expected",
    [
        ("2002-04-26T04:22:01-07:00", datetime(2002, 4, 26, 11, 22, 1, tzinfo=UTC)),
        ("2002-04-26T04:22:01+05:30", datetime(2002, 4, 25, 22, 52, 1, tzinfo=UTC)),
        ("2002-04-26T04:22:01Z", datetime(2002, 4, 26, 4, 22, 1, tzinfo=UTC)),
        ("2023-11-14T22:13:20+00:00", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        ("20231114t221320z", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
    ],
)
def test_old_w3c_names(field, expected):
    t = int(expected.timestamp())
    for name in (
        f"duplicity-full.{field}.vol1.difftar.gpg",
        f"duplicity-full.{field}.manifest.gpg",
        f"duplicity-full-signatures.{field}.sigtar.gpg",
    ):
        p = names.parse(name)
        assert p is not None and p.start_time == p.end_time == t and p.encrypted
    p = names.parse(f"duplicity-inc.{field}.to.2030-01-01T00:00:00-07:00.manifest")
    assert p is not None and p.start_time == t
    assert p.end_time == calendar.timegm((2030, 1, 1, 7, 0, 0))


def test_negative_half_hour_zone_reads_as_duplicity_writes_it():
    # duplicity's gettzd writes UTC-07:30 as "-08:30"; its reader maps that back to 7.5 hours.
    p = names.parse("duplicity-full.2002-04-26T04:22:01-08:30.manifest")
    local = datetime(2002, 4, 26, 4, 22, 1, tzinfo=timezone(-timedelta(hours=7, minutes=30)))
    assert p is not None and p.end_time == int(local.timestamp())


def test_zoneless_and_date_only_times_use_local_standard_time(utc):
    p = names.parse("duplicity-full.2002-04-26T04:22:01.manifest")
    assert p is not None and p.end_time == calendar.timegm((2002, 4, 26, 4, 22, 1))
    p = names.parse("duplicity-full.2002-04-26.manifest")
    assert p is not None and p.end_time == calendar.timegm((2002, 4, 26, 0, 0, 0))
    p = names.parse("duplicity-full.1700000000.manifest")
    assert p is not None and p.end_time == T0


# --- what is not ours -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "lockfile",
        "lockfile.lock",
        "duplicity-full.20231114T221320Z.vol1.difftar.gz.par2",
        "duplicity-full.20231114T221320Z.vol1.difftar.gz.vol000+01.par2",
        "duplicity-full.20231114T221320Z.manifest.gpg.par2",
        "duplicity-full.20231114T221320Z.vol0.difftar.gz",
        "duplicity-full.20231114T221320Z.volx.difftar.gz",
        "duplicity-full.notatime.vol1.difftar.gz",
        "duplicity-full.20231314T221320Z.manifest",
        "duplicity-full..manifest",
        "duplicity-inc.20231114T221320Z.vol1.difftar.gz",
        "duplicity-inc.20231114T221320Z.to..manifest",
        "duplicity-full.3D.manifest",
        "duplicity-full.20231114T221320Z.manifest.gz.gpg",
        "pfx-duplicity-full.20231114T221320Z.manifest",
        "df.S44WE8.1.dt",
        "df.s44we8.0.dt",
        "df.s44we8.1.dt.part",
        "duplicity-full.20231114T221320Z.manifest.p",
        "",
        "README",
    ],
)
def test_not_ours(name):
    assert names.parse(name) is None


def test_prefix_must_match_kind():
    p = Prefixes(base="b-", archive="a-", manifest="m-")
    assert names.parse("b-a-duplicity-full.20231114T221320Z.vol1.difftar.gz", p) is not None
    assert names.parse("b-m-duplicity-full.20231114T221320Z.vol1.difftar.gz", p) is None
    assert names.parse("b-m-duplicity-full.20231114T221320Z.manifest", p) is not None
    assert names.parse("b-a-duplicity-full.20231114T221320Z.manifest", p) is None
    # Signatures here have only the base prefix.
    assert names.parse("b-duplicity-full-signatures.20231114T221320Z.sigtar.gz", p) is not None
    # Prefix characters are literal, not a regular expression.
    dot = Prefixes(base="a.")
    assert names.parse("a.duplicity-full.20231114T221320Z.manifest", dot) is not None
    assert names.parse("ab" + "duplicity-full.20231114T221320Z.manifest", dot) is None


# --- against duplicity 0.8's own parser -----------------------------------------------------

_PEER = Path("/usr/lib/python3/dist-packages/duplicity/file_naming.py")
_PEER_SCRIPT = r"""
import gettext, json, sys
gettext.install("duplicity")
from duplicity import file_naming
out = []
for n in json.load(sys.stdin):
    pr = file_naming.parse(n.encode())
    out.append(None if pr is None else [pr.type, pr.time or pr.start_time, pr.time or pr.end_time,
               pr.volume_number, bool(pr.manifest), bool(pr.partial), bool(pr.encrypted),
               bool(pr.compressed)])
print(json.dumps(out))
"""


@pytest.mark.skipif(not _PEER.exists(), reason="duplicity 0.8 not installed")
def test_parse_agrees_with_duplicity_08():
    samples = [n for _, n in _fixture_files()]
    samples += [
        "df.s44we8.1.dt.g",
        "df.s44we8.m",
        "df.s44we8.m.p",
        "dfs.s44we8.st.z",
        "di.s44we8.s44z68.1z.dt.g",
        "dns.s44we8.s44z68.st.p",
        "duplicity-inc.2002-04-26T04:22:01-07:00.to.2002-04-27T04:22:01+02:00.manifest.gpg",
        "duplicity-full.2002-04-26T04:22:01Z.vol3.difftar.gpg",
        "duplicity-full.20231114T221320Z.manifest.part",
        "duplicity-full-signatures.20231114T221320Z.sigtar.part",
        "duplicity-full.notatime.vol1.difftar.gz",
        "lockfile",
    ]
    peer = subprocess.run(
        ["/usr/bin/python3", "-c", _PEER_SCRIPT],
        input=json.dumps(samples),
        capture_output=True,
        text=True,
        check=True,
        env={"TZ": "UTC", "PATH": os.environ.get("PATH", "")},
    )
    theirs = json.loads(peer.stdout)
    type_of = {
        (FileKind.VOLUME, FULL): "full",
        (FileKind.MANIFEST, FULL): "full",
        (FileKind.VOLUME, INC): "inc",
        (FileKind.MANIFEST, INC): "inc",
        (FileKind.SIGNATURE, FULL): "full-sig",
        (FileKind.SIGNATURE, INC): "new-sig",
    }
    for name, their in zip(samples, theirs, strict=True):
        p = names.parse(name)
        mine = (
            None
            if p is None
            else [
                type_of[p.kind, p.set_kind],
                p.start_time,
                p.end_time,
                p.volume,
                p.kind is FileKind.MANIFEST,
                # 0.8 ignores .part on volumes; ours are never partial anyway.
                p.partial,
                p.encrypted,
                p.compressed,
            ]
        )
        assert mine == their, name
