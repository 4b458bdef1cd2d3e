"""Backup sets, backup chains and signature chains from file listings (FORMAT.md section 6).

Everything here works on names only: `build_collection` takes the backend listing and the
local cache listing and never reads a file. Reading manifests, syncing the cache and deleting
files belong to the callers.

Where duplicity's two versions differ, this follows the behaviour that keeps restores sound:
a set without any manifest (remote, or a local `.part`) is *incomplete* and stays out of the
chains (as in 0.8; 3.x also chains it, then fails reading its manifest). `last_set` still
reports such a set so that a backup can decide to clean it up or resume.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from duplicity_ng import errors
from duplicity_ng.format.names import FileKind, ParsedName, Prefixes, SetKind, parse


def _pretty(t: int) -> str:
    return time.asctime(time.localtime(t))


@dataclass
class BackupSet:
    """What one backup run produced: volumes, a manifest and maybe a jsonstat file."""

    set_kind: SetKind
    start_time: int
    end_time: int
    volumes: dict[int, str] = field(default_factory=dict)  # volume number -> remote name
    manifest: str | None = None  # remote manifest name
    local_manifest: str | None = None  # manifest name in the local cache (may be .part)
    partial: bool = False  # the local manifest is .part: checkpointed, unfinished
    jsonstat: str | None = None  # remote 3.x jsonstat name
    encrypted: bool = False
    compressed: bool = False

    @property
    def complete(self) -> bool:
        """Has a manifest: on the backend, or a local `.part` one (which makes it partial)."""
        return self.manifest is not None or self.partial

    @property
    def time(self) -> int:
        """A full's time, an incremental's end time."""
        return self.end_time

    @property
    def key(self) -> tuple[SetKind, int, int]:
        """What every file of this set has in its name: type, start and end time."""
        return (self.set_kind, self.start_time, self.end_time)

    def remote_names(self) -> list[str]:
        """Backend files of this set: volumes in order, then manifest and jsonstat."""
        names = [self.volumes[n] for n in sorted(self.volumes)]
        names += [n for n in (self.manifest, self.jsonstat) if n is not None]
        return names

    def missing_volumes(self, manifest_volumes: Iterable[int]) -> list[int]:
        """Volumes a manifest lists that are not on the backend (3.x "missing difftars")."""
        return sorted(set(manifest_volumes) - set(self.volumes))

    def last_continuous_volume(self) -> int:
        """Highest n such that volumes 1..n are all present (0 if volume 1 is missing)."""
        n = 0
        while n + 1 in self.volumes:
            n += 1
        return n

    def _add(self, p: ParsedName) -> None:
        if p.kind is FileKind.VOLUME:
            assert p.volume is not None
            other = self.volumes.get(p.volume)
            if other is not None and other != p.name:
                raise errors.UserError(
                    f'Volume {p.volume} is already in the volume list as "{other}". '
                    f'"{p.name}" has the same volume number. '
                    "Please check your command line and retry."
                )
            self.volumes[p.volume] = p.name
            self.compressed = self.compressed or p.compressed
        elif p.kind is FileKind.MANIFEST:
            if p.partial:
                # Only local .part manifests reach here (FORMAT.md 6.1).
                self.local_manifest = p.name
                self.partial = True
                return
            if self.manifest is None:
                self.manifest = p.name
        elif p.kind is FileKind.JSONSTAT:
            if p.partial:
                return
            if self.jsonstat is None:
                self.jsonstat = p.name
        # The local .part files are plain; only remote files tell whether the set is encrypted.
        self.encrypted = self.encrypted or p.encrypted


@dataclass
class BackupChain:
    """A full set and the incrementals that follow it, each starting where the last ended."""

    fullset: BackupSet
    incsets: list[BackupSet] = field(default_factory=list)

    @property
    def start_time(self) -> int:
        return self.fullset.end_time

    @property
    def end_time(self) -> int:
        return self.incsets[-1].end_time if self.incsets else self.fullset.end_time

    @property
    def sets(self) -> list[BackupSet]:
        return [self.fullset, *self.incsets]

    @property
    def last(self) -> BackupSet:
        return self.sets[-1]

    def num_volumes(self) -> int:
        return sum(len(s.volumes) for s in self.sets)

    def sets_up_to(self, t: int) -> list[BackupSet]:
        """The full set plus the incrementals ending at or before t."""
        return [self.fullset, *(s for s in self.incsets if s.end_time <= t)]

    def _add_inc(self, incset: BackupSet) -> tuple[bool, BackupSet | None]:
        """Attach incset if it fits; returns (fits, the set it replaced)."""
        if incset.start_time == self.end_time:
            self.incsets.append(incset)
            return True, None
        last = self.incsets[-1] if self.incsets else None
        if last and incset.start_time == last.start_time and incset.end_time > last.end_time:
            # A later run redid the last incremental from the same base; the newer one wins.
            self.incsets[-1] = incset
            return True, last
        return False, None

    def status_text(self) -> str:
        schema = "%20s   %30s   %15s"
        lines = [
            "-------------------------",
            "Chain start time: " + _pretty(self.start_time),
            "Chain end time: " + _pretty(self.end_time),
            f"Number of contained backup sets: {len(self.sets)}",
            f"Total number of contained volumes: {self.num_volumes()}",
            schema % ("Type of backup set:", "Time:", "Num volumes:"),
        ]
        for s in self.sets:
            kind = "Full" if s.set_kind is SetKind.FULL else "Incremental"
            lines.append(schema % (kind, _pretty(s.time), len(s.volumes)))
        lines.append("-------------------------")
        return "\n".join(lines)


@dataclass
class SignatureChain:
    """A full signature file and the new-signature files that continue it."""

    fullsig: str
    start_time: int
    end_time: int
    local: bool
    incsigs: list[str] = field(default_factory=list)
    inc_end_times: list[int] = field(default_factory=list)  # parallel to incsigs

    def names(self) -> list[str]:
        return [self.fullsig, *self.incsigs]

    def names_up_to(self, t: int) -> list[str]:
        """Signature files needed to describe the tree as of time t."""
        return [
            self.fullsig,
            *(n for n, end in zip(self.incsigs, self.inc_end_times, strict=True) if end <= t),
        ]


@dataclass
class Collection:
    backup_chains: list[BackupChain]  # sorted by end time
    orphaned_sets: list[BackupSet]
    incomplete_sets: list[BackupSet]
    remote_sig_chains: list[SignatureChain]
    local_sig_chains: list[SignatureChain]
    remote_orphaned_sigs: list[str]
    local_orphaned_sigs: list[str]
    matched_chain: BackupChain | None = None  # FORMAT.md 6.4 matched pair
    matched_sig_chain: SignatureChain | None = None
    # Incrementals superseded by a later one with the same start (duplicity forgets them).
    replaced_sets: list[BackupSet] = field(default_factory=list)
    # The newest chain's last set, dropped (into incomplete_sets) for lack of signatures.
    discarded_set: BackupSet | None = None

    @property
    def orphaned_sigs(self) -> list[str]:
        return self.remote_orphaned_sigs + self.local_orphaned_sigs

    @property
    def secondary_chains(self) -> list[BackupChain]:
        return [c for c in self.backup_chains if c is not self.matched_chain]

    @property
    def all_sig_chains(self) -> list[SignatureChain]:
        """Sorted by end time; on a tie the remote chain comes first, the local one last."""
        return sorted(
            self.remote_sig_chains + self.local_sig_chains, key=lambda c: (c.end_time, c.local)
        )

    # --- time selection (FORMAT.md 6.5) ---

    def chain_for_time(self, t: int) -> BackupChain:
        """The chain covering t, else the newest one ending before t, else the oldest."""
        if not self.backup_chains:
            raise errors.NoChainsError("No backup chains found")
        covering = [c for c in self.backup_chains if c.start_time <= t <= c.end_time]
        if len(covering) > 1:
            raise errors.UserError("Two chains cover the given time")
        if covering:
            return covering[0]
        older = [c for c in self.backup_chains if c.end_time < t]
        return older[-1] if older else self.backup_chains[0]

    def sets_for_time(self, t: int) -> list[BackupSet]:
        return self.chain_for_time(t).sets_up_to(t)

    def sig_chain_for_time(self, t: int) -> SignatureChain:
        """Like chain_for_time, for signatures; a local chain wins over an equal remote one."""
        chains = self.all_sig_chains
        if not chains:
            raise errors.NoChainsError("No signature chains found")
        covering = [c for c in chains if c.start_time <= t <= c.end_time]
        if covering:
            return covering[-1]
        older = [c for c in chains if c.end_time < t]
        return older[-1] if older else chains[0]

    # --- backup decisions ---

    def last_set(self) -> BackupSet | None:
        """The newest set of the newest chain, or a newer set left without a manifest.

        A backup resumes a partial last set, and cleans up an incomplete one, before going on.
        """
        newest = self.backup_chains[-1].last if self.backup_chains else None
        newest_end = newest.end_time if newest is not None else 0
        unfinished = [s for s in self.incomplete_sets if not s.complete and s.end_time > newest_end]
        if unfinished:
            return max(unfinished, key=lambda s: (s.end_time, s.set_kind is SetKind.INC))
        return newest

    def last_full_time(self, n: int = 1) -> int:
        """Time of the n-th newest full backup (n=1: the latest), 0 if there are fewer."""
        if n < 1:
            raise ValueError("n counts from 1")
        fulls = sorted((c.start_time for c in self.backup_chains), reverse=True)
        return fulls[n - 1] if len(fulls) >= n else 0

    # --- remove-* helpers (FORMAT.md 6.6): which chains, never what to do with them ---

    def chains_older_than(self, t: int) -> list[BackupChain]:
        """Chains ending before t, except the current (matched) one."""
        current = self.matched_chain.end_time if self.matched_chain else None
        return [c for c in self.backup_chains if c.end_time < t and c.end_time != current]

    def sig_chains_older_than(self, t: int) -> list[SignatureChain]:
        """Signature chains ending before t; both copies of the current one are kept."""
        current = self.matched_sig_chain.end_time if self.matched_sig_chain else None
        return [c for c in self.all_sig_chains if c.end_time < t and c.end_time != current]

    def sets_required_after(self, t: int) -> list[BackupSet]:
        """Sets older than t that a chain reaching t or later still needs (kept, warned)."""
        needed = [s for c in self.backup_chains if c.end_time >= t for s in c.sets if s.time < t]
        return sorted(needed, key=lambda s: s.time)

    # --- collection-status ---

    def warning_lines(self, old_wording: bool = False) -> list[str]:
        """The warnings duplicity logs while reading the collection (3.x, or 0.8 wording)."""

        def files(n: int, new: str, old: str) -> str:
            return new if not old_wording else old + ("s:" if n != 1 else ":")

        warn = "Warning, " if old_wording else "WARNING. "
        out: list[str] = []
        if self.discarded_set is not None:
            out.append(warn + "discarding last backup set, because of missing signature file.")
        for where, orphans in (
            ("local", self.local_orphaned_sigs),
            ("remote", self.remote_orphaned_sigs),
        ):
            if orphans:
                out.append(
                    warn
                    + files(
                        len(orphans),
                        f"found the following {where} orphaned signature file(s):",
                        f"found the following {where} orphaned signature file",
                    )
                )
                out += orphans
        if (self.remote_sig_chains or self.local_sig_chains) and self.matched_chain is None:
            out.append(warn + "found signatures but no corresponding backup files")
        if old_wording and self.incomplete_sets:
            out.append(warn + "found incomplete backup sets, probably left from aborted session")
        if self.orphaned_sets:
            out.append(
                warn
                + files(
                    len(self.orphaned_sets),
                    "found the following orphaned backup file(s):",
                    "found the following orphaned backup file",
                )
            )
            out += [_set_listing(s) for s in self.orphaned_sets]
        return out

    def status_text(
        self,
        archive_dir: str,
        verbose: bool = False,
        *,
        backend_name: str = "BackendWrapper",
        old_wording: bool = False,
    ) -> str:
        """The collection-status report, from "Collection Status" to the orphan notice.

        3.2.1 wording unless old_wording (0.8's singular/plural forms). verbose puts the
        warnings duplicity logs while reading the collection in front. The "Last full backup
        date" line and 3.x's "Duplicity backup complete." are the command's, not the report's.
        """
        secondary = self.secondary_chains
        lines = self.warning_lines(old_wording) if verbose else []
        lines += [
            "Collection Status",
            "-----------------",
            f"Connecting with backend: {backend_name}",
            f"Archive dir: {archive_dir}",
            "",
            _count(
                len(secondary),
                "Found %d secondary backup chain(s).",
                "Found %d secondary backup chain.",
                "Found %d secondary backup chains.",
                old_wording,
            ),
        ]
        for i, chain in enumerate(secondary, 1):
            lines += [f"Secondary chain {i} of {len(secondary)}:", chain.status_text(), ""]
        if self.matched_chain is not None:
            lines += ["", "Found primary backup chain with matching signature chain:"]
            lines.append(self.matched_chain.status_text())
        else:
            lines.append("No backup chains with active signatures found")
        if self.orphaned_sets or self.incomplete_sets:
            lines.append(
                _count(
                    len(self.orphaned_sets),
                    "Also found %d backup set(s) not part of any chain,",
                    "Also found %d backup set not part of any chain,",
                    "Also found %d backup sets not part of any chain,",
                    old_wording,
                )
            )
            lines.append(
                _count(
                    len(self.incomplete_sets),
                    "and %d incomplete backup set(s).",
                    "and %d incomplete backup set.",
                    "and %d incomplete backup sets.",
                    old_wording,
                )
            )
            lines.append('These may be deleted by running duplicity with the "cleanup" command.')
        else:
            lines.append("No orphaned or incomplete backup sets found.")
        return "\n".join(lines)


def _set_listing(s: BackupSet) -> str:
    """A set as duplicity prints it in warnings: manifest first, then the volumes."""
    names = [s.manifest] if s.manifest is not None else []
    names += [s.volumes[n] for n in sorted(s.volumes)]
    return "[" + ", ".join(names) + "]"


def _count(n: int, new: str, old_one: str, old_many: str, old_wording: bool) -> str:
    if not old_wording:
        return new % n
    return (old_one if n == 1 else old_many) % n


# --- building --------------------------------------------------------------------------------


def build_collection(
    remote_names: list[str],
    local_names: list[str],
    prefixes: Prefixes = Prefixes(),  # noqa: B008
) -> Collection:
    """Sets, chains and signature chains from the backend and local cache listings."""
    remote = [p for p in (parse(n, prefixes) for n in remote_names) if p is not None]
    local = [p for p in (parse(n, prefixes) for n in local_names) if p is not None]

    sets = sorted(
        _group_sets(remote, local),
        key=lambda s: (s.end_time, s.set_kind is SetKind.INC, s.start_time),
    )
    complete = [s for s in sets if s.complete]
    incomplete = [s for s in sets if not s.complete]
    chains, orphaned, replaced = _chain_sets(complete)
    chains.sort(key=lambda c: c.end_time)

    remote_sigs, remote_orphans = _sig_chains(remote, local=False)
    local_sigs, local_orphans = _sig_chains(local, local=True)
    col = Collection(
        backup_chains=chains,
        orphaned_sets=orphaned,
        incomplete_sets=incomplete,
        remote_sig_chains=remote_sigs,
        local_sig_chains=local_sigs,
        remote_orphaned_sigs=remote_orphans,
        local_orphaned_sigs=local_orphans,
        replaced_sets=replaced,
    )
    _match(col)
    return col


def _group_sets(remote: list[ParsedName], local: list[ParsedName]) -> list[BackupSet]:
    by_key: dict[tuple[SetKind, int, int], BackupSet] = {}

    def get(p: ParsedName) -> BackupSet:
        key = (p.set_kind, p.start_time, p.end_time)
        if key not in by_key:
            by_key[key] = BackupSet(p.set_kind, p.start_time, p.end_time)
        return by_key[key]

    set_files = (FileKind.VOLUME, FileKind.MANIFEST, FileKind.JSONSTAT)
    # A local .part manifest is an unfinished run's state and makes (or extends) a set.
    for p in local:
        if p.partial and p.kind is FileKind.MANIFEST:
            get(p)._add(p)
    for p in remote:
        # A .part name on the backend is a stray upload, never a manifest to trust.
        if p.kind in set_files and not (p.partial and p.kind is FileKind.MANIFEST):
            get(p)._add(p)
    # A finished local manifest only annotates a set the backend knows about.
    for p in local:
        if p.kind is FileKind.MANIFEST and not p.partial:
            s = by_key.get((p.set_kind, p.start_time, p.end_time))
            if s is not None and not s.partial:
                s.local_manifest = p.name
    return list(by_key.values())


def _chain_sets(
    sets: list[BackupSet],
) -> tuple[list[BackupChain], list[BackupSet], list[BackupSet]]:
    chains: list[BackupChain] = []
    orphaned: list[BackupSet] = []
    replaced: list[BackupSet] = []
    for s in sets:
        if s.set_kind is SetKind.FULL:
            chains.append(BackupChain(s))
            continue
        for chain in chains:
            fits, old = chain._add_inc(s)
            if fits:
                replaced += [old] if old is not None else []
                break
        else:
            orphaned.append(s)
    return chains, orphaned, replaced


def _sig_chains(parsed: list[ParsedName], *, local: bool) -> tuple[list[SignatureChain], list[str]]:
    sigs = [p for p in parsed if p.kind is FileKind.SIGNATURE]
    chains = [
        SignatureChain(p.name, p.start_time, p.end_time, local)
        for p in sorted(sigs, key=lambda p: p.start_time)
        if p.set_kind is SetKind.FULL
    ]
    orphans: list[str] = []
    for p in sorted((p for p in sigs if p.set_kind is SetKind.INC), key=lambda p: p.start_time):
        for chain in chains:
            if chain.end_time == p.start_time:
                chain.incsigs.append(p.name)
                chain.inc_end_times.append(p.end_time)
                chain.end_time = p.end_time
                break
        else:
            orphans.append(p.name)
    return chains, orphans


def _match(col: Collection) -> None:
    """Pair the newest backup chain with a signature chain ending where it ends (6.4)."""
    if not col.backup_chains:
        return
    latest = col.backup_chains[-1]
    for sig in reversed(col.all_sig_chains):
        if sig.end_time == latest.end_time:
            pass
        elif len(latest.sets) >= 2 and sig.end_time == latest.sets[-2].end_time:
            # The last set's signatures never arrived: it cannot be built upon.
            col.discarded_set = latest.incsets.pop()
            col.incomplete_sets.append(col.discarded_set)
        else:
            continue
        col.matched_chain, col.matched_sig_chain = latest, sig
        return
