"""What remove-older-than, remove-all-*-but-n-full and cleanup plan to delete (deletion.py).

Pure planning over synthetic listings: no backend, no cache. The end-to-end behaviour (files
really gone, restores of what is kept, --dry-run, errors) is in test_e2e_remove.py.
"""

from __future__ import annotations

from pathlib import Path

from duplicity_ng.backends.base import Capabilities, RemoteFile
from duplicity_ng.backends.wrapper import BackendWrapper
from duplicity_ng.collection import BackupSet, Collection, build_collection
from duplicity_ng.deletion import (
    SetFiles,
    Step,
    plan_cleanup,
    plan_removal,
    plan_unfinished_last,
)
from duplicity_ng.format import names
from duplicity_ng.format.names import Prefixes, SetKind

FULL, INC = SetKind.FULL, SetKind.INC
T = [1700000000 + 3600 * i for i in range(10)]

Listing = tuple[list[str], list[str]]  # (backend names, local cache names)


# --- listing builders -----------------------------------------------------------------------


def vol(kind: SetKind, a: int, b: int, n: int) -> str:
    return names.volume_name(kind, a, b, n, encrypted=False, compressed=True)


def man(kind: SetKind, a: int, b: int, partial: bool = False) -> str:
    return names.manifest_name(kind, a, b, encrypted=False, partial=partial)


def sig(kind: SetKind, a: int, b: int, partial: bool = False) -> str:
    return names.signature_name(kind, a, b, encrypted=False, compressed=True, partial=partial)


def bset(
    kind: SetKind, a: int, b: int, vols: int = 1, manifest: bool = True, signature: bool = True
) -> Listing:
    """One set as a backup leaves it: on the backend, and the metadata copies in the cache."""
    remote = [vol(kind, a, b, n) for n in range(1, vols + 1)]
    local = []
    if manifest:
        remote.append(man(kind, a, b))
        local.append(man(kind, a, b))
    if signature:
        remote.append(sig(kind, a, b))
        local.append(sig(kind, a, b))
    return remote, local


def full(t: int, **kw) -> Listing:
    return bset(FULL, t, t, **kw)


def inc(a: int, b: int, **kw) -> Listing:
    return bset(INC, a, b, **kw)


def listing(*parts: Listing) -> Listing:
    return [n for p in parts for n in p[0]], [n for p in parts for n in p[1]]


def resolve(lst: Listing) -> tuple[Collection, SetFiles]:
    remote, local = lst
    return build_collection(remote, local), SetFiles.index(remote, local, Prefixes())


def three_chains() -> Listing:
    """Chains full T0 + inc T1, full T2 + inc T3, full T4 + inc T5 (the current one)."""
    return listing(
        full(T[0]), inc(T[0], T[1]), full(T[2]), inc(T[2], T[3]), full(T[4]), inc(T[4], T[5])
    )


def all_remote(steps: list[Step]) -> list[str]:
    return [n for s in steps for n in s.remote_names]


def all_local(steps: list[Step]) -> list[str]:
    return [n for s in steps for n in s.local]


def files_of(lst: Listing) -> tuple[set[str], set[str]]:
    return set(lst[0]), set(lst[1])


# --- remove-older-than --------------------------------------------------------------------------


def test_chains_ending_before_t_go_newest_set_first_manifest_first():
    col, files = resolve(three_chains())
    plan = plan_removal(col, T[4], files)
    assert [c.start_time for c in plan.chains] == [T[0], T[2]]
    assert not plan.required and not plan.current_is_older
    # Newest chain first, newest set first; in each set the manifest alone, first.
    assert [s.label.split(" of ")[0] for s in plan.steps] == [
        "incremental backup set",
        "full backup set",
    ] * 2
    first = plan.steps[0]
    assert first.remote_first == (man(INC, T[2], T[3]),)
    assert first.remote == (sig(INC, T[2], T[3]), vol(INC, T[2], T[3], 1))
    assert set(first.local) == {man(INC, T[2], T[3]), sig(INC, T[2], T[3])}
    assert first.local[0] == man(INC, T[2], T[3])
    # Every file of both old chains goes, remote and local; nothing of the current one.
    gone_remote, gone_local = files_of(
        listing(full(T[0]), inc(T[0], T[1]), full(T[2]), inc(T[2], T[3]))
    )
    assert set(all_remote(plan.steps)) == gone_remote
    assert set(all_local(plan.steps)) == gone_local
    assert len(all_remote(plan.steps)) == len(gone_remote)  # each name once


def test_current_chain_is_never_planned_even_when_older_than_t():
    col, files = resolve(three_chains())
    plan = plan_removal(col, T[9], files)
    assert [c.start_time for c in plan.chains] == [T[0], T[2]]
    assert plan.current_is_older
    current = set(listing(full(T[4]), inc(T[4], T[5]))[0])
    assert not current & set(all_remote(plan.steps))


def test_sets_older_than_t_that_a_newer_set_needs_are_kept():
    col, files = resolve(three_chains())
    plan = plan_removal(col, T[3], files)  # inside the second chain
    assert [c.start_time for c in plan.chains] == [T[0]]
    assert [s.time for s in plan.required] == [T[2]]
    assert not set(full(T[2])[0]) & set(all_remote(plan.steps))


def test_nothing_older_plans_nothing():
    col, files = resolve(three_chains())
    for t in (0, T[0], T[1]):
        plan = plan_removal(col, t, files)
        assert not plan.chains and not plan.steps


def test_remove_all_but_n_full_time():
    col, files = resolve(three_chains())
    assert col.last_full_time(1) == T[4] and col.last_full_time(2) == T[2]
    assert col.last_full_time(4) == 0  # fewer fulls: nothing is older than 0
    assert [c.start_time for c in plan_removal(col, col.last_full_time(2), files).chains] == [T[0]]


def test_multi_volume_set_volumes_go_last_highest_first():
    col, files = resolve(listing(full(T[0], vols=3), full(T[1])))
    (step,) = plan_removal(col, T[1], files).steps
    assert step.remote_first == (man(FULL, T[0], T[0]),)
    assert step.remote == (
        sig(FULL, T[0], T[0]),
        vol(FULL, T[0], T[0], 3),
        vol(FULL, T[0], T[0], 2),
        vol(FULL, T[0], T[0], 1),
    )


def test_signature_chain_without_backup_files_goes_with_the_old_chains():
    lst = listing(three_chains(), ([sig(FULL, T[6], T[6])], []))
    # A lone full signature newer than every chain: it ends after t, so it stays.
    col, files = resolve(lst)
    assert sig(FULL, T[6], T[6]) not in all_remote(plan_removal(col, T[4], files).steps)
    # One older than t goes once a backup chain goes, as its own group.
    lst = listing(([sig(FULL, T[0] - 100, T[0] - 100)], []), three_chains())
    col, files = resolve(lst)
    plan = plan_removal(col, T[4], files)
    assert plan.groups[-1].heading.startswith("Deleting complete signature chain")
    assert plan.groups[-1].steps[0].remote == (sig(FULL, T[0] - 100, T[0] - 100),)


def test_signatures_alone_are_left_when_no_backup_chain_goes():
    lst = listing(([sig(FULL, T[0] - 100, T[0] - 100)], []), full(T[4]))
    col, files = resolve(lst)
    plan = plan_removal(col, T[4], files)
    assert not plan.chains and not plan.steps


def test_incrementals_only_keeps_full_sets_and_full_signatures():
    col, files = resolve(
        listing(full(T[0]), inc(T[0], T[1]), full(T[2]), full(T[4]), inc(T[4], T[5]), full(T[6]))
    )
    plan = plan_removal(col, T[6], files, incrementals_only=True)
    # The chain of T2 has no incrementals: not listed.
    assert [c.start_time for c in plan.chains] == [T[0], T[4]]
    remote = set(all_remote(plan.steps))
    assert remote == set(inc(T[4], T[5])[0]) | set(inc(T[0], T[1])[0])
    assert set(all_local(plan.steps)) == set(inc(T[4], T[5])[1]) | set(inc(T[0], T[1])[1])
    assert plan.groups[0].heading.startswith("Deleting any incremental backup chain rooted at")


def test_files_of_the_current_signature_chain_are_never_planned():
    # The signature of inc T0-T1 is lost, so the new signatures of T1-T2 continue the full
    # signatures of T1, while the backup chain of T0 takes the incremental T1-T2. The old
    # chain of T1 goes; its full signature file belongs to the current pair and stays.
    lst = listing(full(T[0]), inc(T[0], T[1], signature=False), full(T[1]), inc(T[1], T[2]))
    col, files = resolve(lst)
    assert col.matched_chain is not None and col.matched_chain.start_time == T[0]
    assert col.matched_sig_chain is not None and col.matched_sig_chain.start_time == T[1]
    plan = plan_removal(col, T[9], files)
    assert [c.start_time for c in plan.chains] == [T[1]]
    remote = all_remote(plan.steps)
    assert man(FULL, T[1], T[1]) in remote and vol(FULL, T[1], T[1], 1) in remote
    assert sig(FULL, T[1], T[1]) not in remote + all_local(plan.steps)


# --- the unfinished last set (remove-* --force deletes it first) ---------------------------


def test_last_set_without_manifest_is_unfinished():
    lst = listing(full(T[0]), inc(T[0], T[1], vols=2, manifest=False))
    col, files = resolve(lst)
    step = plan_unfinished_last(col, files, {})
    assert step is not None and step.remote_first == ()
    assert step.remote == (
        sig(INC, T[0], T[1]),
        vol(INC, T[0], T[1], 2),
        vol(INC, T[0], T[1], 1),
    )
    assert step.local == (sig(INC, T[0], T[1]),)


def test_checkpointed_last_set_goes_with_its_part_files():
    remote, local = listing(full(T[0]), inc(T[0], T[1], manifest=False, signature=False))
    local += [man(INC, T[0], T[1], partial=True), sig(INC, T[0], T[1], partial=True)]
    col, files = resolve((remote, local))
    step = plan_unfinished_last(col, files, {})
    assert step is not None
    assert step.remote == (vol(INC, T[0], T[1], 1),)
    assert set(step.local) == {man(INC, T[0], T[1], True), sig(INC, T[0], T[1], True)}


def test_last_set_missing_volumes_is_unfinished_a_whole_one_is_not():
    col, files = resolve(listing(full(T[0]), inc(T[0], T[1])))
    assert plan_unfinished_last(col, files, {}) is None
    last = col.backup_chains[-1].last
    step = plan_unfinished_last(col, files, {last.key: [2]})
    assert step is not None and step.remote_first == (man(INC, T[0], T[1]),)


def test_no_sets_no_unfinished_set():
    col, files = resolve(([], []))
    assert plan_unfinished_last(col, files, {}) is None


# --- cleanup ----------------------------------------------------------------------------------


def test_cleanup_of_a_clean_collection_is_empty():
    col, files = resolve(three_chains())
    plan = plan_cleanup(col, files, {})
    assert not plan.steps and not plan.damaged_kept


def test_cleanup_removes_incomplete_and_orphaned_sets_and_their_signatures():
    # The full of T2 lost its manifest: it is incomplete, and the incremental on it orphaned.
    lst = listing(full(T[0]), full(T[2], manifest=False), inc(T[2], T[3]), full(T[4]))
    col, files = resolve(lst)
    assert len(col.incomplete_sets) == 1 and len(col.orphaned_sets) == 1
    plan = plan_cleanup(col, files, {})
    doomed = listing(full(T[2], manifest=False), inc(T[2], T[3]))
    assert set(plan.remote_names) == set(doomed[0])
    assert set(plan.local_names) == set(doomed[1])
    # Newest first: the orphaned incremental before the incomplete full.
    assert plan.steps[0].label.startswith("incremental") and plan.steps[1].label.startswith("full")


def test_cleanup_after_an_upload_stopped_before_the_manifest():
    # volumes and signatures stored, the manifest never: the signature chain runs past the
    # backup chain, and no pair matches until the set and its signature are gone.
    lst = listing(full(T[0]), inc(T[0], T[1], manifest=False))
    col, files = resolve(lst)
    assert col.matched_chain is None
    plan = plan_cleanup(col, files, {})
    assert set(plan.remote_names) == set(inc(T[0], T[1], manifest=False)[0])
    remote = [n for n in lst[0] if n not in plan.remote_names]
    local = [n for n in lst[1] if n not in plan.local_names]
    assert build_collection(remote, local).matched_chain is not None


def test_cleanup_removes_orphaned_signatures_remote_and_local():
    stray = sig(INC, T[7], T[8])
    col, files = resolve(listing(full(T[0]), ([stray], [stray])))
    plan = plan_cleanup(col, files, {})
    assert plan.remote_names == [stray] and plan.local_names == [stray]


def test_cleanup_removes_a_damaged_tail_but_keeps_damaged_sets_others_build_on():
    col, files = resolve(listing(full(T[0], vols=2), inc(T[0], T[1]), inc(T[1], T[2])))
    full_set, inc1, inc2 = col.backup_chains[0].sets
    # inc2 and inc1 go: nothing builds on inc1 once inc2 is gone.
    plan = plan_cleanup(col, files, {inc1.key: [1], inc2.key: [1]})
    assert [s.label.split(" of ")[0] for s in plan.steps] == ["incremental backup set"] * 2
    assert plan.steps[0].remote_first == (man(INC, T[1], T[2]),)
    assert plan.steps[1].remote_first == (man(INC, T[0], T[1]),)
    assert not plan.damaged_kept
    # A damaged set stays while a whole set builds on it: here the full, under inc1.
    plan = plan_cleanup(col, files, {full_set.key: [2], inc2.key: [1]})
    assert [s.remote_first for s in plan.steps] == [(man(INC, T[1], T[2]),)]
    assert [(s.time, v) for s, v in plan.damaged_kept] == [(T[0], (2,))]


def test_cleanup_removes_a_chain_damaged_from_end_to_start():
    col, files = resolve(listing(full(T[0], vols=2), inc(T[0], T[1]), full(T[2])))
    full_set, inc1 = col.backup_chains[0].sets
    plan = plan_cleanup(col, files, {full_set.key: [2], inc1.key: [1]})
    assert set(plan.remote_names) == set(listing(full(T[0], vols=2), inc(T[0], T[1]))[0])
    assert not plan.damaged_kept


def test_cleanup_removes_stray_uploads():
    col, files = resolve(full(T[0]))
    plan = plan_cleanup(col, files, {}, [".ngtmp-0123abcd-duplicity-full.x.vol1.difftar.gz"])
    assert plan.remote_names == [".ngtmp-0123abcd-duplicity-full.x.vol1.difftar.gz"]


def test_set_files_index_ignores_foreign_names():
    files = SetFiles.index(["lockfile", "notes.txt", vol(FULL, T[0], T[0], 1)], [], Prefixes())
    assert list(files.remote) == [(FULL, T[0], T[0])]


def test_backup_set_key():
    s = BackupSet(INC, T[0], T[1])
    assert s.key == (INC, T[0], T[1])


# --- stray uploads are found below the wrappers ---------------------------------------------


class _Storage:
    """A storage backend that lists a leftover temporary upload (as SFTP/WebDAV can)."""

    display_url = "fake://"
    capabilities = Capabilities(rename=True)

    def __init__(self, listed: list[str]) -> None:
        self.listed = listed

    def list(self) -> list[RemoteFile]:
        return [RemoteFile(n, 1) for n in self.listed]


class _Hiding(BackendWrapper):
    def list(self) -> list[RemoteFile]:
        return [f for f in self.inner.list() if not f.name.startswith(".ngtmp-")]


def test_stray_uploads_are_listed_from_the_storage(tmp_path: Path):
    from duplicity_ng.cli.cleanup import _stray_uploads
    from duplicity_ng.repository import Repository

    stray = ".ngtmp-0123abcd-" + vol(FULL, T[0], T[0], 1)
    storage = _Storage([vol(FULL, T[0], T[0], 1), stray])
    repo = Repository(_Hiding(storage), None, Prefixes(), tmp_path, None)  # type: ignore[arg-type]
    assert _stray_uploads(repo) == [stray]
    # A backend that cannot rename never uploads through a temporary name.
    storage.capabilities = Capabilities(rename=False)
    repo = Repository(_Hiding(storage), None, Prefixes(), tmp_path, None)  # type: ignore[arg-type]
    assert _stray_uploads(repo) == []


def test_prefixed_names_are_planned_with_their_prefixes():
    pfx = Prefixes(base="pfx-", archive="data_")

    def files_of_set(kind: SetKind, a: int, b: int) -> list[str]:
        return [
            names.volume_name(kind, a, b, 1, encrypted=False, compressed=True, prefixes=pfx),
            names.manifest_name(kind, a, b, encrypted=False, prefixes=pfx),
            names.signature_name(kind, a, b, encrypted=False, compressed=True, prefixes=pfx),
        ]

    old = files_of_set(FULL, T[0], T[0]) + files_of_set(INC, T[0], T[1])
    remote = old + files_of_set(FULL, T[2], T[2])
    col = build_collection(remote, [], pfx)
    plan = plan_removal(col, T[2], SetFiles.index(remote, [], pfx))
    assert sorted(all_remote(plan.steps)) == sorted(old)
    assert plan.steps[0].remote_first == (old[4],)  # the incremental's manifest


def test_without_a_matched_pair_the_newest_chain_is_kept():
    # The newest chain lost its signature files: duplicity would delete it with the others.
    remote, local = three_chains()
    lost = {sig(FULL, T[4], T[4]), sig(INC, T[4], T[5])}
    remote = [n for n in remote if n not in lost]
    local = [n for n in local if n not in lost]
    col, files = resolve((remote, local))
    assert col.matched_chain is None
    plan = plan_removal(col, T[9], files)
    assert [c.start_time for c in plan.chains] == [T[0], T[2]]
    assert plan.current_is_older
    kept = set(listing(full(T[4]), inc(T[4], T[5]))[0])
    assert not kept & set(all_remote(plan.steps))
