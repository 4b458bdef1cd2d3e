"""Real storage servers on loopback for the backend tests (fixtures: conftest_servers.py).

- SshServer: OpenSSH's sshd (Debian openssh-server) with its own config, host key and
  authorized key; `internal-sftp`. Needs root (sshd switches to the logged-in user).
- S3Server: moto's ThreadedMotoServer in this process, with IAM authentication switched on
  and two users: "writer" (s3:*) and "reader" (get and list only).
- WebDavServer: wsgidav on cheroot in this process, plain HTTP or TLS with a self-signed
  certificate; a read-write share and a read-only one, Basic auth.
- B2Simulator: b2sdk's RawSimulator (in-process only: the b2 backend's `new_api` is pointed
  at it).
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from duplicity_ng.backends.base import Backend, open_backend, open_raw_backend
from duplicity_ng.backends.options import BackendOptions

KINDS = ["file", "sftp", "scp", "s3", "b2", "webdav", "webdavs"]

#: Retries that do not slow a test down: real attempts, pauses of a few milliseconds.
FAST = BackendOptions(num_retries=3, retry_delay=0.005, timeout=10)


@dataclass
class Target:
    kind: str
    url: str
    options: BackendOptions
    env: dict[str, str] = field(default_factory=dict)  # what a CLI run needs in its env
    cli_args: list[str] = field(default_factory=list)  # ... and on its command line
    in_process_only: bool = False  # the B2 simulator cannot be reached from a subprocess

    def open(self, **changes: object) -> Backend:
        return open_backend(self.url, dataclasses.replace(self.options, **changes))

    def open_raw(self, **changes: object) -> Backend:
        return open_raw_backend(self.url, dataclasses.replace(self.options, **changes))


SSHD = "/usr/sbin/sshd"
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0, banner: bytes | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1) as s:
                if banner is None or s.recv(64).startswith(banner):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing answers on {LOOPBACK}:{port}")
        time.sleep(0.02)


# -- OpenSSH ----------------------------------------------------------------------------------


@dataclass
class SshServer:
    root: Path  # world-readable (0755): the unprivileged test user must reach its folders
    port: int
    user_key: Path
    host_key: Path
    known_hosts: Path  # has this server's host key
    process: subprocess.Popen
    log: Path

    @classmethod
    def start(cls) -> SshServer:
        if not os.access(SSHD, os.X_OK):
            raise RuntimeError(f"{SSHD} is missing: apt-get install openssh-server")
        root = Path(tempfile.mkdtemp(prefix="ng-sshd-"))
        root.chmod(0o755)
        for key in ("host_key", "user_key"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / key)],
                check=True,
            )
        (root / "authorized_keys").write_bytes((root / "user_key.pub").read_bytes())
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
        log = root / "sshd.log"
        for _attempt in range(5):
            port = free_port()
            config = root / "sshd_config"
            config.write_text(
                f"Port {port}\nListenAddress {LOOPBACK}\nHostKey {root / 'host_key'}\n"
                f"PidFile {root / 'sshd.pid'}\nAuthorizedKeysFile {root / 'authorized_keys'}\n"
                "PubkeyAuthentication yes\nPasswordAuthentication yes\n"
                "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                "PermitRootLogin yes\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\n"
            )
            with open(log, "ab") as out:
                process = subprocess.Popen(
                    [SSHD, "-D", "-e", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT
                )
            try:
                wait_for_port(port, timeout=5, banner=b"SSH-")
            except RuntimeError:
                process.terminate()
                process.wait()
                continue
            host_line = (root / "host_key.pub").read_text().split()
            known = root / "known_hosts"
            known.write_text(f"[{LOOPBACK}]:{port} {host_line[0]} {host_line[1]}\n")
            return cls(root, port, root / "user_key", root / "host_key", known, process, log)
        raise RuntimeError(f"sshd did not start: {log.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    def new_dir(self, name: str, owner: str | None = None) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))
        path.chmod(0o755)
        if owner is not None:
            shutil.chown(path, owner)
        return path

    def url(self, path: Path, user: str = "root", password: str | None = None) -> str:
        auth = user if password is None else f"{user}:{password}"
        # `//abs` for an absolute remote path (duplicity's convention).
        return f"sftp://{auth}@{LOOPBACK}:{self.port}/{path}"


def ssh_cli_args(server: SshServer) -> list[str]:
    return [
        f"--ssh-options=-oIdentityFile={server.user_key} -oUserKnownHostsFile={server.known_hosts}"
    ]


def ssh_options(server: SshServer, **changes: object) -> BackendOptions:
    defaults = {"ssh_identity_files": (server.user_key,), "ssh_known_hosts": server.known_hosts}
    return dataclasses.replace(FAST, **{**defaults, **changes})


# -- S3 (moto) --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AwsKey:
    key_id: str
    secret: str

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
        }


@dataclass
class S3Server:
    server: object
    endpoint: str
    writer: AwsKey
    reader: AwsKey
    _buckets: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls) -> S3Server:
        import boto3
        import requests
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
        )

        def user(name: str, actions: list[str]) -> AwsKey:
            iam.create_user(UserName=name)
            policy = {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
            }
            iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
            key = iam.create_access_key(UserName=name)["AccessKey"]
            return AwsKey(key["AccessKeyId"], key["SecretAccessKey"])

        writer = user("writer", ["s3:*"])
        reader = user("reader", ["s3:GetObject", "s3:ListBucket"])
        # From now on every request must be signed by a known key and allowed by its policy.
        requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
        return cls(server, endpoint, writer, reader)

    def stop(self) -> None:
        import requests

        requests.post(f"{self.endpoint}/moto-api/reset-auth", data=b"inf", timeout=10)
        self.server.stop()  # type: ignore[attr-defined]

    def client(self, key: AwsKey | None = None):  # noqa: ANN201 - boto3's generated class
        import boto3

        key = key or self.writer
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=key.key_id,
            aws_secret_access_key=key.secret,
        )

    def new_bucket(self) -> str:
        with self._lock:
            self._buckets += 1
            name = f"ng-test-{self._buckets}-{os.getpid()}"
        self.client().create_bucket(Bucket=name)
        return name


# -- WebDAV (wsgidav) -------------------------------------------------------------------------


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and localhost) and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "duplicity-ng test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(LOOPBACK)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@dataclass
class WebDavServer:
    root: Path  # the read-write share "/dav" serves root/"dav", "/ro" serves root/"ro"
    port: int
    tls_port: int
    digest_port: int  # the same shares, Digest authentication only
    cert: Path
    user: str
    password: str
    _servers: list = field(default_factory=list)
    _threads: list = field(default_factory=list)

    @classmethod
    def start(cls, user: str = "alice", password: str = "p@ss w:rd") -> WebDavServer:
        from cheroot import wsgi
        from cheroot.ssl.builtin import BuiltinSSLAdapter
        from wsgidav.fs_dav_provider import FilesystemProvider
        from wsgidav.wsgidav_app import WsgiDAVApp

        root = Path(tempfile.mkdtemp(prefix="ng-webdav-"))
        (root / "dav").mkdir()
        (root / "ro").mkdir()
        logging.getLogger("wsgidav").setLevel(logging.ERROR)
        users = {user: {"password": password}}

        def app(basic: bool) -> WsgiDAVApp:
            return WsgiDAVApp(
                {
                    "provider_mapping": {
                        "/dav": FilesystemProvider(str(root / "dav")),
                        "/ro": FilesystemProvider(str(root / "ro"), readonly=True),
                    },
                    "http_authenticator": {
                        "accept_basic": basic,
                        "accept_digest": not basic,
                        "default_to_digest": not basic,
                    },
                    "simple_dc": {"user_mapping": {"/dav": users, "/ro": users}},
                    "verbose": 0,
                    "logging": {"enable": False, "enable_loggers": []},
                    "dir_browser": {"enable": False},
                    "lock_storage": True,
                }
            )

        cert, key = self_signed_certificate(root)
        self = cls(root, 0, 0, 0, cert, user, password)
        plain = wsgi.Server((LOOPBACK, 0), app(basic=True), numthreads=8)
        tls = wsgi.Server((LOOPBACK, 0), app(basic=True), numthreads=8)
        tls.ssl_adapter = BuiltinSSLAdapter(str(cert), str(key))
        digest = wsgi.Server((LOOPBACK, 0), app(basic=False), numthreads=4)
        for server in (plain, tls, digest):
            server.prepare()
            thread = threading.Thread(target=server.serve, daemon=True)
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        self.port = plain.bind_addr[1]
        self.tls_port = tls.bind_addr[1]
        self.digest_port = digest.bind_addr[1]
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
        for thread in self._threads:
            thread.join(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    def url(
        self, path: str, tls: bool = False, password: str | None = None, user: str | None = None
    ) -> str:
        from urllib.parse import quote

        scheme, port = ("webdavs", self.tls_port) if tls else ("webdav", self.port)
        secret = quote(self.password if password is None else password, safe="")
        return f"{scheme}://{user or self.user}:{secret}@{LOOPBACK}:{port}/{path}"


# -- B2 (b2sdk's simulator) -------------------------------------------------------------------


class B2Simulator:
    """One RawSimulator shared by every B2Api the b2 backend creates while patched in."""

    def __init__(self) -> None:
        from b2sdk.v2 import B2Api, B2HttpApiConfig, InMemoryAccountInfo, RawSimulator

        class Simulator(RawSimulator):
            # The stock 200-byte parts make a 1 MiB file 5000 requests; 64 KiB keeps the
            # large-file path (several parts) without the wait.
            MIN_PART_SIZE = 64 * 1024

        self._make = lambda: B2Api(
            InMemoryAccountInfo(), api_config=B2HttpApiConfig(_raw_api_class=Simulator)
        )
        setup = self._make()
        self.raw = setup.session.raw_api
        self.key_id, self.app_key = self.raw.create_account()
        setup.authorize_account("production", self.key_id, self.app_key)
        self._setup = setup
        self._buckets = 0

    def new_api(self):  # noqa: ANN201 - b2sdk's B2Api
        api = self._make()
        api.session.raw_api = self.raw
        return api

    def new_bucket(self) -> str:
        self._buckets += 1
        name = f"ng-test-{self._buckets}"
        self._setup.create_bucket(name, "allPrivate")
        return name

    def url(self, bucket: str, path: str = "backup", app_key: str | None = None) -> str:
        return f"b2://{self.key_id}:{app_key or self.app_key}@{bucket}/{path}"
