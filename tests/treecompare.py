"""Faithful extraction of fixture source tars, and comparison of trees with tars or trees.

A restore is checked the way ../shared/fixtures/duplicity/README.md asks: type, permission
bits, integer mtime (not for symlinks, which duplicity does not restore), size, content
(sha256), link target, and uid/gid only when asked (a non-root run cannot restore owners).
Hard links in a tar are two independent regular files with the same content, because
duplicity restores them that way. The root of the tree (index ``()``) is compared like any
other directory.

Names are bytes everywhere: the fixtures contain a latin-1 (non-UTF-8) name. Differences are
returned as readable strings, with undecodable bytes shown as ``\\xNN``.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class Node:
    """What a comparison looks at for one path."""

    kind: str  # "reg", "dir", "sym", "fifo", "chr", "blk", "sock"
    mode: int  # permission bits (07777)
    uid: int
    gid: int
    mtime: int
    size: int = 0
    sha256: str = ""
    linkname: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _show(rel: bytes) -> str:
    return (rel or b".").decode("utf-8", "backslashreplace")


def _tar_name(member: tarfile.TarInfo) -> bytes:
    """The member's path relative to the tree root, as raw bytes (b"" for the root)."""
    raw = member.name.encode("utf-8", "surrogateescape")
    parts = [p for p in raw.split(b"/") if p and p != b"."]
    return b"/".join(parts)


def _open_tar(tar_path: Path | str) -> tarfile.TarFile:
    # utf-8 + surrogateescape maps every header byte string (incl. PAX hdrcharset=BINARY)
    # back to the exact bytes with .encode("utf-8", "surrogateescape").
    return tarfile.open(os.fspath(tar_path), "r:*", encoding="utf-8", errors="surrogateescape")


def _hash_stream(stream) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


_TAR_KINDS = {
    tarfile.REGTYPE: "reg",
    tarfile.AREGTYPE: "reg",
    tarfile.CONTTYPE: "reg",
    tarfile.LNKTYPE: "reg",
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "sym",
    tarfile.FIFOTYPE: "fifo",
    tarfile.CHRTYPE: "chr",
    tarfile.BLKTYPE: "blk",
}


def tar_nodes(tar_path: Path | str) -> dict[bytes, Node]:
    """Every path of a tar (b"" for the root) with what a restore of it must reproduce."""
    nodes: dict[bytes, Node] = {}
    with _open_tar(tar_path) as tar:
        for member in tar:
            kind = _TAR_KINDS.get(member.type)
            if kind is None:
                raise ValueError(f"{tar_path}: unsupported member type {member.type!r}")
            size, sha = 0, ""
            if kind == "reg":
                # extractfile follows a hard link to the member it names.
                with tar.extractfile(member) as stream:
                    size, sha = _hash_stream(stream)
            nodes[_tar_name(member)] = Node(
                kind=kind,
                mode=stat.S_IMODE(member.mode),
                uid=member.uid,
                gid=member.gid,
                mtime=int(member.mtime),
                size=size,
                sha256=sha,
                linkname=member.linkname.encode("utf-8", "surrogateescape")
                if kind == "sym"
                else b"",
                rdev=(member.devmajor, member.devminor) if kind in ("chr", "blk") else (0, 0),
            )
    return nodes


def _node_from_stat(path: bytes, st: os.stat_result) -> Node:
    m = st.st_mode
    size, sha, linkname, rdev = 0, "", b"", (0, 0)
    if stat.S_ISREG(m):
        kind = "reg"
        with open(path, "rb") as f:
            size, sha = _hash_stream(f)
    elif stat.S_ISDIR(m):
        kind = "dir"
    elif stat.S_ISLNK(m):
        kind = "sym"
        linkname = os.readlink(path)
    elif stat.S_ISFIFO(m):
        kind = "fifo"
    elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
        kind = "chr" if stat.S_ISCHR(m) else "blk"
        rdev = (os.major(st.st_rdev), os.minor(st.st_rdev))
    else:
        kind = "sock"
    return Node(
        kind, stat.S_IMODE(m), st.st_uid, st.st_gid, int(st.st_mtime), size, sha, linkname, rdev
    )


def _walk(root: bytes, rel: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
    """(relative path, absolute path) for root and everything below it, symlinks not followed."""
    full = os.path.join(root, rel) if rel else root
    yield rel, full
    if os.path.isdir(full) and not os.path.islink(full):
        for name in sorted(os.listdir(full)):
            yield from _walk(root, os.path.join(rel, name) if rel else name)


def dir_nodes(root: Path | str | bytes) -> dict[bytes, Node]:
    """Every path below a directory (b"" for the directory itself)."""
    base = os.fsencode(root)
    return {rel: _node_from_stat(full, os.lstat(full)) for rel, full in _walk(base)}


def compare_nodes(
    expected: dict[bytes, Node], actual: dict[bytes, Node], check_owner: bool
) -> list[str]:
    """Differences between two path -> Node maps, sorted by path."""
    diffs: list[str] = []
    for rel in sorted(expected.keys() | actual.keys()):
        want, got = expected.get(rel), actual.get(rel)
        name = _show(rel)
        if got is None:
            diffs.append(f"missing: {name}")
        elif want is None:
            diffs.append(f"extra: {name}")
        else:
            diffs.extend(_node_diffs(name, want, got, check_owner))
    return diffs


def _node_diffs(name: str, want: Node, got: Node, check_owner: bool) -> list[str]:
    if want.kind != got.kind:
        return [f"type {name}: expected {want.kind}, got {got.kind}"]
    diffs: list[str] = []
    if want.kind == "sym":
        # Linux symlinks are always 0777 and duplicity does not restore their mtime.
        if want.linkname != got.linkname:
            diffs.append(
                f"link target {name}: expected {_show(want.linkname)}, got {_show(got.linkname)}"
            )
    else:
        if want.mode != got.mode:
            diffs.append(f"mode {name}: expected {want.mode:04o}, got {got.mode:04o}")
        if want.mtime != got.mtime:
            diffs.append(f"mtime {name}: expected {want.mtime}, got {got.mtime}")
    if want.kind == "reg":
        if want.size != got.size:
            diffs.append(f"size {name}: expected {want.size}, got {got.size}")
        elif want.sha256 != got.sha256:
            diffs.append(f"content {name}: sha256 {want.sha256[:16]}… != {got.sha256[:16]}…")
    if want.rdev != got.rdev:
        diffs.append(f"device {name}: expected {want.rdev}, got {got.rdev}")
    if check_owner:
        if want.uid != got.uid:
            diffs.append(f"uid {name}: expected {want.uid}, got {got.uid}")
        if want.gid != got.gid:
            diffs.append(f"gid {name}: expected {want.gid}, got {got.gid}")
    return diffs


def compare_tree_with_tar(
    restored_dir: Path | str, tar_path: Path | str, check_owner: bool
) -> list[str]:
    """Differences between a restored directory and the source tar it should reproduce."""
    return compare_nodes(tar_nodes(tar_path), dir_nodes(restored_dir), check_owner)


def compare_trees(a: Path | str, b: Path | str, check_owner: bool) -> list[str]:
    """Differences between two directories; `a` is the expected side ("missing" = not in b)."""
    return compare_nodes(dir_nodes(a), dir_nodes(b), check_owner)


def extract_source_tar(tar_path: Path | str, dest: Path | str) -> None:
    """Extract a source tar exactly: types, modes, mtimes (symlinks too), owners when root.

    `dest` becomes the tree's root and gets the root member's metadata. Directory metadata
    is applied deepest first after all contents exist, so 0555 directories can be filled
    and their mtimes are not disturbed by later writes.
    """
    root = os.fsencode(dest)
    os.makedirs(root, exist_ok=True)
    as_root = os.geteuid() == 0
    dirs: list[tuple[bytes, tarfile.TarInfo]] = []
    with _open_tar(tar_path) as tar:
        for member in tar:
            rel = _tar_name(member)
            path = os.path.join(root, rel) if rel else root
            if member.isdir():
                os.makedirs(path, exist_ok=True)
                dirs.append((path, member))
                continue
            _create_non_dir(tar, member, root, path, as_root)
            if member.islnk():
                continue  # shares the inode (and metadata) of the file it links to
            _apply_meta(path, member, as_root)
    # Children sort after their parents, so reversed order finishes every child first.
    for path, member in sorted(dirs, key=lambda d: d[0], reverse=True):
        _apply_meta(path, member, as_root)


def _create_non_dir(
    tar: tarfile.TarFile, member: tarfile.TarInfo, root: bytes, path: bytes, as_root: bool
) -> None:
    if member.isreg():
        with tar.extractfile(member) as src, open(path, "wb") as dst:
            while chunk := src.read(_CHUNK):
                dst.write(chunk)
    elif member.islnk():
        target = member.linkname.encode("utf-8", "surrogateescape")
        os.link(os.path.join(root, _strip(target)), path)
    elif member.issym():
        os.symlink(member.linkname.encode("utf-8", "surrogateescape"), path)
    elif member.isfifo():
        os.mkfifo(path)
    elif member.ischr() or member.isblk():
        if not as_root:
            raise PermissionError(f"device file {_show(path)} needs root to extract")
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
    else:
        raise ValueError(f"unsupported tar member type {member.type!r}")


def _strip(name: bytes) -> bytes:
    return b"/".join(p for p in name.split(b"/") if p and p != b".")


def _apply_meta(path: bytes, member: tarfile.TarInfo, as_root: bool) -> None:
    # Owner before mode: chown clears set-id bits.
    if as_root:
        os.chown(path, member.uid, member.gid, follow_symlinks=False)
    if not member.issym():
        os.chmod(path, stat.S_IMODE(member.mode))
    os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
