"""Error cases per backend, against the real servers: each ends in one line naming the URL
without its password, with duplicity's exit code, and without retrying what cannot heal."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from servers import (
    FAST,
    LOOPBACK,
    B2Simulator,
    S3Server,
    SshServer,
    WebDavServer,
    free_port,
    ssh_options,
)

from duplicity_ng.backends.base import (
    BackendArchivedError,
    BackendAuthError,
    BackendCertificateError,
    BackendConnectionError,
    BackendHostKeyError,
    open_backend,
    open_raw_backend,
)
from duplicity_ng.backends.options import BackendOptions, MiB
from duplicity_ng.backends.verify import RenameLostError
from duplicity_ng.errors import (
    BackendError,
    BackendNotFoundError,
    BackendPermissionError,
    CommandLineError,
    UserError,
)

pytest_plugins = ["conftest_servers"]

SECRET = "s3cr3t-Pa55"


class Opened:
    """open_backend, recording the retry warnings."""

    def __init__(self, url: str, options: BackendOptions = FAST) -> None:
        self.warnings: list[str] = []
        self.backend = open_backend(url, options, warn=self.warnings.append)


@pytest.fixture
def opened() -> Iterator[Callable[..., Opened]]:
    made: list[Opened] = []

    def make(url: str, options: BackendOptions = FAST) -> Opened:
        made.append(Opened(url, options))
        return made[-1]

    yield make
    for o in made:
        o.backend.close()


def check_line(error: UserError, code: int, *secrets: str) -> str:
    line = error.line()
    assert error.exit_code == code, line
    assert "\n" not in line
    for secret in secrets:
        assert secret not in line and secret not in repr(error.args)
    return line


def small_file(tmp_path: Path) -> Path:
    path = tmp_path / "small"
    path.write_bytes(b"some data")
    return path


# -- SFTP -------------------------------------------------------------------------------------


@pytest.fixture
def no_ssh_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No agent and no ~/.ssh keys: only what a test passes can authenticate."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("BACKEND_PASSWORD", "FTP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


def test_sftp_unreachable_host(
    opened: Callable[..., Opened], sshd: SshServer, tmp_path: Path
) -> None:
    url = f"sftp://root:{SECRET}@{LOOPBACK}:{free_port()}//tmp/x"
    o = opened(url, ssh_options(sshd))
    with pytest.raises(BackendConnectionError) as caught:
        o.backend.list()
    line = check_line(caught.value, 50, SECRET)
    assert f"sftp://root@{LOOPBACK}" in line and "connection refused" in line
    assert "gave up after 3 attempts" in line and len(o.warnings) == 2


def test_sftp_bad_password(
    opened: Callable[..., Opened], sshd: SshServer, no_ssh_keys: None, tmp_path: Path
) -> None:
    url = sshd.url(sshd.new_dir("pw"), password=SECRET)
    options = ssh_options(sshd, ssh_identity_files=())
    o = opened(url, options)
    with pytest.raises(BackendAuthError) as caught:
        o.backend.list()
    line = check_line(caught.value, 51, SECRET)
    assert "authentication as root failed" in line
    assert o.warnings == []  # bad credentials are not retried
    assert "Failed password for root" in sshd.log.read_text()


def test_sftp_password_from_environment(
    opened: Callable[..., Opened],
    sshd: SshServer,
    no_ssh_keys: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FTP_PASSWORD", SECRET + "-env")
    before = sshd.log.read_text().count("Failed password for root")
    o = opened(sshd.url(sshd.new_dir("env")), ssh_options(sshd, ssh_identity_files=()))
    with pytest.raises(BackendAuthError) as caught:
        o.backend.list()
    check_line(caught.value, 51, SECRET + "-env")
    assert sshd.log.read_text().count("Failed password for root") == before + 1


def test_sftp_key_from_ssh_agent(
    opened: Callable[..., Opened],
    sshd: SshServer,
    no_ssh_keys: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    socket_path = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket_path)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if socket_path.exists():
                break
            time.sleep(0.01)
        env = {**os.environ, "SSH_AUTH_SOCK": str(socket_path)}
        subprocess.run(["ssh-add", "-q", str(sshd.user_key)], env=env, check=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(socket_path))
        o = opened(sshd.url(sshd.new_dir("agent")), ssh_options(sshd, ssh_identity_files=()))
        assert o.backend.list() == []
    finally:
        agent.terminate()
        agent.wait()


def test_sftp_key_from_home_ssh_folder(
    opened: Callable[..., Opened], sshd: SshServer, no_ssh_keys: None, tmp_path: Path
) -> None:
    ssh_dir = tmp_path / "home" / ".ssh"
    ssh_dir.mkdir(parents=True)
    shutil.copy(sshd.user_key, ssh_dir / "id_ed25519")
    o = opened(sshd.url(sshd.new_dir("home")), ssh_options(sshd, ssh_identity_files=()))
    assert o.backend.list() == []


def test_sftp_key_not_authorized(
    opened: Callable[..., Opened], sshd: SshServer, no_ssh_keys: None, tmp_path: Path
) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    o = opened(sshd.url(sshd.new_dir("k")), ssh_options(sshd, ssh_identity_files=(other,)))
    with pytest.raises(BackendAuthError):
        o.backend.list()
    assert o.warnings == []


def test_sftp_unknown_host_key(
    opened: Callable[..., Opened], sshd: SshServer, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    o = opened(sshd.url(sshd.new_dir("u")), ssh_options(sshd, ssh_known_hosts=empty))
    with pytest.raises(BackendHostKeyError) as caught:
        o.backend.list()
    line = check_line(caught.value, 50)
    host_key = (sshd.root / "host_key.pub").read_text().split()
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(sshd.root / "host_key.pub")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[1]
    assert "Unknown SSH host key" in line and fingerprint in line and host_key[0] in line
    assert "--ssh-accept-new-host-key" in line
    assert o.warnings == [] and empty.read_text() == ""


def test_sftp_changed_host_key_is_refused_even_with_accept_new(
    opened: Callable[..., Opened], sshd: SshServer, tmp_path: Path
) -> None:
    impostor = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)], check=True)
    known = tmp_path / "known_hosts"
    kind, blob = impostor.with_suffix(".pub").read_text().split()[:2]
    known.write_text(f"[{LOOPBACK}]:{sshd.port} {kind} {blob}\n")
    options = ssh_options(sshd, ssh_known_hosts=known, ssh_accept_new_host_key=True)
    o = opened(sshd.url(sshd.new_dir("m")), options)
    with pytest.raises(BackendHostKeyError) as caught:
        o.backend.list()
    assert "does not match known_hosts" in check_line(caught.value, 50)
    assert known.read_text().count("\n") == 1  # nothing added


def test_sftp_accept_new_host_key_records_it(
    opened: Callable[..., Opened], sshd: SshServer, tmp_path: Path
) -> None:
    known = tmp_path / "ssh" / "known_hosts"  # the folder does not exist yet either
    url = sshd.url(sshd.new_dir("a"))
    o = opened(url, ssh_options(sshd, ssh_known_hosts=known, ssh_accept_new_host_key=True))
    assert o.backend.list() == []
    host_key = (sshd.root / "host_key.pub").read_text().split()
    assert known.read_text() == f"[{LOOPBACK}]:{sshd.port} {host_key[0]} {host_key[1]}\n"
    again = opened(url, ssh_options(sshd, ssh_known_hosts=known))  # now simply known
    assert again.backend.list() == []


def test_sftp_permission_denied_on_folder(
    opened: Callable[..., Opened], sshd: SshServer, tmp_path: Path
) -> None:
    # Logged in as an unprivileged user, into a folder owned by root (0755).
    folder = sshd.new_dir("ro")
    (folder / "existing").write_bytes(b"12345")
    o = opened(sshd.url(folder, user="nobody"), ssh_options(sshd))
    assert [(f.name, f.size) for f in o.backend.list()] == [("existing", 5)]
    with pytest.raises(BackendPermissionError) as caught:
        o.backend.put(small_file(tmp_path), "new")
    line = check_line(caught.value, 51)
    assert "permission denied" in line and "sftp://nobody@" in line
    assert o.warnings == []
    with pytest.raises(BackendPermissionError):
        o.backend.delete(["existing"])
    assert sorted(os.listdir(folder)) == ["existing"]


def test_sftp_missing_identity_file_is_a_usage_error(sshd: SshServer, tmp_path: Path) -> None:
    options = ssh_options(sshd, ssh_identity_files=(tmp_path / "nope",))
    with pytest.raises(CommandLineError, match="identity file"):
        open_backend(sshd.url(sshd.new_dir("i")), options)


def test_sftp_late_failure_of_an_old_connection_keeps_the_new_one(
    sshd: SshServer, tmp_path: Path
) -> None:
    """Regression: with parallel uploads, a thread whose request failed on a connection that
    another thread had already replaced threw the new one away too, so retries kept failing
    on each other's reconnects ("Unable to open channel", then gave up)."""
    from duplicity_ng.backends.sftp import SftpBackend

    backend = open_raw_backend(sshd.url(sshd.new_dir("gen")), ssh_options(sshd))
    assert isinstance(backend, SftpBackend)
    try:
        backend.put(small_file(tmp_path), "a")
        broken = backend._generation
        backend.sever_connection()
        deadline = time.monotonic() + 5
        while backend._connection_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [f.name for f in backend.list()] == ["a"]  # on a new connection
        assert backend._generation != broken
        backend._drop(broken)  # another thread reporting the old connection's failure
        assert backend._connection_alive()
        assert [f.name for f in backend.list()] == ["a"]
    finally:
        backend.close()


# -- S3 ---------------------------------------------------------------------------------------


@pytest.fixture
def s3(s3_server: S3Server, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    for name, value in s3_server.writer.env().items():
        monkeypatch.setenv(name, value)
    return s3_server


def s3_options(server: S3Server, **changes: object):  # noqa: ANN201
    return dataclasses.replace(FAST, s3_endpoint_url=server.endpoint, **changes)


def test_s3_missing_bucket(opened: Callable[..., Opened], s3: S3Server, tmp_path: Path) -> None:
    o = opened("s3://no-such-bucket-here/p", s3_options(s3))
    with pytest.raises(BackendNotFoundError) as caught:
        o.backend.list()
    assert "bucket 'no-such-bucket-here' does not exist" in check_line(caught.value, 52)
    with pytest.raises(BackendNotFoundError):
        o.backend.put(small_file(tmp_path), "f")
    with pytest.raises(BackendNotFoundError, match="bucket"):
        o.backend.get("f", tmp_path / "out")
    assert o.warnings == []


def test_s3_bad_credentials(
    opened: Callable[..., Opened], s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    o = opened(f"s3://{s3.new_bucket()}/p", s3_options(s3))
    with pytest.raises(BackendAuthError) as caught:
        o.backend.list()
    assert "credentials refused" in check_line(caught.value, 51, SECRET)
    assert o.warnings == []


def test_s3_no_credentials(
    opened: Callable[..., Opened], s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3.new_bucket()
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    o = opened(f"s3://{bucket}/p", s3_options(s3))
    with pytest.raises(BackendAuthError, match="no AWS credentials"):
        o.backend.list()


def test_s3_permission_denied(
    opened: Callable[..., Opened], s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3.new_bucket()
    s3.client().put_object(Bucket=bucket, Key="p/readable", Body=b"abc")
    for name, value in s3.reader.env().items():
        monkeypatch.setenv(name, value)
    o = opened(f"s3://{bucket}/p", s3_options(s3))
    assert [(f.name, f.size) for f in o.backend.list()] == [("readable", 3)]
    with pytest.raises(BackendPermissionError) as caught:
        o.backend.put(small_file(tmp_path), "f")
    assert "access denied" in check_line(caught.value, 51)
    with pytest.raises(BackendPermissionError):
        o.backend.delete(["readable"])
    assert o.warnings == []


def test_s3_unreachable_endpoint(opened: Callable[..., Opened], s3: S3Server) -> None:
    options = dataclasses.replace(
        FAST, s3_endpoint_url=f"http://{LOOPBACK}:{free_port()}", num_retries=2
    )
    o = opened("s3://bucket-x/p", options)
    with pytest.raises(BackendConnectionError) as caught:
        o.backend.list()
    assert "s3://bucket-x/p" in check_line(caught.value, 50)
    assert len(o.warnings) == 1


def test_s3_glacier_for_volumes_only(
    opened: Callable[..., Opened], s3: S3Server, tmp_path: Path
) -> None:
    bucket = s3.new_bucket()
    names = {
        "duplicity-full.20231114T221320Z.vol1.difftar.gpg": "GLACIER",
        "duplicity-full.20231114T221320Z.manifest.gpg": "STANDARD",
        "duplicity-full-signatures.20231114T221320Z.sigtar.gpg": "STANDARD",
        "df.s44we8.2.dt.g": "GLACIER",
        "dns.s44we8.s44wfs.st": "STANDARD",
    }
    o = opened(f"s3://{bucket}/b", s3_options(s3, s3_storage_class="GLACIER"))
    for name in names:
        o.backend.put(small_file(tmp_path), name)
    client = s3.client()
    for name, storage_class in names.items():
        head = client.head_object(Bucket=bucket, Key=f"b/{name}")
        assert head.get("StorageClass", "STANDARD") == storage_class, name
    o.backend.get("duplicity-full.20231114T221320Z.manifest.gpg", tmp_path / "m")
    with pytest.raises(BackendArchivedError) as caught:
        o.backend.get("duplicity-full.20231114T221320Z.vol1.difftar.gpg", tmp_path / "v")
    assert "cold storage" in check_line(caught.value, 50)
    assert o.warnings == []


def test_s3_other_storage_classes_apply_to_everything(
    opened: Callable[..., Opened], s3: S3Server, tmp_path: Path
) -> None:
    bucket = s3.new_bucket()
    o = opened(f"s3://{bucket}", s3_options(s3, s3_storage_class="STANDARD_IA"))
    o.backend.put(small_file(tmp_path), "duplicity-full.20231114T221320Z.manifest")
    head = s3.client().head_object(Bucket=bucket, Key="duplicity-full.20231114T221320Z.manifest")
    assert head["StorageClass"] == "STANDARD_IA"


def test_s3_bucket_name_keeps_its_case_and_prefix_layout(
    opened: Callable[..., Opened], s3: S3Server, tmp_path: Path
) -> None:
    bucket = s3.new_bucket()
    o = opened(f"boto3+s3://{bucket}//deep//prefix/", s3_options(s3))
    o.backend.put(small_file(tmp_path), "f")
    assert [f.name for f in o.backend.list()] == ["f"]
    keys = [k["Key"] for k in s3.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["deep/prefix/f"]


# -- B2 ---------------------------------------------------------------------------------------


def test_b2_bad_application_key(opened: Callable[..., Opened], b2_sim: B2Simulator) -> None:
    url = b2_sim.url(b2_sim.new_bucket(), app_key=SECRET)
    o = opened(url)
    with pytest.raises(BackendAuthError) as caught:
        o.backend.list()
    line = check_line(caught.value, 51, SECRET)
    assert f"b2://{b2_sim.key_id}@" in line and o.warnings == []


def test_b2_missing_bucket(opened: Callable[..., Opened], b2_sim: B2Simulator) -> None:
    o = opened(b2_sim.url("no-such-bucket"))
    with pytest.raises(BackendNotFoundError) as caught:
        o.backend.list()
    assert "bucket 'no-such-bucket' does not exist" in check_line(caught.value, 52, b2_sim.app_key)


def test_b2_key_from_environment(
    opened: Callable[..., Opened], b2_sim: B2Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = b2_sim.new_bucket()
    monkeypatch.setenv("B2_APPLICATION_KEY_ID", b2_sim.key_id)
    monkeypatch.setenv("B2_APPLICATION_KEY", b2_sim.app_key)
    o = opened(f"b2://{bucket}/dir")
    assert o.backend.list() == []
    monkeypatch.delenv("B2_APPLICATION_KEY")
    monkeypatch.delenv("BACKEND_PASSWORD", raising=False)
    monkeypatch.delenv("FTP_PASSWORD", raising=False)
    with pytest.raises(CommandLineError, match="No B2 application key"):
        open_backend(f"b2://{b2_sim.key_id}@{bucket}/dir", FAST)


def test_b2_delete_removes_every_version(
    opened: Callable[..., Opened], b2_sim: B2Simulator, tmp_path: Path
) -> None:
    bucket = b2_sim.new_bucket()
    o = opened(b2_sim.url(bucket))
    for content in (b"one", b"two!"):
        path = tmp_path / "f"
        path.write_bytes(content)
        o.backend.put(path, "name")
    assert [(f.name, f.size) for f in o.backend.list()] == [("name", 4)]
    api = b2_sim.new_api()
    api.authorize_account("production", b2_sim.key_id, b2_sim.app_key)
    b2_bucket = api.get_bucket_by_name(bucket)
    assert len(list(b2_bucket.list_file_versions("backup/name"))) == 2
    o.backend.delete(["name"])
    assert list(b2_bucket.list_file_versions("backup/name")) == []
    assert o.backend.list() == []


def test_b2_sha1_is_recorded_and_checked(
    opened: Callable[..., Opened], b2_sim: B2Simulator, tmp_path: Path
) -> None:
    from b2sdk.v2.exception import B2ConnectionError

    bucket = b2_sim.new_bucket()
    path = tmp_path / "f"
    path.write_bytes(os.urandom(300_000))  # a large file for the simulator: 5 parts
    o = opened(b2_sim.url(bucket))
    # The simulator fails the first upload requests; b2sdk and our retry carry on.
    b2_sim.raw.set_upload_errors([B2ConnectionError("injected"), B2ConnectionError("again")])
    o.backend.put(path, "f")
    found = o.backend.stat("f")
    assert found is not None and found.digest == o.backend.local_hash(path)
    o.backend.get("f", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == path.read_bytes()


# -- WebDAV -----------------------------------------------------------------------------------


def test_webdav_bad_password(opened: Callable[..., Opened], webdav_server: WebDavServer) -> None:
    url = webdav_server.url("dav/x", password=SECRET)
    o = opened(url)
    with pytest.raises(BackendAuthError) as caught:
        o.backend.list()
    line = check_line(caught.value, 51, SECRET)
    assert f"webdav://alice@{LOOPBACK}:{webdav_server.port}/dav/x" in line and "401" in line
    assert o.warnings == []


def test_webdav_password_from_environment(
    opened: Callable[..., Opened],
    webdav_server: WebDavServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("BACKEND_PASSWORD", webdav_server.password)
    url = f"webdav://alice@{LOOPBACK}:{webdav_server.port}/dav/env"
    o = opened(url)
    o.backend.put(small_file(tmp_path), "f")
    assert [f.name for f in o.backend.list()] == ["f"]


def test_webdav_digest_only_server(
    opened: Callable[..., Opened], webdav_server: WebDavServer, tmp_path: Path
) -> None:
    url = webdav_server.url("dav/digest").replace(
        f":{webdav_server.port}/", f":{webdav_server.digest_port}/"
    )
    o = opened(url)
    o.backend.put(small_file(tmp_path), "f")
    assert [(f.name, f.size) for f in o.backend.list()] == [("f", 9)]
    o.backend.get("f", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == b"some data"
    bad = opened(url.replace("alice:", "alice:x"))
    with pytest.raises(BackendAuthError):
        bad.backend.list()


def test_webdav_read_only_share(
    opened: Callable[..., Opened], webdav_server: WebDavServer, tmp_path: Path
) -> None:
    (webdav_server.root / "ro" / "existing").write_bytes(b"123")
    o = opened(webdav_server.url("ro"))
    assert [(f.name, f.size) for f in o.backend.list()] == [("existing", 3)]
    with pytest.raises(BackendPermissionError) as caught:
        o.backend.put(small_file(tmp_path), "new")
    assert "403" in check_line(caught.value, 51, webdav_server.password)
    assert o.warnings == []


def test_webdavs_needs_a_trusted_certificate(
    opened: Callable[..., Opened], webdav_server: WebDavServer
) -> None:
    url = webdav_server.url("dav/tls", tls=True)
    o = opened(url)
    with pytest.raises(BackendCertificateError) as caught:
        o.backend.list()
    assert "--ssl-cacert-file" in check_line(caught.value, 50, webdav_server.password)
    assert o.warnings == []
    o = opened(url, dataclasses.replace(FAST, ssl_no_check_certificate=True))
    assert o.backend.list() == []


def test_webdav_unreachable(opened: Callable[..., Opened], webdav_server: WebDavServer) -> None:
    url = f"webdav://alice:{SECRET}@{LOOPBACK}:{free_port()}/dav"
    o = opened(url)
    with pytest.raises(BackendConnectionError) as caught:
        o.backend.list()
    check_line(caught.value, 50, SECRET)
    assert len(o.warnings) == 2


def test_webdav_creates_missing_folders(
    opened: Callable[..., Opened], webdav_server: WebDavServer, tmp_path: Path
) -> None:
    o = opened(webdav_server.url("dav/new/deeper/still"))
    o.backend.put(small_file(tmp_path), "f")
    assert (webdav_server.root / "dav" / "new" / "deeper" / "still" / "f").is_file()


def test_webdav_name_the_server_mangles_is_a_clear_error(
    opened: Callable[..., Opened], webdav_server: WebDavServer, tmp_path: Path
) -> None:
    o = opened(webdav_server.url("dav/mangle"))
    with pytest.raises(RenameLostError) as caught:
        o.backend.put(small_file(tmp_path), "a?b")
    assert "a?b" in check_line(caught.value, 56)
    assert o.warnings == []
    assert "a?b" not in [f.name for f in o.backend.list()]


def test_errors_are_backend_errors() -> None:
    for cls in (
        BackendAuthError,
        BackendHostKeyError,
        BackendCertificateError,
        BackendConnectionError,
        BackendArchivedError,
        RenameLostError,
    ):
        assert issubclass(cls, BackendError)
    assert MiB == 1 << 20
