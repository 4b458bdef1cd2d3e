#!/usr/bin/env bash
# Prepare a fresh Debian 12 machine (only python3 and apt) to build, test and demo
# duplicity-ng. Idempotent: every step checks first and does nothing when already done.
# Quiet on success; on failure prints the failing step's output and exits non-zero.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
PEER_VERSION="3.2.1"
PEER_VENV="$REPO/.peers/duplicity-$PEER_VERSION"

# librsync2/-dev: the engine dlopens librsync; rdiff: tests build reference deltas;
# gnupg: encryption; openssh-server: sftp tests run a private sshd;
# duplicity (0.8.22): the Debian interop peer; python3-venv: the virtualenvs below;
# groff-base: tests/test_manpage.py renders man/duplicity-ng.1 with groff to catch roff warnings.
APT_PACKAGES=(
    python3-venv
    librsync2
    librsync-dev
    rdiff
    gnupg
    gpg-agent
    openssh-server
    openssh-client
    duplicity
    diffutils
    tar
    groff-base
)

export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1

say() { printf 'setup: %s\n' "$*"; }

# Run a command with its output kept aside; show it only if the command fails.
quiet() {
    local log rc=0
    log="$(mktemp)"
    "$@" >"$log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        printf 'setup: FAILED (exit %s): %s\n' "$rc" "$*" >&2
        cat "$log" >&2
    fi
    rm -f "$log"
    return "$rc"
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -E "$@"
    else
        echo "setup: need root for: $* (run as root or install sudo)" >&2
        return 1
    fi
}

is_installed() {
    # dpkg -s also succeeds for removed packages that left config files behind.
    dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed$'
}

install_apt_packages() {
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        is_installed "$p" || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    say "installing Debian packages: ${missing[*]}"
    quiet as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    quiet as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

# Reinstall the project only when its metadata changed (or the venv is new/broken).
install_project_venv() {
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
        say "creating virtualenv $VENV"
        rm -rf "$VENV"
        quiet python3 -m venv "$VENV"
    fi
    local stamp="$VENV/.duplicity-ng-setup" want
    want="$(sha256sum "$REPO/pyproject.toml" | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/duplicity-ng" ] \
        && [ -x "$VENV/bin/pytest" ] && [ -x "$VENV/bin/ruff" ]; then
        return 0
    fi
    say "installing duplicity-ng (editable) with test extras into $VENV"
    quiet "$VENV/bin/python" -m pip install -q -e "$REPO[test]"
    printf '%s\n' "$want" >"$stamp"
}

peer_works() {
    local out
    out="$("$PEER_VENV/bin/duplicity" --version 2>/dev/null)" || return 1
    [[ "$out" == *"duplicity $PEER_VERSION"* ]]
}

# The duplicity 3.x interop peer. --no-deps: a plain install pulls every backend's
# dependencies and takes minutes; the wheel bundles its own librsync.
install_peer() {
    if peer_works; then
        return 0
    fi
    say "installing duplicity $PEER_VERSION peer into $PEER_VENV"
    rm -rf "$PEER_VENV"
    mkdir -p "$(dirname "$PEER_VENV")"
    # Keep the peers out of git without needing an entry in the top-level .gitignore.
    printf '*\n' >"$(dirname "$PEER_VENV")/.gitignore"
    quiet python3 -m venv "$PEER_VENV"
    quiet "$PEER_VENV/bin/pip" install -q --no-deps "duplicity==$PEER_VERSION" fasteners
    if ! peer_works; then
        echo "setup: duplicity $PEER_VERSION installed but '--version' does not work:" >&2
        "$PEER_VENV/bin/duplicity" --version >&2 || true
        return 1
    fi
}

# An editable install has no bytecode, and with PYTHONDONTWRITEBYTECODE set nothing writes
# it: every command would compile the whole package again (a fifth of a second). Compiling
# it here, as pip does for a normal install, is quick when nothing changed.
compile_bytecode() {
    quiet "$VENV/bin/python" -m compileall -q "$REPO/duplicity_ng" "$REPO/backends"
}

main() {
    if ! command -v python3 >/dev/null 2>&1; then
        echo "setup: python3 is required" >&2
        exit 1
    fi
    install_apt_packages
    install_project_venv
    compile_bytecode
    install_peer
}

main "$@"
