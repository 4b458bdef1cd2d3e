"""duplicity_ng.format.manifest against manifests written by duplicity 0.8.22 and 3.2.1."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from duplicity_ng.errors import ManifestError
from duplicity_ng.format.manifest import Manifest, VolumeInfo, quote, unquote

SHARED = Path("/work/shared")
FIXTURES = SHARED / "fixtures" / "duplicity"
RESUMED = SHARED / "spec" / "resumed-manifest-example.txt"
PLAIN_MANIFESTS = sorted(FIXTURES.glob("*/*/backend/*.manifest")) + sorted(
    FIXTURES.glob("*/*/cache/*/*.manifest")
)
SYSTEM_PYTHON = "/usr/bin/python3"
HAVE_REFERENCE = Path("/usr/lib/python3/dist-packages/duplicity/manifest.py").exists()


def test_fixtures_found() -> None:
    assert len(PLAIN_MANIFESTS) >= 20


@pytest.mark.parametrize("path", PLAIN_MANIFESTS, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_fixture_round_trip(path: Path) -> None:
    data = path.read_bytes()
    manifest = Manifest.from_bytes(data)
    assert manifest.to_bytes() == data
    assert manifest.hostname == "vm"
    assert manifest.localdir == b"/tmp/dupfix/src"
    assert manifest.volumes and sorted(manifest.volumes) == list(
        range(1, len(manifest.volumes) + 1)
    )
    assert all(len(manifest.sha1(n) or "") == 40 for n in manifest.volumes)
    assert manifest.filelist
    assert data.endswith(manifest.filelist_bytes())
    assert data.startswith(manifest.header_bytes() + manifest.volumes[1].to_bytes())


def test_plain_full_contents() -> None:
    data = (FIXTURES / "0.8.22/plain/backend/duplicity-full.20231114T221320Z.manifest").read_bytes()
    m = Manifest.from_bytes(data)
    vol = m.volumes[1]
    assert (vol.start_index, vol.start_block) == ((), None)
    assert (vol.end_index, vol.end_block) == ((b"to-delete.txt",), None)
    assert m.sha1(1) == "fbdd511b351eecc2fb4fe29f777deb76609eba4b"
    assert m.sha1(2) is None
    assert len(m.filelist) == 24
    paths = dict((p, k) for k, p in m.filelist)
    assert paths[b"names/back\\slash.txt"] == "new"
    assert b'names/it\'s "quoted".txt' in paths
    assert b"names/with space.txt" in paths
    assert b"names/latin1-caf\xe9.txt" in paths  # raw non-UTF-8 byte, not quoted
    assert "names/\u00fcn\u00efc\u00f6d\u00e9-\u65e5\u672c.txt".encode() in paths


def test_inc_filelist_kinds() -> None:
    name = "duplicity-inc.20231114T221320Z.to.20231114T231320Z.manifest"
    m = Manifest.from_bytes((FIXTURES / "3.2.1/plain/backend" / name).read_bytes())
    assert m.filelist == [
        ("changed", b"medium.bin"),
        ("new", b"new-in-T1.txt"),
        ("changed", b"perms/private.txt"),
        ("deleted", b"to-delete.txt"),
    ]


def test_multivol_blocks() -> None:
    data = (
        FIXTURES / "3.2.1/multivol/backend/duplicity-full.20231114T221320Z.manifest"
    ).read_bytes()
    m = Manifest.from_bytes(data)
    v1, v2, v3 = m.volumes[1], m.volumes[2], m.volumes[3]
    assert (v1.start_index, v1.start_block, v1.end_index, v1.end_block) == (
        (),
        None,
        (b"big.bin",),
        15,
    )
    assert (v2.start_index, v2.start_block, v2.end_index, v2.end_block) == (
        (b"big.bin",),
        16,
        (b"big.bin",),
        30,
    )
    assert (v3.start_index, v3.start_block, v3.end_block) == ((b"big.bin",), 31, None)
    assert v3.end_index == (b"z-after.txt",)
    # Filelist lines trail volume 3's block but must not leak into it.
    assert list(v3.hashes) == ["SHA1"]
    assert m.containing_volumes((b"big.bin",)) == [1, 2, 3]
    assert m.containing_volumes((b"a-small.txt",)) == [1]
    assert m.containing_volumes((b"z-after.txt",)) == [3]
    assert m.containing_volumes((b"zzz",)) == []
    assert m.containing_volumes(()) == [1, 2, 3]


def test_resumed_duplicates_later_wins() -> None:
    m = Manifest.from_bytes(RESUMED.read_bytes())
    assert sorted(m.volumes) == [1, 2, 3]
    assert m.sha1(2) == "b7e964aac1cb7f7e04cda1b17c08effb2482c429"
    assert m.volumes[2].start_block == 16
    assert len(m.filelist) == 3
    # Written back, the duplicate collapses and everything else is kept byte for byte.
    lines = RESUMED.read_bytes().split(b"\n")
    expected = b"\n".join(lines[:6] + lines[10:])
    assert m.to_bytes() == expected


def test_resumed_higher_volumes_dropped() -> None:
    blocks = [
        _vol(1, b".", b"a 3", "11" * 20),
        _vol(2, b"a 4", b"b  ", "22" * 20),
        _vol(3, b"c  ", b"d  ", "33" * 20),
        _vol(2, b"a 4", b"b 2", "44" * 20),
    ]
    m = Manifest.from_bytes(b"Hostname h\n" + b"".join(blocks))
    assert sorted(m.volumes) == [1, 2]
    assert m.sha1(2) == "44" * 20
    assert m.volumes[2].end_block == 2


def _vol(n: int, start: bytes, end: bytes, sha1: str) -> bytes:
    return b"Volume %d:\n    StartingPath   %s\n    EndingPath     %s\n    Hash SHA1 %s\n" % (
        n,
        start,
        end,
        sha1.encode(),
    )


def test_case_insensitive_fields_and_old_layout() -> None:
    # Filelist before the volumes, as duplicity's Manifest.to_string() orders it, odd case,
    # extra whitespace, an MD5 hash and an unknown field.
    data = (
        b"HOSTNAME box\n"
        b'localdir "/src\\x20dir"\n'
        b"filelist 1\n"
        b"    new      a\n"
        b"volume 1:\n"
        b"  startingpath .\n"
        b'\tENDINGPATH "a\\x20b" 7\n'
        b"  hash md5 d41d8cd98f00b204e9800998ecf8427e\n"
        b"  Comment whatever\n"
    )
    m = Manifest.from_bytes(data)
    assert m.hostname == "box"
    assert m.localdir == b"/src dir"
    assert m.filelist == [("new", b"a")]
    assert m.volumes[1].end_index == (b"a b",)
    assert m.volumes[1].end_block == 7
    assert m.volumes[1].hashes == {"MD5": "d41d8cd98f00b204e9800998ecf8427e"}
    assert m.volumes[1].best_hash() == ("MD5", "d41d8cd98f00b204e9800998ecf8427e")
    assert m.sha1(1) is None


def test_partial_manifest_header_only() -> None:
    m = Manifest.from_bytes(b"Hostname vm\nLocaldir /tmp/x\n")
    assert (m.hostname, m.localdir, m.volumes, m.filelist) == ("vm", b"/tmp/x", {}, [])
    assert m.header_bytes() == b"Hostname vm\nLocaldir /tmp/x\n"
    assert Manifest.from_bytes(b"") == Manifest()


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x85\x02\x0c\x03garbage\x00\xff" * 20, "not a duplicity manifest"),
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00", "not a duplicity manifest"),
        (b"Volume one:\n    StartingPath .\n", "Volume N:"),
        (b"Volume 1:\n    StartingPath   . \n", "no StartingPath or EndingPath"),
        (b"Volume 1:\n    StartingPath\n    EndingPath a\n", "StartingPath has no path"),
        (b"Volume 1:\n    StartingPath . x\n    EndingPath a\n", "not a number"),
        (b'Volume 1:\n    StartingPath "abc\n    EndingPath a\n', "closing quote"),
        (b'Volume 1:\n    StartingPath "a\\q1"\n    EndingPath a\n', "bad escape"),
        (b"Volume 1:\n    StartingPath .\n    EndingPath a\n    Hash SHA1\n", "Hash needs"),
    ],
)
def test_garbage_raises(data: bytes, words: str) -> None:
    with pytest.raises(ManifestError) as info:
        Manifest.from_bytes(data)
    assert words in info.value.line()
    assert info.value.exit_code == 5


def test_quote_rules() -> None:
    assert quote(b"plain/name.txt") == b"plain/name.txt"
    assert quote(b"caf\xe9") == b"caf\xe9"
    assert quote(b"a b") == b'"a\\x20b"'
    assert quote(b'it\'s "q"\\\t\n') == b'"it\\x27s\\x20\\x22q\\x22\\x5c\\x09\\x0a"'
    assert quote(b"") == b""
    assert unquote(b'"a\\x20b"') == b"a b"
    assert unquote(b"raw\\x20") == b"raw\\x20"  # not quoted: taken literally
    assert unquote(b'"A\\x2F"') == b"A/"  # upper-case hex is read too


def test_volume_to_bytes_layout() -> None:
    vi = VolumeInfo(4, (), None, (b"dir", b"with space"), 12, {"SHA1": "ab" * 20})
    assert vi.to_bytes() == (
        b"Volume 4:\n"
        b"    StartingPath   .  \n"
        b'    EndingPath     "dir/with\\x20space" 12\n'
        b"    Hash SHA1 " + b"ab" * 20 + b"\n"
    )


def test_contains_prefix_semantics() -> None:
    vi = VolumeInfo(2, (b"a", b"m"), 3, (b"c",), None)
    assert vi.contains(())
    assert vi.contains((b"a",))  # the volume starts inside a/
    assert vi.contains((b"a", b"z"))
    assert vi.contains((b"b", b"x"))
    assert vi.contains((b"c",))
    assert not vi.contains((b"a", b"b"))
    assert not vi.contains((b"c", b"d"))  # c/d sorts after c
    assert not vi.contains((b"d",))


_component = st.binary(min_size=1, max_size=12).filter(lambda b: b"/" not in b and b != b".")
_index = st.lists(_component, max_size=4).map(tuple)
_block = st.none() | st.integers(min_value=0, max_value=10**6)
_hex = st.text("0123456789abcdef", min_size=40, max_size=40)


@st.composite
def _manifests(draw: st.DrawFn) -> Manifest:
    count = draw(st.integers(min_value=0, max_value=4))
    volumes = {}
    for n in range(1, count + 1):
        hashes = {"SHA1": draw(_hex)}
        if draw(st.booleans()):
            hashes["MD5"] = draw(_hex)[:32]
        volumes[n] = VolumeInfo(n, draw(_index), draw(_block), draw(_index), draw(_block), hashes)
    return Manifest(
        hostname=draw(st.none() | st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True)),
        localdir=draw(st.none() | st.binary(min_size=1, max_size=30)),
        volumes=volumes,
        filelist=draw(
            st.lists(
                st.tuples(
                    st.sampled_from(["new", "changed", "deleted"]),
                    st.lists(_component, min_size=1, max_size=3).map(b"/".join),
                ),
                max_size=5,
            )
        ),
    )


@given(_manifests())
def test_round_trip_random(m: Manifest) -> None:
    data = m.to_bytes()
    parsed = Manifest.from_bytes(data)
    assert parsed == m
    assert parsed.to_bytes() == data


@given(st.binary(max_size=40))
def test_quote_round_trip(b: bytes) -> None:
    q = quote(b)
    assert unquote(q) == b
    assert len(q.split()) <= 1  # a quoted value is always one whitespace-free token
    assert (q == b) == (not any(c in b" \t\n\r\x0b\x0c\\\"'" for c in b))


_REFERENCE = r"""
import builtins, sys
builtins._ = lambda s: s
from duplicity import manifest
data = sys.stdin.buffer.read()
vi = manifest.VolumeInfo()
vi.set_info(1, tuple(data.split(b"/")), None, tuple(data.split(b"/")), 5)
vi.set_hash("SHA1", "0" * 40)
sys.stdout.buffer.write(vi.to_string() + b"\n")
"""


@pytest.mark.skipif(not HAVE_REFERENCE, reason="duplicity 0.8 not installed")
def test_volume_bytes_match_duplicity() -> None:
    path = b'd\xe9j\xc3\xa0 vu/it\'s "x"\\y\tz'
    done = subprocess.run(
        [SYSTEM_PYTHON, "-c", _REFERENCE], input=path, capture_output=True, check=True, cwd="/"
    )
    index = tuple(path.split(b"/"))
    assert VolumeInfo(1, index, None, index, 5, {"SHA1": "0" * 40}).to_bytes() == done.stdout
