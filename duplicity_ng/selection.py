"""The source walk: which paths a backup takes, in duplicity's order and by duplicity's rules.

Rules are compiled once into *selection functions*, each answering for one path with
None (no opinion), EXCLUDE, INCLUDE or SCAN ("a directory that may hold an included path").
The first INCLUDE/EXCLUDE wins; a SCAN seen before an EXCLUDE (or before no answer at all)
makes the directory scanned: it is yielded only if something below it is. With no answer the
path is included. Globs and regexps are matched against the path as duplicity spells it: the
source directory as given (canonicalised) joined with the relative path, decoded with
surrogateescape, so `--include /src/a` works only for the source `/src`.

The walk is a generator over one sorted `os.scandir` listing per open directory: memory grows
with the depth of the tree, not its size.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import stat
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from duplicity_ng.entry import Entry, FileType, Index
from duplicity_ng.errors import CommandLineError

EXCLUDE = 0
INCLUDE = 1
SCAN = 2

# duplicity's exit codes (log.ErrorCode) for selection errors.
_EXIT_CANT_OPEN_FILELIST = 7
_EXIT_FILE_PREFIX = 14
_EXIT_GLOBBING = 15
_EXIT_REDUNDANT_INCLUSION = 16
_EXIT_ABSOLUTE_FILES_FROM = 72
_EXIT_EMPTY_FILES_FROM = 73

_FS_ENCODING = sys.getfilesystemencoding()

_RULE_OPTIONS = (
    "include",
    "exclude",
    "include-filelist",
    "exclude-filelist",
    "include-regexp",
    "exclude-regexp",
    "exclude-other-filesystems",
)


@dataclass
class SelectionOptions:
    # In command-line order: (option, value), option one of _RULE_OPTIONS. Filelist values are
    # paths to read. ("exclude-other-filesystems", "") may appear here to keep duplicity's
    # positional meaning of that option; the boolean below puts it before every rule.
    rules: list[tuple[str, str]] = field(default_factory=list)
    exclude_if_present: list[str] = field(default_factory=list)
    exclude_other_filesystems: bool = False
    exclude_device_files: bool = False
    files_from: str | None = None
    null_separator: bool = False  # duplicity's --null-separator, for filelists and files-from


# A selection function gets the path as matched (str), the path on disk and its lstat result.
SelFunc = Callable[[str, bytes, os.stat_result], int | None]


@dataclass(slots=True)
class _Rule:
    test: SelFunc
    excludes: bool  # can this rule exclude anything (duplicity's sel_func.exclude)
    name: str


# ---------------------------------------------------------------------------------------------
# globs (duplicity's globmatch.py)


class _GlobError(Exception):
    pass


class _PrefixError(_GlobError):
    pass


def glob_to_regex(pat: str) -> str:
    """duplicity's translation: `**` crosses "/", `*` and `?` do not, `[...]` is a class."""
    i, n, res = 0, len(pat), []
    while i < n:
        c = pat[i]
        i += 1
        if c == "*" and pat[i : i + 1] == "*":
            res.append(".*")
            i += 1
        elif c == "*":
            res.append("[^/]*")
        elif c == "?":
            res.append("[^/]")
        elif c == "[":
            j = i
            if j < n and pat[j] in "!^":
                j += 1
            if j < n and pat[j] == "]":
                j += 1
            while j < n and pat[j] != "]":
                j += 1
            if j >= n:
                res.append("\\[")  # unclosed: a literal "["
            else:
                stuff = pat[i:j].replace("\\", "\\\\")
                i = j + 1
                if stuff[0] in "!^":
                    stuff = "^" + stuff[1:]
                res.append("[" + stuff + "]")
        else:
            res.append(re.escape(c))
    return "".join(res)


def _prefix_regexes(glob: str) -> list[str]:
    parts = glob.split("/")
    if "" in parts[1:-1]:
        raise _GlobError(f"Consecutive '/'s found in globbing string {glob}")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    if prefixes[0] == "":
        prefixes[0] = "/"  # the root is the only directory spelled with a trailing slash
    return [glob_to_regex(p) for p in prefixes]


def _glob_function(glob: str, include: int, ignore_case: bool) -> SelFunc:
    """duplicity's select_fn_from_glob."""
    ends_with_slash = False
    if glob == "/":
        glob = "/**"
    elif glob.endswith("/"):
        ends_with_slash = True
        glob = glob[:-1]
    flags = re.S | (re.IGNORECASE if ignore_case else 0)
    body = glob_to_regex(glob)
    # "($|/)": a glob matching a directory also matches everything below it.
    matches = _compile_regex(f"^{body}($|/)", flags).match
    exact = _compile_regex(f"^{body}($)", flags).match
    if "**" in glob:
        glob = glob[: glob.index("**") + 2]  # below a "**" any directory may hold a match
    scans = _compile_regex("^(" + "|".join(_prefix_regexes(glob)) + ")$", flags).match

    def test(name: str, _path: bytes, st: os.stat_result) -> int | None:
        if matches(name):
            if ends_with_slash and exact(name) and not stat.S_ISDIR(st.st_mode):
                return None  # "dir/" names directories only
            return include
        if include and scans(name):
            return SCAN
        return None

    return test


def _compile_regex(regex: str, flags: int) -> re.Pattern[str]:
    # A "[" inside a class ("[[]") is literal today; Python's FutureWarning about it would
    # only confuse the user, who typed a glob.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return re.compile(regex, flags)


def _always(result: int) -> SelFunc:
    def test(_name: str, _path: bytes, _st: os.stat_result) -> int | None:
        return result

    return test


# ---------------------------------------------------------------------------------------------
# compiling the options


def canonical_root(root: bytes) -> bytes:
    """duplicity's Path.get_canonical: drop "." and empty components, keep relative/absolute."""
    joined = b"/".join(c for c in root.split(b"/") if c and c != b".")
    if root.startswith(b"/"):
        return b"/" + joined
    return joined or b"."


def _join(parent: str, name: str) -> str:
    return parent + name if parent.endswith("/") else parent + "/" + name


class _Compiler:
    def __init__(self, root_name: str, root_st: os.stat_result, null_separator: bool) -> None:
        self.root_name = root_name
        self.root_st = root_st
        self.separator = "\0" if null_separator else "\n"

    def glob(self, pattern: str, include: int) -> _Rule:
        ignore_case = False
        if pattern.lower().startswith("ignorecase:"):
            pattern = pattern[len("ignorecase:") :].lower()
            ignore_case = True
        if not pattern:
            raise _GlobError("empty pattern")
        try:
            test = _glob_function(pattern, include, ignore_case)
            # A glob that neither matches nor may lead to the source directory selects nothing.
            probe = _glob_function(pattern, INCLUDE, ignore_case)
        except re.error as e:
            raise _GlobError(f"{pattern}: {e}") from e
        if not probe(self.root_name, b"", self.root_st):
            raise _PrefixError(pattern)
        if pattern == "**":
            test = _always(include)
        kind = "include" if include else "exclude"
        return _Rule(test, not include, f"shell glob {kind}: {pattern}")

    def regexp(self, pattern: str, include: int) -> _Rule:
        try:
            search = re.compile(pattern).search
        except re.error as e:
            raise CommandLineError(f"Error compiling regular expression {pattern}: {e}") from e

        def test(name: str, _path: bytes, _st: os.stat_result) -> int | None:
            return include if search(name) else None

        kind = "include" if include else "exclude"
        return _Rule(test, not include, f"regular expression {kind}: {pattern}")

    def filelist(self, filename: str, include_default: int) -> list[_Rule]:
        text = _read_list(filename).decode(_FS_ENCODING, "surrogateescape")
        rules = []
        for raw in text.split(self.separator):
            line, include = _sanitise_line(raw, include_default)
            if line:
                rules.append(self.glob(line, include))
        return rules

    def other_filesystems(self) -> _Rule:
        root_dev = self.root_st.st_dev

        def test(_name: str, _path: bytes, st: os.stat_result) -> int | None:
            return EXCLUDE if st.st_dev != root_dev else None

        return _Rule(test, True, "Match other filesystems")


def _read_list(filename: str) -> bytes:
    try:
        with open(filename, "rb") as f:
            return f.read()
    except OSError as e:
        raise CommandLineError(
            f"Error opening file {filename}: {e.strerror}", exit_code=_EXIT_CANT_OPEN_FILELIST
        ) from e


def _sanitise_line(line: str, include_default: int) -> tuple[str | None, int]:
    """duplicity's filelist line rules: strip, skip blanks and "#" lines, "+ "/"- ", quotes."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None, include_default
    include = include_default
    if line.startswith("+ "):
        include, line = INCLUDE, line[2:]
    elif line.startswith("- "):
        include, line = EXCLUDE, line[2:]
    if len(line) >= 2 and line[0] == line[-1] and line[0] in "'\"":
        line = line[1:-1]
    return line, include


def _present_rule(marker: str) -> _Rule:
    name = os.fsencode(marker)
    # duplicity looks the name up in the directory listing, so "." or "a/b" never match.
    usable = bool(name) and b"/" not in name and name not in (b".", b"..")

    def test(_name: str, path: bytes, st: os.stat_result) -> int | None:
        if not usable or not stat.S_ISDIR(st.st_mode):
            return None
        try:
            os.lstat(path + b"/" + name)
            return EXCLUDE
        except FileNotFoundError:
            return None
        except PermissionError:
            try:  # readable but not searchable: the listing still shows the marker
                return EXCLUDE if name in os.listdir(path) else None
            except OSError:
                return None
        except OSError:
            return None

    return _Rule(test, True, f"exclude-if-present filename: {marker}")


def _devices_rule() -> _Rule:
    def test(_name: str, _path: bytes, st: os.stat_result) -> int | None:
        mode = st.st_mode
        return EXCLUDE if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else None

    return _Rule(test, True, "Exclude device files")


def _parse_files_from(filename: str, null_separator: bool) -> dict[Index, list[bytes]]:
    """3.x --files-from: every listed path and its parents, as directory -> sorted children.

    Lines are taken as they are (no stripping or comments); blank lines are skipped.
    """
    data = _read_list(filename)
    listing: dict[Index, set[bytes]] = {}
    for line in data.split(b"\0" if null_separator else b"\n"):
        if not line:
            continue
        if line.startswith(b"/"):
            raise CommandLineError(
                f"Files-from list contains the absolute path: {os.fsdecode(line)}",
                hint="paths in a files-from list must be relative to the backup source",
                exit_code=_EXIT_ABSOLUTE_FILES_FROM,
            )
        parts = tuple(c for c in line.split(b"/") if c and c != b".")
        for i in range(len(parts)):
            listing.setdefault(parts[:i], set()).add(parts[i])
    if not listing:
        raise CommandLineError(
            f"Files-from list {filename} contains no files",
            hint="the backup would be empty",
            exit_code=_EXIT_EMPTY_FILES_FROM,
        )
    return {d: sorted(names) for d, names in listing.items()}


# ---------------------------------------------------------------------------------------------
# entries


@lru_cache(maxsize=4096)
def _uname(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return ""


@lru_cache(maxsize=4096)
def _gname(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except (KeyError, OverflowError):
        return ""


_TYPES = {
    stat.S_IFREG: FileType.REG,
    stat.S_IFDIR: FileType.DIR,
    stat.S_IFLNK: FileType.SYM,
    stat.S_IFIFO: FileType.FIFO,
    stat.S_IFCHR: FileType.CHR,
    stat.S_IFBLK: FileType.BLK,
}


def _entry_from_stat(index: Index, st: os.stat_result, path: bytes, ftype: FileType) -> Entry:
    entry = Entry(
        index,
        ftype,
        mode=st.st_mode & 0o7777,
        uid=st.st_uid,
        gid=st.st_gid,
        mtime=int(st.st_mtime),
        uname=_uname(st.st_uid),
        gname=_gname(st.st_gid),
    )
    if ftype is FileType.REG:
        entry.size = st.st_size
    elif ftype is FileType.SYM:
        entry.linkname = os.readlink(path)
    elif ftype is FileType.CHR or ftype is FileType.BLK:
        entry.devmajor = os.major(st.st_rdev)
        entry.devminor = os.minor(st.st_rdev)
    return entry


def entry_for(path: bytes, index: Index) -> Entry:
    """lstat one path into an Entry. OSError (FileNotFoundError ...) propagates; a socket or
    other type tar cannot hold raises ValueError."""
    st = os.lstat(path)
    ftype = _TYPES.get(stat.S_IFMT(st.st_mode))
    if ftype is None:
        kind = "socket" if stat.S_ISSOCK(st.st_mode) else "unsupported file type"
        raise ValueError(f"{os.fsdecode(path)}: {kind}")
    return _entry_from_stat(index, st, path, ftype)


# ---------------------------------------------------------------------------------------------
# the walk


class _Listed:
    """A --files-from child, shaped like the part of os.DirEntry the walk uses."""

    __slots__ = ("name", "path")

    def __init__(self, parent: bytes, name: bytes) -> None:
        self.name = name
        self.path = parent + name if parent.endswith(b"/") else parent + b"/" + name

    def stat(self, *, follow_symlinks: bool = False) -> os.stat_result:
        return os.lstat(self.path)


@dataclass(slots=True)
class _Frame:
    entry: Entry
    path: bytes
    name: str  # the path as matched
    children: Iterator[os.DirEntry[bytes] | _Listed]
    pending: bool  # scanned, not yet yielded: yielded once something below it is


OnSkip = Callable[[Index, str], None]


class Selection:
    def __init__(self, root: bytes, options: SelectionOptions) -> None:
        """Compile the options. A bad pattern or an unreadable list raises CommandLineError."""
        self.root = os.path.abspath(canonical_root(root))
        self.root_name = os.fsdecode(canonical_root(root))
        self.options = options
        self.rules = self._compile(options)
        self.files_from = (
            _parse_files_from(options.files_from, options.null_separator)
            if options.files_from is not None
            else None
        )
        # Root reads every file, so the per-file access() check is skipped for it.
        self._check_access = os.geteuid() != 0

    def _compile(self, options: SelectionOptions) -> list[_Rule]:
        try:
            root_st = os.stat(self.root)
        except OSError:
            root_st = os.stat_result((stat.S_IFDIR, 0, 0, 0, 0, 0, 0, 0, 0, 0))
        compiler = _Compiler(self.root_name, root_st, options.null_separator)
        rules: list[_Rule] = []
        try:
            for option, value in options.rules:
                rules.extend(self._rules_for(compiler, option, value))
        except _PrefixError as e:
            raise CommandLineError(
                f"The file specification {e} cannot match any files in the base directory "
                f"{self.root_name}",
                hint="useful file specifications begin with the base directory or some "
                "pattern (such as '**') which matches the base directory",
                exit_code=_EXIT_FILE_PREFIX,
            ) from e
        except _GlobError as e:
            raise CommandLineError(
                f"Error while processing expression {e}", exit_code=_EXIT_GLOBBING
            ) from e
        if rules and not rules[-1].excludes:
            raise CommandLineError(
                f"Last selection expression ({rules[-1].name}) only specifies that files be "
                "included",
                hint="the default is to include all files, so it is redundant; end with an "
                "exclude such as --exclude '**'",
                exit_code=_EXIT_REDUNDANT_INCLUSION,
            )
        # duplicity puts these before every other rule, whatever their place on the line.
        front: list[_Rule] = []
        if options.exclude_other_filesystems:
            front.append(compiler.other_filesystems())
        if options.exclude_device_files:
            front.append(_devices_rule())
        front.extend(_present_rule(marker) for marker in options.exclude_if_present)
        return front + rules

    @staticmethod
    def _rules_for(compiler: _Compiler, option: str, value: str) -> list[_Rule]:
        if option == "include":
            return [compiler.glob(value, INCLUDE)]
        if option == "exclude":
            return [compiler.glob(value, EXCLUDE)]
        if option == "include-filelist":
            return compiler.filelist(value, INCLUDE)
        if option == "exclude-filelist":
            return compiler.filelist(value, EXCLUDE)
        if option == "include-regexp":
            return [compiler.regexp(value, INCLUDE)]
        if option == "exclude-regexp":
            return [compiler.regexp(value, EXCLUDE)]
        if option == "exclude-other-filesystems":
            return [compiler.other_filesystems()]
        raise CommandLineError(f"Unknown selection option --{option}")

    def select(self, name: str, path: bytes, st: os.stat_result) -> int:
        """duplicity's Select.Select: the first INCLUDE/EXCLUDE wins, an earlier SCAN turns
        an EXCLUDE into SCAN, no answer means INCLUDE."""
        scan_pending = False
        for rule in self.rules:
            result = rule.test(name, path, st)
            if result is None:
                continue
            if result == SCAN:
                scan_pending = True
                continue
            if result == EXCLUDE and scan_pending:
                return SCAN
            return result
        return SCAN if scan_pending else INCLUDE

    def walk(self, on_skip: OnSkip | None = None) -> Iterator[tuple[Entry, bytes]]:
        """Yield (Entry, path) for every selected path, the root first, depth-first in
        bytewise name order, a directory before its contents."""
        skip = on_skip or _ignore
        root = self.root
        # A source given as a symlink to a directory means that directory (duplicity would
        # back up the bare link, and a backup of nothing looks like success).
        st = os.stat(root)
        ftype = _TYPES.get(stat.S_IFMT(st.st_mode))
        if ftype is None:
            skip((), "socket" if stat.S_ISSOCK(st.st_mode) else "unsupported file type")
            return
        root_entry = _entry_from_stat((), st, root, ftype)
        yield root_entry, root
        if ftype is not FileType.DIR:
            return
        stack: list[_Frame] = []
        children = self._children(root, (), skip)
        if children is not None:
            stack.append(_Frame(root_entry, root, self.root_name, children, False))
        rules = self.rules
        encoding = _FS_ENCODING
        while stack:
            frame = stack[-1]
            child = next(frame.children, None)
            if child is None:
                stack.pop()
                continue
            index = frame.entry.index + (child.name,)
            try:
                st = child.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # vanished since the listing
            except OSError as e:
                skip(index, e.strerror or str(e))
                continue
            ftype = _TYPES.get(stat.S_IFMT(st.st_mode))
            if ftype is None:
                skip(index, "socket" if stat.S_ISSOCK(st.st_mode) else "unsupported file type")
                continue
            path = child.path
            if rules:
                name = _join(frame.name, child.name.decode(encoding, "surrogateescape"))
                result = self.select(name, path, st)
                if result == EXCLUDE:
                    continue
            else:
                name, result = "", INCLUDE
            # duplicity reports unreadable files and directories (even one only to be
            # scanned) and leaves them out, rather than failing later on open().
            if (
                self._check_access
                and (ftype is FileType.REG or ftype is FileType.DIR)
                and not os.access(path, os.R_OK)
            ):
                skip(index, "Permission denied")
                continue
            if result == SCAN and ftype is not FileType.DIR:
                continue
            try:
                entry = _entry_from_stat(index, st, path, ftype)
            except OSError as e:
                skip(index, e.strerror or str(e))
                continue
            if result == INCLUDE:
                yield from _flush_pending(stack)
                yield entry, path
            if ftype is FileType.DIR:
                children = self._children(path, index, skip)
                if children is not None:
                    stack.append(_Frame(entry, path, name, children, result == SCAN))

    def _children(
        self, path: bytes, index: Index, skip: OnSkip
    ) -> Iterator[os.DirEntry[bytes] | _Listed] | None:
        if self.files_from is not None:
            names = self.files_from.get(index)
            return iter([_Listed(path, n) for n in names]) if names else None
        try:
            with os.scandir(path) as it:
                listing = sorted(it, key=_by_name)
        except OSError as e:
            skip(index, e.strerror or str(e))
            return None
        return iter(listing)


def _flush_pending(stack: list[_Frame]) -> Iterator[tuple[Entry, bytes]]:
    """Yield the scanned directories above an included path, outermost first.

    Pending frames are always the top of the stack: yielding one yields all above it."""
    first = len(stack)
    while first > 0 and stack[first - 1].pending:
        first -= 1
    for frame in stack[first:]:
        frame.pending = False
        yield frame.entry, frame.path


def _by_name(entry: os.DirEntry[bytes]) -> bytes:
    return entry.name


def _ignore(_index: Index, _reason: str) -> None:
    pass
