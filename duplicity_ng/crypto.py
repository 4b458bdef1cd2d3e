"""Encryption and signing with GnuPG (FORMAT.md 8), driven through python-gnupg.

python-gnupg finds and checks the gpg binary and its version, builds the base command line
(batch mode, no tty, status lines on fd 2), looks keys up and interprets the status lines. The
gpg processes are started here rather than through its encrypt/decrypt helpers, for three
reasons checked on gpg 2.2: those helpers send the passphrase on stdin ahead of the data, and
gpg, when it signs and encrypts data that arrives on stdin, reads stdin ahead and takes data
bytes for the passphrase; an empty passphrase makes them announce `--passphrase-fd 0` without
writing one, so gpg would read the first line of the data as the passphrase; and they collect
gpg's output through Python in small pieces. Here the passphrase travels through a pipe of its
own (`--passphrase-fd N`), never argv, the environment or a file.

Data streams: a writer feeds tar data into gpg's stdin while a thread stores gpg's output,
counting and hashing it, so gpg encrypts while Python builds the rest of the volume. Reading
decrypts a whole file into a temporary file and hands it over only if gpg reports success:
gpg writes plaintext before it has checked the integrity of what it decrypted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import struct
import subprocess
import termios
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import gnupg

from duplicity_ng.deflate import INFLATE_ERRORS
from duplicity_ng.errors import (
    BadSignerError,
    GpgError,
    TempSpaceError,
    UserError,
    VolumeHashError,
)
from duplicity_ng.gzipstream import DEFAULT_LEVEL
from duplicity_ng.log import Log
from duplicity_ng.pgpstream import CompressedLiteralWriter, PacketError, literal_data
from duplicity_ng.readahead import ReadAhead

# python-gnupg logs gpg's warnings through `logging`; without a handler Python's last-resort
# handler would print them to stderr beside our one-line errors.
_gnupg_logger = logging.getLogger("gnupg")
_gnupg_logger.addHandler(logging.NullHandler())
_gnupg_logger.propagate = False

# When gpg compresses itself (signed files): its zlib at level 1 instead of its default 6,
# 1.1-1.8x faster for 2-17 % more bytes (bench/gpg_compression.py). Otherwise we compress,
# at gzipstream.DEFAULT_LEVEL. A compression option in --gpg-options wins over both.
DEFAULT_COMPRESS_LEVEL = 1
READ_SIZE = 1 << 20
# Most of the plaintext that can be on its way through gpg at once: our 64 KiB buffer, the
# pipe's 64 KiB and gpg's own buffers (measured on random data: up to 180 KiB).
IN_FLIGHT = 256 * 1024
# What gpg itself still holds once the pipe is empty (measured: up to 47 KiB).
HELD_BY_GPG = 64 * 1024
# How long settled_size waits for gpg to empty the pipe (it reads 150+ MiB/s).
SETTLE_TIMEOUT = 2.0
PIPE_BUFFER = 64 * 1024
PIPE_READ_AHEAD = 1 << 20  # the pipes to and from gpg (Linux's default is 64 KiB)
_COMPRESSION_OPTIONS = ("-z", "--compress-level", "--compress-algo", "--bzip2-compress-level")
_CIPHER_OPTIONS = ("--cipher-algo", "--personal-cipher-preferences")
_S2K_OPTIONS = ("--s2k-digest-algo", "--s2k-mode")
_ERR_BAD_PASSPHRASE = 11
_ERR_NO_PASSPHRASE = 177
_HIDDEN_KEY_ID = "0000000000000000"
# gpg messages that never explain a failure (the second comes with our --no-literal).
_NOISE = ("WARNING: unsafe", "Warning: using insecure", "Note: --no-literal")
_SIGNATURE_PROBLEMS = ("ERRSIG", "BADSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG", "NO_PUBKEY")

Prompt = Callable[[str], str]


@dataclass(frozen=True)
class GpgSettings:
    """What the command line says about gpg. Holds no secrets."""

    binary: str = "gpg"
    options: tuple[str, ...] = ()  # --gpg-options, already split
    recipients: tuple[str, ...] = ()
    hidden_recipients: tuple[str, ...] = ()
    sign_key: str | None = None
    use_agent: bool = False
    compress: bool = True  # False: --compress-algo none (as duplicity 3.x does)
    compress_level: int | None = None  # --compress-level; None: the default of each path

    @property
    def symmetric(self) -> bool:
        return not (self.recipients or self.hidden_recipients)

    @property
    def sign_key_is_recipient(self) -> bool:
        keys = {_normal(k) for k in (*self.recipients, *self.hidden_recipients)}
        return self.sign_key is not None and _normal(self.sign_key) in keys

    def user_gave(self, names: Sequence[str]) -> bool:
        """Whether --gpg-options already sets one of these gpg options (ours then step aside)."""
        return any(
            opt == n or opt.startswith(n + "=") or (n[1] != "-" and opt.startswith(n))
            for opt in self.options
            for n in names
        )


class Passphrases:
    """The passphrases of one run: from PASSPHRASE / SIGN_PASSPHRASE, else asked on a terminal.

    Each is asked at most once, and only when gpg needs it. The values never appear in a
    repr, a log line or an error message.
    """

    def __init__(
        self,
        passphrase: str | None,
        sign_passphrase: str | None,
        prompt: Prompt | None,
        settings: GpgSettings,
    ) -> None:
        self._passphrase = passphrase
        self._sign_passphrase = sign_passphrase
        self._prompt = prompt
        self._settings = settings
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "Passphrases(<hidden>)"

    def for_decryption(self) -> str | None:
        """PASSPHRASE: the symmetric passphrase or the secret key's; None if unknown."""
        with self._lock:
            if self._passphrase is None and self._settings.use_agent:
                return None
            if self._passphrase is None and self._settings.sign_key_is_recipient:
                self._passphrase = self._sign_passphrase
            if self._passphrase is None and self._prompt is not None:
                self._passphrase = _checked(self._prompt("GnuPG passphrase for decryption: "))
            return self._passphrase

    def for_symmetric_encryption(self) -> str:
        """The symmetric passphrase for a backup: required, confirmed when typed, not empty."""
        with self._lock:
            if self._passphrase is None and self._prompt is not None:
                first = _checked(self._prompt("GnuPG passphrase for encryption: "))
                if first and self._prompt("Retype passphrase to confirm: ") != first:
                    raise GpgError("The two passphrases typed do not match")
                self._passphrase = first
            if self._passphrase is None:
                raise GpgError(
                    "Symmetric encryption needs a passphrase and none was given",
                    "set PASSPHRASE, pass --encrypt-key, or pass --no-encryption",
                )
            if not self._passphrase:
                raise GpgError(
                    "An empty passphrase cannot be used for symmetric encryption",
                    "set PASSPHRASE to a non-empty passphrase",
                )
            return self._passphrase

    def for_signing(self) -> str | None:
        """SIGN_PASSPHRASE, else PASSPHRASE (duplicity reuses it), else asked; None if unknown."""
        with self._lock:
            if self._sign_passphrase is None and self._passphrase is not None:
                self._sign_passphrase = self._passphrase
            if (
                self._sign_passphrase is None
                and self._prompt is not None
                and not self._settings.use_agent
            ):
                self._sign_passphrase = _checked(
                    self._prompt("GnuPG passphrase for the signing key: ")
                )
            return self._sign_passphrase

    def for_signing_symmetric(self) -> str:
        """gpg reads one passphrase when it signs and encrypts symmetrically: both must agree."""
        symmetric = self.for_symmetric_encryption()
        with self._lock:
            sign = self._sign_passphrase
        if sign and sign != symmetric:
            raise GpgError(
                "With symmetric encryption the signing key's passphrase must equal the "
                "encryption passphrase",
                "set SIGN_PASSPHRASE to PASSPHRASE, or leave it unset",
            )
        return symmetric


def _checked(passphrase: str) -> str:
    if any(c in passphrase for c in "\n\r\0"):
        raise GpgError("A passphrase cannot contain a line break or a NUL character")
    return passphrase


def _normal(key: str) -> str:
    key = key.strip().replace(" ", "")
    if key[:2].lower() == "0x":
        key = key[2:]
    return key.upper()


def _is_hex_id(key: str) -> bool:
    return len(key) >= 8 and re.fullmatch(r"[0-9A-F]+", key) is not None


@dataclass
class GpgStatus:
    """What gpg said: its status lines and its human-readable messages."""

    returncode: int = 0
    status: list[tuple[str, str]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def has(self, *keys: str) -> bool:
        return any(k in keys for k, _ in self.status)

    def values(self, key: str) -> list[str]:
        return [v for k, v in self.status if k == key]

    def error_codes(self) -> list[int]:
        """The gpg error codes (without their source) of ERROR and FAILURE lines."""
        codes = []
        for key, value in self.status:
            if key in ("ERROR", "FAILURE"):
                code = value.rsplit(" ", 1)[-1].split("_", 1)[0]
                if code.isdigit():
                    codes.append(int(code) & 0xFFFF)
        return codes

    def last_message(self) -> str:
        for line in reversed(self.messages):
            text = line.removeprefix("gpg: ").strip()
            if text and not text.startswith(_NOISE):
                return text
        return f"gpg exited with status {self.returncode}"

    def collect(self, stderr: BinaryIO) -> threading.Thread:
        """A started thread that feeds gpg's stderr (status and messages) into this."""

        def read() -> None:
            for line in stderr:
                self.feed(line.decode("utf-8", "replace"))

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        return thread

    def feed(self, line: str) -> None:
        line = line.rstrip("\r\n")
        if line.startswith("[GNUPG:] "):
            key, _, value = line[9:].partition(" ")
            self.status.append((key, value))
        elif line.strip():
            self.messages.append(line)

    @property
    def bad_passphrase(self) -> bool:
        return self.has("BAD_PASSPHRASE") or _ERR_BAD_PASSPHRASE in self.error_codes()

    @property
    def missing_passphrase(self) -> bool:
        return (
            self.has("MISSING_PASSPHRASE")
            or _ERR_NO_PASSPHRASE in self.error_codes()
            or any("can't get input" in m for m in self.messages)
        )


class GpgDecryptError(GpgError):
    """gpg could not decrypt; `no_secret_key` when no secret key of a recipient is present."""

    def __init__(self, message: str, hint: str = "", no_secret_key: bool = False) -> None:
        super().__init__(message, hint)
        self.no_secret_key = no_secret_key


class Gpg:
    """gpg for one run: the settings, the passphrases, and the python-gnupg handle."""

    def __init__(self, settings: GpgSettings, passphrases: Passphrases, log: Log) -> None:
        self.settings = settings
        self.passphrases = passphrases
        self.log = log
        self._gnupg: gnupg.GPG | None = None
        self._lock = threading.Lock()
        self._signer_fingerprints: set[str] | None = None
        self._advisor = CompressionAdvisor()
        self._prepared: dict[Path, GpgWriter] = {}

    # -- the binary ---------------------------------------------------------------------
    @property
    def gnupg(self) -> gnupg.GPG:
        with self._lock:
            if self._gnupg is None:
                self._gnupg = self._start()
            return self._gnupg

    def _start(self) -> gnupg.GPG:
        try:
            handle = gnupg.GPG(
                gpgbinary=self.settings.binary,
                use_agent=self.settings.use_agent,
                options=list(self.settings.options) or None,
            )
        except (OSError, ValueError) as exc:
            raise GpgError(
                f"GnuPG is not installed or does not run: cannot start '{self.settings.binary}'",
                "install GnuPG (gpg 2.1 or later), or name it with --gpg-binary",
            ) from exc
        if handle.version is None or handle.version < (2, 1):
            version = ".".join(map(str, handle.version or ())) or "unknown"
            raise GpgError(
                f"{self.settings.binary} is GnuPG {version}; duplicity-ng needs 2.1 or later",
                "install a newer GnuPG, or name it with --gpg-binary",
            )
        return handle

    def _command(self, args: list[str], passphrase_fd: int | None) -> list[str]:
        ours: list[str] = ["--no-secmem-warning"]
        if not self.settings.use_agent:
            # Loopback: the passphrase comes from us, never from a pinentry window.
            ours += ["--pinentry-mode", "loopback"]
        if passphrase_fd is not None:
            ours += ["--passphrase-fd", str(passphrase_fd)]
        # python-gnupg's base command: binary, --status-fd 2, --no-tty, --batch, the
        # user's --gpg-options; passphrase=False: ours goes through its own pipe.
        return self.gnupg.make_args(ours + args, False)

    def _spawn(
        self,
        args: list[str],
        passphrase: str | None,
        stdin: int | None,
        stdout: int = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        """Start gpg; the passphrase (when given) is written to a pipe that gpg reads."""
        read_fd = write_fd = None
        if passphrase is not None and not self.settings.use_agent:
            read_fd, write_fd = os.pipe()
        try:
            argv = self._command(args, read_fd)
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=stdin,
                    stdout=stdout,
                    stderr=subprocess.PIPE,
                    pass_fds=(read_fd,) if read_fd is not None else (),
                    # Tar headers come 512 bytes at a time: gather them before the syscall.
                    bufsize=PIPE_BUFFER,
                )
            except OSError as exc:
                raise GpgError(
                    f"Cannot start {self.settings.binary}: {exc.strerror or exc}",
                    "install GnuPG, or name it with --gpg-binary",
                ) from exc
            if write_fd is not None:
                assert passphrase is not None
                # A passphrase fits the pipe buffer: this never blocks.
                os.write(write_fd, passphrase.encode("utf-8") + b"\n")
        finally:
            for fd in (read_fd, write_fd):
                if fd is not None:
                    os.close(fd)
        return proc

    # -- keys -----------------------------------------------------------------------------
    def check_backup_keys(self) -> None:
        """Before a backup writes anything: gpg runs, every named key exists and can do its job."""
        handle = self.gnupg
        for key in (*self.settings.recipients, *self.settings.hidden_recipients):
            found = handle.list_keys(keys=[key])
            if not found:
                raise GpgError(
                    f"Encryption key {key} was not found in the keyring{self._home_note()}",
                    "import the public key, or check --encrypt-key",
                )
            if not any("E" in (k.get("cap") or "") for k in found):
                raise GpgError(
                    f"Key {key} cannot encrypt (expired, revoked or without an encryption subkey)",
                    "check --encrypt-key",
                )
        if self.settings.sign_key is not None:
            found = handle.list_keys(secret=True, keys=[self.settings.sign_key])
            if not found:
                raise GpgError(
                    f"Signing key {self.settings.sign_key} has no secret key in the keyring"
                    f"{self._home_note()}",
                    "import the secret key, or check --sign-key",
                )

    def _home_note(self) -> str:
        home = os.environ.get("GNUPGHOME")
        return f" ({home})" if home else ""

    # -- writing ----------------------------------------------------------------------------
    def backup_passphrase(self) -> str | None:
        """The passphrase encrypting needs (asked now, before anything is written)."""
        s = self.settings
        if s.symmetric:
            if s.use_agent:
                return None
            if s.sign_key is not None:
                return self.passphrases.for_signing_symmetric()
            return self.passphrases.for_symmetric_encryption()
        if s.sign_key is not None:
            # An unprotected signing key needs none: an empty line does no harm then.
            return self.passphrases.for_signing() or ""
        return None

    def encrypt_args(self) -> list[str]:
        s = self.settings
        args = ["--force-mdc"]
        if s.symmetric:
            args.append("--symmetric")
            if not s.user_gave(_CIPHER_OPTIONS):
                args += ["--cipher-algo", "AES256"]
            if not s.user_gave(_S2K_OPTIONS):
                args += ["--s2k-mode", "3", "--s2k-digest-algo", "SHA256"]
        else:
            # Keys are checked before the backup starts: never look them up on the network.
            args += ["--always-trust", "--auto-key-locate", "local"]
            for key in s.recipients:
                args += ["--recipient", key]
            for key in s.hidden_recipients:
                args += ["--hidden-recipient", key]
            args.append("--encrypt")
        if s.sign_key is not None:
            args += ["--sign", "--default-key", s.sign_key]
        return args

    def compression_args(self) -> list[str]:
        """--no-compression: none; --gpg-options naming one: theirs; else as the advisor says."""
        if not self.settings.compress:
            return ["--compress-algo", "none"]
        if self.settings.user_gave(_COMPRESSION_OPTIONS):
            return []
        if not self._advisor.next_file_compresses():
            return ["--compress-algo", "none"]
        return ["--compress-level", str(self.settings.compress_level or DEFAULT_COMPRESS_LEVEL)]

    def writer(self, path: Path, pool: ThreadPoolExecutor | None = None) -> GpgWriter:
        """A writer encrypting into `path`.

        Unless the user set gpg's compression or a file is signed, the compressed packets are
        made here on the threads of `pool` and gpg only encrypts them (pgpstream): gpg signs
        what it packs itself, and --no-literal input would go unsigned.
        """
        prepared = self._prepared.pop(path, None)
        if prepared is not None:
            return prepared
        if self._packets_mode():
            s = self.settings
            packets = ["--no-literal", "--compress-algo", "none"]
            level = s.compress_level or DEFAULT_LEVEL
            return GpgWriter(
                self, path, self.encrypt_args() + packets, self.backup_passphrase(),
                packets=(level, pool),
            )  # fmt: skip
        ours = self.settings.compress and not self.settings.user_gave(_COMPRESSION_OPTIONS)
        return GpgWriter(
            self,
            path,
            self.encrypt_args() + self.compression_args(),
            self.backup_passphrase(),
            self._advisor if ours else None,
        )

    def _packets_mode(self) -> bool:
        s = self.settings
        return s.compress and not s.user_gave(_COMPRESSION_OPTIONS) and s.sign_key is None

    def prepare(self, path: Path, pool: ThreadPoolExecutor | None = None) -> None:
        """Start the gpg that `writer(path)` will return, so that it has derived its key
        (a third of a second of S2K hashing) before the data comes. Only where a file's gpg
        arguments do not depend on the file before it (our own compression)."""
        if self._packets_mode() and path not in self._prepared:
            self._prepared[path] = self.writer(path, pool)

    def discard_prepared(self) -> None:
        for writer in self._prepared.values():
            writer.abort()
        self._prepared.clear()

    # -- reading ----------------------------------------------------------------------------
    def open_decrypted(self, path: Path, name: str, verified: bool = False) -> BinaryIO:
        """The plaintext of the OpenPGP file at `path` (stored as `name`), checked.

        gpg decrypts into a temporary file beside `path`; it is opened only when gpg reports a
        clean decryption (and, with --sign-key, the right signer), and deleted on close.

        `verified`: the file's hash already matched its (authenticated) manifest, so gpg's own
        integrity check cannot fail: the plaintext is read while gpg writes it, and gpg's
        verdict checked at its end. Not with --sign-key: who signed is only known at the end.
        """
        if verified and self.settings.sign_key is None:
            return self._decrypting_reader(path, name)
        plain = path.with_name(path.name + ".plain")
        plain.unlink(missing_ok=True)
        try:
            status = self._decrypt(path, plain)
            self._check_decrypted(status, name)
            self._check_signer(status, name)
            stream = open(plain, "rb")  # noqa: SIM115 - the caller closes it
        finally:
            # Opened or refused, the name goes now; an open file lives until it is closed.
            plain.unlink(missing_ok=True)
        return stream

    def _decrypting_reader(self, path: Path, name: str) -> BinaryIO:
        passphrase = self.passphrases.for_decryption()
        # From stdin: the caller may unlink `path` before gpg would get to open it.
        with open(path, "rb") as src:
            proc = self._spawn(["--unwrap"], passphrase, src.fileno(), stdout=subprocess.PIPE)
        assert proc.stdout is not None
        _widen_pipe(proc.stdout.fileno())  # fewer switches between us and gpg
        return DecryptingReader(proc, name, lambda status: self._check_decrypted(status, name))  # type: ignore[return-value]

    def _decrypt(self, src: Path, dest: Path) -> GpgStatus:
        passphrase = self.passphrases.for_decryption()
        args = ["--decrypt", "--yes", "--output", os.fspath(dest), os.fspath(src)]
        proc = self._spawn(args, passphrase, subprocess.DEVNULL)
        _, err = proc.communicate()
        assert err is not None
        status = GpgStatus(returncode=proc.returncode)
        for line in err.decode("utf-8", "replace").splitlines():
            status.feed(line)
        return status

    def _check_decrypted(self, status: GpgStatus, name: str) -> None:
        okay = status.has("DECRYPTION_OKAY") and not status.has("DECRYPTION_FAILED", "BADMDC")
        # gpg also exits non-zero when a signature cannot be checked: _check_signer judges
        # signatures, this the decryption.
        if okay and (status.returncode == 0 or status.has(*_SIGNATURE_PROBLEMS)):
            return
        if status.has("BADMDC"):
            raise VolumeHashError(
                f"{name} is corrupt or was tampered with: gpg's integrity check failed",
                "the backend copy is damaged",
            )
        if status.has("NODATA") and not status.has("BEGIN_DECRYPTION"):
            raise VolumeHashError(
                f"{name} is not an OpenPGP message (corrupt or truncated)",
                "the backend copy is damaged",
            )
        symmetric = status.has("NEED_PASSPHRASE_SYM")
        if status.bad_passphrase:
            if symmetric:
                raise GpgError(f"Cannot decrypt {name}: wrong passphrase", "check PASSPHRASE")
            key = _key_of_passphrase(status)
            raise GpgError(
                f"Cannot decrypt {name}: wrong passphrase for secret key {key}",
                "set PASSPHRASE to the passphrase of that key",
            )
        if status.missing_passphrase:
            what = (
                "a passphrase"
                if symmetric
                else f"the passphrase of secret key {_key_of_passphrase(status)}"
            )
            raise GpgError(
                f"Cannot decrypt {name}: it needs {what}, and none was given",
                "set PASSPHRASE",
            )
        missing = status.values("NO_SECKEY")
        tried = [m.split("trying secret key ", 1)[1].split()[0] for m in status.messages if
                 "anonymous recipient; trying secret key " in m]  # fmt: skip
        if _HIDDEN_KEY_ID in missing and tried and not status.has("DECRYPTION_KEY"):
            # gpg does not say why a key it tried for a hidden recipient failed.
            raise GpgError(
                f"Cannot decrypt {name}: secret key {', '.join(tried)} did not open it for its "
                "hidden recipient (wrong passphrase, or not the key it was encrypted to)",
                "check PASSPHRASE",
            )
        if missing and not status.has("DECRYPTION_KEY"):
            keys = ", ".join(
                "a hidden recipient" if k == _HIDDEN_KEY_ID else k for k in dict.fromkeys(missing)
            )
            raise GpgDecryptError(
                f"Cannot decrypt {name}: no secret key in the keyring{self._home_note()} "
                f"for key {keys}",
                "import the secret key the backup was encrypted to",
                no_secret_key=True,
            )
        if status.has("DECRYPTION_FAILED", "BEGIN_DECRYPTION"):
            raise VolumeHashError(
                f"{name} could not be decrypted ({status.last_message()})",
                "the backend copy may be corrupt or truncated",
            )
        raise GpgError(f"Cannot decrypt {name}: {status.last_message()}")

    def _check_signer(self, status: GpgStatus, name: str) -> None:
        if status.has("BADSIG"):
            key = status.values("BADSIG")[0].split(" ", 1)[0]
            raise BadSignerError(f"{name} has a bad signature (by key {key})")
        sign_key = self.settings.sign_key
        if sign_key is None:
            return
        good = status.values("GOODSIG")
        signers = [v.split(" ", 1)[0] for v in good]
        fingerprints = []
        for value in status.values("VALIDSIG"):
            parts = value.split()
            fingerprints += [parts[0], parts[-1]] if len(parts) >= 10 else parts[:1]
        if good and self._is_signer(signers, fingerprints):
            return
        if good:
            raise BadSignerError(
                f"{name} was signed by key {signers[0]}, not by {sign_key}",
                "check --sign-key",
            )
        unknown = [v.split(" ", 1)[0] for v in status.values("ERRSIG")]
        if unknown:
            raise BadSignerError(
                f"{name} is signed by key {unknown[0]}, which is not in the keyring: the "
                f"signature cannot be checked against {sign_key}",
                "import the signing key's public key",
            )
        raise BadSignerError(
            f"{name} is not signed, but --sign-key {sign_key} requires a signature",
            "the file was replaced, or the backup was made without --sign-key",
        )

    def _is_signer(self, key_ids: list[str], fingerprints: list[str]) -> bool:
        assert self.settings.sign_key is not None
        expected = _normal(self.settings.sign_key)
        candidates = [_normal(k) for k in (*key_ids, *fingerprints)]
        if _is_hex_id(expected):
            # duplicity compares the key id's suffix; a fingerprint works as well.
            return any(c.endswith(expected) or expected.endswith(c) for c in candidates)
        return bool(self._sign_key_fingerprints() & set(candidates))

    def _sign_key_fingerprints(self) -> set[str]:
        """The fingerprints (with subkeys) of a sign key given by name or e-mail."""
        if self._signer_fingerprints is None:
            fprs: set[str] = set()
            for key in self.gnupg.list_keys(keys=[self.settings.sign_key]):
                fprs.add(key["fingerprint"].upper())
                fprs.update(fpr.upper() for fpr in key.get("subkey_info", {}))
                fprs.update(sub[2].upper() for sub in key.get("subkeys", []) if len(sub) > 2)
            self._signer_fingerprints = fprs
        return self._signer_fingerprints


def _widen_pipe(fd: int) -> None:
    """Make a pipe to or from gpg hold PIPE_READ_AHEAD bytes (where the kernel allows it)."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_READ_AHEAD)


def _pipe_bytes(fd: int) -> int:
    """Bytes written to a pipe and not yet read from it (Linux answers on either end)."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def _key_of_passphrase(status: GpgStatus) -> str:
    for value in status.values("NEED_PASSPHRASE") + status.values("USERID_HINT"):
        return value.split(" ", 1)[0]
    for value in status.values("ENC_TO"):
        return value.split(" ", 1)[0]
    return "(unknown)"


class CompressionAdvisor:
    """Decides, file by file, whether gpg compresses what it encrypts.

    gpg's zlib costs about as much CPU on data that does not compress (media, archives,
    encrypted files) as on text, for nothing: 50 against 300 MiB per CPU second. Writers
    sample what they are given (16 KiB of every MiB, compressed with zlib level 1 here);
    a file is stored uncompressed when the samples of the file before it shrank by less
    than 10 %. The first file, knowing nothing yet, is compressed.
    """

    SAMPLE = 16 * 1024
    EVERY = 1 << 20
    MIN_SAMPLES = 4
    THRESHOLD = 0.9

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current = [0, 0, 0]  # samples, bytes in, bytes out
        self._previous: list[int] | None = None

    def sample(self, data: bytes | memoryview) -> None:
        piece = bytes(data[: self.SAMPLE])
        packed = len(zlib.compress(piece, 1))
        with self._lock:
            self._current[0] += 1
            self._current[1] += len(piece)
            self._current[2] += packed

    def next_file_compresses(self) -> bool:
        with self._lock:
            if self._current[0] >= self.MIN_SAMPLES:
                self._previous, self._current = self._current, [0, 0, 0]
            if self._previous is None:
                return True
            return self._previous[2] < self.THRESHOLD * self._previous[1]


class DecryptingReader(ReadAhead):
    """The plaintext of a volume as gpg decrypts it.

    gpg --unwrap only decrypts; the packets it hands back are unpacked on our thread
    (pgpstream.literal_data), beside gpg. At the end gpg's exit and status are checked by
    `check`, which raises if the decryption failed. Closing early stops gpg.
    """

    def __init__(
        self, proc: subprocess.Popen[bytes], name: str, check: Callable[[GpgStatus], None]
    ) -> None:
        self._proc = proc
        self._name = name
        self._check = check
        self._status = GpgStatus()
        assert proc.stderr is not None
        self._status_thread = self._status.collect(proc.stderr)
        super().__init__(self._produce, "unwrap", self._stop)

    def _produce(self) -> Iterator[bytes]:
        assert self._proc.stdout is not None
        try:
            yield from literal_data(self._proc.stdout)
            self._proc.stdout.read()
        except (PacketError, OSError, EOFError, *INFLATE_ERRORS) as exc:
            self._gpg_verdict()  # a failed decryption explains it better
            raise VolumeHashError(
                f"{self._name} does not hold a file: {exc}", "the backend copy is damaged"
            ) from exc
        self._gpg_verdict()

    def _gpg_verdict(self) -> None:
        self._proc.wait()
        self._status_thread.join()
        self._status.returncode = self._proc.returncode
        self._check(self._status)

    def _stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        assert self._proc.stdout is not None
        self._proc.stdout.close()
        self._status_thread.join()


class GpgWriter:
    """A stored file being encrypted: data written here streams through gpg into `path`.

    The interface of container.StoredFileWriter: write, stored_size (bytes of the stored file
    so far, plus an allowance for what gpg still holds), close -> SHA1 hex, abort. gpg writes
    the file itself: a Python thread relaying its output would need the GIL for every pipe
    buffer, and waiting for it while the main thread builds tar members throttled gpg.
    """

    def __init__(
        self,
        gpg: Gpg,
        path: Path,
        args: list[str],
        passphrase: str | None,
        advisor: CompressionAdvisor | None = None,
        packets: tuple[int, ThreadPoolExecutor | None] | None = None,
    ) -> None:
        """`packets` (level, pool): we make the compressed packets, gpg gets --no-literal."""
        self.path = path
        self._gpg = gpg
        self._advisor = advisor
        self._next_sample = 0
        self._written = 0  # bytes handed to gpg
        self._size = 0
        self._closed = False
        self._status = GpgStatus()
        path.unlink(missing_ok=True)
        output = ["--yes", "--output", os.fspath(path)]
        self._proc = gpg._spawn(output + args, passphrase, subprocess.PIPE)
        assert self._proc.stdin is not None
        if packets:
            # Room for a few compressed blocks: we are not held up while gpg derives its key
            # or writes out what it has. (When gpg compresses, IN_FLIGHT assumes the default
            # pipe.)
            _widen_pipe(self._proc.stdin.fileno())
        assert self._proc.stderr is not None
        self._err_thread = self._status.collect(self._proc.stderr)
        self._packets = (
            CompressedLiteralWriter(self._to_gpg, packets[0], packets[1]) if packets else None
        )

    @property
    def pid(self) -> int:
        return self._proc.pid

    def write(self, data: bytes | memoryview) -> int:
        if self._packets is not None:
            return self._packets.write(data)
        if self._advisor is not None and self._written >= self._next_sample and len(data) > 4096:
            self._advisor.sample(data)
            self._next_sample = self._written + CompressionAdvisor.EVERY
        return self._to_gpg(data)

    def _to_gpg(self, data: bytes | memoryview) -> int:
        assert self._proc.stdin is not None
        self._written += len(data)
        try:
            self._proc.stdin.write(data)
        except (BrokenPipeError, ValueError):
            # gpg stopped reading: it failed; its status says why.
            self._finish_process()
            raise self._error() from None
        return len(data)

    def _estimate(self) -> int:
        """With our packets gpg does not compress: what it stores is what it was given,
        plus its own packets (a few hundred bytes, one length byte per few KiB)."""
        assert self._packets is not None
        given = self._written + self._packets.unwritten
        return given + given // 2048 + 4096

    @property
    def stored_size(self) -> int:
        """Bytes stored, plus what gpg may still hold (volumes are cut by this)."""
        if self._closed:
            return self._size
        if self._packets is not None:
            return self._estimate()
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            size = 0
        # Compressed data comes out smaller than it went in, random data about as large:
        # counting what is still in the pipe and in gpg at full size keeps volumes below
        # --volsize whatever the data.
        return size + max(0, min(self._written - size, IN_FLIGHT))

    def settled_size(self) -> int:
        """stored_size made tight, for deciding where a volume ends.

        Our buffer is flushed and gpg given the moment it needs to empty the pipe; then only
        gpg's own buffers are unknown. Costs a flush and a few milliseconds, so the volume
        writer asks only when stored_size says the volume is nearly full.
        """
        if self._closed:
            return self._size
        if self._packets is not None:
            self._packets.flush()
            return self._estimate()
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            self._finish_process()
            raise self._error() from None
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while _pipe_bytes(self._proc.stdin.fileno()) and time.monotonic() < deadline:
            time.sleep(0.0005)
        in_pipe = _pipe_bytes(self._proc.stdin.fileno())
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            size = 0
        return size + max(0, min(self._written - size, in_pipe + HELD_BY_GPG))

    def close(self) -> str:
        """Finish encrypting; returns the SHA1 hex of the stored file."""
        if self._packets is not None and not self._closed:
            self._packets.close()
        self._finish_process()
        if self._proc.returncode != 0 or not self._status.has("END_ENCRYPTION"):
            raise self._error()
        sha1 = hashlib.sha1()
        with open(self.path, "rb") as f:
            while data := f.read(READ_SIZE):
                sha1.update(data)
                self._size += len(data)
        return sha1.hexdigest()

    def abort(self) -> None:
        if self._packets is not None:
            self._packets.abort()
        if not self._closed:
            self._proc.kill()
            self._finish_process()
        self.path.unlink(missing_ok=True)

    def _finish_process(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self._proc.stdin.close()
        self._err_thread.join()
        self._proc.wait()

    def _error(self) -> UserError:
        self.path.unlink(missing_ok=True)
        status = self._status
        settings = self._gpg.settings
        bad = status.values("INV_RECP")
        if bad:
            key = bad[0].split(" ", 1)[-1]
            return GpgError(f"gpg cannot encrypt to key {key}: it is unknown or unusable")
        if status.has("INV_SGNR"):
            return GpgError(f"gpg cannot sign with key {settings.sign_key}: it is unusable")
        if status.bad_passphrase and settings.sign_key is not None:
            return GpgError(
                f"Cannot sign with key {settings.sign_key}: wrong passphrase",
                "set SIGN_PASSPHRASE (or PASSPHRASE) to the signing key's passphrase",
            )
        if status.missing_passphrase:
            return GpgError(
                f"Cannot sign with key {settings.sign_key}: it needs a passphrase",
                "set SIGN_PASSPHRASE",
            )
        message = status.last_message()
        cls = TempSpaceError if "No space left" in message else GpgError
        return cls(f"gpg failed to encrypt {self.path.name}: {message}")
