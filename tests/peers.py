"""Running duplicity-style command lines in tests: real duplicity as an interop peer
(3.2.1 from PyPI in the repo's .peers/, 0.8.22 from Debian) and our own CLI.

Every run is a subprocess returning a CompletedProcess (text, captured, undecodable bytes kept
as surrogate escapes, stdin closed so a prompt can never hang a test). The environment is
os.environ without the developer's passphrases, plus what each runner needs.

For the peers, what ../shared/NOTES.md says every run needs is added here, so tests state only
what they are about:

- ``PASSPHRASE`` is set (empty unless the caller gives one): without it duplicity prompts
  even for unencrypted archives and exits 30 when there is no terminal;
- as non-root, the peer's "do not restore ownership" option;
- ``--archive-dir`` must be given (a private directory under the test's tmp_path), so a
  test never reads or writes ~/.cache/duplicity;
- ``current_time=`` adds the hidden ``--current-time EPOCH`` that fixes the backup time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NG_SCRIPT = REPO / "bin" / "duplicity-ng"

# Variables from the developer's shell that would change what a backup tool does.
_SCRUBBED_ENV = ("PASSPHRASE", "SIGN_PASSPHRASE", "FTP_PASSWORD", "BACKEND_PASSWORD")

Arg = str | os.PathLike[str]
EnvOverrides = Mapping[str, str | None]


class PeerMissingError(RuntimeError):
    """The peer is not installed or does not run; the message says how to fix it."""


def child_env(defaults: Mapping[str, str], overrides: EnvOverrides | None) -> dict[str, str]:
    """os.environ without the developer's passphrases, then `defaults`, then `overrides`.

    An override of None removes the variable.
    """
    result = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    result.update(defaults)
    for key, value in (overrides or {}).items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def run_command(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: Arg | None,
    input: str | None,
    timeout: float,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        env=env,
        cwd=cwd,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        encoding="utf-8",
        errors="surrogateescape",
        timeout=timeout,
        check=False,
    )


def describe_failure(label: str, result: subprocess.CompletedProcess[str]) -> str:
    """A test failure message with everything needed to see what went wrong."""
    argv = " ".join(str(a) for a in result.args)
    return (
        f"{label} exited {result.returncode}: {argv}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )


def _check_ok(label: str, result: subprocess.CompletedProcess[str]) -> None:
    __tracebackhide__ = True  # pytest shows the test's line, not this helper's
    if result.returncode != 0:
        raise AssertionError(describe_failure(label, result))


@dataclass(frozen=True)
class NgRunner:
    """Our CLI as a user runs it: ``python bin/duplicity-ng ARGS``.

    XDG_CACHE_HOME points at `cache_home` (inside the test's tmp_path), so no test touches
    ~/.cache. ``ok`` also asserts exit 0 and shows stdout/stderr when it is not.
    """

    cache_home: Path
    timeout: float = 300.0

    def command(self, *args: Arg) -> list[str]:
        return [sys.executable, str(NG_SCRIPT), *(os.fspath(a) for a in args)]

    def environment(self, env: EnvOverrides | None = None) -> dict[str, str]:
        return child_env({"XDG_CACHE_HOME": str(self.cache_home)}, env)

    def __call__(
        self,
        *args: Arg,
        env: EnvOverrides | None = None,
        cwd: Arg | None = None,
        input: str | None = None,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the CLI; never raises on a non-zero exit (see `ok`)."""
        return run_command(
            self.command(*args), self.environment(env), cwd, input, timeout or self.timeout
        )

    def ok(self, *args: Arg, **kwargs) -> subprocess.CompletedProcess[str]:
        __tracebackhide__ = True
        result = self(*args, **kwargs)
        _check_ok("duplicity-ng", result)
        return result


@dataclass(frozen=True)
class DuplicityPeer:
    """One installed duplicity, run as a subprocess."""

    label: str  # "duplicity 3.2.1"
    executable: Path
    version: str  # expected in the output of --version
    no_owner_option: str  # the version's spelling of "do not restore ownership"
    timeout: float = 300.0

    def command(
        self,
        args: Sequence[Arg],
        archive_dir: Arg | None = None,
        current_time: int | None = None,
    ) -> list[str]:
        """The argv for ``duplicity ARGS``: the extra options go right after the command."""
        argv = [os.fspath(a) for a in args]
        if not argv or argv[0].startswith("-"):
            return [str(self.executable), *argv]  # e.g. --version: no command, no options
        extra: list[str] = []
        if not any(a == "--archive-dir" or a.startswith("--archive-dir=") for a in argv):
            if archive_dir is None:
                raise ValueError(
                    f"{self.label} {argv[0]}: pass archive_dir= (a directory under tmp_path)"
                )
            extra += ["--archive-dir", os.fspath(archive_dir)]
        if current_time is not None:
            extra += ["--current-time", str(current_time)]
        if os.geteuid() != 0:
            extra.append(self.no_owner_option)
        return [str(self.executable), argv[0], *extra, *argv[1:]]

    def run(
        self,
        *args: Arg,
        archive_dir: Arg | None = None,
        current_time: int | None = None,
        env: EnvOverrides | None = None,
        cwd: Arg | None = None,
        input: str | None = None,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run duplicity; never raises on a non-zero exit (see `ok`)."""
        return run_command(
            self.command(args, archive_dir, current_time),
            child_env({"PASSPHRASE": ""}, env),
            cwd,
            input,
            timeout or self.timeout,
        )

    def ok(self, *args: Arg, **kwargs) -> subprocess.CompletedProcess[str]:
        """`run`, and fail the test with the full output unless duplicity exited 0."""
        __tracebackhide__ = True
        result = self.run(*args, **kwargs)
        _check_ok(self.label, result)
        return result

    def check_installed(self) -> None:
        """Raise PeerMissingError unless the peer runs and reports the expected version."""
        fix = "run scripts/setup.sh (interop tests need both duplicity peers)"
        if not self.executable.exists():
            raise PeerMissingError(f"{self.label} not found at {self.executable}: {fix}")
        try:
            result = self.run("--version", timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PeerMissingError(
                f"{self.label} at {self.executable} does not run ({exc}): {fix}"
            ) from exc
        if result.returncode != 0 or self.version not in result.stdout:
            raise PeerMissingError(
                f"{self.label} at {self.executable}: '--version' gave exit {result.returncode},"
                f" stdout {result.stdout.strip()!r}, stderr {result.stderr.strip()[-500:]!r}: {fix}"
            )


def peer_321(repo: Path = REPO) -> DuplicityPeer:
    """duplicity 3.2.1 as scripts/setup.sh installs it, in its own venv."""
    return DuplicityPeer(
        label="duplicity 3.2.1",
        executable=repo / ".peers" / "duplicity-3.2.1" / "bin" / "duplicity",
        version="3.2.1",
        no_owner_option="--no-restore-ownership",
    )


def peer_08() -> DuplicityPeer:
    """Debian 12's duplicity package."""
    return DuplicityPeer(
        label="duplicity 0.8.22",
        executable=Path("/usr/bin/duplicity"),
        version="0.8.22",
        no_owner_option="--do-not-restore-ownership",
    )
