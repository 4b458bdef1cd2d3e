"""Sets, chains, signature chains, time selection and the collection-status report.

The expected reports of the synthetic listings below were printed by real duplicity 3.2.1 /
0.8.22 `collection-status` over the same file names (empty volumes, minimal manifests, archive
dir "D/cache/fx"), minus the command's own lines ("Last full backup date: ...", 3.x's
"Duplicity backup complete.") which are not part of the report.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from duplicity_ng import errors
from duplicity_ng.collection import BackupSet, build_collection
from duplicity_ng.format import names
from duplicity_ng.format.names import Prefixes, SetKind

FIXTURES = Path("/work/shared/fixtures/duplicity")
FULL, INC = SetKind.FULL, SetKind.INC
T = [1700000000 + 3600 * i for i in range(8)]


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    # The reports print local time; the fixtures were made with TZ=UTC.
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# --- listing builders -----------------------------------------------------------------------

Listing = tuple[list[str], list[str]]  # (remote, local)


def _set(
    kind: SetKind,
    start: int,
    end: int,
    vols: int = 1,
    manifest: bool = True,
    sig: bool = True,
    encrypted: bool = False,
    prefixes: Prefixes = Prefixes(),  # noqa: B008
) -> Listing:
    remote = [
        names.volume_name(
            kind, start, end, v, encrypted=encrypted, compressed=True, prefixes=prefixes
        )
        for v in range(1, vols + 1)
    ]
    local = []
    if manifest:
        remote.append(names.manifest_name(kind, start, end, encrypted=encrypted, prefixes=prefixes))
        local.append(names.manifest_name(kind, start, end, encrypted=False, prefixes=prefixes))
    if sig:
        remote.append(
            names.signature_name(
                kind, start, end, encrypted=encrypted, compressed=True, prefixes=prefixes
            )
        )
        local.append(
            names.signature_name(
                kind, start, end, encrypted=False, compressed=True, prefixes=prefixes
            )
        )
    return remote, local


def full(t: int, **kw) -> Listing:
    return _set(FULL, t, t, **kw)


def inc(a: int, b: int, **kw) -> Listing:
    return _set(INC, a, b, **kw)


def listing(*parts: Listing) -> Listing:
    return [n for p in parts for n in p[0]], [n for p in parts for n in p[1]]


def report(col, **kw) -> list[str]:
    return col.status_text("D/cache/fx", **kw).splitlines()


# --- the real archives ----------------------------------------------------------------------


def _cases() -> list[Path]:
    return sorted(p.parent for p in FIXTURES.glob("*/*/fixture.json"))


@pytest.mark.parametrize("case", _cases(), ids=lambda p: f"{p.parent.name}-{p.name}")
def test_fixture_collection(case: Path):
    info = json.loads((case / "fixture.json").read_text())
    times = [s["backup_time"] for s in info["states"]]
    col = build_collection(os.listdir(case / "backend"), os.listdir(case / "cache/fixture"))

    assert len(col.backup_chains) == 1
    chain = col.backup_chains[0]
    assert [s.time for s in chain.sets] == times
    assert chain.start_time == times[0] and chain.end_time == times[-1]
    assert [s.set_kind for s in chain.sets] == [FULL] + [INC] * (len(times) - 1)
    expected_vols = [1, 2, 3] if case.name == "multivol" else [1]
    assert all(sorted(s.volumes) == expected_vols for s in chain.sets[:1])
    assert all(sorted(s.volumes) == [1] for s in chain.incsets)
    encrypted = case.name in ("sym", "pubkey")
    for s in chain.sets:
        assert s.complete and not s.partial
        assert s.encrypted == encrypted
        assert s.compressed == (not encrypted)
        assert s.manifest is not None and s.manifest.endswith(".gpg") == encrypted
        # The cache holds the plain manifest of every set.
        assert s.local_manifest == s.manifest.removesuffix(".gpg")
    assert not col.orphaned_sets and not col.incomplete_sets and not col.orphaned_sigs
    assert col.matched_chain is chain
    # Local and remote signature chains both match; the local one is preferred.
    assert col.matched_sig_chain is not None and col.matched_sig_chain.local
    assert col.matched_sig_chain.end_time == times[-1]
    assert len(col.remote_sig_chains) == len(col.local_sig_chains) == 1
    assert len(col.remote_sig_chains[0].names()) == len(times)
    assert col.last_set() is chain.last
    assert col.last_full_time() == times[0]


@pytest.mark.parametrize("case", _cases(), ids=lambda p: f"{p.parent.name}-{p.name}")
def test_fixture_status_text_matches_duplicity(case: Path):
    col = build_collection(os.listdir(case / "backend"), os.listdir(case / "cache/fixture"))
    old = case.parent.name == "0.8.22"
    # What the command printed around the report; the archive dir is given as the fixture
    # recorded it (FIXTURE stands for the case folder), so no line is ignored.
    got = [f"Last full backup date: {time.asctime(time.localtime(col.last_full_time()))}"]
    got += col.status_text("FIXTURE/cache/fixture", old_wording=old).splitlines()
    if not old:
        got.append("Duplicity backup complete.")
    expected = (case / "outputs/collection-status.txt").read_text().splitlines()
    assert got == expected


def test_fixture_time_selection():
    case = FIXTURES / "3.2.1/plain"
    col = build_collection(os.listdir(case / "backend"), [])
    chain = col.backup_chains[0]
    assert col.sets_for_time(T[0]) == [chain.fullset]
    assert col.sets_for_time(T[1] - 1) == [chain.fullset]
    assert col.sets_for_time(T[1]) == chain.sets[:2]
    assert col.sets_for_time(T[2]) == chain.sets
    assert col.sets_for_time(T[7]) == chain.sets
    # Before the first backup: the oldest chain, and only its full set.
    assert col.sets_for_time(T[0] - 86400) == [chain.fullset]
    # Without a cache only the remote signature chain exists.
    assert col.matched_sig_chain is not None and not col.matched_sig_chain.local


# --- synthetic listings, checked against real duplicity -------------------------------------


def test_orphaned_set_and_signatures():
    remote, local = listing(full(T[0]), inc(T[1], T[2]))
    col = build_collection(remote, local)
    assert len(col.backup_chains) == 1 and len(col.backup_chains[0].sets) == 1
    assert [(s.start_time, s.end_time) for s in col.orphaned_sets] == [(T[1], T[2])]
    orphan_sig = "duplicity-new-signatures.20231114T231320Z.to.20231115T001320Z.sigtar.gz"
    assert col.remote_orphaned_sigs == [orphan_sig] and col.local_orphaned_sigs == [orphan_sig]
    assert report(col, verbose=True) == [
        "WARNING. found the following local orphaned signature file(s):",
        orphan_sig,
        "WARNING. found the following remote orphaned signature file(s):",
        orphan_sig,
        "WARNING. found the following orphaned backup file(s):",
        "[duplicity-inc.20231114T231320Z.to.20231115T001320Z.manifest, "
        "duplicity-inc.20231114T231320Z.to.20231115T001320Z.vol1.difftar.gz]",
        "Collection Status",
        "-----------------",
        "Connecting with backend: BackendWrapper",
        "Archive dir: D/cache/fx",
        "",
        "Found 0 secondary backup chain(s).",
        "",
        "Found primary backup chain with matching signature chain:",
        "-------------------------",
        "Chain start time: Tue Nov 14 22:13:20 2023",
        "Chain end time: Tue Nov 14 22:13:20 2023",
        "Number of contained backup sets: 1",
        "Total number of contained volumes: 1",
        " Type of backup set:                            Time:      Num volumes:",
        "                Full         Tue Nov 14 22:13:20 2023                 1",
        "-------------------------",
        "Also found 1 backup set(s) not part of any chain,",
        "and 0 incomplete backup set(s).",
        'These may be deleted by running duplicity with the "cleanup" command.',
    ]
    old = report(col, verbose=True, old_wording=True)
    assert old[0] == "Warning, found the following local orphaned signature file:"
    assert old[4] == "Warning, found the following orphaned backup file:"
    assert old[11] == "Found 0 secondary backup chains."
    assert old[-3:-1] == [
        "Also found 1 backup set not part of any chain,",
        "and 0 incomplete backup sets.",
    ]


def test_two_chains_and_time_selection():
    remote, local = listing(
        full(T[0]), inc(T[0], T[1]), full(T[2], vols=2), inc(T[2], T[3], vols=1)
    )
    col = build_collection(remote, local)
    first, second = col.backup_chains
    assert (first.start_time, first.end_time) == (T[0], T[1])
    assert (second.start_time, second.end_time) == (T[2], T[3])
    assert col.matched_chain is second and col.secondary_chains == [first]
    assert col.last_full_time() == T[2] and col.last_full_time(2) == T[0]
    assert col.last_full_time(3) == 0

    # FORMAT.md 6.5: covering chain, else newest ending before t, else the oldest.
    assert col.chain_for_time(T[0] - 1) is first
    assert col.chain_for_time(T[0]) is first
    assert col.chain_for_time(T[1]) is first
    assert col.chain_for_time(T[1] + 1800) is first
    assert col.chain_for_time(T[2]) is second
    assert col.chain_for_time(T[7]) is second
    assert col.sets_for_time(T[1] + 1800) == first.sets
    assert col.sets_for_time(T[2] + 1) == [second.fullset]
    assert col.sets_for_time(T[3]) == second.sets

    assert report(col) == [
        "Collection Status",
        "-----------------",
        "Connecting with backend: BackendWrapper",
        "Archive dir: D/cache/fx",
        "",
        "Found 1 secondary backup chain(s).",
        "Secondary chain 1 of 1:",
        "-------------------------",
        "Chain start time: Tue Nov 14 22:13:20 2023",
        "Chain end time: Tue Nov 14 23:13:20 2023",
        "Number of contained backup sets: 2",
        "Total number of contained volumes: 2",
        " Type of backup set:                            Time:      Num volumes:",
        "                Full         Tue Nov 14 22:13:20 2023                 1",
        "         Incremental         Tue Nov 14 23:13:20 2023                 1",
        "-------------------------",
        "",
        "",
        "Found primary backup chain with matching signature chain:",
        "-------------------------",
        "Chain start time: Wed Nov 15 00:13:20 2023",
        "Chain end time: Wed Nov 15 01:13:20 2023",
        "Number of contained backup sets: 2",
        "Total number of contained volumes: 3",
        " Type of backup set:                            Time:      Num volumes:",
        "                Full         Wed Nov 15 00:13:20 2023                 2",
        "         Incremental         Wed Nov 15 01:13:20 2023                 1",
        "-------------------------",
        "No orphaned or incomplete backup sets found.",
    ]

    # remove-older-than building blocks: never the current chain.
    assert col.chains_older_than(T[7]) == [first]
    assert col.chains_older_than(T[1]) == []
    assert [c.start_time for c in col.sig_chains_older_than(T[7])] == [T[0], T[0]]
    assert col.sets_required_after(T[3]) == [second.fullset]
    assert col.sets_required_after(T[1]) == [first.fullset]


def test_signature_chain_for_time():
    remote, local = listing(full(T[0]), inc(T[0], T[1]), inc(T[1], T[2]))
    col = build_collection(remote, local)
    sig = col.sig_chain_for_time(T[1])
    assert sig.local  # equal local and remote chains: the local one wins
    assert sig.names_up_to(T[1]) == [
        "duplicity-full-signatures.20231114T221320Z.sigtar.gz",
        "duplicity-new-signatures.20231114T221320Z.to.20231114T231320Z.sigtar.gz",
    ]
    assert len(sig.names_up_to(T[7])) == 3 and sig.names_up_to(T[0]) == sig.names()[:1]
    assert col.sig_chain_for_time(T[0] - 1) is col.all_sig_chains[0]
    with pytest.raises(errors.NoChainsError, match="No signature chains found"):
        build_collection(full(T[0], sig=False)[0], []).sig_chain_for_time(T[0])


def test_partial_local_manifest():
    remote, local = listing(full(T[0]), inc(T[0], T[1], vols=2, manifest=False, sig=False))
    part_manifest = names.manifest_name(INC, T[0], T[1], encrypted=False, partial=True)
    part_sig = names.signature_name(
        INC, T[0], T[1], encrypted=False, compressed=False, partial=True
    )
    col = build_collection(remote, [*local, part_manifest, part_sig])
    chain = col.backup_chains[0]
    last = chain.last
    assert last.set_kind is INC and last.partial and last.complete
    assert last.manifest is None and last.local_manifest == part_manifest
    assert sorted(last.volumes) == [1, 2] and last.last_continuous_volume() == 2
    assert col.last_set() is last
    assert not col.incomplete_sets
    # The .part signature file extends the local signature chain to the partial set.
    assert col.matched_chain is chain
    assert col.matched_sig_chain is not None and col.matched_sig_chain.local
    assert col.matched_sig_chain.incsigs == [part_sig]
    assert report(col)[5:] == [
        "Found 0 secondary backup chain(s).",
        "",
        "Found primary backup chain with matching signature chain:",
        "-------------------------",
        "Chain start time: Tue Nov 14 22:13:20 2023",
        "Chain end time: Tue Nov 14 23:13:20 2023",
        "Number of contained backup sets: 2",
        "Total number of contained volumes: 3",
        " Type of backup set:                            Time:      Num volumes:",
        "                Full         Tue Nov 14 22:13:20 2023                 1",
        "         Incremental         Tue Nov 14 23:13:20 2023                 2",
        "-------------------------",
        "No orphaned or incomplete backup sets found.",
    ]
    # Without the cache the same remote files are just an incomplete set.
    col = build_collection(remote, local)
    assert len(col.backup_chains[0].sets) == 1 and len(col.incomplete_sets) == 1


def test_partial_full_with_encrypted_volumes():
    remote = [names.volume_name(FULL, T[0], T[0], 1, encrypted=True, compressed=True)]
    part = names.manifest_name(FULL, T[0], T[0], encrypted=False, partial=True)
    col = build_collection(remote, [part])
    s = col.backup_chains[0].fullset
    assert s.partial and s.encrypted and not s.compressed
    # No signatures yet: nothing to pair with.
    assert col.matched_chain is None and col.secondary_chains == col.backup_chains
    assert col.last_set() is s


def test_replaced_incremental():
    remote, local = listing(full(T[0]), inc(T[0], T[1], sig=False), inc(T[0], T[2]))
    col = build_collection(remote, local)
    chain = col.backup_chains[0]
    assert [(s.start_time, s.end_time) for s in chain.incsets] == [(T[0], T[2])]
    assert [(s.start_time, s.end_time) for s in col.replaced_sets] == [(T[0], T[1])]
    assert not col.orphaned_sets and not col.incomplete_sets
    assert col.matched_chain is chain
    assert report(col)[10:15] == [
        "Chain end time: Wed Nov 15 00:13:20 2023",
        "Number of contained backup sets: 2",
        "Total number of contained volumes: 2",
        " Type of backup set:                            Time:      Num volumes:",
        "                Full         Tue Nov 14 22:13:20 2023                 1",
    ]


def test_incomplete_set_stays_out_of_chains():
    remote, local = listing(full(T[0]), inc(T[0], T[1], vols=2, manifest=False, sig=False))
    col = build_collection(remote, local)
    chain = col.backup_chains[0]
    assert chain.sets == [chain.fullset]
    [bad] = col.incomplete_sets
    assert not bad.complete and not bad.partial and sorted(bad.volumes) == [1, 2]
    # A restore never sees it, a backup does (to clean it up first).
    assert col.sets_for_time(T[7]) == [chain.fullset]
    assert col.last_set() is bad
    assert col.matched_chain is chain
    # 0.8.22 prints exactly this (3.2.1 also chains the set, then finds no signatures for it).
    assert report(col, verbose=True, old_wording=True) == [
        "Warning, found incomplete backup sets, probably left from aborted session",
        "Collection Status",
        "-----------------",
        "Connecting with backend: BackendWrapper",
        "Archive dir: D/cache/fx",
        "",
        "Found 0 secondary backup chains.",
        "",
        "Found primary backup chain with matching signature chain:",
        "-------------------------",
        "Chain start time: Tue Nov 14 22:13:20 2023",
        "Chain end time: Tue Nov 14 22:13:20 2023",
        "Number of contained backup sets: 1",
        "Total number of contained volumes: 1",
        " Type of backup set:                            Time:      Num volumes:",
        "                Full         Tue Nov 14 22:13:20 2023                 1",
        "-------------------------",
        "Also found 0 backup sets not part of any chain,",
        "and 1 incomplete backup set.",
        'These may be deleted by running duplicity with the "cleanup" command.',
    ]
    assert report(col)[-3:-1] == [
        "Also found 0 backup set(s) not part of any chain,",
        "and 1 incomplete backup set(s).",
    ]


def test_incomplete_newer_full_is_the_last_set():
    remote, local = listing(full(T[0]), full(T[1], vols=2, manifest=False, sig=False))
    col = build_collection(remote, local)
    assert len(col.backup_chains) == 1 and col.last_full_time() == T[0]
    last = col.last_set()
    assert last is not None and last.set_kind is FULL and last.time == T[1]
    assert not last.complete


def test_last_inc_without_signatures_is_dropped():
    remote, local = listing(full(T[0]), inc(T[0], T[1]), inc(T[1], T[2], sig=False))
    col = build_collection(remote, local)
    chain = col.backup_chains[0]
    assert col.matched_chain is chain and chain.end_time == T[1]
    assert col.discarded_set is not None and col.discarded_set.time == T[2]
    assert col.incomplete_sets == [col.discarded_set]
    assert col.last_set() is chain.last and chain.last.time == T[1]
    lines = report(col, verbose=True)
    assert lines[0] == "WARNING. discarding last backup set, because of missing signature file."
    # duplicity leaves the chain's end time at the dropped set (Wed Nov 15 00:13:20 2023);
    # the end shown here is that of the chain's real last set.
    assert "Chain end time: Tue Nov 14 23:13:20 2023" in lines
    assert lines[-2] == "and 1 incomplete backup set(s)."


def test_no_signatures_at_all():
    remote, _ = full(T[0], sig=False)
    col = build_collection(remote, [])
    assert col.matched_chain is None and col.matched_sig_chain is None
    assert col.warning_lines() == []
    assert report(col) == [
        "Collection Status",
        "-----------------",
        "Connecting with backend: BackendWrapper",
        "Archive dir: D/cache/fx",
        "",
        "Found 1 secondary backup chain(s).",
        "Secondary chain 1 of 1:",
        "-------------------------",
        "Chain start time: Tue Nov 14 22:13:20 2023",
        "Chain end time: Tue Nov 14 22:13:20 2023",
        "Number of contained backup sets: 1",
        "Total number of contained volumes: 1",
        " Type of backup set:                            Time:      Num volumes:",
        "                Full         Tue Nov 14 22:13:20 2023                 1",
        "-------------------------",
        "",
        "No backup chains with active signatures found",
        "No orphaned or incomplete backup sets found.",
    ]


def test_signatures_without_backups():
    _, local = full(T[0])
    col = build_collection([], local)
    assert not col.backup_chains and len(col.local_sig_chains) == 1
    assert col.warning_lines() == ["WARNING. found signatures but no corresponding backup files"]


def test_remote_signatures_newer_than_local():
    remote, local = listing(full(T[0]), inc(T[0], T[1]))
    col = build_collection(remote, local[:1] + local[1:2])  # cache lacks the new-sig
    assert col.local_sig_chains[0].end_time == T[0]
    assert col.remote_sig_chains[0].end_time == T[1]
    assert col.matched_sig_chain is col.remote_sig_chains[0]


def test_empty_listing():
    col = build_collection(["lockfile", "README"], ["lockfile"])
    with pytest.raises(errors.NoChainsError, match="No backup chains found") as exc:
        col.chain_for_time(T[0])
    assert exc.value.exit_code == 30
    with pytest.raises(errors.NoChainsError):
        col.sets_for_time(T[0])
    assert col.last_set() is None and col.last_full_time() == 0
    assert report(col)[5:] == [
        "Found 0 secondary backup chain(s).",
        "No backup chains with active signatures found",
        "No orphaned or incomplete backup sets found.",
    ]


def test_prefixes_select_the_files():
    p = Prefixes(base="pfx-", archive="data_")
    remote, local = listing(full(T[0], prefixes=p), inc(T[0], T[1], prefixes=p))
    assert remote[0] == "pfx-data_duplicity-full.20231114T221320Z.vol1.difftar.gz"
    assert not build_collection(remote, local).backup_chains
    col = build_collection(remote, local, p)
    assert len(col.backup_chains[0].sets) == 2 and col.matched_chain is not None
    # Unprefixed files in the same place belong to another configuration.
    other_r, other_l = full(T[3])
    col = build_collection(remote + other_r, local + other_l, p)
    assert [c.start_time for c in col.backup_chains] == [T[0]]


def test_strays_are_ignored():
    remote, local = listing(full(T[0]), inc(T[0], T[1]))
    strays = [n + ".par2" for n in remote] + ["lockfile", "duplicity-full.x.vol1.difftar"]
    col = build_collection(remote + strays, local + ["lockfile"])
    assert len(col.backup_chains[0].sets) == 2
    assert not col.orphaned_sets and not col.incomplete_sets and not col.orphaned_sigs


def test_duplicate_volume_number_is_an_error():
    remote, _ = full(T[0])
    dup = names.volume_name(FULL, T[0], T[0], 1, encrypted=True, compressed=False)
    with pytest.raises(errors.UserError, match="Volume 1 is already in the volume list"):
        build_collection([*remote, dup], [])


def test_two_chains_covering_one_time():
    remote, local = listing(full(T[0]), inc(T[0], T[3]), full(T[1]))
    col = build_collection(remote, local)
    with pytest.raises(errors.UserError, match="Two chains cover the given time"):
        col.chain_for_time(T[1])
    assert col.chain_for_time(T[2]) is col.backup_chains[-1]


def test_set_helpers():
    s = BackupSet(INC, T[0], T[1])
    s.volumes = {3: "v3", 1: "v1", 2: "v2"}
    s.manifest, s.jsonstat = "m", "j"
    assert s.remote_names() == ["v1", "v2", "v3", "m", "j"]
    assert s.missing_volumes([1, 2, 3, 4, 5]) == [4, 5]
    assert s.last_continuous_volume() == 3
    del s.volumes[2]
    assert s.last_continuous_volume() == 1 and s.time == T[1]


def test_jsonstat_joins_its_set():
    remote, local = listing(full(T[0]))
    stat = names.jsonstat_name(FULL, T[0], T[0], encrypted=False, compressed=True)
    col = build_collection([*remote, stat], local)
    s = col.backup_chains[0].fullset
    assert s.jsonstat == stat and s.remote_names()[-1] == stat
