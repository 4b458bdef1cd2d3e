"""Source selection: rules, order and entries, checked against duplicity 0.8.22's own
selection module (run in the system Python) on the same trees."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from duplicity_ng.entry import FileType
from duplicity_ng.errors import CommandLineError
from duplicity_ng.selection import (
    Selection,
    SelectionOptions,
    canonical_root,
    entry_for,
    glob_to_regex,
)

DUPLICITY_08 = Path("/usr/lib/python3/dist-packages/duplicity/selection.py")
SYSTEM_PYTHON = "/usr/bin/python3"
LONG = b"L" * 255

# Runs duplicity 0.8.22's Select over each (root, [(option, arg)...]) and prints the indexes
# (or the exit code of its fatal error) as JSON.
ORACLE = r"""
import gettext, io, json, sys
gettext.install("duplicity")
from duplicity import log, path, selection
log.setup()
log.setverbosity(log.ERROR)
out = []
for root, argtuples in json.loads(sys.stdin.read()):
    filelists = [io.open(a, "rt", encoding="UTF-8") for o, a in argtuples if o.endswith("filelist")]
    try:
        sel = selection.Select(path.Path(root.encode()))
        sel.ParseArgs([tuple(t) for t in argtuples], filelists)
        sel.set_iter()
        out.append([[c.decode("utf-8", "surrogateescape") for c in p.index] for p in sel])
    except SystemExit as e:
        out.append(e.code)
print(json.dumps(out))
"""


def duplicity_select(cases: list[tuple[str, list[tuple[str, str]]]]) -> list:
    proc = subprocess.run(
        [SYSTEM_PYTHON, "-c", ORACLE],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"},
    )
    results = json.loads(proc.stdout.splitlines()[-1])
    return [
        r
        if isinstance(r, int)
        else [tuple(c.encode("utf-8", "surrogateescape") for c in i) for i in r]
        for r in results
    ]


def make_tree(root: Path) -> None:
    """Files, dirs, symlinks, a fifo, a unix socket, odd names."""
    rb = os.fsencode(root)

    def mk(rel: bytes, data: bytes = b"x") -> None:
        p = rb + b"/" + rel
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)

    for d in (b"c/empty", b"Mixed", b"skipme/inner", b"other/.nobackup_dir"):
        os.makedirs(rb + b"/" + d, exist_ok=True)
    mk(b"a/x.txt")
    mk(b"a/b/y.txt", b"hello")
    mk(b"a/b/deep/z.TXT")
    mk(b"a/b/deep/keep.py")
    mk(b"a/bb.txt")
    mk(b"c/z.py")
    mk(b"caf\xe9/f.txt")
    mk(b"Mixed/File.Txt")
    mk(b"skipme/.nobackup", b"")
    mk(b"skipme/data")
    mk(b"skipme/inner/more.txt")
    mk(b"[br]acket")
    mk(b"top")
    mk(b"a/" + LONG)
    os.symlink(b"a", rb + b"/link")
    os.symlink(b"/nowhere/at/all", rb + b"/broken")
    os.mkfifo(rb + b"/fifo")
    sock_path = rb + b"/sock"
    if len(sock_path) < 100:
        s = socket.socket(socket.AF_UNIX)
        s.bind(sock_path)
        s.close()


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sel") / "src"
    root.mkdir()
    make_tree(root)
    return root


def run(root: Path | bytes, rules=(), **kw) -> list[tuple[bytes, ...]]:
    sel = Selection(os.fsencode(root), SelectionOptions(rules=list(rules), **kw))
    return [e.index for e, _ in sel.walk()]


def idx(*paths: str | bytes) -> list[tuple[bytes, ...]]:
    out = []
    for p in paths:
        b = os.fsencode(p) if isinstance(p, str) else p
        out.append(tuple(c for c in b.split(b"/") if c) if b != b"." else ())
    return out


# Rule sets from duplicity's man page and common use; "{S}" is the source directory.
CASES: dict[str, list[tuple[str, str]]] = {
    "no rules": [],
    "include dir contents only": [("include", "{S}/a/**"), ("exclude", "**")],
    "include dir": [("include", "{S}/a/b"), ("exclude", "**")],
    "exclude then include, first wins": [
        ("exclude", "{S}/a"),
        ("include", "{S}/a/b"),
        ("exclude", "**"),
    ],
    "man page usr/local/bin example": [("include", "{S}/a/b"), ("exclude", "{S}/a")],
    "include **/*.txt": [("include", "**/*.txt"), ("exclude", "**")],
    "include **.txt": [("include", "**.txt"), ("exclude", "**")],
    "star does not cross slash": [("include", "{S}/*/*.txt"), ("exclude", "**")],
    "question mark": [("include", "{S}/?/x.txt"), ("exclude", "**")],
    "character class": [("include", "{S}/[ab]/**"), ("exclude", "**")],
    "negated class": [("exclude", "{S}/[!a]*"), ("exclude", "{S}/a/b")],
    "caret class": [("exclude", "{S}/[^ac]*")],
    "unclosed bracket is literal": [("exclude", "{S}/[br")],
    "bracket name matched by class": [("exclude", "{S}/[[]br]acket")],
    "ignorecase": [("include", "ignorecase:{S}/mixed/file.txt"), ("exclude", "**")],
    "case sensitive by default": [("include", "{S}/mixed/file.txt"), ("exclude", "**")],
    "ignorecase star": [("include", "ignorecase:**/*.txt"), ("exclude", "**")],
    "exclude trailing slash dir": [("exclude", "{S}/a/b/")],
    "exclude trailing slash file does nothing": [("exclude", "{S}/top/")],
    "include trailing slash": [("include", "{S}/a/b/"), ("exclude", "**")],
    "exclude everything": [("exclude", "**")],
    "include root": [("include", "{S}"), ("exclude", "**")],
    "include slash": [("include", "/"), ("exclude", "**")],
    "include empty dir": [("include", "{S}/c/empty"), ("exclude", "**")],
    "scanned dirs without matches vanish": [("include", "**/*.none"), ("exclude", "**")],
    "deep include": [("include", "{S}/a/b/deep/keep.py"), ("exclude", "**")],
    "symlink is not a dir": [("include", "{S}/link/**"), ("exclude", "**")],
    "exclude symlink": [("exclude", "{S}/link"), ("exclude", "{S}/broken")],
    "exclude special files": [("exclude", "{S}/fifo")],
    "star in middle with double star": [("include", "{S}/**/deep"), ("exclude", "**")],
    "double star then name": [("exclude", "**/deep")],
    "non-utf8 via wildcard": [("include", "{S}/caf?/**"), ("exclude", "**")],
    "long name": [("exclude", "{S}/a/" + "L" * 255)],
    "regexp exclude": [("exclude-regexp", r"\.py$")],
    "regexp include": [("include-regexp", r"/y\.txt$"), ("exclude", "**")],
    "regexp does not include parents": [("include-regexp", r"deep"), ("exclude", "**")],
    "regexp then glob": [("exclude-regexp", "^{S}/a/b"), ("include", "{S}/a"), ("exclude", "**")],
    "exclude if present": [("exclude-if-present", ".nobackup")],
    "exclude if present beats include": [
        ("include", "{S}/skipme"),
        ("exclude-if-present", ".nobackup"),
        ("exclude", "**"),
    ],
    "exclude if present dir marker": [("exclude-if-present", ".nobackup_dir")],
    "prefix error": [("include", "/elsewhere/x"), ("exclude", "**")],
    "relative glob prefix error": [("exclude", "*.txt")],
    "sibling prefix error": [("exclude", "{S}x/a")],
    "consecutive slashes": [("exclude", "{S}/a//b")],
    "redundant inclusion": [("include", "{S}/a")],
    "redundant inclusion after exclude": [("exclude", "{S}/a"), ("include", "{S}/a/b")],
    "redundant after double star": [("exclude", "**"), ("include", "{S}/a")],
}


def to_duplicity_args(rules: list[tuple[str, str]], src: str) -> list[tuple[str, str]]:
    return [("--" + o, v.replace("{S}", src)) for o, v in rules]


def to_options(rules: list[tuple[str, str]], src: str) -> SelectionOptions:
    opts = SelectionOptions()
    for o, v in rules:
        v = v.replace("{S}", src)
        if o == "exclude-if-present":
            opts.exclude_if_present.append(v)
        else:
            opts.rules.append((o, v))
    return opts


def ours(root: Path, opts: SelectionOptions) -> list[tuple[bytes, ...]] | int:
    try:
        sel = Selection(os.fsencode(root), opts)
    except CommandLineError as e:
        return e.exit_code
    return [e.index for e, _ in sel.walk()]


@pytest.fixture(scope="module")
def duplicity_results(tree: Path) -> dict[str, list | int]:
    if not DUPLICITY_08.exists():
        pytest.skip("duplicity 0.8.22 not installed")
    src = str(tree)
    names = list(CASES)
    results = duplicity_select([(src, to_duplicity_args(CASES[n], src)) for n in names])
    return dict(zip(names, results, strict=True))


@pytest.mark.parametrize("case", list(CASES))
def test_same_as_duplicity(tree: Path, duplicity_results: dict, case: str) -> None:
    expected = duplicity_results[case]
    got = ours(tree, to_options(CASES[case], str(tree)))
    assert got == expected


# ----------------------------------------------------------------------------------------------
# explicit expectations (what the comparison above established, spelled out)


def test_no_rules_walks_everything_sorted(tree: Path) -> None:
    got = run(tree)
    assert got[0] == ()
    assert got == sorted(got)
    assert idx("sock") not in [[i] for i in got]  # sockets are skipped
    assert set(idx("a", "a/b/deep/z.TXT", "fifo", "link", "broken", b"caf\xe9/f.txt")) <= set(got)
    assert (b"a", LONG) in got


def test_include_then_exclude_all(tree: Path) -> None:
    got = run(tree, [("include", f"{tree}/a/**"), ("exclude", "**")])
    # the root and "a" itself are yielded because something below them is
    assert got == idx(".", "a", "a/" + "L" * 255, "a/b", "a/b/deep", "a/b/deep/keep.py",
                      "a/b/deep/z.TXT", "a/b/y.txt", "a/bb.txt", "a/x.txt")  # fmt: skip


def test_first_matching_rule_wins(tree: Path) -> None:
    got = run(tree, [("exclude", f"{tree}/a"), ("include", f"{tree}/a/b"), ("exclude", "**")])
    assert got == idx(".")


def test_include_before_exclude_keeps_subdir(tree: Path) -> None:
    got = run(tree, [("include", f"{tree}/a/b"), ("exclude", f"{tree}/a")])
    assert idx("a", "a/b", "a/b/deep") == [i for i in got if i[:1] == (b"a",)][:3]
    assert (b"a", b"x.txt") not in got
    assert (b"top",) in got


def test_scanned_directory_only_with_matches(tree: Path) -> None:
    got = run(tree, [("include", "**/*.py"), ("exclude", "**")])
    assert got == idx(".", "a", "a/b", "a/b/deep", "a/b/deep/keep.py", "c", "c/z.py")


def test_ignorecase(tree: Path) -> None:
    rules = [("include", f"ignorecase:{tree}/MIXED/file.TXT"), ("exclude", "**")]
    assert run(tree, rules) == idx(".", "Mixed", "Mixed/File.Txt")


def test_non_utf8_pattern_matches_raw_name(tree: Path) -> None:
    pattern = os.fsdecode(os.fsencode(tree) + b"/caf\xe9")
    got = run(tree, [("include", pattern), ("exclude", "**")])
    assert got == [(), (b"caf\xe9",), (b"caf\xe9", b"f.txt")]


def test_exclude_if_present_and_redundancy_errors(tree: Path) -> None:
    got = run(tree, exclude_if_present=[".nobackup"])
    assert (b"skipme",) not in got and (b"other",) in got
    with pytest.raises(CommandLineError) as e:
        run(tree, [("include", f"{tree}/a")])
    assert e.value.exit_code == 16
    with pytest.raises(CommandLineError) as e:
        run(tree, [("exclude", "/not/under/source")])
    assert e.value.exit_code == 14 and "/not/under/source" in e.value.message


def test_odd_exclude_if_present_names_match_nothing(tree: Path) -> None:
    assert run(tree, exclude_if_present=[".", "..", "a/b"]) == run(tree)


def test_bad_class_is_a_command_line_error(tree: Path) -> None:
    with pytest.raises(CommandLineError) as e:
        run(tree, [("exclude", f"{tree}/[z-a]")])
    assert e.value.exit_code == 15
    with pytest.raises(CommandLineError):
        run(tree, [("exclude-regexp", "(unclosed")])
    with pytest.raises(CommandLineError):
        run(tree, [("frobnicate", "x")])


def test_glob_to_regex() -> None:
    assert glob_to_regex("a*b") == "a[^/]*b"
    assert glob_to_regex("**") == ".*"
    assert glob_to_regex("?") == "[^/]"
    assert glob_to_regex("[!ab]") == "[^ab]"
    assert glob_to_regex("[") == "\\["


def test_canonical_root() -> None:
    assert canonical_root(b"/a//b/./c/") == b"/a/b/c"
    assert canonical_root(b"rel/./x/") == b"rel/x"
    assert canonical_root(b"./") == b"."
    assert canonical_root(b"/") == b"/"


# ----------------------------------------------------------------------------------------------
# filelists


def test_filelists(tree: Path, tmp_path: Path) -> None:
    inc = tmp_path / "inc.list"
    inc.write_text(
        f"# a comment\n\n- {tree}/a/b/deep\n+ {tree}/a/b\n  '{tree}/top'  \n\"{tree}/c\"\n- **\n"
    )
    got = run(tree, [("include-filelist", str(inc))])
    assert got == idx(".", "a", "a/b", "a/b/y.txt", "c", "c/empty", "c/z.py", "top")

    exc = tmp_path / "exc.list"
    exc.write_text(f"{tree}/a\n+ {tree}/c/z.py\n{tree}/c\n")
    got = run(tree, [("exclude-filelist", str(exc))])
    assert (b"a",) not in got and (b"c", b"z.py") in got and (b"c", b"empty") not in got
    assert (b"top",) in got


def test_filelist_non_utf8_and_null_separator(tree: Path, tmp_path: Path) -> None:
    fl = tmp_path / "nul.list"
    fl.write_bytes(os.fsencode(tree) + b"/caf\xe9\0- **\0")
    got = run(tree, [("include-filelist", str(fl))], null_separator=True)
    assert got == [(), (b"caf\xe9",), (b"caf\xe9", b"f.txt")]


def test_filelists_same_as_duplicity(tree: Path, tmp_path: Path) -> None:
    if not DUPLICITY_08.exists():
        pytest.skip("duplicity 0.8.22 not installed")
    inc = tmp_path / "inc.list"
    inc.write_text(f"# c\n- {tree}/a/b/deep\n+ {tree}/a/b\n  '{tree}/top'  \n{tree}/Mixed/\n- **\n")
    exc = tmp_path / "exc.list"
    exc.write_text(f"{tree}/a\n+ {tree}/c/z.py\n  {tree}/c  \n# x\n")
    tail = tmp_path / "tail.list"
    tail.write_text(f"{tree}/a\n")
    cases = [
        [("include-filelist", str(inc))],
        [("exclude-filelist", str(exc))],
        [("include-filelist", str(tail))],
        [("include-filelist", str(tail)), ("exclude", "**")],
        [
            ("exclude", f"{tree}/a/b"),
            ("include-filelist", str(tail)),
            ("exclude-filelist", str(exc)),
        ],
    ]
    expected = duplicity_select([(str(tree), [("--" + o, v) for o, v in c]) for c in cases])
    for rules, want in zip(cases, expected, strict=True):
        assert ours(tree, SelectionOptions(rules=rules)) == want, rules


def test_missing_filelist(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(CommandLineError) as e:
        run(tree, [("exclude-filelist", str(tmp_path / "nope"))])
    assert e.value.exit_code == 7 and "nope" in e.value.message


# ----------------------------------------------------------------------------------------------
# files-from (duplicity 3.x)


def test_files_from(tree: Path, tmp_path: Path) -> None:
    fl = tmp_path / "files"
    fl.write_bytes(b"a/b/y.txt\nc\n\ncaf\xe9/f.txt\ntop\nmissing/file\n")
    got = run(tree, files_from=str(fl))
    # parents of listed paths are walked, a listed directory brings no contents
    assert got == [(), (b"a",), (b"a", b"b"), (b"a", b"b", b"y.txt"), (b"c",), (b"caf\xe9",),
                   (b"caf\xe9", b"f.txt"), (b"top",)]  # fmt: skip
    got = run(tree, [("exclude", f"{tree}/a/b")], files_from=str(fl))
    assert (b"a", b"b") not in got and (b"a",) in got


def test_files_from_errors(tree: Path, tmp_path: Path) -> None:
    fl = tmp_path / "abs"
    fl.write_text("a\n/etc/passwd\n")
    with pytest.raises(CommandLineError) as e:
        run(tree, files_from=str(fl))
    assert e.value.exit_code == 72
    fl.write_text("\n\n")
    with pytest.raises(CommandLineError) as e:
        run(tree, files_from=str(fl))
    assert e.value.exit_code == 73


# ----------------------------------------------------------------------------------------------
# entries and the walk itself


def test_entries(tree: Path) -> None:
    sel = Selection(os.fsencode(tree), SelectionOptions())
    by_index = {e.index: (e, p) for e, p in sel.walk()}
    root, root_path = by_index[()]
    assert root.type is FileType.DIR and root_path == os.fsencode(tree)
    y, y_path = by_index[(b"a", b"b", b"y.txt")]
    st = os.lstat(y_path)
    assert y.type is FileType.REG and y.size == 5 and y.mtime == int(st.st_mtime)
    assert y.mode == st.st_mode & 0o7777 and (y.uid, y.gid) == (st.st_uid, st.st_gid)
    assert y.uname == __import__("pwd").getpwuid(st.st_uid).pw_name
    link, _ = by_index[(b"link",)]
    assert link.type is FileType.SYM and link.linkname == b"a" and link.size == 0
    assert by_index[(b"broken",)][0].linkname == b"/nowhere/at/all"
    assert by_index[(b"fifo",)][0].type is FileType.FIFO
    assert by_index[(b"a",)][0].size == 0
    assert by_index[(b"a",)][1] == os.fsencode(tree) + b"/a"
    assert entry_for(y_path, y.index) == y


def test_entry_for_errors(tree: Path) -> None:
    with pytest.raises(FileNotFoundError):
        entry_for(os.fsencode(tree) + b"/nope", (b"nope",))
    if (tree / "sock").exists():
        with pytest.raises(ValueError):
            entry_for(os.fsencode(tree / "sock"), (b"sock",))


def test_on_skip_reports_sockets(tree: Path) -> None:
    if not (tree / "sock").exists():
        pytest.skip("socket path too long")
    skipped: list = []
    sel = Selection(os.fsencode(tree), SelectionOptions())
    list(sel.walk(lambda i, why: skipped.append((i, why))))
    assert skipped == [((b"sock",), "socket")]


def test_order_is_sorted_tuple_order(tmp_path: Path) -> None:
    root = tmp_path / "o"
    names = [b"a", b"a-b", b"a.b", b"a0", b"B", b"\xff", b"a b", b"_"]
    for n in names:
        os.makedirs(os.fsencode(root) + b"/" + n + b"/sub")
        open(os.fsencode(root) + b"/" + n + b"/sub/f", "wb").close()
    got = run(root)
    # "a" sorts before "a-b" as a tuple, although "a/..." > "a-b" as a string
    assert got == sorted(got)
    assert got.index((b"a", b"sub", b"f")) < got.index((b"a-b",))


def test_device_files_and_other_filesystems(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for mknod and mount")
    root = tmp_path / "dev"
    (root / "mnt").mkdir(parents=True)
    (root / "plain").write_text("x")
    os.mknod(root / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    os.mknod(root / "loop", stat.S_IFBLK | 0o600, os.makedev(7, 0))
    got = run(root)
    entries = {e.index: e for e, _ in Selection(os.fsencode(root), SelectionOptions()).walk()}
    assert entries[(b"null",)].type is FileType.CHR
    assert (entries[(b"null",)].devmajor, entries[(b"null",)].devminor) == (1, 3)
    assert entries[(b"loop",)].type is FileType.BLK
    assert run(root, exclude_device_files=True) == [i for i in got if i[0:1] not in
                                                    [(b"null",), (b"loop",)]]  # fmt: skip
    mounted = subprocess.run(["mount", "-t", "tmpfs", "none", str(root / "mnt")],
                             capture_output=True).returncode == 0  # fmt: skip
    if not mounted:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (root / "mnt" / "inside").write_text("y")
        assert (b"mnt", b"inside") in run(root)
        assert idx("mnt", "mnt/inside")[0] not in run(root, exclude_other_filesystems=True)
        # positional: an earlier include scans into the other filesystem (duplicity's order)
        positional = [("include", f"{root}/mnt/inside"), ("exclude-other-filesystems", "")]
        assert (b"mnt", b"inside") in run(root, positional)
        if DUPLICITY_08.exists():
            for rules in ([("exclude-other-filesystems", "")], positional):
                args = [("--" + o, v) for o, v in rules]
                (want,) = duplicity_select([(str(root), args)])
                assert run(root, rules) == want
            args = [("--exclude-device-files", "")]
            (want,) = duplicity_select([(str(root), args)])
            assert run(root, exclude_device_files=True) == want
    finally:
        subprocess.run(["umount", str(root / "mnt")], check=True)


def test_unreadable_paths_are_reported_not_fatal() -> None:
    """As an unprivileged user: unreadable files and dirs are skipped with a report."""
    base = Path(tempfile.mkdtemp(prefix="selperm"))
    try:
        base.chmod(0o755)
        root = base / "src"
        (root / "locked").mkdir(parents=True)
        (root / "locked" / "f").write_text("x")
        (root / "ok").write_text("x")
        (root / "secret").write_text("x")
        (root / "noexec" / "sub").mkdir(parents=True)
        (root / "secret").chmod(0)
        (root / "locked").chmod(0)
        (root / "noexec").chmod(0o444)
        code = (
            "import os, sys, json\n"
            "from duplicity_ng.selection import Selection, SelectionOptions\n"
            "skips = []\n"
            "sel = Selection(sys.argv[1].encode(), SelectionOptions())\n"
            "got = [list(map(bytes.decode, e.index)) for e, _ in "
            "sel.walk(lambda i, w: skips.append([list(map(bytes.decode, i)), w]))]\n"
            "print(json.dumps([got, skips]))\n"
        )
        python, kwargs = sys.executable, {}
        if os.geteuid() == 0:
            # the venv's interpreter may live under /root; the system one is world-readable
            python, kwargs = SYSTEM_PYTHON, {"user": 65534, "group": 65534}
        proc = subprocess.run(
            [python, "-c", code, str(root)],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
            env={"PYTHONPATH": str(Path(__file__).resolve().parents[1])},
            **kwargs,
        )
        if proc.returncode != 0 and "Permission denied" in proc.stderr:
            pytest.skip("the project is not readable by an unprivileged user")
        assert proc.returncode == 0, proc.stderr
        got, skips = json.loads(proc.stdout)
        assert got == [[], ["noexec"], ["ok"]]
        assert [["locked"], "Permission denied"] in skips
        assert [["secret"], "Permission denied"] in skips
        assert [["noexec", "sub"], "Permission denied"] in skips
        if DUPLICITY_08.exists() and os.geteuid() == 0:
            oracle = subprocess.run(
                [SYSTEM_PYTHON, "-c", ORACLE],
                input=json.dumps([[str(root), []]]),
                capture_output=True,
                text=True,
                check=True,
                **kwargs,
            )
            assert json.loads(oracle.stdout.splitlines()[-1]) == [got]
    finally:
        for p in base.rglob("*"):
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
        subprocess.run(["rm", "-rf", str(base)], check=True)


def test_root_symlink_is_followed(tmp_path: Path, tree: Path) -> None:
    """Unlike duplicity, which walks only the bare link: the directory is what was meant."""
    os.symlink(tree, tmp_path / "ln")
    got = list(Selection(os.fsencode(tmp_path / "ln"), SelectionOptions()).walk())
    direct = list(Selection(os.fsencode(tree), SelectionOptions()).walk())
    assert got[0][0].type is FileType.DIR
    assert [e.index for e, _ in got] == [e.index for e, _ in direct] and len(got) > 1


def test_relative_root_matches_as_given(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree.parent)
    got = run(b"./src/", [("include", "src/a/b"), ("exclude", "**")])
    assert got == idx(".", "a", "a/b", "a/b/deep", "a/b/deep/keep.py", "a/b/deep/z.TXT",
                      "a/b/y.txt")  # fmt: skip
    sel = Selection(b"src", SelectionOptions())
    assert next(iter(sel.walk()))[1] == os.fsencode(tree)  # yielded paths are absolute
    with pytest.raises(CommandLineError):
        run(b"src", [("exclude", f"{tree}/a")])


def test_large_tree_is_fast(tmp_path: Path) -> None:
    import time

    root = tmp_path / "big"
    rb = os.fsencode(root)
    for d in range(100):
        os.makedirs(rb + b"/d%03d" % d)
        for f in range(100):
            open(rb + b"/d%03d/f%03d.txt" % (d, f), "wb").close()
    start = time.perf_counter()
    assert len(run(root)) == 1 + 100 + 10000
    plain = time.perf_counter() - start
    start = time.perf_counter()
    got = run(root, [("exclude", "**/f00*"), ("include", f"{root}/d00*/**"), ("exclude", "**")])
    ruled = time.perf_counter() - start
    assert len(got) == 1 + 10 + 10 * 90
    assert plain < 2.0 and ruled < 2.0, (plain, ruled)
