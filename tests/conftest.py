"""Fixtures shared by the whole suite.

- ``ng``: runs OUR command line as a user would (a subprocess of bin/duplicity-ng, see
  peers.NgRunner), with XDG_CACHE_HOME inside the test's tmp_path so no test touches ~/.cache.
  ``ng(*args)`` returns the CompletedProcess; ``ng.ok(*args)`` also asserts exit 0.
- ``dup321`` / ``dup08``: real duplicity 3.2.1 and 0.8.22 (peers.DuplicityPeer). A missing
  peer FAILS the test: interop must run in CI, a skip would hide it.
- ``fixtures_dir``: ../shared/fixtures/duplicity beside the checkout (archives written by
  real duplicity, and the source tars they were taken of).

tests/ is not a package: test modules import the helpers as ``from peers import ...`` and
``from treecompare import ...``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from peers import REPO, DuplicityPeer, NgRunner, PeerMissingError, peer_08, peer_321

FIXTURES_DIR = REPO.parent / "shared" / "fixtures" / "duplicity"


@pytest.fixture
def ng(tmp_path: Path) -> NgRunner:
    cache_home = tmp_path / "xdg-cache"
    cache_home.mkdir()
    return NgRunner(cache_home=cache_home)


def _installed(peer: DuplicityPeer) -> DuplicityPeer:
    try:
        peer.check_installed()
    except PeerMissingError as exc:
        pytest.fail(str(exc), pytrace=False)
    return peer


@pytest.fixture(scope="session")
def dup321() -> DuplicityPeer:
    return _installed(peer_321())


@pytest.fixture(scope="session")
def dup08() -> DuplicityPeer:
    return _installed(peer_08())


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not (FIXTURES_DIR / "README.md").is_file():
        pytest.fail(
            f"duplicity fixtures not found at {FIXTURES_DIR}: the suite expects the shared/"
            " directory beside the checkout",
            pytrace=False,
        )
    return FIXTURES_DIR
