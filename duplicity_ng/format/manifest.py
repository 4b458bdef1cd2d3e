"""duplicity's manifest: which index range each volume holds, its hash, and the changed files.

The text layout and parsing rules are FORMAT.md section 4. Writing reproduces duplicity's
bytes exactly (header, volume blocks in number order, file list); parsing is as tolerant as
duplicity's own (case-insensitive fields, duplicate volume blocks left by a resumed backup).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from duplicity_ng.entry import Index
from duplicity_ng.errors import ManifestError

# Bytes that duplicity's `\s|[\\"']` matches: ASCII whitespace (the same set bytes.split()
# splits on, so a quoted token never breaks a line apart) plus backslash and both quotes.
_SPECIAL = frozenset(b" \t\n\r\x0b\x0c\\\"'")
_SPECIAL_RE = re.compile(rb"[ \t\n\r\x0b\x0c\\\\\"']")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_VOLUME_LINE = re.compile(rb"volume\s+([0-9]+)\s*:", re.IGNORECASE)
_VOLUME_START = re.compile(rb"volume\s", re.IGNORECASE)

# Preference order for the hash used to check a downloaded volume (FORMAT.md 4).
_HASH_PREFERENCE = ("SHA1", "MD5")


def quote(b: bytes) -> bytes:
    """Quote a path as duplicity does: only strings with whitespace, `\\`, `"` or `'` change."""
    if _SPECIAL_RE.search(b) is None:  # the common case, once per file of a backup
        return b
    return b'"' + b"".join(b"\\x%02x" % c if c in _SPECIAL else bytes((c,)) for c in b) + b'"'


def unquote(b: bytes) -> bytes:
    """Invert `quote`. A token not starting with `"` is raw and returned unchanged."""
    if not b.startswith(b'"'):
        return b
    if len(b) < 2 or not b.endswith(b'"'):
        raise ManifestError(f"bad quoted string in manifest: {_show(b)} (no closing quote)")
    out = bytearray()
    body = b[1:-1]
    i = 0
    while i < len(body):
        c = body[i]
        if c != 0x5C:  # backslash
            out.append(c)
            i += 1
            continue
        escape = body[i + 1 : i + 4]
        if len(escape) != 3 or escape[0] != ord("x") or not all(h in _HEX for h in escape[1:]):
            raise ManifestError(f"bad escape in quoted manifest string: {_show(b)}")
        out.append(int(escape[1:], 16))
        i += 4
    return bytes(out)


def format_index(index: Index) -> bytes:
    """An index as written in StartingPath/EndingPath: `.` for the root, else quoted a/b/c."""
    return quote(b"/".join(index)) if index else b"."


def parse_index(token: bytes) -> Index:
    path = unquote(token)
    return () if path == b"." else tuple(path.split(b"/"))


def _show(b: bytes) -> str:
    return repr(b.decode("utf-8", "surrogateescape"))[:120]


@dataclass
class VolumeInfo:
    number: int
    start_index: Index
    start_block: int | None
    end_index: Index
    end_block: int | None
    hashes: dict[str, str] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        lines = [
            b"Volume %d:" % self.number,
            b"    StartingPath   %s %s"
            % (format_index(self.start_index), _format_block(self.start_block)),
            b"    EndingPath     %s %s"
            % (format_index(self.end_index), _format_block(self.end_block)),
        ]
        lines.extend(
            b"    Hash %s %s" % (algo.encode(), value.encode())
            for algo, value in self.hashes.items()
        )
        return b"\n".join(lines) + b"\n"

    def contains(self, index: Index) -> bool:
        """Could this volume hold members for `index` or anything below it?

        duplicity's recursive test: the start is cut to the prefix's length, so a volume that
        starts inside the prefix's subtree still counts.
        """
        return self.start_index[: len(index)] <= index <= self.end_index

    def best_hash(self) -> tuple[str, str] | None:
        """(algo, hex) to check the volume with: SHA1, else MD5, else whatever is there."""
        for algo in _HASH_PREFERENCE:
            if algo in self.hashes:
                return algo, self.hashes[algo]
        return next(iter(self.hashes.items()), None)


def _format_block(block: int | None) -> bytes:
    # A blank block is a single space, which leaves two trailing spaces on the line.
    return b" " if block is None else b"%d" % block


@dataclass
class Manifest:
    hostname: str | None = None
    localdir: bytes | None = None
    volumes: dict[int, VolumeInfo] = field(default_factory=dict)
    filelist: list[tuple[str, bytes]] = field(default_factory=list)

    def header_bytes(self) -> bytes:
        out = b""
        if self.hostname:
            out += b"Hostname %s\n" % self.hostname.encode("utf-8", "surrogateescape")
        if self.localdir:
            out += b"Localdir %s\n" % quote(self.localdir)
        return out

    def filelist_bytes(self) -> bytes:
        lines = [b"Filelist %d\n" % len(self.filelist)]
        lines.extend(
            b"    %-7s  %s\n" % (kind.encode("utf-8", "surrogateescape"), quote(path))
            for kind, path in self.filelist
        )
        return b"".join(lines)

    def to_bytes(self) -> bytes:
        """The manifest as duplicity writes it during a backup (volumes before the file list)."""
        volumes = b"".join(self.volumes[n].to_bytes() for n in sorted(self.volumes))
        return self.header_bytes() + volumes + self.filelist_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        return _Parser().parse(data)

    def sha1(self, volume: int) -> str | None:
        info = self.volumes.get(volume)
        return info.hashes.get("SHA1") if info else None

    def containing_volumes(self, index: Index) -> list[int]:
        """Volume numbers (ascending) that may hold `index` or its descendants."""
        return [n for n in sorted(self.volumes) if self.volumes[n].contains(index)]


class _Parser:
    """Line-based reading of duplicity's regex-based parser.

    Top-level lines (Hostname, Localdir, Volume N:, Filelist N) start in column 0, as
    duplicity's `(^|\\n)field\\s` patterns require. Lines after `Volume N:` are volume fields
    whatever their indent; lines after `Filelist` are file entries until the next volume.
    """

    def __init__(self) -> None:
        self.manifest = Manifest()
        self.volume: _PendingVolume | None = None
        self.in_filelist = False
        self.recognised = False
        self.last_number = 0

    def parse(self, data: bytes) -> Manifest:
        for lineno, line in enumerate(data.split(b"\n"), start=1):
            try:
                self._line(line)
            except ManifestError as e:
                raise ManifestError(f"manifest line {lineno}: {e.message}") from None
        self._close_volume()
        if data.strip() and not self.recognised:
            raise ManifestError(
                "not a duplicity manifest (no Hostname, Localdir, Volume or Filelist line)",
                hint="is it still encrypted or compressed?",
            )
        # A resumed backup may have re-written lower volumes after higher ones ("1, 2, 3, 2"):
        # the volumes after the last one written belong to the abandoned attempt.
        for n in [n for n in self.manifest.volumes if n > self.last_number]:
            del self.manifest.volumes[n]
        return self.manifest

    def _line(self, line: bytes) -> None:
        tokens = line.split()
        if not tokens:
            return
        key = tokens[0].lower()
        at_column0 = not line[:1].isspace()
        if at_column0 and _VOLUME_START.match(line):
            self._start_volume(line)
        elif at_column0 and key in (b"hostname", b"localdir") and len(line) > len(key):
            self._header(key, line[len(key) + 1 :])
        elif at_column0 and key == b"filelist":
            self._close_volume()
            self.in_filelist = True
            self.recognised = True
        elif self.volume is not None:
            self.volume.field(key, tokens[1:])
        elif self.in_filelist and len(tokens) >= 2:
            # duplicity joins the remaining tokens; a quoted or raw path is one token anyway.
            kind = tokens[0].decode("utf-8", "surrogateescape")
            self.manifest.filelist.append((kind, unquote(b"".join(tokens[1:]))))

    def _header(self, key: bytes, value: bytes) -> None:
        self.recognised = True
        # duplicity takes the first occurrence and unquotes both fields.
        if not value:
            return
        if key == b"hostname" and self.manifest.hostname is None:
            self.manifest.hostname = unquote(value).decode("utf-8", "surrogateescape")
        elif key == b"localdir" and self.manifest.localdir is None:
            self.manifest.localdir = unquote(value)

    def _start_volume(self, line: bytes) -> None:
        self._close_volume()
        self.in_filelist = False
        self.recognised = True
        m = _VOLUME_LINE.match(line)
        if not m:
            raise ManifestError(f"bad volume line {_show(line)}, expected 'Volume N:'")
        self.volume = _PendingVolume(int(m.group(1)))

    def _close_volume(self) -> None:
        if self.volume is None:
            return
        info = self.volume.finish()
        # Resumed backups repeat volume numbers: the later block wins.
        self.manifest.volumes[info.number] = info
        self.last_number = info.number
        self.volume = None


@dataclass
class _PendingVolume:
    number: int
    start: tuple[Index, int | None] | None = None
    end: tuple[Index, int | None] | None = None
    hashes: dict[str, str] = field(default_factory=dict)

    def field(self, key: bytes, args: list[bytes]) -> None:
        if key == b"startingpath":
            self.start = self._path(args, "StartingPath")
        elif key == b"endingpath":
            self.end = self._path(args, "EndingPath")
        elif key == b"hash":
            if len(args) < 2:
                raise ManifestError(f"volume {self.number}: Hash needs an algorithm and a value")
            algo, value = (a.decode("ascii", "replace") for a in args[:2])
            self.hashes[algo.upper()] = value
        # Anything else (file list lines trailing the last block, unknown fields) is ignored,
        # as duplicity does.

    def _path(self, args: list[bytes], name: str) -> tuple[Index, int | None]:
        if not args:
            raise ManifestError(f"volume {self.number}: {name} has no path")
        block = None
        if len(args) > 1:
            try:
                block = int(args[1])
            except ValueError:
                raise ManifestError(
                    f"volume {self.number}: {name} block {_show(args[1])} is not a number"
                ) from None
        return parse_index(args[0]), block

    def finish(self) -> VolumeInfo:
        if self.start is None or self.end is None:
            raise ManifestError(f"volume {self.number} has no StartingPath or EndingPath")
        return VolumeInfo(
            self.number, self.start[0], self.start[1], self.end[0], self.end[1], self.hashes
        )
