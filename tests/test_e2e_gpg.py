"""Encrypted and signed backups through bin/duplicity-ng, as a user runs them.

Every run gets GNUPGHOME (a throwaway keyring, see gpg_util) and its passphrases in the
environment; stdin is not a terminal, so nothing is ever prompted. Checked: what lands on the
backend and in the local cache, exact restores at each backup time (symmetric, public keys
with a hidden recipient, signed), backing up with public keys on a machine without the secret
key, and one clear error line with duplicity's exit code for each failure.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e_util import AS_ROOT, T0, T1, backend_names, one_error_line, runner, stamp, url
from gpg_util import BOB_PASSPHRASE, GpgHome, make_keyring, make_state
from peers import NgRunner
from treecompare import compare_trees

SECRET = "a long and secret passphrase"
TIMES = (T0, T1)


@pytest.fixture(scope="module")
def keyring() -> Iterator[GpgHome]:
    home = make_keyring()
    yield home
    home.remove()


@pytest.fixture(scope="module")
def public_home(keyring: GpgHome) -> Iterator[GpgHome]:
    """A machine that holds only the public keys (the ephemeral backup host)."""
    home = keyring.public_only()
    yield home
    home.remove()


@pytest.fixture(scope="module")
def states(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """What a restore at T0 and at T1 must give back."""
    base = tmp_path_factory.mktemp("states")
    result = []
    for n in range(2):
        make_state(base / f"T{n}", n)
        result.append(base / f"T{n}")
    return result


@dataclass
class Chain:
    """A full at T0 and an incremental at T1 of the same source, by one runner."""

    ng: NgRunner
    base: Path
    src: Path
    backend: Path
    env: dict[str, str]
    options: tuple[str, ...]

    @property
    def url(self) -> str:
        return url(self.backend)

    def restore(self, dest: Path, t: int, env: dict[str, str], *extra: str):
        return self.ng("restore", "-t", str(t), *extra, self.url, dest, env=env)


def back_up_chain(base: Path, env: dict[str, str], *options: str) -> Chain:
    chain = Chain(runner(base / "xdg"), base, base / "src", base / "backend", env, options)
    for n, command in enumerate(("full", "incremental")):
        make_state(chain.src, n)
        chain.ng.ok(
            command, "--volsize", "1", *options, "--current-time", str(TIMES[n]),
            chain.src, chain.url, env=env,
        )  # fmt: skip
    return chain


def assert_same(restored: Path, expected: Path) -> None:
    __tracebackhide__ = True
    assert compare_trees(restored, expected, AS_ROOT) == []


def cache_dir(chain: Chain) -> Path:
    (found,) = (chain.ng.cache_home / "duplicity-ng").iterdir()
    return found


# -- symmetric ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sym(tmp_path_factory: pytest.TempPathFactory, keyring: GpgHome) -> Chain:
    base = tmp_path_factory.mktemp("sym")
    return back_up_chain(base, {**keyring.env, "PASSPHRASE": SECRET})


def test_symmetric_backend_and_cache(sym: Chain) -> None:
    s0, s1 = stamp(T0), stamp(T1)
    names = backend_names(sym.backend)
    assert all(name.endswith(".gpg") for name in names), names
    full_volumes = [n for n in names if n.startswith(f"duplicity-full.{s0}.vol")]
    assert len(full_volumes) == 3  # 2.5 MB of random data, --volsize 1
    for name in (
        f"duplicity-full.{s0}.manifest.gpg",
        f"duplicity-full-signatures.{s0}.sigtar.gpg",
        f"duplicity-inc.{s0}.to.{s1}.manifest.gpg",
        f"duplicity-new-signatures.{s0}.to.{s1}.sigtar.gpg",
    ):
        assert name in names
    for name in names:
        head = (sym.backend / name).read_bytes()[:2]
        assert head[0] == 0x8C, name  # an OpenPGP symmetric-key session key packet
        assert (sym.backend / name).stat().st_size <= 1024 * 1024, name
    # The cache holds the decrypted metadata, in a folder only the user can open.
    cache = cache_dir(sym)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    cached = sorted(os.listdir(cache))
    assert f"duplicity-full.{s0}.manifest" in cached
    assert f"duplicity-full-signatures.{s0}.sigtar.gz" in cached
    assert (cache / f"duplicity-full.{s0}.manifest").read_bytes().startswith(b"Hostname ")


@pytest.mark.parametrize("n", [0, 1])
def test_symmetric_restore_each_time(sym: Chain, states: list[Path], tmp_path: Path, n: int):
    dest = tmp_path / "restored"
    # A fresh archive dir: manifests and signatures are decrypted from the backend too.
    extra = ("--archive-dir", str(tmp_path / "cache"))
    result = sym.restore(dest, TIMES[n], sym.env, *extra)
    assert result.returncode == 0, result.stderr
    assert_same(dest, states[n])


def test_symmetric_listing_and_verify(sym: Chain, tmp_path: Path) -> None:
    listing = sym.ng.ok("list-current-files", "--archive-dir", tmp_path / "c", sym.url, env=sym.env)
    assert listing.stdout.rstrip().endswith("names/with space.txt") or "big/random.bin" in (
        listing.stdout
    )
    assert "big/random.bin" in listing.stdout
    make_state(sym.src, 1)
    verify = sym.ng("verify", "--compare-data", sym.url, sym.src, env=sym.env)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_wrong_or_missing_passphrase_on_restore(sym: Chain, tmp_path: Path) -> None:
    dest = tmp_path / "restored"
    wrong = sym.restore(dest, T1, {**sym.env, "PASSPHRASE": "not it"})
    line = one_error_line(wrong, 31, "wrong passphrase")
    assert "not it" not in line
    missing = sym.restore(dest, T1, {**sym.env, "PASSPHRASE": None})
    one_error_line(missing, 31, "needs a passphrase, and none was given", "PASSPHRASE")
    assert not dest.exists() or os.listdir(dest) == []


def test_tampered_volume_and_manifest(sym: Chain, tmp_path: Path) -> None:
    backend = tmp_path / "backend"
    backend.mkdir()
    for name in backend_names(sym.backend):
        (backend / name).write_bytes((sym.backend / name).read_bytes())
    vol = f"duplicity-full.{stamp(T0)}.vol2.difftar.gpg"
    raw = bytearray((backend / vol).read_bytes())
    raw[len(raw) // 2] ^= 0x40
    (backend / vol).write_bytes(bytes(raw))
    env = sym.env
    cache = ("--archive-dir", str(tmp_path / "cache"))
    result = sym.ng("restore", *cache, url(backend), tmp_path / "r1", env=env)
    one_error_line(result, 21, vol)
    manifest = f"duplicity-inc.{stamp(T0)}.to.{stamp(T1)}.manifest.gpg"
    raw = bytearray((backend / manifest).read_bytes())
    raw[-5] ^= 0x01
    (backend / manifest).write_bytes(bytes(raw))
    cache = ("--archive-dir", str(tmp_path / "cache2"))
    result = sym.ng("restore", *cache, url(backend), tmp_path / "r2", env=env)
    assert result.returncode in (21, 31)
    one_error_line(result, result.returncode, manifest)


def test_symmetric_backup_refuses_empty_or_missing_passphrase(
    ng: NgRunner, tmp_path: Path, keyring: GpgHome
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    for value, needle in (("", "empty passphrase"), (None, "needs a passphrase")):
        result = ng("full", src, url(tmp_path / "b"), env={**keyring.env, "PASSPHRASE": value})
        one_error_line(result, 31, needle)
        assert backend_names(tmp_path / "b") == []


def test_gpg_not_installed(ng: NgRunner, tmp_path: Path, keyring: GpgHome) -> None:
    src = tmp_path / "src"
    src.mkdir()
    env = {**keyring.env, "PASSPHRASE": SECRET}
    result = ng("full", "--gpg-binary", tmp_path / "nope", src, url(tmp_path / "b"), env=env)
    one_error_line(result, 31, "GnuPG is not installed", "--gpg-binary")
    assert backend_names(tmp_path / "b") == []


# -- public keys ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pubkey(
    tmp_path_factory: pytest.TempPathFactory, keyring: GpgHome, public_home: GpgHome
) -> Chain:
    """Backed up on a machine with only public keys and no passphrase at all."""
    base = tmp_path_factory.mktemp("pubkey")
    options = ("--encrypt-key", keyring.fingerprints["alice"], "--hidden-encrypt-key", "bob")
    return back_up_chain(base, {**public_home.env, "PASSPHRASE": None}, *options)


@pytest.mark.parametrize("n", [0, 1])
def test_public_key_restore_each_time(
    pubkey: Chain, keyring: GpgHome, states: list[Path], tmp_path: Path, n: int
) -> None:
    dest = tmp_path / "restored"
    # Alice's key has no passphrase: PASSPHRASE may be empty or unset.
    env = {**keyring.env, "PASSPHRASE": "" if n else None}
    result = pubkey.restore(dest, TIMES[n], env, "--archive-dir", str(tmp_path / "c"))
    assert result.returncode == 0, result.stderr
    assert_same(dest, states[n])


def test_public_key_packets(pubkey: Chain, keyring: GpgHome) -> None:
    vol = pubkey.backend / f"duplicity-full.{stamp(T0)}.vol1.difftar.gpg"
    packets = keyring.list_packets(vol)
    assert packets.count(":pubkey enc packet:") == 2
    assert "keyid 0000000000000000" in packets
    assert "symkey enc packet" not in packets


def test_restore_without_the_secret_key(pubkey: Chain, public_home: GpgHome, tmp_path: Path):
    result = pubkey.restore(
        tmp_path / "r", T1, {**public_home.env, "PASSPHRASE": ""}, "--archive-dir", tmp_path / "c"
    )
    one_error_line(result, 31, "no secret key", "for key")


def test_incremental_without_cache_or_secret_key_says_what_is_needed(
    pubkey: Chain, public_home: GpgHome, tmp_path: Path
) -> None:
    backend = tmp_path / "backend"
    backend.mkdir()
    for name in backend_names(pubkey.backend):
        (backend / name).write_bytes((pubkey.backend / name).read_bytes())
    before = backend_names(backend)
    ng = runner(tmp_path / "xdg")  # an empty cache: the ephemeral machine lost it
    result = ng(
        "incremental", *pubkey.options, "--current-time", str(T1 + 60), pubkey.src,
        url(backend), env={**public_home.env, "PASSPHRASE": None},
    )  # fmt: skip
    one_error_line(result, 31, "local cache", "secret key", "full backup")
    assert backend_names(backend) == before


def test_unknown_encryption_key_stops_before_writing(
    ng: NgRunner, tmp_path: Path, keyring: GpgHome
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    backend = tmp_path / "b"
    result = ng(
        "full", "--encrypt-key", "alice@example.org", "--encrypt-key", "carol@example.org",
        src, url(backend), env=keyring.env,
    )  # fmt: skip
    one_error_line(result, 31, "Encryption key carol@example.org was not found")
    assert backend_names(backend) == []


# -- signing ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory, keyring: GpgHome) -> Chain:
    """Encrypted to bob (passphrase-protected), signed by him: --encrypt-sign-key."""
    base = tmp_path_factory.mktemp("signed")
    env = {**keyring.env, "PASSPHRASE": None, "SIGN_PASSPHRASE": BOB_PASSPHRASE}
    return back_up_chain(base, env, "--encrypt-sign-key", keyring.fingerprints["bob"])


def test_signed_backup_restores_with_the_sign_key(
    signed: Chain, keyring: GpgHome, states: list[Path], tmp_path: Path
) -> None:
    bob = keyring.fingerprints["bob"]
    # The backup's own options; SIGN_PASSPHRASE serves as PASSPHRASE when the sign key is
    # also a recipient, as in duplicity.
    env = {**keyring.env, "PASSPHRASE": None, "SIGN_PASSPHRASE": BOB_PASSPHRASE}
    dest = tmp_path / "restored"
    cache = ("--archive-dir", str(tmp_path / "c"))
    result = signed.restore(dest, T1, env, *signed.options, *cache)
    assert result.returncode == 0, result.stderr
    assert_same(dest, states[1])
    # Naming only the sign key (by its short id) works with PASSPHRASE.
    env = {**keyring.env, "PASSPHRASE": BOB_PASSPHRASE}
    result = signed.restore(tmp_path / "r2", T0, env, "--sign-key", bob[-8:], *cache)
    assert result.returncode == 0, result.stderr
    assert_same(tmp_path / "r2", states[0])


def test_signed_by_another_key_exits_22(signed: Chain, keyring: GpgHome, tmp_path: Path):
    env = {**keyring.env, "PASSPHRASE": BOB_PASSPHRASE}
    mallory = keyring.fingerprints["mallory"]
    result = signed.restore(
        tmp_path / "r", T1, env, "--sign-key", mallory, "--archive-dir", tmp_path / "c"
    )
    one_error_line(result, 22, "was signed by key", keyring.key_id("bob"), mallory)


def test_unsigned_backup_with_sign_key_exits_22(sym: Chain, keyring: GpgHome, tmp_path: Path):
    result = sym.restore(
        tmp_path / "r", T1, sym.env, "--sign-key", "alice@example.org",
        "--archive-dir", tmp_path / "c",
    )  # fmt: skip
    one_error_line(result, 22, "is not signed", "alice@example.org")


def test_symmetric_and_signed(ng: NgRunner, keyring: GpgHome, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_state(src, 0)
    env = {**keyring.env, "PASSPHRASE": SECRET}
    alice = keyring.fingerprints["alice"]
    ng.ok("full", "--sign-key", alice, src, url(tmp_path / "b"), env=env)
    dest = tmp_path / "restored"
    ng.ok("restore", "--sign-key", alice, url(tmp_path / "b"), dest, env=env)
    assert_same(dest, src)
    wrong_signer = {**env, "SIGN_PASSPHRASE": "different"}
    result = ng("full", "--sign-key", alice, src, url(tmp_path / "b2"), env=wrong_signer)
    one_error_line(result, 31, "must equal the encryption passphrase")
