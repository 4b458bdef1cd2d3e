"""Fixtures for the backend tests: servers on loopback and per-test targets on them.

Loaded as a plugin by the modules that need it (`pytest_plugins = ["conftest_servers"]`):
the servers start once per session, on first use, and stop at its end. Each test gets a
fresh folder, bucket or prefix.

- ``target``: parametrize it indirectly with a backend kind (KINDS) to get a `Target`:
  URL, BackendOptions, and the environment and command-line options a CLI run needs.
- ``sshd``, ``s3_server``, ``webdav_server``, ``b2_sim``: the servers themselves.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import (
    FAST,
    B2Simulator,
    S3Server,
    SshServer,
    Target,
    WebDavServer,
    ssh_cli_args,
    ssh_options,
)

from duplicity_ng.backends.options import MiB


@pytest.fixture(scope="session")
def sshd() -> Iterator[SshServer]:
    if os.geteuid() != 0:
        pytest.fail("the sftp tests run a private sshd, which needs root", pytrace=False)
    server = SshServer.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def webdav_server() -> Iterator[WebDavServer]:
    server = WebDavServer.start()
    yield server
    server.stop()


@pytest.fixture
def b2_sim(monkeypatch: pytest.MonkeyPatch) -> B2Simulator:
    from duplicity_ng.backends import b2

    sim = B2Simulator()
    monkeypatch.setattr(b2, "new_api", sim.new_api)
    return sim


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS settings of the machine's user leak into the tests."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    kind = request.param
    fast_cli = ["--num-retries", "3", "--backend-retry-delay", "0.01"]
    if kind == "file":
        return Target(kind, f"file://{tmp_path / 'backend'}", FAST, cli_args=fast_cli)
    if kind in ("sftp", "scp"):
        server: SshServer = request.getfixturevalue("sshd")
        url = server.url(server.new_dir(kind) / "backup").replace("sftp://", f"{kind}://")
        return Target(kind, url, ssh_options(server), cli_args=fast_cli + ssh_cli_args(server))
    if kind == "s3":
        request.getfixturevalue("aws_env")
        s3: S3Server = request.getfixturevalue("s3_server")
        monkeypatch = request.getfixturevalue("monkeypatch")
        for name, value in s3.writer.env().items():
            monkeypatch.setenv(name, value)
        options = dataclasses.replace(
            FAST, s3_endpoint_url=s3.endpoint, s3_multipart_chunk_size=5 * MiB
        )
        cli = fast_cli + ["--s3-endpoint-url", s3.endpoint, "--s3-multipart-chunk-size", "5"]
        return Target(kind, f"s3://{s3.new_bucket()}/a/prefix", options, s3.writer.env(), cli)
    if kind == "b2":
        sim: B2Simulator = request.getfixturevalue("b2_sim")
        return Target(
            kind, sim.url(sim.new_bucket()), FAST, cli_args=fast_cli, in_process_only=True
        )
    if kind in ("webdav", "webdavs"):
        dav: WebDavServer = request.getfixturevalue("webdav_server")
        tls = kind == "webdavs"
        url = dav.url(f"dav/{uuid.uuid4().hex[:8]}/backup", tls=tls)
        options = dataclasses.replace(FAST, ssl_cacert_file=dav.cert if tls else None)
        cli = fast_cli + (["--ssl-cacert-file", str(dav.cert)] if tls else [])
        return Target(kind, url, options, cli_args=cli)
    raise AssertionError(f"unknown backend kind {kind}")
