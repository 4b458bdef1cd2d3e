"""The backend contract without servers: URLs, options, the wrapper stack and its rules."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import pytest

from duplicity_ng.backends import cli
from duplicity_ng.backends.base import (
    BackendAuthError,
    BackendConnectionError,
    Capabilities,
    RemoteFile,
    capabilities_of,
    is_permanent,
    open_backend,
    parse_url,
    url_password,
)
from duplicity_ng.backends.dryrun import DryRunBackend
from duplicity_ng.backends.local import LocalBackend
from duplicity_ng.backends.options import BackendOptions, MiB
from duplicity_ng.backends.retry import RetryBackend
from duplicity_ng.backends.stack import wrap
from duplicity_ng.backends.verify import AtomicPutBackend, VerifyBackend
from duplicity_ng.errors import (
    BackendError,
    BackendNoSpaceError,
    BackendNotFoundError,
    BackendPermissionError,
    BackendValidationError,
    CommandLineError,
)

# -- URLs -------------------------------------------------------------------------------------


def test_display_url_drops_the_password() -> None:
    url = parse_url("sftp://me:se%2Fcret@example.org:2222//srv/backup")
    assert (url.user, url.password, url.host, url.port) == ("me", "se/cret", "example.org", 2222)
    assert url.path == "//srv/backup"
    assert url.display == "sftp://me@example.org:2222//srv/backup"
    assert "se/cret" not in repr(url) and "se%2Fcret" not in repr(url)


def test_url_keeps_bucket_case_and_parses_ipv6() -> None:
    assert parse_url("b2://keyId:appKey@MyBucket/dir").host == "MyBucket"
    url = parse_url("webdavs://u@[::1]:8443/dav")
    assert (url.host, url.port, url.path) == ("::1", 8443, "/dav")
    assert parse_url("s3://bucket").path == ""
    with pytest.raises(CommandLineError) as caught:
        parse_url("sftp://user:Xy7/zz@host/x")  # an unencoded "/" in the password
    assert "Xy7" not in caught.value.line()
    with pytest.raises(CommandLineError):
        parse_url("no-scheme")


def test_password_precedence() -> None:
    env = {"BACKEND_PASSWORD": "b", "FTP_PASSWORD": "f"}
    assert url_password(parse_url("webdav://u:url@h/p"), env) == "url"
    assert url_password(parse_url("webdav://u@h/p"), env) == "b"
    assert url_password(parse_url("webdav://u@h/p"), {"FTP_PASSWORD": "f"}) == "f"
    assert url_password(parse_url("webdav://u@h/p"), {}) is None


def test_unknown_scheme_is_a_usage_error() -> None:
    with pytest.raises(CommandLineError) as caught:
        open_backend("gopher://u:pw@host/x")
    assert caught.value.exit_code == 2
    assert "pw" not in caught.value.line() and "sftp" in caught.value.line()


# -- options ----------------------------------------------------------------------------------


def parse(*argv: str) -> BackendOptions:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    parser.add_argument("--dry-run", action="store_true")  # the lead's general option
    return cli.from_namespace(parser.parse_args(list(argv)))


def test_defaults_are_duplicitys() -> None:
    assert parse() == BackendOptions()
    assert (BackendOptions().num_retries, BackendOptions().retry_delay) == (5, 30.0)


def test_backend_options_from_the_command_line(tmp_path: Path) -> None:
    options = parse(
        "--num-retries=2",
        "--backend-retry-delay=0.5",
        "--timeout=7",
        "--dry-run",
        "--ssh-options=-oIdentityFile=~/id_a -o UserKnownHostsFile=/kh",
        "--ssh-options",
        "-i '/with space/id_b' -oStrictHostKeyChecking=accept-new -oCompression=yes",
        "--s3-endpoint-url=http://127.0.0.1:9000",
        "--s3-region-name=eu-west-3",
        "--s3-multipart-chunk-size=8",
        "--s3-use-deep-archive",
        f"--ssl-cacert-file={tmp_path / 'ca.pem'}",
        "--ssl-no-check-certificate",
    )
    assert options == BackendOptions(
        num_retries=2,
        retry_delay=0.5,
        timeout=7.0,
        dry_run=True,
        ssh_identity_files=(Path("~/id_a").expanduser(), Path("/with space/id_b")),
        ssh_known_hosts=Path("/kh"),
        ssh_accept_new_host_key=True,
        s3_endpoint_url="http://127.0.0.1:9000",
        s3_region_name="eu-west-3",
        s3_multipart_chunk_size=8 * MiB,
        s3_storage_class="DEEP_ARCHIVE",
        ssl_cacert_file=tmp_path / "ca.pem",
        ssl_no_check_certificate=True,
    )
    assert parse("--s3-storage-class=glacier").s3_storage_class == "GLACIER"
    assert parse("--ssh-accept-new-host-key").ssh_accept_new_host_key


@pytest.mark.parametrize(
    "argv",
    [
        ["--num-retries=0"],
        ["--s3-multipart-chunk-size=4"],
        ["--timeout=0"],
        ["--ssh-options=-o"],
        ["--ssh-options=-oIdentityFile='unclosed"],
    ],
)
def test_bad_backend_options(argv: list[str]) -> None:
    with pytest.raises(CommandLineError):
        parse(*argv)


# -- the wrapper stack ------------------------------------------------------------------------


class MemoryBackend:
    """The bare contract: four operations, no optional capability at all."""

    def __init__(self) -> None:
        self.display_url = "memory://"
        self.files: dict[str, bytes] = {}
        self.puts = 0

    def list(self) -> list[RemoteFile]:
        return [RemoteFile(n, len(d)) for n, d in self.files.items()]

    def put(self, local: Path, name: str) -> None:
        self.puts += 1
        data = local.read_bytes()
        # The first upload loses its last byte, as a buggy transport could.
        self.files[name] = data[:-1] if self.puts == 1 else data

    def get(self, name: str, local: Path) -> None:
        if name not in self.files:
            raise BackendNotFoundError(f"no {name}")
        local.write_bytes(self.files[name])

    def delete(self, names: list[str]) -> None:
        for name in names:
            self.files.pop(name, None)

    def close(self) -> None:
        pass


def test_stack_order() -> None:
    stack = wrap(LocalBackend(Path("/nonexistent"), "file:///nonexistent"), BackendOptions())
    layers = []
    while stack is not None:
        layers.append(type(stack))
        stack = getattr(stack, "inner", None)
    assert layers == [RetryBackend, AtomicPutBackend, VerifyBackend, LocalBackend]
    dry = wrap(MemoryBackend(), BackendOptions(dry_run=True))
    assert isinstance(dry, DryRunBackend)


def test_bare_backend_is_verified_through_its_listing(tmp_path: Path) -> None:
    memory = MemoryBackend()
    warnings: list[str] = []
    backend = wrap(memory, BackendOptions(retry_delay=0), warn=warnings.append)
    assert capabilities_of(backend) == Capabilities()  # nothing to rename: no AtomicPut
    src = tmp_path / "src"
    src.write_bytes(b"0123456789")
    backend.put(src, "f")
    assert memory.files == {"f": b"0123456789"} and memory.puts == 2
    assert len(warnings) == 1 and "9 bytes stored, 10 sent" in warnings[0]


def test_retry_pauses_grow_with_jitter() -> None:
    retry = RetryBackend(MemoryBackend(), attempts=10, delay=2.0, rng=random.Random(1))
    for attempt, (low, high) in enumerate([(1, 2), (2, 4), (4, 8), (8, 16), (8, 16)], start=1):
        pauses = {retry.pause(attempt) for _ in range(50)}
        assert all(low <= p <= high for p in pauses), (attempt, pauses)
        assert len(pauses) > 40  # jittered, not in step


class Flaky(MemoryBackend):
    def __init__(self, errors: list[BaseException]) -> None:
        super().__init__()
        self.errors = errors
        self.calls = 0

    def list(self) -> list[RemoteFile]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return []


def test_retry_rules() -> None:
    slept: list[float] = []

    def retry(flaky: Flaky) -> RetryBackend:
        return RetryBackend(flaky, attempts=3, delay=1.0, sleep=slept.append)

    flaky = Flaky([BackendConnectionError("down"), ConnectionResetError(104, "reset")])
    assert retry(flaky).list() == [] and flaky.calls == 3 and len(slept) == 2
    for permanent in (
        BackendAuthError("no"),
        BackendNotFoundError("no"),
        BackendPermissionError("no"),
        BackendNoSpaceError("no"),
    ):
        flaky = Flaky([permanent])
        with pytest.raises(type(permanent)):
            retry(flaky).list()
        assert flaky.calls == 1 and is_permanent(permanent)
    flaky = Flaky([ValueError("a bug")])
    with pytest.raises(ValueError):
        retry(flaky).list()
    assert flaky.calls == 1
    flaky = Flaky([BackendValidationError("bad")] * 3)
    with pytest.raises(BackendValidationError, match="gave up after 3 attempts"):
        retry(flaky).list()
    flaky = Flaky([OSError("raw")] * 3)
    with pytest.raises(BackendError, match="Cannot list files on memory://: OSError: raw"):
        retry(flaky).list()


def test_dry_run_reads_but_never_writes(tmp_path: Path) -> None:
    memory = MemoryBackend()
    memory.files["old"] = b"old"
    notes: list[str] = []
    backend = DryRunBackend(memory, note=notes.append)
    src = tmp_path / "src"
    src.write_bytes(b"new")
    backend.put(src, "new")
    backend.delete(["old"])
    backend.get("old", tmp_path / "got")
    assert memory.files == {"old": b"old"} and (tmp_path / "got").read_bytes() == b"old"
    assert notes == ["Dry run: would upload new (3 bytes)", "Dry run: would delete old"]
