"""crypto.Gpg and container.Codec against a real gpg, in a throwaway GNUPGHOME.

What is checked: the packets gpg writes (AES256 with integrity protection, hidden recipients,
signatures), that data streams through gpg while it is written, the error for each failure
(wrong passphrase, missing secret key, tampered or foreign data, bad signer, unknown key,
missing gpg) with its exit code and without leftover plaintext, and that passphrases stay out
of argv, repr and messages. End-to-end runs through the CLI are in test_e2e_gpg.py.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpg_util import BOB_PASSPHRASE, GpgHome, make_keyring

from duplicity_ng.cache import ArchiveCache
from duplicity_ng.cli.context import make_codec
from duplicity_ng.cli.options import parse_args
from duplicity_ng.container import Codec
from duplicity_ng.crypto import HELD_BY_GPG, CompressionAdvisor, Gpg, GpgSettings, Passphrases
from duplicity_ng.errors import (
    BadSignerError,
    CommandLineError,
    GpgError,
    UserError,
    VolumeHashError,
)
from duplicity_ng.log import Log

SECRET = "correct horse battery staple"
NAME = "duplicity-full.20231114T221320Z.vol1.difftar.gpg"


@pytest.fixture(scope="module")
def keyring() -> Iterator[GpgHome]:
    home = make_keyring()
    yield home
    home.remove()


@pytest.fixture
def home(keyring: GpgHome, monkeypatch: pytest.MonkeyPatch) -> GpgHome:
    monkeypatch.setenv("GNUPGHOME", str(keyring.path))
    return keyring


def codec(
    passphrase: str | None = SECRET,
    sign_passphrase: str | None = None,
    prompt=None,
    **settings,
) -> Codec:
    s = GpgSettings(**settings)
    gpg = Gpg(s, Passphrases(passphrase, sign_passphrase, prompt, s), Log())
    return Codec(encrypt=True, gpg=gpg)


def data(size: int, seed: int = 1) -> bytes:
    return hashlib.shake_128(b"%d" % seed).digest(size)


def encrypt(c: Codec, path: Path, payload: bytes, piece: int = 65536) -> str:
    out = c.writer(path)
    for start in range(0, len(payload), piece):
        out.write(payload[start : start + piece])
    return out.close()


def decrypt(c: Codec, path: Path, name: str = NAME) -> bytes:
    with c.open(path, name) as f:
        return f.read()


def only_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# -- what gpg writes ----------------------------------------------------------------------


def test_symmetric_round_trip_and_packets(home: GpgHome, tmp_path: Path) -> None:
    payload = data(3 << 20) + b"text " * 100_000
    path = tmp_path / "vol.gpg"
    sha1 = encrypt(codec(), path, payload)
    assert sha1 == hashlib.sha1(path.read_bytes()).hexdigest()
    assert decrypt(codec(), path) == payload
    packets = home.list_packets(path, SECRET)
    assert "symkey enc packet: version 4, cipher 9" in packets  # SKESK, AES256
    assert "s2k 3" in packets  # iterated and salted
    assert "encrypted data packet" in packets and "mdc_method: 2" in packets  # SEIPD + MDC
    assert "literal data packet" in packets and "mode b (62), created" in packets
    assert 'name=""' in packets  # data came from a pipe: no file name inside
    # Only the decrypted stream is left to the caller: no plaintext file next to it.
    assert only_files(tmp_path) == ["vol.gpg"]


def test_public_key_with_hidden_recipient(home: GpgHome, tmp_path: Path) -> None:
    alice, bob = home.fingerprints["alice"], home.fingerprints["bob"]
    path = tmp_path / "vol.gpg"
    c = codec(passphrase=None, recipients=(alice,), hidden_recipients=(bob,))
    payload = data(200_000)
    encrypt(c, path, payload)
    packets = home.list_packets(path)
    assert packets.count("pubkey enc packet") == 2
    assert "keyid 0000000000000000" in packets  # bob is hidden
    alice_sub = home.gpg("--with-colons", "--list-keys", alice).stdout.decode()
    assert any(line.startswith("sub:") for line in alice_sub.splitlines())
    # Alice's key has no passphrase: decrypting needs none.
    assert decrypt(codec(passphrase=None), path) == payload
    # Bob decrypts through the hidden recipient, with his passphrase.
    bob_only = GpgHome.create()
    try:
        secret = home.gpg(
            "--pinentry-mode", "loopback", "--passphrase", BOB_PASSPHRASE,
            "--export-secret-keys", bob,
        ).stdout  # fmt: skip
        bob_only.gpg("--import", input=secret)
        os.environ["GNUPGHOME"] = str(bob_only.path)
        assert decrypt(codec(passphrase=BOB_PASSPHRASE), path) == payload
        with pytest.raises(GpgError) as err:
            decrypt(codec(passphrase="not bob's"), path)
        assert err.value.exit_code == 31 and "wrong passphrase" in err.value.message
    finally:
        os.environ["GNUPGHOME"] = str(home.path)
        bob_only.remove()


def test_gpg_encrypts_while_data_is_written(home: GpgHome, tmp_path: Path) -> None:
    """Streaming: the stored file grows before the writer is closed, and the gpg child
    never sees the passphrase in its argv."""
    path = tmp_path / "vol.gpg"
    out = codec().writer(path)
    cmdline = Path(f"/proc/{out.pid}/cmdline").read_bytes()  # type: ignore[attr-defined]
    assert SECRET.encode() not in cmdline
    assert b"--passphrase-fd" in cmdline and b"--symmetric" in cmdline
    for n in range(64):
        out.write(data(256 * 1024, seed=n))
    grown = path.stat().st_size
    sha1 = out.close()
    assert 0 < grown < path.stat().st_size
    assert out.stored_size == path.stat().st_size
    assert sha1 == hashlib.sha1(path.read_bytes()).hexdigest()


def test_stored_size_counts_what_gpg_still_holds(home: GpgHome, tmp_path: Path) -> None:
    """Volumes are cut by stored_size: on data that does not compress it must never be
    less than what the file will be once gpg has flushed (or volumes outgrow --volsize)."""
    out = codec(compress=False).writer(tmp_path / "vol.gpg")
    for n in range(32):
        out.write(data(64 * 1024, seed=n))
        estimate = out.stored_size
    final_estimate = estimate
    out.close()
    assert final_estimate >= out.stored_size - 1024  # only the final packet trailer is new


def test_settled_size_is_safe_and_tight(home: GpgHome, tmp_path: Path) -> None:
    """Near the end of a volume the writer settles the estimate: still never below the final
    size, and at most gpg's own buffers above it (so volumes come out near --volsize)."""
    out = codec(compress=False).writer(tmp_path / "vol.gpg")
    for n in range(16):
        out.write(data(64 * 1024, seed=n))
    settled = out.settled_size()  # type: ignore[attr-defined]
    out.close()
    assert out.stored_size - 1024 <= settled <= out.stored_size + HELD_BY_GPG


def test_abort_stops_gpg_and_removes_the_file(home: GpgHome, tmp_path: Path) -> None:
    path = tmp_path / "vol.gpg"
    out = codec().writer(path)
    out.write(data(1 << 20))
    pid = out.pid  # type: ignore[attr-defined]
    out.abort()
    assert not path.exists()
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_no_compression_means_none_inside_gpg(home: GpgHome, tmp_path: Path) -> None:
    text = b"very compressible line\n" * 50_000
    packed, plain = tmp_path / "z.gpg", tmp_path / "n.gpg"
    encrypt(codec(), packed, text)
    encrypt(codec(compress=False), plain, text)
    assert packed.stat().st_size < len(text) / 10
    assert plain.stat().st_size > len(text)
    assert "compressed packet" not in home.list_packets(plain, SECRET)
    # A compression option in --gpg-options replaces ours.
    user = tmp_path / "u.gpg"
    encrypt(codec(options=("--compress-algo", "none")), user, text)
    assert user.stat().st_size > len(text)


def test_we_compress_and_gpg_only_encrypts(home: GpgHome, tmp_path: Path) -> None:
    """Unsigned: the compressed packet is ours (stored blocks for random data), gpg gets
    --no-literal and does not compress again; the result decrypts like any gpg message."""
    c = codec()
    rand, text = data(3 << 20), b"text compresses well\n" * 300_000
    for name, payload in (("r.gpg", rand), ("t.gpg", text)):
        out = c.writer(tmp_path / name)
        cmdline = Path(f"/proc/{out.pid}/cmdline").read_bytes()  # type: ignore[attr-defined]
        assert b"--no-literal" in cmdline
        out.write(payload)
        out.close()
        assert decrypt(c, tmp_path / name) == payload
        assert "compressed packet: algo=1" in home.list_packets(tmp_path / name, SECRET)
    assert (tmp_path / "r.gpg").stat().st_size < len(rand) * 1.002
    assert (tmp_path / "t.gpg").stat().st_size < len(text) / 50


def test_prepared_writer_is_the_one_used_and_an_unused_one_goes(
    home: GpgHome, tmp_path: Path
) -> None:
    """gpg is started ahead for the next volume (its key derivation overlaps the current one);
    the writer asked for later is that one, and one never asked for is stopped on close."""
    c = codec()
    c.prepare(tmp_path / "next.gpg")
    prepared_pid = c.gpg._prepared[tmp_path / "next.gpg"].pid  # type: ignore[union-attr]
    out = c.writer(tmp_path / "next.gpg")
    assert out.pid == prepared_pid  # type: ignore[attr-defined]
    out.write(b"data")
    out.close()
    assert decrypt(c, tmp_path / "next.gpg") == b"data"
    c.prepare(tmp_path / "never.gpg")
    unused = c.gpg._prepared[tmp_path / "never.gpg"]  # type: ignore[union-attr]
    c.close()
    assert unused._proc.poll() is not None  # stopped
    assert not (tmp_path / "never.gpg").exists()


def test_incompressible_data_turns_compression_off_for_the_next_signed_file(
    home: GpgHome, tmp_path: Path
) -> None:
    """Signed files are compressed by gpg itself (it signs only what it packs), so there the
    advisor decides, file by file."""
    c = codec(sign_key=home.fingerprints["alice"])
    rand = data(6 << 20)
    encrypt(c, tmp_path / "1.gpg", rand)  # nothing known yet: compressed
    encrypt(c, tmp_path / "2.gpg", rand)  # the first did not compress: stored as is
    assert "compressed packet" in home.list_packets(tmp_path / "1.gpg", SECRET)
    assert "compressed packet" not in home.list_packets(tmp_path / "2.gpg", SECRET)
    encrypt(c, tmp_path / "3.gpg", b"text compresses well\n" * 300_000)
    encrypt(c, tmp_path / "4.gpg", b"text compresses well\n" * 300_000)
    assert "compressed packet" in home.list_packets(tmp_path / "4.gpg", SECRET)
    assert decrypt(c, tmp_path / "2.gpg") == rand


def test_compression_advisor_threshold() -> None:
    advisor = CompressionAdvisor()
    assert advisor.next_file_compresses()  # nothing known
    for n in range(5):
        advisor.sample(data(20_000, seed=n))
    assert not advisor.next_file_compresses()
    for _ in range(5):
        advisor.sample(b"abc" * 10_000)
    assert advisor.next_file_compresses()
    advisor.sample(data(20_000))  # too few samples to change the decision
    assert advisor.next_file_compresses()


# -- failures -------------------------------------------------------------------------------


def assert_no_plaintext(directory: Path, *keep: str) -> None:
    assert only_files(directory) == sorted(keep)


def test_wrong_passphrase(home: GpgHome, tmp_path: Path) -> None:
    path = tmp_path / "vol.gpg"
    encrypt(codec(), path, data(100_000))
    assert decrypt(codec(), path)  # right one first: the agent must not cache it
    with pytest.raises(GpgError) as err:
        decrypt(codec(passphrase="wrong"), path)
    assert err.value.exit_code == 31
    assert err.value.line() == f"Cannot decrypt {NAME}: wrong passphrase (check PASSPHRASE)"
    assert "wrong" not in err.value.line().replace("wrong passphrase", "")
    assert_no_plaintext(tmp_path, "vol.gpg")


def test_missing_passphrase_and_wrong_key_passphrase(home: GpgHome, tmp_path: Path) -> None:
    sym = tmp_path / "sym.gpg"
    encrypt(codec(), sym, b"x" * 1000)
    with pytest.raises(GpgError, match="needs a passphrase, and none was given"):
        decrypt(codec(passphrase=None), sym)
    to_bob = tmp_path / "bob.gpg"
    encrypt(codec(passphrase=None, recipients=("bob@example.org",)), to_bob, b"x" * 1000)
    with pytest.raises(GpgError) as err:
        decrypt(codec(passphrase="nope"), to_bob)
    assert err.value.exit_code == 31
    assert "wrong passphrase for secret key" in err.value.message
    assert decrypt(codec(passphrase=BOB_PASSPHRASE), to_bob) == b"x" * 1000
    assert_no_plaintext(tmp_path, "bob.gpg", "sym.gpg")


def test_missing_secret_key_names_the_key(home: GpgHome, tmp_path: Path) -> None:
    path = tmp_path / "vol.gpg"
    encrypt(codec(passphrase=None, recipients=("alice@example.org",)), path, data(1000))
    public = home.public_only()
    try:
        os.environ["GNUPGHOME"] = str(public.path)
        with pytest.raises(GpgError) as err:
            decrypt(codec(passphrase=""), path)
    finally:
        os.environ["GNUPGHOME"] = str(home.path)
        public.remove()
    assert err.value.exit_code == 31
    message = err.value.line()
    assert message.startswith(f"Cannot decrypt {NAME}: no secret key")
    packets = home.list_packets(path)
    enc_key = packets.split("keyid ", 1)[1].split()[0]
    assert enc_key in message
    assert_no_plaintext(tmp_path, "vol.gpg")


@pytest.mark.parametrize("where", ["middle", "end", "truncated"])
def test_tampered_ciphertext_is_refused(home: GpgHome, tmp_path: Path, where: str) -> None:
    path = tmp_path / "vol.gpg"
    encrypt(codec(compress=False), path, data(300_000))
    raw = bytearray(path.read_bytes())
    if where == "truncated":
        del raw[len(raw) // 2 :]
    else:
        raw[len(raw) // 2 if where == "middle" else -30] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(UserError) as err:
        decrypt(codec(), path)
    assert err.value.exit_code in (21, 31)
    assert NAME in err.value.message
    # gpg wrote (partial) plaintext before it noticed: it must be gone.
    assert_no_plaintext(tmp_path, "vol.gpg")


def test_foreign_data_is_refused(home: GpgHome, tmp_path: Path) -> None:
    path = tmp_path / "vol.gpg"
    path.write_bytes(b"this is not an OpenPGP message\n" * 100)
    with pytest.raises(VolumeHashError, match="not an OpenPGP message"):
        decrypt(codec(), path)
    assert_no_plaintext(tmp_path, "vol.gpg")


def test_unknown_encryption_key_is_found_before_writing(home: GpgHome, tmp_path: Path) -> None:
    c = codec(passphrase=None, recipients=("alice@example.org", "nobody@example.org"))
    with pytest.raises(GpgError) as err:
        c.check_ready()
    assert err.value.exit_code == 31
    assert err.value.message.startswith("Encryption key nobody@example.org was not found")
    c = codec(passphrase=None, recipients=("alice@example.org",), sign_key="nobody@example.org")
    with pytest.raises(GpgError, match="Signing key nobody@example.org has no secret key"):
        c.check_ready()
    assert only_files(tmp_path) == []


def test_gpg_not_installed(tmp_path: Path) -> None:
    c = codec(binary=str(tmp_path / "no-such-gpg"))
    with pytest.raises(GpgError) as err:
        c.check_ready()
    assert err.value.exit_code == 31
    assert "GnuPG is not installed or does not run" in err.value.message


def test_symmetric_needs_a_non_empty_passphrase(home: GpgHome, tmp_path: Path) -> None:
    with pytest.raises(GpgError, match="needs a passphrase and none was given"):
        codec(passphrase=None).check_ready()
    with pytest.raises(GpgError, match="empty passphrase cannot be used"):
        codec(passphrase="").check_ready()
    with pytest.raises(GpgError, match="line break"):
        codec(passphrase=None, prompt=lambda _: "two\nlines").check_ready()
    asked: list[str] = []

    def prompt(text: str) -> str:
        asked.append(text)
        return "typed passphrase"

    c = codec(passphrase=None, prompt=prompt)
    c.check_ready()
    encrypt(c, tmp_path / "v.gpg", b"data")
    assert len(asked) == 2  # asked and confirmed once, not once per file
    assert decrypt(codec(passphrase="typed passphrase"), tmp_path / "v.gpg") == b"data"


# -- signatures -------------------------------------------------------------------------------


def test_signed_files_and_the_sign_key_check(home: GpgHome, tmp_path: Path) -> None:
    alice, mallory = home.fingerprints["alice"], home.fingerprints["mallory"]
    signed = tmp_path / "signed.gpg"
    encrypt(codec(sign_key=alice), signed, data(50_000))
    unsigned = tmp_path / "unsigned.gpg"
    encrypt(codec(), unsigned, data(50_000))
    # Any spelling of the right key is accepted: fingerprint, long and short key id, e-mail.
    for spelling in (alice, alice[-16:], "0x" + alice[-8:].lower(), "alice@example.org"):
        assert decrypt(codec(sign_key=spelling), signed) == data(50_000)
    with pytest.raises(BadSignerError) as err:
        decrypt(codec(sign_key=mallory), signed)
    assert err.value.exit_code == 22
    assert err.value.message == f"{NAME} was signed by key {alice[-16:]}, not by {mallory}"
    with pytest.raises(BadSignerError, match="is not signed, but --sign-key"):
        decrypt(codec(sign_key=alice), unsigned)
    # Without --sign-key, signatures are not required.
    assert decrypt(codec(), signed) == data(50_000)
    assert_no_plaintext(tmp_path, "signed.gpg", "unsigned.gpg")


def test_signer_unknown_to_the_keyring(home: GpgHome, tmp_path: Path) -> None:
    path = tmp_path / "signed.gpg"
    encrypt(codec(sign_key="mallory@example.org"), path, data(1000))
    empty = GpgHome.create()
    try:
        os.environ["GNUPGHOME"] = str(empty.path)
        assert decrypt(codec(), path) == data(1000)  # not asked to check: fine
        with pytest.raises(BadSignerError, match="which is not in the keyring"):
            decrypt(codec(sign_key=home.fingerprints["alice"]), path)
    finally:
        os.environ["GNUPGHOME"] = str(home.path)
        empty.remove()


def test_sign_key_refuses_unencrypted_files(home: GpgHome, tmp_path: Path) -> None:
    path = tmp_path / "vol.difftar.gz"
    path.write_bytes(b"")
    with pytest.raises(BadSignerError, match="not encrypted, so not signed"):
        codec(sign_key="alice@example.org").open(path, "duplicity-full.T.vol1.difftar.gz")


def test_signing_key_passphrase(home: GpgHome, tmp_path: Path) -> None:
    bob = home.fingerprints["bob"]
    path = tmp_path / "v.gpg"
    c = codec(passphrase=None, sign_passphrase="wrong", recipients=(bob,), sign_key=bob)
    with pytest.raises(GpgError) as err:
        encrypt(c, path, b"data")
    assert err.value.exit_code == 31
    assert f"Cannot sign with key {bob}: wrong passphrase" in err.value.message
    assert not path.exists()
    # SIGN_PASSPHRASE unset: PASSPHRASE is used, as duplicity does.
    encrypt(codec(passphrase=BOB_PASSPHRASE, recipients=(bob,), sign_key=bob), path, b"ok")
    assert decrypt(codec(passphrase=BOB_PASSPHRASE, sign_key=bob), path) == b"ok"


def test_symmetric_signing_needs_equal_passphrases(home: GpgHome) -> None:
    c = codec(sign_passphrase="other", sign_key="alice@example.org")
    with pytest.raises(GpgError, match="must equal the encryption passphrase"):
        c.check_ready()


# -- options, cache ---------------------------------------------------------------------------


def test_options_keep_passphrases_out_of_repr() -> None:
    env = {"PASSPHRASE": SECRET, "SIGN_PASSPHRASE": "sign " + SECRET}
    opts = parse_args(
        [
            "full", "--encrypt-key", "A1", "--encrypt-key", "B2", "--hidden-encrypt-key", "C3",
            "--sign-key", "D4", "--gpg-binary", "/opt/gpg", "--gpg-options",
            "--compress-algo 'zlib' -z 6", "--use-agent", "src", "file:///x",
        ],
        env,
    )  # fmt: skip
    assert opts.encrypt_keys == ["A1", "B2"] and opts.hidden_encrypt_keys == ["C3"]
    assert opts.sign_key == "D4" and opts.gpg_binary == "/opt/gpg" and opts.use_agent
    assert opts.gpg_options == ["--compress-algo", "zlib", "-z", "6"]
    assert opts.passphrase == SECRET and opts.sign_passphrase == "sign " + SECRET
    assert SECRET not in repr(opts)
    c = make_codec(opts, Log())
    assert c.gpg is not None and SECRET not in repr(c.gpg.passphrases)
    both = parse_args(["full", "--encrypt-sign-key", "K", "s", "file:///x"], {})
    assert both.encrypt_keys == ["K"] and both.sign_key == "K" and both.passphrase is None
    with pytest.raises(CommandLineError):
        parse_args(["full", "--no-encryption", "--sign-key", "K", "s", "file:///x"], {})


def test_archive_dir_is_private(tmp_path: Path) -> None:
    fresh = tmp_path / "new" / "cache" / "name"
    ArchiveCache(fresh)
    for path in (fresh, fresh.parent, fresh.parent.parent):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    existing = tmp_path / "old"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    ArchiveCache(existing)
    assert stat.S_IMODE(existing.stat().st_mode) == 0o700
