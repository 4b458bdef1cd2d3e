"""What the housekeeping commands delete (FORMAT.md 6.6, 6.7), and deleting it.

Planning is pure: `plan_removal` (remove-older-than and the remove-all-* commands),
`plan_cleanup` and `plan_unfinished_last` look at a Collection and the file listings only and
return Steps. `run_steps` carries Steps out against a backend and the local cache.

The order keeps whatever a stop halfway leaves usable, as duplicity's does:
* sets go newest first, so an interrupted removal leaves the older part of a chain whole;
* a set's manifest goes first, on its own, so that a set deleted halfway is an *incomplete*
  set (no manifest): no restore reads it, and `cleanup` removes the rest.

A set's signature file and its copies in the local cache go with the set (duplicity's
BackupSet.delete does the same): a signature left behind would make the signature chain run
past the backup chain, and the next incremental would find no matching pair.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from duplicity_ng.backends.base import Backend
from duplicity_ng.cache import ArchiveCache
from duplicity_ng.collection import BackupChain, BackupSet, Collection, SignatureChain
from duplicity_ng.errors import BackendError, GpgError, UserError
from duplicity_ng.format.manifest import Manifest
from duplicity_ng.format.names import FileKind, ParsedName, Prefixes, SetKind, parse
from duplicity_ng.log import Log
from duplicity_ng.timefmt import asctime

SetKey = tuple[SetKind, int, int]


@dataclass(frozen=True)
class SetFiles:
    """Every backend and cache file named after a set, found by the set's key.

    Beside what a BackupSet records (volumes, manifest, jsonstat) this finds its signature
    file, a stray `.part` upload and the set's copies in the local cache."""

    remote: Mapping[SetKey, list[ParsedName]]
    local: Mapping[SetKey, list[ParsedName]]

    @classmethod
    def index(
        cls, remote_names: Iterable[str], local_names: Iterable[str], prefixes: Prefixes
    ) -> SetFiles:
        return cls(_by_key(remote_names, prefixes), _by_key(local_names, prefixes))


def _by_key(names: Iterable[str], prefixes: Prefixes) -> dict[SetKey, list[ParsedName]]:
    found: dict[SetKey, list[ParsedName]] = {}
    for name in names:
        p = parse(name, prefixes)
        if p is not None:
            found.setdefault((p.set_kind, p.start_time, p.end_time), []).append(p)
    return found


@dataclass(frozen=True)
class Step:
    """Files deleted together: one backup set, or what is left of a signature chain.

    `remote_first` (a set's manifest) is deleted in a call of its own before `remote`:
    a batch delete (S3) has no order, and the manifest must be gone before any volume is."""

    label: str
    remote_first: tuple[str, ...] = ()
    remote: tuple[str, ...] = ()
    local: tuple[str, ...] = ()  # names in the local cache

    @property
    def remote_names(self) -> list[str]:
        return [*self.remote_first, *self.remote]


@dataclass(frozen=True)
class Group:
    """The steps of one chain, under the notice duplicity prints for that chain."""

    heading: str
    steps: tuple[Step, ...]


def set_label(s: BackupSet) -> str:
    kind = "full" if s.set_kind is SetKind.FULL else "incremental"
    return f"{kind} backup set of {asctime(s.time)}"


def set_step(s: BackupSet, files: SetFiles, keep: frozenset[str] = frozenset()) -> Step:
    """All files of one set, remote and local, in deletion order; names in `keep` stay."""
    first = (s.manifest,) if s.manifest is not None else ()
    own = {*first, *s.volumes.values()}
    # jsonstat, signature file, stray .part manifest: after the manifest, before the volumes.
    extras = sorted(
        {p.name for p in files.remote.get(s.key, ()) if p.name not in own}
        | ({s.jsonstat} if s.jsonstat is not None else set())
    )
    volumes = [s.volumes[n] for n in sorted(s.volumes, reverse=True)]
    local = sorted(
        (p for p in files.local.get(s.key, ()) if p.name not in keep),
        key=lambda p: (p.kind is not FileKind.MANIFEST, p.name),
    )
    return Step(
        set_label(s),
        remote_first=first,
        remote=tuple(n for n in [*extras, *volumes] if n not in keep),
        local=tuple(p.name for p in local),
    )


def steps_of(groups: Iterable[Group]) -> list[Step]:
    return [step for group in groups for step in group.steps]


# --- remove-older-than, remove-all-but-n-full, remove-all-inc-of-but-n-full ----------------


@dataclass(frozen=True)
class RemovalPlan:
    time: int
    chains: tuple[BackupChain, ...]  # chains whose sets (or incrementals) go, oldest first
    required: tuple[BackupSet, ...]  # older than `time`, kept: newer sets depend on them
    current_is_older: bool  # the current chain ends before `time`; it is kept all the same
    groups: tuple[Group, ...]  # newest chain first

    @property
    def steps(self) -> list[Step]:
        return steps_of(self.groups)


def plan_removal(
    col: Collection, t: int, files: SetFiles, *, incrementals_only: bool = False
) -> RemovalPlan:
    """What `remove-older-than t` deletes (`incrementals_only`: remove-all-inc-of-but-n-full).

    Chains ending before t go, except the current (matched) one, and with them the signature
    chains ending before t. Nothing is planned unless a backup chain goes: signatures alone
    are left, as duplicity leaves them.

    Without a matched pair duplicity has no current chain and would delete every chain
    older than t, the newest too. Here the newest chain stays then (with the signature
    chains starting at or after it): lost signature files do not make its data useless."""
    chains = col.chains_older_than(t)
    sig_chains = col.sig_chains_older_than(t)
    current = col.matched_chain
    if current is None and col.backup_chains:
        current = col.backup_chains[-1]
        chains = [c for c in chains if c is not current]
        sig_chains = [c for c in sig_chains if c.start_time < current.start_time]
    if incrementals_only:
        chains = [c for c in chains if c.incsets]
        sig_chains = [c for c in sig_chains if c.incsigs]
    groups: list[Group] = []
    if chains:
        keep = _current_signatures(col)
        groups = [_chain_group(c, files, keep, incrementals_only) for c in reversed(chains)]
        steps = steps_of(groups)
        gone_remote = {n for step in steps for n in step.remote_names}
        gone_local = {n for step in steps for n in step.local}
        for sig in reversed(sig_chains):
            skip = keep | (gone_local if sig.local else gone_remote)
            group = _sig_chain_group(sig, skip, incrementals_only)
            if group is not None:
                groups.append(group)
    return RemovalPlan(
        time=t,
        chains=tuple(chains),
        required=tuple(col.sets_required_after(t)),
        current_is_older=current is not None and current.end_time < t,
        groups=tuple(groups),
    )


def _current_signatures(col: Collection) -> frozenset[str]:
    """Files of the current signature chain (remote and local copies): never removed."""
    if col.matched_sig_chain is None:
        return frozenset()
    end = col.matched_sig_chain.end_time
    return frozenset(n for c in col.all_sig_chains if c.end_time == end for n in c.names())


def _chain_group(
    chain: BackupChain, files: SetFiles, keep: frozenset[str], incrementals_only: bool
) -> Group:
    if incrementals_only:
        heading = f"Deleting any incremental backup chain rooted at {asctime(chain.start_time)}"
        sets = chain.incsets
    else:
        heading = f"Deleting complete backup chain {asctime(chain.end_time)}"
        sets = chain.sets
    return Group(heading, tuple(set_step(s, files, keep) for s in reversed(sets)))


def _sig_chain_group(
    sig: SignatureChain, skip: frozenset[str] | set[str], incrementals_only: bool
) -> Group | None:
    """The signature files of a chain not already gone with their sets, newest first."""
    names = sig.incsigs if incrementals_only else sig.names()
    left = tuple(n for n in reversed(names) if n not in skip)
    if not left:
        return None
    where = "local" if sig.local else "remote"
    if incrementals_only:
        heading = f"Deleting any incremental signature chain rooted at {asctime(sig.start_time)}"
    else:
        heading = f"Deleting complete signature chain {asctime(sig.end_time)}"
    label = f"{where} signature files of the chain ending {asctime(sig.end_time)}"
    step = Step(label, local=left) if sig.local else Step(label, remote=left)
    return Group(heading, (step,))


def plan_unfinished_last(
    col: Collection, files: SetFiles, missing: Mapping[SetKey, list[int]]
) -> Step | None:
    """The last set, when a backup left it unfinished: no manifest on the backend (a local
    `.part` one or none), or volumes missing. duplicity 3.x deletes it first, with --force,
    before any remove-* command."""
    last = col.last_set()
    if last is None or (last.manifest is not None and not missing.get(last.key)):
        return None
    return set_step(last, files)


# --- cleanup ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CleanupPlan:
    steps: tuple[Step, ...]
    # Sets missing volumes that later sets of their chain build on: kept (and warned about).
    damaged_kept: tuple[tuple[BackupSet, tuple[int, ...]], ...]

    @property
    def remote_names(self) -> list[str]:
        return [n for step in self.steps for n in step.remote_names]

    @property
    def local_names(self) -> list[str]:
        return [n for step in self.steps for n in step.local]


def plan_cleanup(
    col: Collection,
    files: SetFiles,
    missing: Mapping[SetKey, list[int]],
    strays: Iterable[str] = (),
) -> CleanupPlan:
    """What `cleanup` deletes: sets not part of any chain (orphaned), sets without a
    manifest (incomplete), sets missing volumes that nothing builds on, orphaned signature
    files, and temporary upload files (`strays`) left by interrupted uploads."""
    damaged, kept = _damaged_sets(col, missing)
    doomed: dict[SetKey, BackupSet] = {}
    for s in [*col.orphaned_sets, *col.incomplete_sets, *damaged]:
        doomed.setdefault(s.key, s)
    newest_first = sorted(
        doomed.values(),
        key=lambda s: (s.end_time, s.set_kind is SetKind.INC, s.start_time),
        reverse=True,
    )
    steps = [set_step(s, files) for s in newest_first]
    gone_remote = {n for step in steps for n in step.remote_names}
    gone_local = {n for step in steps for n in step.local}
    remote_sigs = tuple(n for n in col.remote_orphaned_sigs if n not in gone_remote)
    local_sigs = tuple(n for n in col.local_orphaned_sigs if n not in gone_local)
    if remote_sigs or local_sigs:
        steps.append(Step("orphaned signature files", remote=remote_sigs, local=local_sigs))
    if strays := tuple(strays):
        steps.append(Step("temporary files of interrupted uploads", remote=strays))
    return CleanupPlan(tuple(steps), tuple(kept))


def _damaged_sets(
    col: Collection, missing: Mapping[SetKey, list[int]]
) -> tuple[list[BackupSet], list[tuple[BackupSet, tuple[int, ...]]]]:
    """Sets of the chains that miss volumes: (those nothing builds on, the others).

    duplicity 3.x deletes every such set. A set that later sets depend on is kept here: its
    remaining volumes still restore most of its files, while deleting it would orphan the
    rest of its chain. So only a chain's damaged tail goes."""
    removable: list[BackupSet] = []
    kept: list[tuple[BackupSet, tuple[int, ...]]] = []
    for chain in col.backup_chains:
        sets = chain.sets
        n = len(sets)
        while n and missing.get(sets[n - 1].key):
            n -= 1
        removable += sets[n:]
        kept += [(s, tuple(missing[s.key])) for s in sets[:n] if missing.get(s.key)]
    return removable, kept


# --- carrying a plan out ---------------------------------------------------------------------


def find_missing_volumes(
    sets: Iterable[BackupSet],
    read_manifest: Callable[[BackupSet], Manifest],
    report: Callable[[str], None],
) -> dict[SetKey, list[int]]:
    """The volumes each set's manifest lists that are not on the backend.

    A manifest that cannot be read (no passphrase, damaged) is reported and its set counts as
    whole, as in duplicity: a set is never deleted on a guess. A gpg failure (no passphrase,
    no secret key) would fail the same way for every set: the others are not tried."""
    found: dict[SetKey, list[int]] = {}
    for s in sets:
        if s.manifest is None:
            continue
        try:
            manifest = read_manifest(s)
        except GpgError as exc:
            report(f"Cannot check the sets for missing volumes: {exc.line()}")
            break
        except UserError as exc:
            report(f"Cannot check the {set_label(s)} for missing volumes: {exc.line()}")
            continue
        if gone := s.missing_volumes(manifest.volumes):
            found[s.key] = gone
    return found


def run_steps(
    steps: Iterable[Step], backend: Backend, cache: ArchiveCache, log: Log, *, dry_run: bool
) -> None:
    """Delete step by step: on the backend (the DryRun wrapper only reports under --dry-run),
    then the set's local cache copies. A backend error stops everything at once."""
    for step in steps:
        log.info(f"Deleting the {step.label}")
        try:
            for batch in (step.remote_first, step.remote):
                if batch:
                    backend.delete(list(batch))
        except BackendError as exc:
            raise BackendError(
                f"Deleting the {step.label} failed: {exc.line()}",
                "deletion stopped there; run the same command again, then `cleanup --force`",
                exit_code=exc.exit_code,
            ) from exc
        _remove_local(step.local, cache, log, dry_run)


def _remove_local(names: Iterable[str], cache: ArchiveCache, log: Log, dry_run: bool) -> None:
    for name in names:
        if dry_run:
            log.notice(f"Dry run: would delete {cache.path(name)}")
            continue
        try:
            cache.remove(name)
        except OSError as exc:
            # Only a cache: the next run's sync drops what it still holds of deleted sets.
            log.warning(f"Cannot delete {cache.path(name)}: {exc.strerror or exc}")
