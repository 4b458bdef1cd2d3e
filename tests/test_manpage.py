"""man/duplicity-ng.1 stays true to the code.

- every option the parser offers (duplicity_ng.cli.options.build_parser, which includes
  backends/cli.py's) is documented, as `\\-\\-name` in roff, and every `\\-\\-name` in the page
  is an option of the parser or one of the few foreign ones named on purpose (gpg's own
  options, duplicity options we do not have);
- the default a documented option states is the parser's;
- every command of duplicity_ng.cli.options.COMMANDS has its entry under COMMANDS, with
  exactly its aliases, and a line in the SYNOPSIS;
- every exit code the code can return is described under EXIT STATUS, and nothing else is;
- groff renders the page without a single warning.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

from duplicity_ng.cli.options import COMMANDS, build_parser

REPO = Path(__file__).resolve().parent.parent
MANPAGE = REPO / "man" / "duplicity-ng.1"
SOURCE_DIRS = (REPO / "duplicity_ng", REPO / "backends")

#: Options the page names that are not ours: gpg's (what we pass it, what --gpg-options may
#: carry) and duplicity's (in COMPATIBILITY WITH DUPLICITY). None may be a parser option.
FOREIGN_OPTIONS = {
    # gpg
    "--cipher-algo",
    "--compress-algo",
    "--hidden-recipient",
    "--passphrase-fd",
    "--pinentry-mode",
    # duplicity, not (yet) duplicity-ng
    "--jsonstat",
    "--old-filenames",
    "--par2-redundancy",
    "--short-filenames",
    "--use-gpgsm",
}

# A long option in roff: every "-" written "\-".
_ROFF_LONG_OPTION = re.compile(r"\\-\\-([a-z0-9]+(?:\\-[a-z0-9]+)*)")


@cache
def roff() -> str:
    return MANPAGE.read_text(encoding="utf-8")


def to_roff(text: str) -> str:
    return text.replace("-", "\\-")


def section(name: str) -> str:
    """The roff source of one .SH section (without its heading line)."""
    parts = re.split(r"^\.SH +(.*)$", roff(), flags=re.MULTILINE)
    sections = {parts[i].strip('"'): parts[i + 1] for i in range(1, len(parts), 2)}
    assert name in sections, f"no section {name!r} in {MANPAGE}; it has {list(sections)}"
    return sections[name]


_ARG = re.compile(r'"([^"]*)"|(\S+)')
_JOINED_MACROS = {"BR", "RB", "BI", "IB", "IR", "RI"}  # alternating fonts: no spaces between
_SPACED_MACROS = {"B", "I", "SM", "SB"}


def plain(source: str) -> str:
    """Roff to plain text, enough to read words and sentences (one line per input line)."""
    lines = []
    for line in source.splitlines():
        if line.startswith('.\\"'):
            continue
        if line.startswith("."):
            macro, _, rest = line[1:].partition(" ")
            args = [quoted or bare for quoted, bare in _ARG.findall(rest)]
            if macro in _JOINED_MACROS:
                line = "".join(args)
            elif macro in _SPACED_MACROS:
                line = " ".join(args)
            else:
                line = ""
        line = re.sub(r"\\f[BIRP]", "", line)
        for escape, char in (("\\-", "-"), ("\\&", ""), ("\\(aq", "'"), ("\\e", "\\")):
            line = line.replace(escape, char)
        lines.append(line)
    return "\n".join(lines)


def entries(source: str) -> list[tuple[str, str]]:
    """The .TP entries of a piece of roff: (tag as plain text, body as plain text)."""
    found = []
    for chunk in re.split(r"^\.TP\b.*$", source, flags=re.MULTILINE)[1:]:
        chunk = re.split(r"^\.(?:SS|SH|PP|P|LP)\b", chunk, flags=re.MULTILINE)[0]
        lines = chunk.strip("\n").split("\n")
        tag, body = plain(lines[0]), plain("\n".join(lines[1:]))
        found.append((tag.strip(), " ".join(body.split())))
    return found


@cache
def parser_actions() -> list[argparse.Action]:
    return [a for a in build_parser()._actions if a.option_strings and a.help != argparse.SUPPRESS]


def long_options() -> set[str]:
    return {s for a in parser_actions() for s in a.option_strings if s.startswith("--")}


def all_parser_options() -> set[str]:
    """Hidden ones too: a foreign option must not be one of ours, documented or not."""
    return {s for a in build_parser()._actions for s in a.option_strings}


# -- options --------------------------------------------------------------------------------


def test_every_long_option_is_documented() -> None:
    missing = []
    for option in sorted(long_options()):
        # Not followed by more of an option name: --exclude is not found in --exclude-if-present.
        pattern = re.escape(to_roff(option)) + r"(?![a-z0-9]|\\-[a-z0-9])"
        if not re.search(pattern, roff()):
            missing.append(option)
    assert not missing, f"options of the parser missing from {MANPAGE.name}: {missing}"


def test_every_short_option_is_documented() -> None:
    shorts = {s for a in parser_actions() for s in a.option_strings if not s.startswith("--")}
    missing = [
        s
        for s in sorted(shorts)
        if not re.search(r"(?<!\\-)" + re.escape(to_roff(s)) + r"\b", roff())
    ]
    assert not missing, f"short options missing from {MANPAGE.name}: {missing}"


def _tag_words(tag: str) -> set[str]:
    return set(re.split(r"[\s,]+", tag))


def test_every_option_has_one_entry_naming_all_its_spellings() -> None:
    """Being named somewhere (an example) is not enough: each option has its own entry."""
    option_entries = entries(section("OPTIONS"))
    problems = []
    for action in parser_actions():
        spellings = set(action.option_strings)
        tags = [tag for tag, _ in option_entries if spellings & _tag_words(tag)]
        if len(tags) != 1:
            problems.append(f"{'/'.join(sorted(spellings))}: {len(tags)} entries under OPTIONS")
        elif not spellings <= _tag_words(tags[0]):
            problems.append(f"entry {tags[0]!r} lacks {sorted(spellings - _tag_words(tags[0]))}")
    assert not problems, "\n".join(problems)


def test_every_documented_option_exists() -> None:
    named = {"--" + m.replace("\\-", "-") for m in _ROFF_LONG_OPTION.findall(roff())}
    unknown = named - long_options() - FOREIGN_OPTIONS
    assert not unknown, (
        f"{MANPAGE.name} names options the parser does not have: {sorted(unknown)} "
        "(remove them, or add them to FOREIGN_OPTIONS if they are gpg's or duplicity's)"
    )


def test_foreign_options_are_foreign_and_named() -> None:
    ours = FOREIGN_OPTIONS & all_parser_options()
    assert not ours, f"now options of duplicity-ng, document them as such: {sorted(ours)}"
    named = {"--" + m.replace("\\-", "-") for m in _ROFF_LONG_OPTION.findall(roff())}
    assert not FOREIGN_OPTIONS - named, f"no longer named: {sorted(FOREIGN_OPTIONS - named)}"


def _shown_default(value: object) -> str | None:
    """The default as the page writes it; None when there is nothing to state."""
    if value is None or isinstance(value, bool) or value in ("", [], argparse.SUPPRESS):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def test_stated_defaults_are_the_parsers() -> None:
    option_entries = entries(section("OPTIONS"))
    problems = []
    for action in parser_actions():
        shown = _shown_default(action.default)
        if shown is None:
            continue
        name = next(s for s in action.option_strings if s.startswith("--"))
        bodies = [body for tag, body in option_entries if name in _tag_words(tag)]
        if len(bodies) != 1:
            problems.append(f"{name}: {len(bodies)} entries under OPTIONS")
            continue
        if not re.search(r"\bdefault: " + re.escape(shown) + r"\b", bodies[0], re.IGNORECASE):
            problems.append(f"{name}: the parser's default is {shown}, the page says {bodies[0]!r}")
    assert not problems, "\n".join(problems)


# -- commands -------------------------------------------------------------------------------


def _aliases() -> dict[str, set[str]]:
    aliases: dict[str, set[str]] = {}
    for name, command in COMMANDS.items():
        aliases.setdefault(command, set())
        if name != command:
            aliases[command].add(name)
    return aliases


def test_every_command_has_its_entry_with_its_aliases() -> None:
    documented: dict[str, str] = {}
    for tag, body in entries(section("COMMANDS")):
        documented[tag.split()[0]] = body
    problems = []
    for command, aliases in sorted(_aliases().items()):
        body = documented.get(command)
        if body is None:
            problems.append(f"{command}: no entry under COMMANDS")
            continue
        m = re.search(r"\bAlias(?:es)?: ([^.]*)\.", body)
        listed = set(m.group(1).split(", ")) if m else set()
        if listed != aliases:
            problems.append(
                f"{command}: aliases {sorted(aliases)}, the page lists {sorted(listed)}"
            )
    for command in sorted(set(documented) - set(_aliases())):
        problems.append(f"{command}: documented under COMMANDS, but not a command")
    assert not problems, "\n".join(problems)


def test_every_command_is_in_the_synopsis() -> None:
    synopsis = plain(section("SYNOPSIS"))
    missing = [
        c
        for c in sorted(_aliases())
        if not re.search(rf"(?<![\w-]){re.escape(c)}(?![\w-])", synopsis)
    ]
    assert not missing, f"commands missing from the SYNOPSIS: {missing}"


def test_every_command_name_and_alias_appears() -> None:
    text = plain(roff())
    missing = [
        n for n in sorted(COMMANDS) if not re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", text)
    ]
    assert not missing, f"command names missing from {MANPAGE.name}: {missing}"


# -- exit status ----------------------------------------------------------------------------

_CODE_PATTERNS = (
    re.compile(r"\bexit_code\s*=\s*(\d+)"),  # class attributes and keyword arguments
    re.compile(r"^_EXIT_[A-Z_]+\s*=\s*(\d+)", re.MULTILINE),  # selection.py's constants
)


def exit_codes_in_code() -> set[int]:
    codes: set[int] = set()
    seen: set[Path] = set()
    for root in SOURCE_DIRS:
        for path in root.rglob("*.py"):
            real = path.resolve()
            if real in seen:
                continue
            seen.add(real)
            text = real.read_text(encoding="utf-8")
            for pattern in _CODE_PATTERNS:
                codes.update(int(c) for c in pattern.findall(text))
    main = (REPO / "duplicity_ng" / "cli" / "main.py").read_text(encoding="utf-8")
    codes.update(int(c) for c in re.findall(r"^\s*return (\d+)\b", main, re.MULTILINE))
    return codes


def test_exit_codes_match_the_code() -> None:
    documented = {int(tag) for tag, _ in entries(section("EXIT STATUS")) if tag.isdigit()}
    in_code = exit_codes_in_code()
    assert {0, 1, 2, 30, 130, 141} <= in_code, sorted(in_code)  # the scan itself works
    assert not in_code - documented, f"undocumented exit codes: {sorted(in_code - documented)}"
    assert not documented - in_code, (
        f"documented exit codes the code never uses: {sorted(documented - in_code)}"
    )


# -- rendering ------------------------------------------------------------------------------


def test_groff_renders_without_warnings() -> None:
    groff = shutil.which("groff")
    if groff is None:
        pytest.fail("groff is not installed (scripts/setup.sh installs groff-base)", pytrace=False)
    result = subprocess.run(
        [groff, "-man", "-Tutf8", "-ww", "-z", str(MANPAGE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", f"groff warnings:\n{result.stderr}"
