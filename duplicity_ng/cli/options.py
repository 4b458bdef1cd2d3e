"""duplicity's command line: `duplicity-ng [CMD] [options] SRC URL` or `URL DEST`.

Options may stand anywhere, as in duplicity. Selection options keep their order, because the
first matching rule wins.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import time
from collections.abc import Mapping
from pathlib import Path

from duplicity_ng.backends import cli as backend_cli
from duplicity_ng.errors import CommandLineError
from duplicity_ng.format.names import Prefixes
from duplicity_ng.log import parse_level
from duplicity_ng.options import MiB, Options
from duplicity_ng.selection import SelectionOptions
from duplicity_ng.timefmt import parse_time

COMMANDS = {
    "full": "full",
    "fb": "full",
    "incremental": "incremental",
    "inc": "incremental",
    "incr": "incremental",
    "ib": "incremental",
    "backup": "backup",
    "bu": "backup",
    "restore": "restore",
    "rb": "restore",
    "verify": "verify",
    "vb": "verify",
    "collection-status": "collection-status",
    "st": "collection-status",
    "list-current-files": "list-current-files",
    "ls": "list-current-files",
    "cleanup": "cleanup",
    "cl": "cleanup",
    "remove-older-than": "remove-older-than",
    "ro": "remove-older-than",
    "remove-all-but-n-full": "remove-all-but-n-full",
    "ra": "remove-all-but-n-full",
    "remove-all-inc-of-but-n-full": "remove-all-inc-of-but-n-full",
    "ri": "remove-all-inc-of-but-n-full",
}
# Commands whose arguments are (URL) or (URL, DIR) rather than (DIR, URL).
_URL_FIRST = {
    "restore",
    "verify",
    "collection-status",
    "list-current-files",
    "cleanup",
    "remove-older-than",
    "remove-all-but-n-full",
    "remove-all-inc-of-but-n-full",
}
_ARG_COUNT = {
    "full": 2,
    "incremental": 2,
    "backup": 2,
    "restore": 2,
    "verify": 2,
    "collection-status": 1,
    "list-current-files": 1,
    "cleanup": 1,
    "remove-older-than": 2,
    "remove-all-but-n-full": 2,
    "remove-all-inc-of-but-n-full": 2,
}
# Commands whose first argument is a TIME or a count N, before the URL.
_LEADING_ARG = {
    "remove-older-than": "TIME",
    "remove-all-but-n-full": "N",
    "remove-all-inc-of-but-n-full": "N",
}
_SELECTION_RULES = (
    "include",
    "exclude",
    "include-filelist",
    "exclude-filelist",
    "include-regexp",
    "exclude-regexp",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise CommandLineError(message, "see `duplicity-ng --help`")


class _Rule(argparse.Action):
    """Appends (rule, value) to the shared ordered list of selection rules."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        rules = getattr(namespace, "selection_rules", None) or []
        rules.append((self.dest.replace("_", "-").removeprefix("rule-"), values))
        namespace.selection_rules = rules


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="duplicity-ng",
        description="Encrypted, bandwidth-efficient backups in duplicity's format.",
        usage="duplicity-ng [full|incremental|backup|restore|verify|collection-status|"
        "list-current-files|cleanup] [options] SOURCE TARGET\n"
        "       duplicity-ng remove-older-than TIME [options] URL\n"
        "       duplicity-ng remove-all-but-n-full|remove-all-inc-of-but-n-full N [options] URL",
        allow_abbrev=False,
    )
    p.add_argument("args", nargs="*", help="command, then source and target")
    fmt = p.add_argument_group("format")
    fmt.add_argument("--no-encryption", action="store_true")
    fmt.add_argument("--no-compression", action="store_true")
    fmt.add_argument(
        "--compress-level",
        type=int,
        metavar="1-9",
        help="deflate level, with or without gpg: 1-3 are ISA-L's, 4-9 zlib's (default 2; "
        "duplicity's is zlib 6): higher is smaller and slower",
    )
    fmt.add_argument("--volsize", type=int, default=200, metavar="MiB")
    fmt.add_argument("--max-blocksize", type=int, default=0, metavar="BYTES")
    for kind in ("", "-archive", "-manifest", "-signature", "-jsonstat"):
        fmt.add_argument(f"--file-prefix{kind}", default="", metavar="PREFIX")
    gpg = p.add_argument_group("gpg (passphrases from PASSPHRASE and SIGN_PASSPHRASE)")
    gpg.add_argument("--encrypt-key", action="append", default=[], metavar="KEY")
    gpg.add_argument("--hidden-encrypt-key", action="append", default=[], metavar="KEY")
    gpg.add_argument("--sign-key", metavar="KEY")
    gpg.add_argument("--encrypt-sign-key", metavar="KEY", help="encrypt to KEY and sign with it")
    gpg.add_argument("--gpg-binary", default="gpg", metavar="PATH")
    gpg.add_argument("--gpg-options", action="append", default=[], metavar="OPTIONS")
    gpg.add_argument("--use-agent", action="store_true")
    cache = p.add_argument_group("local cache")
    cache.add_argument("--archive-dir", type=Path)
    cache.add_argument("--name")
    sel = p.add_argument_group("selection (first matching rule wins)")
    for rule in _SELECTION_RULES:
        sel.add_argument(f"--{rule}", dest="rule_" + rule.replace("-", "_"), action=_Rule)
    sel.add_argument("--exclude-if-present", action="append", default=[], metavar="NAME")
    sel.add_argument("--exclude-other-filesystems", action="store_true")
    sel.add_argument("--exclude-device-files", action="store_true")
    sel.add_argument("--files-from", metavar="FILE")
    sel.add_argument("--null-separator", action="store_true")
    bk = p.add_argument_group("backup")
    bk.add_argument("--allow-source-mismatch", action="store_true")
    bk.add_argument("--full-if-older-than", metavar="TIME")
    bk.add_argument("--current-time", type=int, help=argparse.SUPPRESS)
    rs = p.add_argument_group("restore")
    rs.add_argument("-t", "--restore-time", "--time", dest="restore_time", metavar="TIME")
    rs.add_argument("-r", "--path-to-restore", "--file-to-restore", dest="path_to_restore")
    rs.add_argument("--force", action="store_true")
    rs.add_argument("--numeric-owner", action="store_true")
    rs.add_argument("--no-restore-ownership", "--do-not-restore-ownership", action="store_true")
    rs.add_argument("--compare-data", action="store_true")
    gen = p.add_argument_group("general")
    gen.add_argument("--tempdir", type=Path)
    gen.add_argument("--dry-run", action="store_true")
    gen.add_argument("--no-print-statistics", action="store_true")
    gen.add_argument("--progress", action="store_true", help="accepted for compatibility")
    gen.add_argument("-v", "--verbosity", default="notice", metavar="LEVEL")
    gen.add_argument("--debug", action="store_true")
    gen.add_argument(
        "--concurrency", type=int, default=2, metavar="N", help="parallel uploads and downloads"
    )
    gen.add_argument("--version", action="store_true")
    backend_cli.add_arguments(p)
    return p


def parse_args(argv: list[str], environ: Mapping[str, str] | None = None) -> Options:
    ns = build_parser().parse_intermixed_args(argv)
    if ns.version:
        return Options(command="version")
    command, positional = _command(ns.args)
    opts = Options(command=command)
    _set_paths(opts, command, positional)
    _set_format(opts, ns)
    _set_gpg(opts, ns, os.environ if environ is None else environ)
    _set_selection(opts, ns)
    _set_behaviour(opts, ns)
    return opts


def _command(args: list[str]) -> tuple[str, list[str]]:
    if args and args[0] in COMMANDS:
        return COMMANDS[args[0]], args[1:]
    if len(args) == 2:
        # No command: `SRC URL` backs up, `URL DEST` restores (duplicity's implied commands).
        return ("restore" if "://" in args[0] else "backup"), args
    if not args:
        raise CommandLineError("No command given", "see `duplicity-ng --help`")
    raise CommandLineError(f"Unknown command '{args[0]}'", "see `duplicity-ng --help`")


def _set_paths(opts: Options, command: str, positional: list[str]) -> None:
    expected = _ARG_COUNT[command]
    if len(positional) != expected:
        raise CommandLineError(
            f"'{command}' takes {expected} argument(s), got {len(positional)}",
            f"usage: duplicity-ng {command} [options] {_shape(command)}",
        )
    if command in _LEADING_ARG:
        _set_leading_arg(opts, command, positional[0])
        positional = positional[1:]
    if command in _URL_FIRST:
        opts.url = positional[0]
        opts.source = positional[1] if len(positional) == 2 else ""
    else:
        opts.source, opts.url = positional
    if "://" not in opts.url:
        raise CommandLineError(
            f"'{opts.url}' is not a backend URL", "a URL looks like file:///path/to/backups"
        )
    if opts.source and "://" in opts.source:
        raise CommandLineError(f"'{opts.source}' should be a local directory, not a URL")


def _shape(command: str) -> str:
    if command in _LEADING_ARG:
        return f"{_LEADING_ARG[command]} URL"
    if _ARG_COUNT[command] == 1:
        return "URL"
    return "URL DIR" if command in _URL_FIRST else "DIR URL"


def _set_leading_arg(opts: Options, command: str, value: str) -> None:
    if _LEADING_ARG[command] == "TIME":
        # Read against the real clock, as duplicity does: it parses the TIME before it
        # applies the (testing-only) --current-time.
        opts.remove_time = parse_time(value)
        return
    if not re.fullmatch(r"[0-9]+", value) or int(value) < 1:
        raise CommandLineError(
            f"'{command}' needs the number of full backups to keep (1 or more), got '{value}'",
            f"usage: duplicity-ng {command} [options] N URL",
        )
    opts.keep_chains = int(value)


def _set_format(opts: Options, ns: argparse.Namespace) -> None:
    opts.encryption = not ns.no_encryption
    opts.compression = not ns.no_compression
    if ns.compress_level is not None and not 1 <= ns.compress_level <= 9:
        raise CommandLineError(f"--compress-level must be 1 to 9, got {ns.compress_level}")
    opts.compress_level = ns.compress_level
    if ns.volsize < 1:
        raise CommandLineError(f"--volsize must be at least 1 (MiB), got {ns.volsize}")
    opts.volsize = ns.volsize * MiB
    opts.max_blocksize = ns.max_blocksize
    opts.prefixes = Prefixes(
        base=ns.file_prefix,
        archive=ns.file_prefix_archive,
        manifest=ns.file_prefix_manifest,
        signature=ns.file_prefix_signature,
        jsonstat=ns.file_prefix_jsonstat,
    )
    if ns.archive_dir is not None:
        opts.archive_dir = ns.archive_dir.expanduser()
    opts.name = ns.name


def _set_gpg(opts: Options, ns: argparse.Namespace, environ: Mapping[str, str]) -> None:
    opts.encrypt_keys = list(ns.encrypt_key)
    opts.hidden_encrypt_keys = list(ns.hidden_encrypt_key)
    opts.sign_key = ns.sign_key
    if ns.encrypt_sign_key:
        if ns.sign_key and ns.sign_key != ns.encrypt_sign_key:
            raise CommandLineError("--encrypt-sign-key and --sign-key name different keys")
        opts.encrypt_keys.append(ns.encrypt_sign_key)
        opts.sign_key = ns.encrypt_sign_key
    for key in (*opts.encrypt_keys, *opts.hidden_encrypt_keys, opts.sign_key or "x"):
        if not key.strip():
            raise CommandLineError("An empty key was given to a --*-key option")
    opts.gpg_binary = ns.gpg_binary
    try:
        opts.gpg_options = [opt for text in ns.gpg_options for opt in shlex.split(text)]
    except ValueError as exc:
        raise CommandLineError(f"Cannot parse --gpg-options: {exc}") from exc
    opts.use_agent = ns.use_agent
    opts.passphrase = environ.get("PASSPHRASE")
    opts.sign_passphrase = environ.get("SIGN_PASSPHRASE")
    backup = opts.command in ("full", "incremental", "backup")
    if backup and not opts.encryption and (opts.encrypt_keys or opts.hidden_encrypt_keys):
        raise CommandLineError("--no-encryption and --encrypt-key contradict each other")
    if backup and not opts.encryption and opts.sign_key:
        raise CommandLineError(
            "--sign-key needs encryption: signed files are gpg messages",
            "drop --no-encryption or --sign-key",
        )


def _set_selection(opts: Options, ns: argparse.Namespace) -> None:
    opts.selection = SelectionOptions(
        rules=list(getattr(ns, "selection_rules", None) or []),
        exclude_if_present=list(ns.exclude_if_present),
        exclude_other_filesystems=ns.exclude_other_filesystems,
        exclude_device_files=ns.exclude_device_files,
        files_from=ns.files_from,
        null_separator=ns.null_separator,
    )


def _set_behaviour(opts: Options, ns: argparse.Namespace) -> None:
    now = ns.current_time if ns.current_time is not None else int(time.time())
    opts.current_time = ns.current_time
    if ns.full_if_older_than:
        opts.full_if_older_than = parse_time(ns.full_if_older_than, now)
    if ns.restore_time:
        opts.restore_time = parse_time(ns.restore_time, now)
    if ns.path_to_restore:
        opts.path_to_restore = os.fsencode(ns.path_to_restore)
    opts.force = ns.force
    opts.allow_source_mismatch = ns.allow_source_mismatch
    opts.numeric_owner = ns.numeric_owner
    opts.restore_ownership = not ns.no_restore_ownership
    opts.compare_data = ns.compare_data
    opts.tempdir = ns.tempdir
    opts.dry_run = ns.dry_run
    opts.print_statistics = not ns.no_print_statistics
    level = parse_level(ns.verbosity)
    if level is None:
        raise CommandLineError(
            f"Bad verbosity '{ns.verbosity}'", "use 0-9 or error, warning, notice, info, debug"
        )
    opts.verbosity = level
    opts.debug = ns.debug or level >= 9
    opts.backend = backend_cli.from_namespace(ns)
    if ns.concurrency < 1:
        raise CommandLineError(f"--concurrency must be at least 1, got {ns.concurrency}")
    opts.concurrency = ns.concurrency
