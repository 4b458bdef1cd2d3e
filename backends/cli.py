"""duplicity's backend options on the command line, turned into a BackendOptions.

`add_arguments` adds them to the program's parser (in their own group); `from_namespace`
reads them back. `--dry-run` belongs to the general options but is read here too.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass
from pathlib import Path

from duplicity_ng.backends.options import BackendOptions, MiB
from duplicity_ng.errors import CommandLineError

# duplicity's one-flag spellings of the S3 storage classes.
_S3_CLASS_FLAGS = {
    "--s3-use-rrs": "REDUCED_REDUNDANCY",
    "--s3-use-ia": "STANDARD_IA",
    "--s3-use-onezone-ia": "ONEZONE_IA",
    "--s3-use-glacier": "GLACIER",
    "--s3-use-glacier-ir": "GLACIER_IR",
    "--s3-use-deep-archive": "DEEP_ARCHIVE",
}
S3_STORAGE_CLASSES = (
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "GLACIER_IR",
    "DEEP_ARCHIVE",
)
_S3_MIN_CHUNK_MIB = 5  # S3's smallest multipart part (except the last)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("backends")
    g.add_argument("--num-retries", type=int, default=5, metavar="N", help="attempts per operation")
    g.add_argument(
        "--backend-retry-delay",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="first pause between attempts; later pauses double (with jitter)",
    )
    g.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS")
    g.add_argument(
        "--ssh-options",
        action="append",
        default=[],
        metavar="OPTIONS",
        help="ssh-style options; used: -oIdentityFile=F (or -i F), -oUserKnownHostsFile=F, "
        "-oStrictHostKeyChecking=accept-new",
    )
    g.add_argument(
        "--ssh-accept-new-host-key",
        action="store_true",
        help="trust and record the key of a host not yet in known_hosts (a changed key "
        "is still refused)",
    )
    g.add_argument("--s3-endpoint-url", metavar="URL")
    g.add_argument("--s3-region-name", metavar="REGION")
    g.add_argument("--s3-multipart-chunk-size", type=int, default=25, metavar="MiB")
    g.add_argument(
        "--s3-storage-class",
        type=str.upper,
        choices=S3_STORAGE_CLASSES,
        metavar="CLASS",
        help="GLACIER, GLACIER_IR and DEEP_ARCHIVE apply to volumes only: manifests and "
        "signatures stay STANDARD",
    )
    for flag, storage_class in _S3_CLASS_FLAGS.items():
        g.add_argument(flag, dest="s3_storage_class", action="store_const", const=storage_class)
    g.add_argument("--ssl-cacert-file", type=Path, metavar="FILE")
    g.add_argument("--ssl-no-check-certificate", action="store_true")


def from_namespace(ns: argparse.Namespace) -> BackendOptions:
    if ns.num_retries < 1:
        raise CommandLineError(f"--num-retries must be at least 1, got {ns.num_retries}")
    if ns.backend_retry_delay < 0:
        raise CommandLineError("--backend-retry-delay cannot be negative")
    if ns.timeout <= 0:
        raise CommandLineError("--timeout must be positive")
    if ns.s3_multipart_chunk_size < _S3_MIN_CHUNK_MIB:
        raise CommandLineError(
            f"--s3-multipart-chunk-size must be at least {_S3_MIN_CHUNK_MIB} (MiB), "
            f"got {ns.s3_multipart_chunk_size}"
        )
    ssh = parse_ssh_options(ns.ssh_options)
    return BackendOptions(
        num_retries=ns.num_retries,
        retry_delay=ns.backend_retry_delay,
        timeout=ns.timeout,
        dry_run=bool(getattr(ns, "dry_run", False)),
        ssh_identity_files=ssh.identity_files,
        ssh_known_hosts=ssh.known_hosts,
        ssh_accept_new_host_key=ns.ssh_accept_new_host_key or ssh.accept_new,
        s3_endpoint_url=ns.s3_endpoint_url,
        s3_region_name=ns.s3_region_name,
        s3_multipart_chunk_size=ns.s3_multipart_chunk_size * MiB,
        s3_storage_class=ns.s3_storage_class or "STANDARD",
        ssl_cacert_file=ns.ssl_cacert_file,
        ssl_no_check_certificate=ns.ssl_no_check_certificate,
    )


@dataclass
class SshOptions:
    identity_files: tuple[Path, ...] = ()
    known_hosts: Path | None = None
    accept_new: bool = False


def parse_ssh_options(values: list[str]) -> SshOptions:
    """The parts of ssh-style options the paramiko backend uses; others are ignored (as
    duplicity's paramiko backend ignores them)."""
    result = SshOptions()
    for key, value in _ssh_pairs(values):
        path = Path(value).expanduser()
        if key == "identityfile":
            result.identity_files += (path,)
        elif key == "userknownhostsfile":
            result.known_hosts = path
        elif key == "stricthostkeychecking":
            result.accept_new = value.lower() in ("accept-new", "no", "off")
    return result


def _ssh_pairs(values: list[str]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    try:
        words = [w for v in values for w in shlex.split(v)]
    except ValueError as exc:
        raise CommandLineError(f"Bad --ssh-options: {exc}") from exc
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("-o", "-i"):
            if i + 1 == len(words):
                raise CommandLineError(f"Bad --ssh-options: '{word}' needs a value")
            arg, i = words[i + 1], i + 2
        elif word.startswith(("-o", "-i")):
            arg, i = word[2:], i + 1
        else:
            i += 1  # other ssh flags mean nothing to paramiko
            continue
        if word.startswith("-i"):
            pairs.append(("identityfile", arg))
            continue
        key, sep, value = arg.partition("=")
        if not sep:
            key, _, value = arg.partition(" ")
        pairs.append((key.strip().lower(), value.strip()))
    return pairs
