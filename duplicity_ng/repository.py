"""A backup target as the commands see it: the backend, its local cache, and what they hold.

Metadata (manifests, signatures) is read from the cache and fetched from the backend when
the cache lacks it, so a machine without a cache works from the backend alone. Cached
metadata whose remote file is gone is dropped, as duplicity's sync does.
"""

from __future__ import annotations

import gzip
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from duplicity_ng.backends.base import Backend
from duplicity_ng.cache import ArchiveCache
from duplicity_ng.collection import BackupSet, Collection, build_collection
from duplicity_ng.container import Codec
from duplicity_ng.errors import ManifestError
from duplicity_ng.format import names
from duplicity_ng.format.manifest import Manifest
from duplicity_ng.log import Log


def _metadata_key(p: names.ParsedName) -> tuple[names.FileKind, names.SetKind, int, int]:
    return (p.kind, p.set_kind, p.start_time, p.end_time)


@dataclass
class Repository:
    backend: Backend
    cache: ArchiveCache
    prefixes: names.Prefixes
    workdir: Path
    log: Log
    codec: Codec = field(default_factory=Codec)
    remote: dict[str, int] = field(default_factory=dict)  # name -> size
    dry_run: bool = False  # keep stale cache entries: a dry run changes nothing

    def refresh(self) -> Collection:
        """List the backend, drop stale cache entries, and resolve sets and chains."""
        self.remote = {f.name: f.size for f in self.backend.list()}
        if not self.dry_run:
            self._drop_stale_cache()
        return build_collection(list(self.remote), self.cache.names(), self.prefixes)

    def _drop_stale_cache(self) -> None:
        remote_keys = set()
        for name in self.remote:
            parsed = names.parse(name, self.prefixes)
            if parsed is not None and parsed.kind in (
                names.FileKind.MANIFEST,
                names.FileKind.SIGNATURE,
            ):
                remote_keys.add(_metadata_key(parsed))
        for name in self.cache.names():
            parsed = names.parse(name, self.prefixes)
            if parsed is None or parsed.partial:
                continue  # .part files belong to an unfinished backup, not to the backend
            if _metadata_key(parsed) not in remote_keys:
                self.log.info(f"Deleting local {name} (not on the backend)")
                self.cache.remove(name)

    # -- manifests ----------------------------------------------------------------------
    def manifest(self, bset: BackupSet) -> Manifest:
        local = names.manifest_name(
            bset.set_kind,
            bset.start_time,
            bset.end_time,
            encrypted=False,
            prefixes=self.prefixes,
        )
        path = self.cache.path(local)
        if not path.exists():
            if bset.manifest is None:
                raise ManifestError(
                    f"The backup set of {bset.end_time} has no manifest on "
                    f"{self.backend.display_url}",
                    "run `cleanup` to remove the incomplete set",
                    exit_code=4,
                )
            self._fetch_decoded(bset.manifest, path)
        try:
            return Manifest.from_bytes(path.read_bytes())
        except ManifestError as exc:
            raise ManifestError(
                f"Manifest {local} is unreadable: {exc.message}", exit_code=6
            ) from exc

    # -- signatures ---------------------------------------------------------------------
    def open_signatures(self, remote_name: str) -> BinaryIO:
        """A signature tar as a plain stream, from the cache (fetched into it if missing)."""
        parsed = names.parse(remote_name, self.prefixes)
        assert parsed is not None and parsed.kind is names.FileKind.SIGNATURE
        local = names.signature_name(
            parsed.set_kind,
            parsed.start_time,
            parsed.end_time,
            encrypted=False,
            compressed=True,
            prefixes=self.prefixes,
        )
        path = self.cache.path(local)
        if not path.exists():
            self._fetch_signatures(remote_name, path)
        return gzip.open(path, "rb")  # type: ignore[return-value]

    def _fetch_signatures(self, remote_name: str, dest: Path) -> None:
        if remote_name not in self.remote:
            raise ManifestError(f"Signature file {remote_name} is not on the backend")
        tmp = dest.with_name(dest.name + ".tmp")
        if remote_name.endswith((".gz", ".z")):
            self.backend.get(remote_name, tmp)
        else:
            plain = self.workdir / "sig.plain"
            self._fetch_decoded(remote_name, plain)
            with open(plain, "rb") as src, gzip.open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            plain.unlink()
        tmp.replace(dest)

    # -- data -----------------------------------------------------------------------------
    def fetch(self, remote_name: str, dest: Path) -> None:
        self.backend.get(remote_name, dest)

    def _fetch_decoded(self, remote_name: str, dest: Path) -> None:
        """Fetch a file and store its content (decompressed/decrypted) at dest."""
        raw = self.workdir / "fetch.raw"
        self.backend.get(remote_name, raw)
        tmp = dest.with_name(dest.name + ".tmp")
        with self.codec.open(raw, remote_name) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        raw.unlink()
        tmp.replace(dest)
