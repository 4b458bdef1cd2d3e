"""sftp:// and scp:// — a folder on an SSH server, through paramiko's SFTP client.

`sftp://user[:password]@host[:port]/rel/dir` is relative to the login directory,
`sftp://host//abs/dir` absolute (duplicity's convention). scp:// is served over SFTP as well:
OpenSSH's own scp has used the SFTP protocol since 9.0, and SFTP can list with sizes and
rename, which the scp protocol cannot.

Authentication: the identity files from --ssh-options (-oIdentityFile=F / -i F) and
~/.ssh/config, the ssh-agent, the default ~/.ssh keys, then the password from the URL or
BACKEND_PASSWORD / FTP_PASSWORD. Host keys are checked against known_hosts
(-oUserKnownHostsFile=F, else ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts); an unknown
host is refused unless --ssh-accept-new-host-key, a changed key always.

One SSH connection per backend, one SFTP channel per thread on it (paramiko's SFTP client
is not meant to be shared between threads). A broken connection is dropped and reopened by
the next call, so the retry wrapper's next attempt runs on a fresh one.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import getpass
import hashlib
import logging
import socket
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paramiko

from duplicity_ng.backends.base import (
    BackendAuthError,
    BackendConnectionError,
    BackendHostKeyError,
    Capabilities,
    ParsedUrl,
    RemoteFile,
    register,
    url_password,
)
from duplicity_ng.backends.options import BackendOptions
from duplicity_ng.errors import (
    BackendError,
    BackendNotFoundError,
    BackendPermissionError,
    CommandLineError,
)

# paramiko logs connection failures from its own thread; our errors already say it all.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False

SYSTEM_KNOWN_HOSTS = Path("/etc/ssh/ssh_known_hosts")


@dataclass(frozen=True)
class _Target:
    host: str  # the name to connect to (after ~/.ssh/config HostName)
    port: int
    user: str
    identity_files: tuple[Path, ...]
    password: str | None
    directory: str

    @property
    def known_hosts_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def _target(url: ParsedUrl, options: BackendOptions) -> _Target:
    if not url.host:
        raise CommandLineError(f"No host in {url.display}", "use sftp://user@host/path")
    config = _ssh_config(url.host, options)
    identity = list(options.ssh_identity_files)
    identity += [Path(p).expanduser() for p in config.get("identityfile", [])]
    for path in options.ssh_identity_files:
        if not path.is_file():
            raise CommandLineError(f"SSH identity file {path} does not exist")
    identity = [p for p in identity if p.is_file()]
    directory = url.path[1:] if url.path.startswith("/") else url.path
    return _Target(
        host=config.get("hostname", url.host),
        port=url.port or int(config.get("port", 22)),
        user=url.user or config.get("user") or getpass.getuser(),
        identity_files=tuple(identity),
        password=url_password(url),
        directory=directory or ".",
    )


def _ssh_config(host: str, options: BackendOptions) -> dict:
    path = options.ssh_config_file or Path("~/.ssh/config").expanduser()
    if not path.is_file():
        return {}
    try:
        return dict(paramiko.SSHConfig.from_path(str(path)).lookup(host))
    except (OSError, paramiko.SSHException) as exc:
        raise CommandLineError(f"Cannot read SSH config {path}: {exc}") from exc


def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Refuses unknown hosts, or with accept_new records them in known_hosts."""

    def __init__(self, accept_new: bool, record_in: Path, display_url: str) -> None:
        self.accept_new = accept_new
        self.record_in = record_in
        self.display_url = display_url

    def missing_host_key(self, client, hostname, key) -> None:  # noqa: ANN001 - paramiko's
        what = f"{key.get_name()} {fingerprint(key)}"
        if not self.accept_new:
            raise BackendHostKeyError(
                f"Unknown SSH host key for {hostname} ({what}) at {self.display_url}",
                f"check the fingerprint, then add it to {self.record_in} or rerun with "
                "--ssh-accept-new-host-key",
            )
        self.record_in.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.record_in, "a", encoding="ascii") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)


class SftpBackend:
    capabilities = Capabilities(rename=True, stat=True, ranged_get=True, max_concurrency=4)

    def __init__(self, url: ParsedUrl, options: BackendOptions) -> None:
        self.display_url = url.display
        self._options = options
        self._target = _target(url, options)
        self._lock = threading.Lock()
        self._client: paramiko.SSHClient | None = None
        self._generation = 0  # bumped on every reconnect: per-thread channels of older ones die
        self._channels: list[paramiko.SFTPClient] = []
        self._local = threading.local()
        self._directory_ready = False
        #: Called with (bytes done, total) as a put or get progresses (progress reports;
        #: tests use it to break the connection mid-transfer).
        self.on_progress: Callable[[int, int], None] | None = None

    # -- connection ------------------------------------------------------------------------

    def _known_hosts(self) -> Path:
        return self._options.ssh_known_hosts or Path("~/.ssh/known_hosts").expanduser()

    def _connect(self) -> paramiko.SSHClient:
        t = self._target
        client = paramiko.SSHClient()
        known = self._known_hosts()
        try:
            if self._options.ssh_known_hosts is None and SYSTEM_KNOWN_HOSTS.is_file():
                client.load_system_host_keys(str(SYSTEM_KNOWN_HOSTS))
            if known.is_file():
                client.load_system_host_keys(str(known))
        except (OSError, paramiko.SSHException) as exc:
            raise BackendError(f"Cannot read known_hosts file {known}: {exc}") from exc
        client.set_missing_host_key_policy(
            _HostKeyPolicy(self._options.ssh_accept_new_host_key, known, self.display_url)
        )
        timeout = self._options.timeout
        try:
            client.connect(
                hostname=t.host,
                port=t.port,
                username=t.user,
                password=t.password,
                key_filename=[str(p) for p in t.identity_files] or None,
                allow_agent=True,
                look_for_keys=True,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                channel_timeout=timeout,
            )
        except BaseException as exc:
            client.close()
            raise self._connect_error(exc) from exc
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(max(1, int(timeout / 2)))
        return client

    def _connect_error(self, exc: BaseException) -> BaseException:
        t = self._target
        where = f"{t.host}:{t.port}"
        if isinstance(exc, BackendError):
            return exc
        if isinstance(exc, paramiko.BadHostKeyException):
            return BackendHostKeyError(
                f"SSH host key for {t.known_hosts_name} does not match known_hosts: server "
                f"offers {exc.key.get_name()} {fingerprint(exc.key)}, known_hosts has "
                f"{exc.expected_key.get_name()} {fingerprint(exc.expected_key)} "
                f"({self.display_url})",
                "if the server's key really changed, remove its old line from "
                f"{self._known_hosts()}",
            )
        if isinstance(exc, paramiko.AuthenticationException):
            return BackendAuthError(
                f"SSH authentication as {t.user} failed at {self.display_url}",
                "check the key (--ssh-options=-oIdentityFile=...), the ssh-agent or the password",
            )
        if isinstance(exc, socket.gaierror):
            return BackendConnectionError(
                f"Cannot resolve host {t.host} for {self.display_url}: {exc.strerror}"
            )
        if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
            return BackendConnectionError(
                f"Cannot connect to {where} for {self.display_url}: connection refused"
            )
        if isinstance(exc, (OSError, EOFError, paramiko.SSHException)):
            return BackendConnectionError(
                f"SSH connection to {where} failed for {self.display_url}: "
                f"{str(exc) or type(exc).__name__}"
            )
        return exc

    def _sftp(self) -> paramiko.SFTPClient:
        with self._lock:
            transport = self._client.get_transport() if self._client else None
            if transport is None or not transport.is_active():
                self._reset_locked()
                self._client = self._connect()
            client, generation = self._client, self._generation
        sftp = getattr(self._local, "sftp", None)
        if sftp is None or self._local.generation != generation:
            try:
                sftp = client.open_sftp()
            except (OSError, EOFError, paramiko.SSHException) as exc:
                self._drop(generation)
                raise self._connect_error(exc) from exc
            sftp.get_channel().settimeout(self._options.timeout)
            with self._lock:
                self._channels.append(sftp)
            self._local.sftp, self._local.generation = sftp, generation
        return sftp

    def _reset_locked(self) -> None:
        # Closing on a dead link raises: it is being thrown away either way.
        for sftp in self._channels:
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                sftp.close()
        self._channels.clear()
        if self._client is not None:
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                self._client.close()
        self._client = None
        self._generation += 1
        self._directory_ready = False

    def _drop(self, generation: int | None = None) -> None:
        """Throw the connection away; with `generation`, only if it is still the one that
        failed: another thread may already have replaced it by a working one."""
        with self._lock:
            if generation is None or generation == self._generation:
                self._reset_locked()

    def _is_connection_failure(self, exc: BaseException) -> bool:
        # The server's own answers arrive as OSError with ENOENT/EACCES or with a message and
        # no errno; anything else (EOF, socket errors, SSH errors) means the link is gone.
        if isinstance(exc, EOFError | paramiko.SSHException | TimeoutError | ConnectionError):
            return True
        if getattr(exc, "errno", None) not in (None, errno.ENOENT, errno.EACCES, errno.EPERM):
            return True
        return not self._connection_alive()

    def _connection_alive(self) -> bool:
        with self._lock:
            transport = self._client.get_transport() if self._client else None
            return transport is not None and transport.is_active()

    def _error(self, exc: BaseException, what: str) -> BaseException:
        """Map an exception raised by an SFTP request; drops the connection if it broke."""
        if isinstance(exc, BackendError):
            return exc
        if self._is_connection_failure(exc):
            self._drop(getattr(self._local, "generation", None))
            return BackendConnectionError(
                f"Connection lost while trying to {what} on {self.display_url}: "
                f"{str(exc) or type(exc).__name__}"
            )
        code = getattr(exc, "errno", None)
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        if code == errno.ENOENT:
            return BackendNotFoundError(f"Cannot {what} on {self.display_url}: no such file")
        if code in (errno.EACCES, errno.EPERM):
            return BackendPermissionError(
                f"Cannot {what} on {self.display_url}: permission denied",
                "check the remote folder's owner and permissions",
            )
        return BackendError(f"Cannot {what} on {self.display_url}: {reason}")

    # -- paths -----------------------------------------------------------------------------

    def _path(self, name: str) -> str:
        if "/" in name or name in ("", ".", ".."):
            raise BackendError(f"Refusing unsafe remote file name {name!r}")
        return f"{self._target.directory.rstrip('/')}/{name}" if self._target.directory else name

    def _ensure_directory(self, sftp: paramiko.SFTPClient) -> None:
        if self._directory_ready:
            return
        directory = self._target.directory
        current = "/" if directory.startswith("/") else ""
        for part in [p for p in directory.split("/") if p and p != "."]:
            current = f"{current}{part}" if current in ("", "/") else f"{current}/{part}"
            try:
                sftp.stat(current)
            except FileNotFoundError:
                try:
                    sftp.mkdir(current)
                except OSError:
                    sftp.stat(current)  # created meanwhile by another worker? else raise
        self._directory_ready = True

    # -- the contract ----------------------------------------------------------------------

    def list(self) -> list[RemoteFile]:
        try:
            sftp = self._sftp()
            entries = sftp.listdir_attr(self._target.directory)
            files = []
            for attr in entries:
                name, mode, size = attr.filename, attr.st_mode or 0, attr.st_size or 0
                if stat.S_ISLNK(mode):
                    try:
                        target = sftp.stat(self._path(name))
                    except FileNotFoundError:
                        continue  # a dangling link
                    mode, size = target.st_mode or 0, target.st_size or 0
                if stat.S_ISREG(mode):
                    files.append(RemoteFile(name, size))
            return files
        except FileNotFoundError:
            return []  # the folder is created by the first put
        except BackendError:
            raise
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._error(exc, "list files") from exc

    def put(self, local: Path, name: str) -> None:
        path = self._path(name)
        try:
            sftp = self._sftp()
            self._ensure_directory(sftp)
            # confirm=False: the verification wrapper stats the file anyway.
            sftp.put(str(local), path, callback=self.on_progress, confirm=False)
        except BackendError:
            raise
        except (OSError, EOFError, paramiko.SSHException) as exc:
            if isinstance(exc, FileNotFoundError) and not local.exists():
                raise
            self._directory_ready = False  # perhaps deleted under us: recheck next time
            raise self._error(exc, f"upload {name}") from exc

    def get(self, name: str, local: Path) -> None:
        try:
            self._sftp().get(self._path(name), str(local), callback=self.on_progress)
        except BackendError:
            raise
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._error(exc, f"download {name}") from exc

    def delete(self, names: list[str]) -> None:
        for name in names:
            try:
                self._sftp().remove(self._path(name))
            except FileNotFoundError:
                continue
            except BackendError:
                raise
            except (OSError, EOFError, paramiko.SSHException) as exc:
                raise self._error(exc, f"delete {name}") from exc

    def rename(self, src: str, dst: str) -> None:
        old, new = self._path(src), self._path(dst)
        try:
            sftp = self._sftp()
            try:
                sftp.posix_rename(old, new)  # OpenSSH's extension: replaces dst atomically
            except OSError as exc:
                if getattr(exc, "errno", None) is not None or not self._connection_alive():
                    raise
                # A server without posix-rename: plain SFTP rename refuses to replace.
                with contextlib.suppress(FileNotFoundError):
                    sftp.remove(new)
                sftp.rename(old, new)
        except BackendError:
            raise
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._error(exc, f"rename {src} to {dst}") from exc

    def stat(self, name: str) -> RemoteFile | None:
        try:
            attr = self._sftp().stat(self._path(name))
        except FileNotFoundError:
            return None
        except BackendError:
            raise
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._error(exc, f"look up {name}") from exc
        return RemoteFile(name, attr.st_size or 0)

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        try:
            with self._sftp().open(self._path(name), "rb") as f:
                f.seek(offset)
                return f.read(length)
        except BackendError:
            raise
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._error(exc, f"download part of {name}") from exc

    def close(self) -> None:
        self._drop()

    # For tests: sever the connection as a network failure would.
    def sever_connection(self) -> None:
        with self._lock:
            transport = self._client.get_transport() if self._client else None
        if transport is not None and transport.sock is not None:
            transport.sock.shutdown(socket.SHUT_RDWR)


@register("sftp", "scp", "paramiko+sftp", "paramiko+scp")
def open_sftp(url: ParsedUrl, options: BackendOptions) -> SftpBackend:
    return SftpBackend(url, options)
