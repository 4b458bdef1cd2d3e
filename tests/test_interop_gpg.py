"""Encrypted backups cross between duplicity-ng and real duplicity (3.2.1 and 0.8.22).

- duplicity restores exactly what we wrote, at each backup time: symmetric (full +
  incremental, three volumes), public keys with a hidden recipient, and signed backups
  (checked with its --sign-key);
- duplicity 3.2.1 runs an incremental on top of our encrypted full, we restore its chain,
  continue it with our own incremental, and it restores that.

(The fixtures real duplicity wrote, `sym` and `pubkey`, are restored by
test_interop_fixtures.py.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_util import AS_ROOT, T0, T1, T2, runner, url, write_file
from gpg_util import GpgHome, make_keyring, make_state
from peers import DuplicityPeer
from treecompare import compare_trees

SECRET = "interop passphrase"
TIMES = (T0, T1)


@pytest.fixture(scope="module")
def keyring() -> Iterator[GpgHome]:
    home = make_keyring()
    yield home
    home.remove()


@pytest.fixture(scope="module")
def states(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    base = tmp_path_factory.mktemp("states")
    for n in range(3):
        make_state(base / f"T{n}", min(n, 1))
    add_t2_file(base / "T2")
    return [base / f"T{n}" for n in range(3)]


def add_t2_file(root: Path) -> None:
    """State T2 of the continued chain: T1 plus a file (fixed mtimes, so copies compare)."""
    write_file(root / "added.txt", b"added at T2\n", mtime=T2 - 10)
    os.utime(root, (T2 - 10, T2 - 10))


def ng_chain(base: Path, env: dict[str, str], *options: str) -> str:
    """Our full (T0) and incremental (T1), three volumes for the full; returns the URL."""
    ng = runner(base / "xdg")
    target = url(base / "backend")
    for n, command in enumerate(("full", "incremental")):
        make_state(base / "src", n)
        ng.ok(command, "--volsize", "1", *options, "--current-time", str(TIMES[n]),
              base / "src", target, env=env)  # fmt: skip
    return target


def peer_restores(
    peer: DuplicityPeer, target: str, t: int, expected: Path, tmp: Path, env, *options: str
) -> None:
    __tracebackhide__ = True
    dest = tmp / f"{peer.label.replace(' ', '-')}-{t}"
    peer.ok("restore", "-t", str(t), *options, target, dest, archive_dir=tmp / "peer-cache",
            env=env)  # fmt: skip
    assert compare_trees(dest, expected, AS_ROOT) == []


@pytest.fixture(scope="module")
def sym_target(tmp_path_factory: pytest.TempPathFactory, keyring: GpgHome) -> str:
    base = tmp_path_factory.mktemp("sym")
    return ng_chain(base, {**keyring.env, "PASSPHRASE": SECRET})


@pytest.mark.parametrize("n", [0, 1])
def test_peers_restore_our_symmetric_chain(
    sym_target: str, keyring: GpgHome, states: list[Path], tmp_path: Path,
    dup321: DuplicityPeer, dup08: DuplicityPeer, n: int,
) -> None:  # fmt: skip
    env = {**keyring.env, "PASSPHRASE": SECRET}
    for peer in (dup321, dup08):
        peer_restores(peer, sym_target, TIMES[n], states[n], tmp_path, env)


def test_peers_restore_our_public_key_chain_with_hidden_recipient(
    tmp_path: Path, keyring: GpgHome, states: list[Path],
    dup321: DuplicityPeer, dup08: DuplicityPeer,
) -> None:  # fmt: skip
    public = keyring.public_only()
    try:
        options = ("--encrypt-key", keyring.fingerprints["alice"],
                   "--hidden-encrypt-key", keyring.fingerprints["mallory"])  # fmt: skip
        target = ng_chain(tmp_path, {**public.env, "PASSPHRASE": None}, *options)
    finally:
        public.remove()
    env = {**keyring.env, "PASSPHRASE": ""}
    peer_restores(dup321, target, T1, states[1], tmp_path, env)
    peer_restores(dup08, target, T0, states[0], tmp_path, env)


def test_peers_check_our_signatures(
    tmp_path: Path, keyring: GpgHome, states: list[Path],
    dup321: DuplicityPeer, dup08: DuplicityPeer,
) -> None:  # fmt: skip
    alice = keyring.fingerprints["alice"]
    env = {**keyring.env, "PASSPHRASE": SECRET}
    target = ng_chain(tmp_path, env, "--sign-key", alice)
    # (Not checked: duplicity 3.2.1 given another --sign-key prints "Volume was signed by
    # key ..., not ..." and then hangs, so a refusal cannot be tested through it.)
    for peer in (dup321, dup08):
        peer_restores(peer, target, T1, states[1], tmp_path, env, "--sign-key", alice[-16:])


def test_chains_continue_across_tools(
    tmp_path: Path, keyring: GpgHome, states: list[Path], dup321: DuplicityPeer
) -> None:
    """Our encrypted full, duplicity 3.2.1's incremental on it, then ours on top of that."""
    env = {**keyring.env, "PASSPHRASE": SECRET}
    ng = runner(tmp_path / "xdg")
    src, target = tmp_path / "src", url(tmp_path / "backend")
    make_state(src, 0)
    ng.ok("full", "--volsize", "1", "--current-time", str(T0), src, target, env=env)
    make_state(src, 1)
    # 3.2.1 starts from an empty cache: it decrypts our manifest and signatures.
    dup321.ok("incremental", src, target, archive_dir=tmp_path / "peer-cache",
              current_time=T1, env=env)  # fmt: skip
    for n in (0, 1):
        dest = tmp_path / f"ng-{n}"
        ng.ok("restore", "-t", str(TIMES[n]), "--archive-dir", tmp_path / "fresh", target,
              dest, env=env)  # fmt: skip
        assert compare_trees(dest, states[n], AS_ROOT) == []
    # We continue its chain (our cache lacks its set: fetched and decrypted).
    add_t2_file(src)
    ng.ok("incremental", "--current-time", str(T2), src, target, env=env)
    peer_restores(dup321, target, T2, states[2], tmp_path, env)
