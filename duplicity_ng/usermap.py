"""Owners on restore: names in the archive mapped through the local passwd/group files.

duplicity maps uname/gname to local ids first and falls back to the numeric ids
(FORMAT.md 2.4); --numeric-owner uses the numeric ids only.
"""

from __future__ import annotations

import grp
import pwd
from dataclasses import dataclass, field

from duplicity_ng.entry import Entry


@dataclass
class OwnerMap:
    numeric_owner: bool = False
    _users: dict[str, int | None] = field(default_factory=dict)
    _groups: dict[str, int | None] = field(default_factory=dict)

    def resolve(self, entry: Entry) -> tuple[int, int]:
        if self.numeric_owner:
            return entry.uid, entry.gid
        uid = self._lookup(self._users, entry.uname, lambda n: pwd.getpwnam(n).pw_uid)
        gid = self._lookup(self._groups, entry.gname, lambda n: grp.getgrnam(n).gr_gid)
        return (entry.uid if uid is None else uid, entry.gid if gid is None else gid)

    @staticmethod
    def _lookup(cache: dict[str, int | None], name: str, find) -> int | None:  # noqa: ANN001
        if not name:
            return None
        if name not in cache:
            try:
                cache[name] = find(name)
            except KeyError:
                cache[name] = None
        return cache[name]
