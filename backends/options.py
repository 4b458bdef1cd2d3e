"""Every option a backend or a backend wrapper reads, in one value passed explicitly.

`backends.cli` fills it from duplicity's command-line options; tests build it directly.
Secrets (passwords, keys) are never options: they come from the URL or the environment and
are read by the backend that needs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MiB = 1024 * 1024

#: Archive storage classes, for volumes only. GLACIER and DEEP_ARCHIVE need a restore
#: request before a read; GLACIER_IR reads at once but charges per retrieval and per
#: early delete, which manifests and signature files (read by every backup) would pay
#: over and over. Those stay in STANDARD.
COLD_STORAGE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE", "GLACIER_IR"})


@dataclass(frozen=True)
class BackendOptions:
    # Retries (wrapper): attempts per operation, and the first delay between them in seconds;
    # later delays double, with jitter.
    num_retries: int = 5
    retry_delay: float = 30.0
    # Network timeout in seconds (connect and read) where the protocol library takes one.
    timeout: float = 30.0
    # --dry-run: put/delete do nothing, list/get pass through.
    dry_run: bool = False

    # SSH (sftp://, scp://)
    ssh_identity_files: tuple[Path, ...] = ()
    #: known_hosts to check host keys against (and to append accepted keys to);
    #: None: ~/.ssh/known_hosts (and /etc/ssh/ssh_known_hosts for checking).
    ssh_known_hosts: Path | None = None
    #: Accept and record the host key of a host not in known_hosts (a changed key is still
    #: refused).
    ssh_accept_new_host_key: bool = False
    #: ssh_config read for HostName, User, Port and IdentityFile (as duplicity does);
    #: None: ~/.ssh/config when it exists.
    ssh_config_file: Path | None = None

    # S3 (s3://, boto3+s3://)
    s3_endpoint_url: str | None = None
    s3_region_name: str | None = None
    s3_multipart_chunk_size: int = 25 * MiB
    s3_storage_class: str = "STANDARD"

    # TLS (webdavs://, and S3 endpoints over https)
    ssl_cacert_file: Path | None = None
    ssl_no_check_certificate: bool = False

    def tls_verify(self) -> bool | str:
        """The `verify` argument of requests and botocore."""
        if self.ssl_no_check_certificate:
            return False
        if self.ssl_cacert_file is not None:
            return str(self.ssl_cacert_file)
        return True
