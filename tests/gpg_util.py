"""Throwaway GnuPG homes for the gpg tests.

A `GpgHome` lives under /tmp with a short name (gpg-agent's socket path must stay under about
108 bytes), and its agent caches nothing (default-cache-ttl 0, max-cache-ttl 0), so a wrong
passphrase right after a right one fails as it should. `make_keyring` creates the keys the
tests use (ed25519 for signing, cv25519 for encryption; about 0.1 s each):

- alice: no passphrase, the usual encryption and signing key;
- bob: passphrase BOB_PASSPHRASE;
- mallory: no passphrase, the "other" signer.

`public_only` makes a second home holding only the public keys (a machine that can back up
to public keys but not decrypt); `kill_agent` must run at teardown.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

BOB_PASSPHRASE = "bob's key passphrase"
AGENT_CONF = "default-cache-ttl 0\nmax-cache-ttl 0\nallow-loopback-pinentry\n"


@dataclass
class GpgHome:
    path: Path
    fingerprints: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, prefix: str = "ngpg-") -> GpgHome:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        path.chmod(0o700)
        (path / "gpg-agent.conf").write_text(AGENT_CONF)
        return cls(path)

    @property
    def env(self) -> dict[str, str]:
        return {"GNUPGHOME": str(self.path)}

    def gpg(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["gpg", "--homedir", str(self.path), "--batch", "--no-tty", *args],
            input=input,
            capture_output=True,
            check=True,
        )

    def add_key(self, name: str, passphrase: str = "") -> str:
        uid = f"{name.title()} <{name}@example.org>"
        loop = ["--pinentry-mode", "loopback", "--passphrase", passphrase]
        self.gpg(*loop, "--quick-gen-key", uid, "ed25519", "cert,sign", "never")
        fpr = self.fingerprint(f"{name}@example.org")
        self.gpg(*loop, "--quick-add-key", fpr, "cv25519", "encr", "never")
        self.fingerprints[name] = fpr
        return fpr

    def fingerprint(self, user: str) -> str:
        out = self.gpg("--with-colons", "--list-keys", user).stdout.decode()
        return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))

    def key_id(self, name: str) -> str:
        return self.fingerprints[name][-16:]

    def import_file(self, path: Path) -> None:
        self.gpg("--import", str(path))

    def export_public(self, dest: Path) -> Path:
        dest.write_bytes(self.gpg("--export", *self.fingerprints.values()).stdout)
        return dest

    def public_only(self) -> GpgHome:
        other = GpgHome.create("ngpgpub-")
        keys = self.export_public(other.path / "public.asc")
        other.import_file(keys)
        other.fingerprints = dict(self.fingerprints)
        return other

    def list_packets(self, path: Path, passphrase: str | None = None) -> str:
        """gpg --list-packets (decrypting when `passphrase` is given)."""
        args = ["--list-packets"]
        if passphrase is not None:
            args = ["--pinentry-mode", "loopback", "--passphrase", passphrase, *args]
        result = subprocess.run(
            ["gpg", "--homedir", str(self.path), "--batch", "--no-tty", *args, str(path)],
            capture_output=True,
            check=False,
        )
        return result.stdout.decode("utf-8", "replace")

    def kill_agent(self) -> None:
        subprocess.run(
            ["gpgconf", "--homedir", str(self.path), "--kill", "gpg-agent"],
            capture_output=True,
            check=False,
        )

    def remove(self) -> None:
        self.kill_agent()
        shutil.rmtree(self.path, ignore_errors=True)


def make_keyring() -> GpgHome:
    home = GpgHome.create()
    home.add_key("alice")
    home.add_key("bob", BOB_PASSPHRASE)
    home.add_key("mallory")
    return home


# -- source trees ------------------------------------------------------------------------------

BIG_SIZE = 2_500_000  # with --volsize 1 the full backup needs three volumes


def make_state(root: Path, n: int) -> None:
    """The fixtures' awkward `common` tree in state n, plus big/random.bin (2.5 MB of random
    bytes, 100 KB of them rewritten in state 1), with fixed mtimes so that two directories
    made with the same n compare equal."""
    from e2e_util import COMMON_TARS, T0, random_bytes, set_source_state, write_file

    set_source_state(root, COMMON_TARS[n])
    root_mtime = int(root.stat().st_mtime)
    data = bytearray(random_bytes(BIG_SIZE, seed=7))
    if n >= 1:
        data[1_000_000:1_100_000] = random_bytes(100_000, seed=8)
    write_file(root / "big" / "random.bin", bytes(data), mtime=T0 - 100 + n)
    os.utime(root / "big", (T0 - 50, T0 - 50))
    os.utime(root, (root_mtime, root_mtime))
