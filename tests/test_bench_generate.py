"""The benchmark dataset generator (bench/generate.py) at a tiny scale: seeded, exact changes."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import stat
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCALE = 0.002  # 40 files, 630 KB of tree; a 2 MiB dump


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


generate = _load("generate")


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under root: type, mode, integer mtime and a content hash for files."""
    out = {}
    for parent, dirs, files in os.walk(root):
        for name in dirs + files + ([""] if parent == str(root) else []):
            path = Path(parent, name)
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if name in files else None
            out[str(path.relative_to(root))] = (
                stat.S_IFMT(st.st_mode),
                stat.S_IMODE(st.st_mode),
                int(st.st_mtime),
                digest,
            )
    return out


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("trees")
    generate.generate_tree(base / "a", "7", SCALE)
    generate.generate_tree(base / "b", "7", SCALE)
    generate.generate_tree(base / "other", "8", SCALE)
    generate.copy_tree(base / "a", base / "mutated")
    stats = generate.mutate_tree(base / "mutated", "7")
    generate.copy_tree(base / "a", base / "mutated2")
    generate.mutate_tree(base / "mutated2", "7")
    return {"root": base, "stats": stats}


def test_tree_is_a_function_of_the_seed(trees):
    root = trees["root"]
    a, b, other = (snapshot(root / n) for n in ("a", "b", "other"))
    assert a == b
    assert a != other
    files = [v for v in a.values() if v[0] == stat.S_IFREG]
    assert len(files) == round(generate.TREE_FILES * SCALE)
    total = sum((root / "a" / k).stat().st_size for k, v in a.items() if v[0] == stat.S_IFREG)
    assert total == round(generate.TREE_BYTES * SCALE)


def test_tree_mixes_text_and_random_content(trees):
    root = trees["root"] / "a"
    kinds = {generate.EXT_KIND[p.suffix] for p in root.rglob("*") if p.is_file()}
    assert {"bin", "lorem", "py", "c"} <= kinds
    py = max((p for p in root.rglob("*.py")), key=lambda p: p.stat().st_size)
    assert b"def " in py.read_bytes() and b"return" in py.read_bytes()


def test_full_size_plan_has_depth_and_skewed_sizes():
    plan = generate.plan_tree("7", 1.0)
    assert len(plan.files) == generate.TREE_FILES
    assert sum(f.size for f in plan.files) == generate.TREE_BYTES
    depths = [d.rel.count("/") + 1 for d in plan.dirs if d.rel]
    assert 4 <= max(depths) <= generate.MAX_DEPTH
    sizes = sorted(f.size for f in plan.files)
    assert sizes[len(sizes) // 2] < generate.TREE_BYTES / generate.TREE_FILES / 2  # many small
    assert sizes[-1] > 100 * sizes[len(sizes) // 2]  # a few big ones
    binary = sum(f.size for f in plan.files if f.kind == "bin") / generate.TREE_BYTES
    assert 0.3 < binary < 0.8


def test_mutation_is_seeded_and_matches_its_counts(trees):
    root, stats = trees["root"], trees["stats"]
    before, after = snapshot(root / "a"), snapshot(root / "mutated")
    assert after == snapshot(root / "mutated2")

    def files(snap):
        return {k: v for k, v in snap.items() if v[0] == stat.S_IFREG}

    fb, fa = files(before), files(after)
    deleted, added = fb.keys() - fa.keys(), fa.keys() - fb.keys()
    modified = {k for k in fb.keys() & fa.keys() if fb[k] != fa[k]}
    assert len(deleted) == stats["deleted"] == 1
    assert len(added) == stats["added"] == 1
    assert len(modified) == stats["modified"] == 1
    for k in modified:  # new content and a later mtime, the mode kept
        assert fa[k][3] != fb[k][3] and fa[k][2] > fb[k][2] and fa[k][1] == fb[k][1]
    assert all(os.path.basename(k).startswith("new_") for k in added)
    # Directories whose entries changed get a new mtime; no other directory changes.
    touched = {os.path.dirname(k) for k in deleted | added}
    for k, v in before.items():
        if v[0] == stat.S_IFDIR:
            assert (after[k][2] != v[2]) == (("" if k == "." else k) in touched), k


@pytest.fixture(scope="module")
def dumps(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("dumps")
    stats = generate.generate_dump(root / "base", root / "mutated", "7", SCALE, clustered=False)
    again = generate.generate_dump(root / "base2", root / "mutated2", "7", SCALE, False)
    clustered = generate.generate_dump(None, root / "clustered", "7", SCALE, clustered=True)
    return {"root": root, "stats": stats, "again": again, "clustered": clustered}


ROW = re.compile(rb"^INSERT INTO public\.(\w+) VALUES \((\d+), ")


def rows(path: Path) -> dict[tuple[bytes, int], bytes]:
    out = {}
    for line in path.read_bytes().splitlines():
        m = ROW.match(line)
        if m:
            out[(m.group(1), int(m.group(2)))] = line
    return out


def test_dump_is_a_function_of_the_seed(dumps):
    root = dumps["root"]
    for a, b in (("base", "base2"), ("mutated", "mutated2")):
        assert (root / a / "dump.sql").read_bytes() == (root / b / "dump.sql").read_bytes()
    assert dumps["stats"] == dumps["again"]
    size = (root / "base" / "dump.sql").stat().st_size
    assert abs(size - generate.DUMP_BYTES * SCALE) < 0.05 * generate.DUMP_BYTES * SCALE
    st = (root / "mutated" / "dump.sql").stat()
    assert (
        int(st.st_mtime) == generate.BASE_TIME + generate.DAY and stat.S_IMODE(st.st_mode) == 0o644
    )


def _change_runs(base: dict, mutated: dict) -> tuple[int, int, int]:
    """(changed rows, rows added, runs of consecutive changed ids)."""
    changed = sorted(k for k in base if base[k] != mutated[k])
    runs = sum(
        1
        for i, k in enumerate(changed)
        if i == 0 or changed[i - 1][0] != k[0] or changed[i - 1][1] != k[1] - 1
    )
    return len(changed), len(mutated.keys() - base.keys()), runs


def test_dump_day_of_changes(dumps):
    root, stats = dumps["root"], dumps["stats"]
    base, mutated = rows(root / "base" / "dump.sql"), rows(root / "mutated" / "dump.sql")
    assert base.keys() <= mutated.keys()  # nothing deleted
    changed, added, runs = _change_runs(base, mutated)
    assert changed == stats["changed"] == pytest.approx(0.01 * len(base), abs=3)
    assert added == stats["inserted"] + stats["appended"]
    assert stats["inserted"] > 0 and stats["appended"] > 0
    # Inserted rows sit in the middle of their table, appended ones at its end.
    lines = (root / "mutated" / "dump.sql").read_bytes().splitlines()
    keys = [(m.group(1), int(m.group(2))) for m in map(ROW.match, lines) if m]
    last_base = {k[0]: i for i, k in enumerate(keys) if k in base}
    new = [(i, k) for i, k in enumerate(keys) if k not in base]
    middle = sum(1 for i, k in new if i < last_base[k[0]])
    assert 0 < middle <= stats["inserted"]
    assert len(new) - middle >= stats["appended"]
    assert runs > changed * 0.8  # scattered: almost every change on its own


def test_clustered_changes_come_in_runs(dumps):
    root, stats = dumps["root"], dumps["clustered"]
    base, clustered = rows(root / "base" / "dump.sql"), rows(root / "clustered" / "dump.sql")
    changed, added, runs = _change_runs(base, clustered)
    assert changed == stats["changed"] and added == stats["inserted"] + stats["appended"]
    assert runs < changed / 5
    scattered = (root / "mutated" / "dump.sql").read_bytes()
    assert (root / "clustered" / "dump.sql").read_bytes() != scattered


def test_datasets_are_reused_and_swapped_back(tmp_path):
    messages = []
    ds = generate.ensure_dataset(tmp_path, "tree", "3", SCALE, log=messages.append)
    assert len(messages) == 1 and ds.base.is_dir() and ds.mutated.is_dir()
    first = snapshot(ds.base)
    again = generate.ensure_dataset(tmp_path, "tree", "3", SCALE, log=messages.append)
    assert len(messages) == 1 and again.stats == ds.stats

    with ds.as_source(ds.mutated) as src:
        assert src.name == generate.SOURCE and not ds.mutated.exists()
    assert ds.mutated.is_dir()

    # A run killed inside as_source() leaves src/ behind: the next call puts it back.
    os.rename(ds.base, ds.root / generate.SOURCE)
    generate.ensure_dataset(tmp_path, "tree", "3", SCALE, log=messages.append)
    assert len(messages) == 1 and snapshot(ds.base) == first

    other = generate.ensure_dataset(tmp_path, "tree", "3", SCALE * 2, log=messages.append)
    assert len(messages) == 2 and other.root != ds.root


def test_restore_check_sees_what_a_bad_restore_gets_wrong(trees, tmp_path):
    run = _load("run")
    root = trees["root"]
    assert run.compare_trees(root / "a", root / "b") == []
    copy = tmp_path / "copy"
    shutil.copytree(root / "a", copy)
    assert run.compare_trees(root / "a", copy) == []
    diffs = run.compare_trees(root / "a", root / "mutated")
    assert any("missing" in d for d in diffs) and any("not in source" in d for d in diffs)
    victim = next(p for p in sorted(copy.rglob("*")) if p.is_file() and p.stat().st_size > 10)
    st = victim.stat()
    data = bytearray(victim.read_bytes())
    data[5] ^= 1
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    rel = str(victim.relative_to(copy))
    assert run.compare_trees(root / "a", copy) == [f"{rel}: content differs"]
    os.utime(victim, (st.st_mtime + 5, st.st_mtime + 5))
    os.chmod(victim, 0o640)
    assert len(run.compare_trees(root / "a", copy)) == 3  # mode, mtime, content
