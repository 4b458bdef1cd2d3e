#!/usr/bin/env python3
"""Seeded benchmark datasets for duplicity-ng, each with its "day of changes".

Two datasets, both a base version and a mutated version (the base after a day of changes):

* ``tree``: 20,000 files, 300 MiB at scale 1.0, in a few thousand directories up to 8 deep;
  lorem-like text, Python-like and C-like source (compressible) and random (incompressible)
  files with log-normal sizes. The day of changes modifies 1 % of the files (half appended
  to, half overwritten in part), adds 0.5 % and deletes 0.5 %.
* ``dump``: one pg_dump-like SQL file of 1 GiB at scale 1.0 (``INSERT`` rows with ids, names,
  numbers and dates in three tables). The day of changes updates 1 % of the rows, inserts
  0.2 % in the middle of the tables and appends 0.3 % at their ends, either scattered or, with
  ``clustered``, in runs (as real databases change).

Everything is derived from the seed (random.Random seeded with strings, SHAKE-128 for the
random bytes), so a seed and scale give byte-identical files, modes and mtimes on every run.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import os
import random
import shutil
import sys
import time
from array import array
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

GENERATOR_VERSION = 1
MIB = 1 << 20
TREE_FILES = 20_000
TREE_BYTES = 300 * MIB
DUMP_BYTES = 1024 * MIB
BASE_TIME = 1_700_000_000  # 2023-11-14: every mtime is fixed so that copies compare equal
DAY = 86_400
MAX_DEPTH = 8
POOL_SIZE = 1 << 16  # pre-formatted values per column group: rows pick them, not format them


def _words(text: str) -> list[str]:
    return text.split()


WORDS = _words(
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt "
    "ut labore et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco "
    "laboris nisi aliquip ex ea commodo consequat duis aute irure in reprehenderit voluptate "
    "velit esse cillum eu fugiat nulla pariatur excepteur sint occaecat cupidatat non "
    "proident sunt culpa qui officia deserunt mollit anim id est laborum backup archive "
    "volume signature delta manifest chain restore verify index block stream buffer cache "
    "record table column value report invoice customer order payment account ledger budget "
    "project release draft notes meeting photo music video family travel school garden "
    "kitchen recipe letter contract summary"
)
VERBS = _words("get set load save build parse read write check update make find open close send")
NOUNS = _words("item node path block entry chunk record buffer frame packet config state user key")

# kind -> (share of the file count, extensions, median size in bytes, log-normal sigma)
KINDS: dict[str, tuple[float, tuple[str, ...], int, float]] = {
    "lorem": (0.28, (".txt", ".md", ".rst", ".log"), 6_000, 1.6),
    "py": (0.25, (".py",), 4_000, 1.3),
    "c": (0.20, (".c", ".h"), 5_000, 1.3),
    "bin": (0.27, (".jpg", ".png", ".gz", ".zip", ".pdf", ".mp3", ".bin"), 12_000, 1.8),
}
EXT_KIND = {ext: kind for kind, (_, exts, _, _) in KINDS.items() for ext in exts}


# --------------------------------------------------------------------------------------------
# Compressible content: corpora built once per seed, files are slices of them


@dataclass(frozen=True)
class Corpora:
    texts: dict[str, bytes]

    def slice(self, kind: str, size: int, rng: random.Random) -> bytes:
        """`size` bytes of `kind` text starting at a line start somewhere in the corpus."""
        corpus = self.texts[kind]
        parts: list[bytes] = []
        left = size
        while left > 0:
            off = rng.randrange(len(corpus))
            nl = corpus.find(b"\n", off)
            off = 0 if nl < 0 else nl + 1
            piece = corpus[off : off + left]
            parts.append(piece)
            left -= len(piece)
        return b"".join(parts)


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(6, 18))).capitalize() + "."


def _lorem_corpus(rng: random.Random, size: int) -> bytes:
    out: list[str] = []
    n = 0
    while n < size:
        if rng.random() < 0.08:
            para = "#" * rng.randint(1, 3) + " " + " ".join(rng.choices(WORDS, k=3)).title()
        else:
            para = " ".join(_sentence(rng) for _ in range(rng.randint(2, 7)))
        out.append(para + "\n\n")
        n += len(para) + 2
    return "".join(out).encode()


def _ident(rng: random.Random) -> str:
    return f"{rng.choice(VERBS)}_{rng.choice(NOUNS)}"


def _py_function(rng: random.Random) -> str:
    name, arg, var = _ident(rng), rng.choice(NOUNS), rng.choice(WORDS)
    lines = [f"def {name}({arg}, {rng.choice(NOUNS)}=None):", f'    """{_sentence(rng)}"""']
    for _ in range(rng.randint(2, 9)):
        n = rng.randint(0, 4096)
        lines.append(
            rng.choice(
                (
                    f"    {var} = {arg}.{rng.choice(VERBS)}({n})",
                    f"    if {var} is None:\n        return {n}",
                    f"    for i in range({n}):\n        {var} += i * {rng.randint(1, 99)}",
                    f"    # {_sentence(rng)}",
                    f"    {var} = {_ident(rng)}({arg}, {var})",
                )
            )
        )
    lines.append(f"    return {var}\n\n")
    return "\n".join(lines) + "\n"


def _c_function(rng: random.Random) -> str:
    name, arg, var = _ident(rng), rng.choice(NOUNS), rng.choice(WORDS)
    lines = [
        f"/* {_sentence(rng)} */",
        f"static int {name}(struct {rng.choice(NOUNS)} *{arg}, size_t len)",
        "{",
        f"    int {var} = {rng.randint(0, 255)};",
    ]
    for _ in range(rng.randint(2, 9)):
        n = rng.randint(0, 4096)
        lines.append(
            rng.choice(
                (
                    f"    if ({arg}->{rng.choice(NOUNS)} == NULL)\n        return -{n};",
                    f"    for (size_t i = 0; i < len; i++)\n        {var} += {arg}->data[i];",
                    f"    {var} = {_ident(rng)}({arg}, {var} + {n});",
                    f"    memcpy({arg}->buf, &{var}, sizeof({var}));",
                )
            )
        )
    lines += [f"    return {var};", "}", ""]
    return "\n".join(lines) + "\n"


def _code_corpus(rng: random.Random, size: int, function: Callable[[random.Random], str]) -> bytes:
    out: list[str] = []
    n = 0
    while n < size:
        text = function(rng)
        out.append(text)
        n += len(text)
    return "".join(out).encode()


def build_corpora(seed: str, size: int) -> Corpora:
    rng = random.Random(f"{seed}:corpora")
    return Corpora(
        {
            "lorem": _lorem_corpus(rng, size),
            "py": _code_corpus(rng, size, _py_function),
            "c": _code_corpus(rng, size, _c_function),
        }
    )


def random_bytes(key: str, size: int) -> bytes:
    """Incompressible bytes, a pure function of `key` (SHAKE-128 runs at about 370 MB/s)."""
    return hashlib.shake_128(key.encode()).digest(size)


def file_content(corpora: Corpora, kind: str, size: int, rng: random.Random, key: str) -> bytes:
    if kind == "bin":
        return random_bytes(key, size)
    return corpora.slice(kind, size, rng)


# --------------------------------------------------------------------------------------------
# Tree dataset


@dataclass(frozen=True)
class FileSpec:
    rel: str
    kind: str
    size: int
    mode: int
    mtime: int


@dataclass(frozen=True)
class DirSpec:
    rel: str
    mode: int
    mtime: int


@dataclass
class TreePlan:
    dirs: list[DirSpec]
    files: list[FileSpec]


def _unique_name(rng: random.Random, taken: set[str], ext: str) -> str:
    while True:
        name = rng.choice(WORDS)
        if rng.random() < 0.5:
            name += "_" + rng.choice(NOUNS)
        if rng.random() < 0.3:
            name += str(rng.randint(1, 999))
        name += ext
        if name not in taken:
            taken.add(name)
            return name


def _draw_kind(rng: random.Random) -> str:
    return rng.choices(list(KINDS), weights=[k[0] for k in KINDS.values()])[0]


def _draw_size(rng: random.Random, kind: str) -> float:
    _, _, median, sigma = KINDS[kind]
    return 0.0 if rng.random() < 0.01 else rng.lognormvariate(0.0, sigma) * median


def _file_mode(rng: random.Random, kind: str) -> int:
    if kind == "py" and rng.random() < 0.15:
        return 0o755
    return 0o600 if rng.random() < 0.05 else 0o644


def plan_tree(seed: str, scale: float) -> TreePlan:
    rng = random.Random(f"{seed}:tree")
    n_files = max(1, round(TREE_FILES * scale))
    total = max(n_files, round(TREE_BYTES * scale))
    n_dirs = max(1, n_files // 12)

    # Parents drawn from existing directories give a random recursive tree; a bias toward
    # the top keeps it wide there, as real trees are, and the cap bounds its depth.
    dirs: list[str] = [""]
    depth = {"": 0}
    names: dict[str, set[str]] = {"": set()}
    for _ in range(n_dirs - 1):
        shallow = [d for d in dirs[: min(len(dirs), 20)] if depth[d] < 2]
        candidates = shallow if shallow and rng.random() < 0.3 else dirs
        parent = rng.choice(candidates)
        while depth[parent] >= MAX_DEPTH:
            parent = rng.choice(dirs)
        rel = os.path.join(parent, _unique_name(rng, names[parent], ""))
        dirs.append(rel)
        depth[rel] = depth[parent] + 1
        names[rel] = set()

    weights = [rng.lognormvariate(0.0, 1.2) for _ in dirs]
    homes = rng.choices(dirs, weights=weights, k=n_files)
    kinds = [_draw_kind(rng) for _ in range(n_files)]
    raw = [_draw_size(rng, kind) for kind in kinds]
    factor = total / (sum(raw) or 1.0)
    sizes = [int(s * factor) for s in raw]
    sizes[max(range(n_files), key=sizes.__getitem__)] += total - sum(sizes)

    files = []
    for home, kind, size in zip(homes, kinds, sizes, strict=True):
        ext = rng.choice(KINDS[kind][1])
        rel = os.path.join(home, _unique_name(rng, names[home], ext))
        mtime = BASE_TIME - rng.randrange(3 * 365 * DAY)
        files.append(FileSpec(rel, kind, size, _file_mode(rng, kind), mtime))
    dir_specs = [
        DirSpec(d, 0o700 if rng.random() < 0.03 else 0o755, BASE_TIME - rng.randrange(365 * DAY))
        for d in dirs
    ]
    return TreePlan(dir_specs, files)


def _set_dir_attrs(root: Path, dirs: list[DirSpec]) -> None:
    # Deepest first: setting a child's attributes does not touch its parent's mtime, but
    # creating entries does, so this runs after every file is in place.
    for d in sorted(dirs, key=lambda d: d.rel.count(os.sep) + (d.rel != ""), reverse=True):
        path = root / d.rel
        os.chmod(path, d.mode)
        os.utime(path, (d.mtime, d.mtime))


def _write_file(path: Path, data: bytes, mode: int, mtime: int) -> None:
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    os.utime(path, (mtime, mtime))


def corpus_size(scale: float) -> int:
    return min(4 * MIB, max(64 * 1024, int(TREE_BYTES * scale) // 8))


def generate_tree(dest: Path, seed: str, scale: float) -> dict[str, int]:
    plan = plan_tree(seed, scale)
    corpora = build_corpora(seed, corpus_size(scale))
    rng = random.Random(f"{seed}:tree-content")
    for d in plan.dirs:
        (dest / d.rel).mkdir(parents=True, exist_ok=True)
    with _ParallelWriter() as writer:
        for f in plan.files:
            data = file_content(corpora, f.kind, f.size, rng, f"{seed}:tree:{f.rel}")
            writer.write(dest / f.rel, data, f.mode, f.mtime)
    _set_dir_attrs(dest, plan.dirs)
    return {
        "files": len(plan.files),
        "dirs": len(plan.dirs),
        "bytes": sum(f.size for f in plan.files),
    }


class _ParallelWriter:
    """Writes files from a few threads: creating a file costs about 0.5 ms of latency here,
    which threads overlap; content is still made in order in the caller, so it stays seeded.
    """

    def __init__(self, threads: int = 8, batch_bytes: int = 32 * MIB) -> None:
        self.pool = ThreadPoolExecutor(threads)
        self.batch: list[tuple[Path, bytes, int, int]] = []
        self.batch_bytes = batch_bytes
        self.pending = 0

    def write(self, path: Path, data: bytes, mode: int, mtime: int) -> None:
        self.batch.append((path, data, mode, mtime))
        self.pending += len(data) + 4096
        if self.pending >= self.batch_bytes or len(self.batch) >= 2048:
            self.flush()

    def flush(self) -> None:
        list(self.pool.map(lambda job: _write_file(*job), self.batch))
        self.batch, self.pending = [], 0

    def __enter__(self) -> _ParallelWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self.flush()
        finally:
            self.pool.shutdown()


def copy_tree(src: Path, dst: Path) -> None:
    """shutil.copytree with files copied from threads (see _ParallelWriter)."""
    dirs, files = _walk(src)
    for d in dirs:
        (dst / d).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda rel: shutil.copy2(src / rel, dst / rel), files))
    for d in sorted(dirs, key=lambda d: d.count(os.sep) + (d != ""), reverse=True):
        shutil.copystat(src / d, dst / d)


def _walk(root: Path) -> tuple[list[str], list[str]]:
    """Sorted relative directory and file paths under root (root itself is "")."""
    dirs, files = [""], []
    for parent, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(parent, root)
        rel = "" if rel == "." else rel
        dirs += [os.path.join(rel, d) for d in dirnames]
        files += [os.path.join(rel, f) for f in filenames]
    return sorted(dirs), sorted(files)


def mutate_tree(root: Path, seed: str) -> dict[str, int]:
    """Apply the day of changes in place: 1 % modified, 0.5 % added, 0.5 % deleted."""
    rng = random.Random(f"{seed}:tree-mutate")
    corpora = build_corpora(f"{seed}:mutate", 256 * 1024)
    dirs, files = _walk(root)
    n = len(files)
    n_mod, n_add, n_del = (max(1, round(n * share)) for share in (0.01, 0.005, 0.005))
    chosen = rng.sample(files, min(n, n_mod + n_del))
    modified, deleted = chosen[:n_mod], chosen[n_mod:]
    new_time = BASE_TIME + DAY
    touched_dirs: set[str] = set()
    appended = 0

    for rel in modified:
        path = root / rel
        kind = EXT_KIND.get(os.path.splitext(rel)[1], "bin")
        size = path.stat().st_size
        key = f"{seed}:mutate:{rel}"
        if size == 0 or rng.random() < 0.5:
            extra = max(64, int(size * rng.uniform(0.01, 0.2)))
            with open(path, "ab") as f:
                f.write(file_content(corpora, kind, extra, rng, key))
            appended += 1
        else:
            length = max(1, min(size, max(64, int(size * rng.uniform(0.01, 0.1)))))
            offset = rng.randrange(size - length + 1)
            with open(path, "r+b") as f:
                f.seek(offset)
                f.write(file_content(corpora, kind, length, rng, key))
        mtime = new_time + rng.randrange(DAY // 2)
        os.utime(path, (mtime, mtime))

    for rel in deleted:
        os.remove(root / rel)
        touched_dirs.add(os.path.dirname(rel))

    names_in: dict[str, set[str]] = {}
    added_bytes = 0
    for _ in range(n_add):
        home = rng.choice(dirs)
        taken = names_in.setdefault(home, set(os.listdir(root / home)))
        kind = _draw_kind(rng)
        ext = rng.choice(KINDS[kind][1])
        rel = os.path.join(home, "new_" + _unique_name(rng, taken, ext))
        size = int(_draw_size(rng, kind) * 0.6)
        data = file_content(corpora, kind, size, rng, f"{seed}:added:{rel}")
        _write_file(root / rel, data, _file_mode(rng, kind), new_time + rng.randrange(DAY // 2))
        touched_dirs.add(home)
        added_bytes += size

    for rel in sorted(touched_dirs, key=lambda d: d.count(os.sep), reverse=True):
        mtime = new_time + DAY // 2 + rng.randrange(DAY // 4)
        os.utime(root / rel, (mtime, mtime))
    return {
        "modified": len(modified),
        "appended": appended,
        "rewritten": len(modified) - appended,
        "added": n_add,
        "added_bytes": added_bytes,
        "deleted": len(deleted),
    }


# --------------------------------------------------------------------------------------------
# SQL dump dataset


def _date(rng: random.Random, start: int, span: int) -> bytes:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start + rng.randrange(span))).encode()


def _quote(text: str) -> bytes:
    return ("'" + text.replace("'", "''") + "'").encode()


FIRST = _words(
    "Maria Jose Anna Peter Juan Wei Fatima Olga Ahmed Yuki Lena Carlos Priya Tom Sofia Ivan "
    "Chen Laura David Amina Noah Emma Lucas Mia Omar Sara Jonas Elena Pablo Nora Hugo Alice"
)
LAST = _words(
    "Garcia Smith Müller Rossi Kowalski Nguyen Haddad Ivanova Tanaka Okafor Silva Johansson "
    "Dubois O'Brien Novak Schmidt Jensen Moreau Costa Fischer Santos Weber Kim Patel Lopez"
)
CITIES = _words(
    "Berlin Lisbon Osaka Lagos Lima Oslo Pune Quito Riga Sofia Tunis Utrecht Vienna Warsaw "
    "York Zagreb Austin Bergen Cork Dakar Essen Faro Graz Hanoi Izmir Jaipur Kyoto Leeds "
    "Malmo Nantes"
)
PRODUCTS = [
    f"{a} {b}"
    for a in _words("Basic Deluxe Mini Pro Eco Smart Classic Ultra")
    for b in _words("Widget Lamp Chair Kettle Cable Charger Backpack Mug Notebook Speaker")
]
STATUSES = ["pending", "paid", "shipped", "delivered", "cancelled", "refunded"]
EVENTS = ["login", "logout", "view", "search", "add_to_cart", "checkout", "review", "error"]


def _customer_pools(rng: random.Random, n: int) -> tuple[list[bytes], list[bytes]]:
    a, b = [], []
    for i in range(n):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = f"{first}.{last}{i % 997}@example.com".lower().replace("'", "")
        a.append(_quote(f"{first} {last}") + b", " + _quote(email))
        b.append(
            _quote(rng.choice(CITIES))
            + b", '"
            + _date(rng, 1_420_000_000, 280_000_000)
            + b"', %d.%02d" % (rng.randrange(-500, 20_000), rng.randrange(100))
        )
    return a, b


def _order_pools(rng: random.Random, n: int) -> tuple[list[bytes], list[bytes]]:
    a = [
        _quote(rng.choice(PRODUCTS))
        + b", %d, %d.%02d" % (rng.randint(1, 12), rng.randrange(1, 900), rng.randrange(100))
        for _ in range(n)
    ]
    b = [
        _quote(rng.choice(STATUSES)) + b", '" + _date(rng, 1_600_000_000, 100_000_000) + b"'"
        for _ in range(n)
    ]
    return a, b


def _event_pools(rng: random.Random, n: int) -> tuple[list[bytes], list[bytes]]:
    a = [
        _quote(rng.choice(EVENTS))
        + b", "
        + _quote(" ".join(rng.choices(WORDS, k=rng.randint(3, 20))))
        for _ in range(n)
    ]
    b = [
        b"'"
        + _date(rng, 1_650_000_000, 50_000_000)
        + b"', "
        + _quote(f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}")
        for _ in range(n)
    ]
    return a, b


@dataclass
class Table:
    name: str
    share: float  # of the dump's bytes
    columns: str
    pools: Callable[[random.Random, int], tuple[list[bytes], list[bytes]]]
    has_ref: bool  # a customer_id column after the id


TABLES = [
    Table(
        "customers",
        0.10,
        "id bigint, name text, email text, city text, created_at timestamp, balance numeric(12,2)",
        _customer_pools,
        False,
    ),
    Table(
        "orders",
        0.55,
        "id bigint, customer_id bigint, product text, quantity integer, price numeric(10,2), "
        "status text, ordered_at timestamp",
        _order_pools,
        True,
    ),
    Table(
        "events",
        0.35,
        "id bigint, customer_id bigint, kind text, detail text, occurred_at timestamp, ip inet",
        _event_pools,
        True,
    ),
]


@dataclass
class ChangePlan:
    """Row indexes (0-based, in base order) a day of changes touches in one table."""

    changed: list[int]
    inserts: dict[int, int]  # after row i, insert n new rows
    insert_at: list[int]  # sorted keys of inserts
    appended: int


def plan_changes(rng: random.Random, n_rows: int, clustered: bool) -> ChangePlan:
    n_change = round(n_rows * 0.01)
    n_insert = round(n_rows * 0.002)
    n_append = max(1, round(n_rows * 0.003))
    if clustered:
        changed: set[int] = set()
        while len(changed) < n_change:
            run = min(n_change - len(changed), int(rng.expovariate(1 / 200)) + 1)
            start = rng.randrange(max(1, n_rows - run))
            changed.update(range(start, min(n_rows, start + run)))
        group_mean = 100
    else:
        changed = set(rng.sample(range(n_rows), min(n_rows, n_change)))
        group_mean = 2
    inserts: dict[int, int] = {}
    left = n_insert
    while left > 0:
        group = min(left, int(rng.expovariate(1 / group_mean)) + 1)
        pos = rng.randrange(n_rows)
        inserts[pos] = inserts.get(pos, 0) + group
        left -= group
    return ChangePlan(sorted(changed), inserts, sorted(inserts), n_append)


class _RowMaker:
    """Formats rows of one table from pre-formatted pools and bulk random indexes."""

    def __init__(self, table: Table, rng: random.Random, n_customers: int, distinct: int) -> None:
        self.prefix = f"INSERT INTO public.{table.name} VALUES (".encode()
        # Indexes are 16-bit: a smaller pool (cheaper to build for a tiny dump) is repeated.
        a, b = table.pools(rng, distinct)
        self.pool_a, self.pool_b = a * (POOL_SIZE // distinct), b * (POOL_SIZE // distinct)
        self.has_ref = table.has_ref
        self.n_customers = max(1, n_customers)
        self.mean_len = (
            len(self.prefix)
            + sum(map(len, self.pool_a[:4096])) / 4096
            + sum(map(len, self.pool_b[:4096])) / 4096
            + (20 if self.has_ref else 12)
        )

    def draw(self, rng: random.Random, n: int) -> tuple[array, array, list[int]]:
        ia = array("H", rng.randbytes(2 * n))
        ib = array("H", rng.randbytes(2 * n))
        refs = [(v * self.n_customers >> 32) + 1 for v in array("I", rng.randbytes(4 * n))]
        return ia, ib, refs

    def rows(self, ids: range | list[int], ia: array, ib: array, refs: list[int]) -> list[bytes]:
        a, b, p = self.pool_a, self.pool_b, self.prefix
        if self.has_ref:
            return [
                b"%s%d, %d, %s, %s);\n" % (p, i, r, a[x], b[y])
                for i, r, x, y in zip(ids, refs, ia, ib, strict=True)
            ]
        return [
            b"%s%d, %s, %s);\n" % (p, i, a[x], b[y]) for i, x, y in zip(ids, ia, ib, strict=True)
        ]


CHUNK_ROWS = 100_000


def _header(seed: str) -> bytes:
    lines = [
        "--",
        "-- PostgreSQL database dump",
        f"-- benchmark dataset, seed {seed}",
        "--",
        "",
        "SET statement_timeout = 0;",
        "SET client_encoding = 'UTF8';",
        "SET standard_conforming_strings = on;",
        "SET check_function_bodies = false;",
        "SET client_min_messages = warning;",
        "",
    ]
    for t in TABLES:
        lines += [f"CREATE TABLE public.{t.name} (", f"    {t.columns}", ");", ""]
    return ("\n".join(lines) + "\n").encode()


def _footer() -> bytes:
    lines = []
    for t in TABLES:
        lines += [
            f"ALTER TABLE ONLY public.{t.name}",
            f"    ADD CONSTRAINT {t.name}_pkey PRIMARY KEY (id);",
            "",
        ]
    lines += ["--", "-- PostgreSQL database dump complete", "--", ""]
    return "\n".join(lines).encode()


def _dump_chunks(
    seed: str, scale: float, clustered: bool
) -> Iterator[tuple[bytes, bytes | None, dict[str, int]]]:
    """(base bytes, mutated bytes or None when unchanged, change counts) per chunk."""
    rng = random.Random(f"{seed}:dump")
    mrng = random.Random(f"{seed}:dump-mutate:{'clustered' if clustered else 'scattered'}")
    total = max(64 * 1024, round(DUMP_BYTES * scale))
    yield _header(seed), None, {}
    distinct = POOL_SIZE if scale >= 0.05 else POOL_SIZE // 16
    n_customers = 0
    for table in TABLES:
        maker = _RowMaker(table, rng, n_customers, distinct)
        n_rows = max(10, int(total * table.share / maker.mean_len))
        if table.name == "customers":
            n_customers = n_rows
        plan = plan_changes(mrng, n_rows, clustered)
        yield f"\n-- Data for Name: {table.name}; Type: TABLE DATA\n\n".encode(), None, {}
        next_id = n_rows + 1
        for c0 in range(0, n_rows, CHUNK_ROWS):
            c1 = min(n_rows, c0 + CHUNK_ROWS)
            ia, ib, refs = maker.draw(rng, c1 - c0)
            rows = maker.rows(range(c0 + 1, c1 + 1), ia, ib, refs)
            base = b"".join(rows)
            lo, hi = bisect.bisect_left(plan.changed, c0), bisect.bisect_left(plan.changed, c1)
            ilo, ihi = (
                bisect.bisect_left(plan.insert_at, c0),
                bisect.bisect_left(plan.insert_at, c1),
            )
            if lo == hi and ilo == ihi:
                yield base, None, {}
                continue
            changed = plan.changed[lo:hi]
            n = len(changed)
            # An update keeps id and customer, changes the second column group (status,
            # date, balance...) and a third of the time the first one too.
            na, nb, _ = maker.draw(mrng, n)
            for k, row in enumerate(changed):
                j = row - c0
                x = na[k] if mrng.random() < 0.33 else ia[j]
                y = nb[k]
                while True:  # a change that changes nothing would skew the counts
                    new = maker.rows([row + 1], array("H", [x]), array("H", [y]), [refs[j]])[0]
                    if new != rows[j]:
                        break
                    y = (y + 1) & 0xFFFF
                rows[j] = new
            out: list[bytes] = []
            start = c0
            inserted = 0
            for pos in plan.insert_at[ilo:ihi]:
                out += rows[start - c0 : pos + 1 - c0]
                count = plan.inserts[pos]
                out += maker.rows(range(next_id, next_id + count), *maker.draw(mrng, count))
                next_id += count
                inserted += count
                start = pos + 1
            out += rows[start - c0 :]
            yield base, b"".join(out), {"changed": n, "inserted": inserted}
        ids = range(next_id, next_id + plan.appended)
        appended = b"".join(maker.rows(ids, *maker.draw(mrng, plan.appended)))
        yield b"", appended, {"appended": plan.appended, "rows": n_rows}
    yield b"\n" + _footer(), None, {}


def _write_chunk(fb: BinaryIO | None, fm: BinaryIO | None, base: bytes, mutated: bytes | None):
    if fb is not None:
        fb.write(base)
    if fm is not None:
        fm.write(base if mutated is None else mutated)


def generate_dump(
    base_dir: Path | None, mutated_dir: Path | None, seed: str, scale: float, clustered: bool
) -> dict[str, int]:
    """Write dump.sql into base_dir and/or its day-of-changes version into mutated_dir."""
    stats = {"rows": 0, "changed": 0, "inserted": 0, "appended": 0}
    with ExitStack() as stack:
        outs = []
        for d in (base_dir, mutated_dir):
            if d is not None:
                d.mkdir(parents=True, exist_ok=True)
                outs.append(stack.enter_context(open(d / "dump.sql", "wb")))
            else:
                outs.append(None)
        fb, fm = outs
        # One writer thread overlaps the kernel's copying with the formatting of the next
        # chunk; waiting for the previous write keeps at most two chunks in memory.
        writer = stack.enter_context(ThreadPoolExecutor(1))
        previous = None
        for base, mutated, counts in _dump_chunks(seed, scale, clustered):
            if previous is not None:
                previous.result()
            previous = writer.submit(_write_chunk, fb, fm, base, mutated)
            for key, value in counts.items():
                stats[key] += value
        if previous is not None:
            previous.result()
    for d, t in ((base_dir, BASE_TIME), (mutated_dir, BASE_TIME + DAY)):
        if d is not None:
            stats["base_bytes" if t == BASE_TIME else "mutated_bytes"] = (
                (d / "dump.sql").stat().st_size
            )
            os.chmod(d / "dump.sql", 0o644)
            os.utime(d / "dump.sql", (t, t))
            os.chmod(d, 0o755)
            os.utime(d, (t - DAY, t - DAY))
    return stats


# --------------------------------------------------------------------------------------------
# Datasets on disk, generated once and reused while the parameters match


DATASETS = ("tree", "dump")


SOURCE = "src"


@dataclass(frozen=True)
class Dataset:
    name: str
    root: Path  # holds base/, the mutated directory and meta.json
    base: Path
    mutated: Path
    stats: dict

    @contextmanager
    def as_source(self, version: Path) -> Iterator[Path]:
        """Rename `version` (base or mutated) to root/src for the time of the block.

        Backups of base and of mutated must come from one path (duplicity refuses a changed
        source directory), and a rename keeps every byte, mode and mtime without a copy.
        """
        src = self.root / SOURCE
        os.rename(version, src)
        try:
            yield src
        finally:
            os.rename(src, version)


def _put_source_back(root: Path, parts: dict) -> None:
    """Undo an as_source() that a killed run left behind."""
    src = root / SOURCE
    if not src.exists():
        return
    gone = [p for p in parts if not (root / p).exists()]
    if len(gone) == 1:
        os.rename(src, root / gone[0])
    else:
        shutil.rmtree(src)


def dataset_key(name: str, seed: str, scale: float) -> str:
    return f"{name}-seed{seed}-x{scale:g}"


def _read_meta(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def ensure_dataset(
    workdir: Path, name: str, seed: str, scale: float, clustered: bool = False, log=print
) -> Dataset:
    """Generate what is missing of dataset `name` under workdir/data and describe it."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r} (choose from {', '.join(DATASETS)})")
    root = workdir / "data" / dataset_key(name, seed, scale)
    mutated_name = "mutated-clustered" if clustered and name == "dump" else "mutated"
    meta_path = root / "meta.json"
    meta = _read_meta(meta_path)
    params = {"version": GENERATOR_VERSION, "name": name, "seed": seed, "scale": scale}
    if meta.get("params") != params:
        if root.exists():
            shutil.rmtree(root)
        meta = {"params": params, "parts": {}}
    root.mkdir(parents=True, exist_ok=True)
    parts: dict = meta["parts"]
    _put_source_back(root, parts)
    want = ["base", mutated_name]
    missing = [p for p in want if p not in parts or not (root / p).is_dir()]
    if missing:
        t0 = time.perf_counter()
        for p in missing:
            if (root / p).exists():
                shutil.rmtree(root / p)
        if name == "tree":
            if "base" in missing:
                parts["base"] = generate_tree(root / "base", seed, scale)
            copy_tree(root / "base", root / mutated_name)
            parts[mutated_name] = mutate_tree(root / mutated_name, seed)
        else:
            stats = generate_dump(
                root / "base" if "base" in missing else None,
                root / mutated_name,
                seed,
                scale,
                clustered,
            )
            if "base" in missing:
                parts["base"] = {"bytes": stats["base_bytes"], "rows": stats["rows"]}
            parts[mutated_name] = {k: v for k, v in stats.items() if k != "base_bytes"}
        meta_path.write_text(json.dumps(meta, indent=1))
        log(f"generated {root.name}/{{{','.join(missing)}}} in {time.perf_counter() - t0:.1f} s")
    return Dataset(name, root, root / "base", root / mutated_name, {p: parts[p] for p in want})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = Path(__file__).resolve().parent
    parser.add_argument("--workdir", type=Path, default=here / ".work")
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = full size")
    parser.add_argument("--seed", default="1")
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated")
    parser.add_argument(
        "--clustered", action="store_true", help="dump rows change in runs, not scattered"
    )
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error("--scale must be positive")
    for name in args.datasets.split(","):
        ds = ensure_dataset(args.workdir.resolve(), name, args.seed, args.scale, args.clustered)
        print(f"{ds.name}: {ds.base} -> {ds.mutated}")
        print(json.dumps(ds.stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
