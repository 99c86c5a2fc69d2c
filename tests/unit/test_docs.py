"""The documentation against the code. In README.md and docs/*.md: every `make` target named is
in the Makefile, every `vprov` subcommand named is one the command-line parser knows, and every
relative link points to a file of the repository (and, into a Markdown page, to one of its
headings)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from vprov.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"", re.IGNORECASE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
MAKE = re.compile(r"(?<![\w/.-])make((?:[ \t]+[^\s;&|#`()]+)+)")
VPROV = re.compile(r"(?<![\w.-])vprov((?:[ \t]+[^\s;&#`()]+)+)")
COMMENT = re.compile(r"(?:^|(?<=\s))#.*$", re.MULTILINE)
WORD = re.compile(r"[a-z][a-z0-9-]*")
TARGET = re.compile(r"^([A-Za-z0-9_.-]+)[ \t]*:(?!=)", re.MULTILINE)


def code_texts(markdown: str) -> list[str]:
    """The text of the fenced code blocks and inline code spans, where commands are written."""
    blocks = [COMMENT.sub("", m.group(0)) for m in FENCE.finditer(markdown)]
    rest = FENCE.sub("", markdown)
    return blocks + [m.group(2) for m in CODE_SPAN.finditer(rest)]


def prose(markdown: str) -> str:
    """The Markdown without code: links and headings inside code are no links or headings."""
    return CODE_SPAN.sub("", FENCE.sub("", markdown))


def make_targets(makefile: str) -> set[str]:
    """The rules' targets (variable assignments, ``X := ...``, are not rules)."""
    return set(TARGET.findall(makefile))


def named_make_targets(markdown: str) -> set[str]:
    """The targets of every ``make ...`` command in the page's code; ``VAR=value`` and options
    are skipped."""
    found = set()
    for code in code_texts(markdown):
        for match in MAKE.finditer(code):
            for word in match.group(1).split():
                if "=" in word or word.startswith("-"):
                    continue
                if not WORD.fullmatch(word):
                    break
                found.add(word)
    return found


def named_vprov_commands(markdown: str) -> set[tuple[str, ...]]:
    """The subcommand words of every ``vprov ...`` command in the page's code, up to the first
    option or placeholder; ``a|b`` (``a\\|b`` in a table) names both."""
    found = set()
    for code in code_texts(markdown):
        for match in VPROV.finditer(code.replace("\\|", "|")):
            words: list[str] = []
            for word in match.group(1).split():
                choices = word.split("|")
                if not all(WORD.fullmatch(c) for c in choices):
                    break
                if len(choices) > 1:
                    found.update((*words, c) for c in choices)
                    words = []
                    break
                words.append(word)
            if words:
                found.add(tuple(words))
    return found


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def unknown_subcommands(commands: set[tuple[str, ...]],
                        parser: argparse.ArgumentParser) -> list[str]:
    """Commands whose subcommand words the parser does not know. The words after the last
    subcommand level (a VIN, a file) are arguments, not checked."""
    unknown = []
    for words in sorted(commands):
        current = parser
        for i, word in enumerate(words):
            choices = subcommands(current)
            if not choices:
                break
            if word not in choices:
                unknown.append(f"vprov {' '.join(words[:i + 1])}: known: "
                               f"{', '.join(sorted(choices))}")
                break
            current = choices[word]
    return unknown


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[`*]", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for heading in HEADING.findall(FENCE.sub("", markdown)):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    found.update(HTML_ANCHOR.findall(markdown))
    return found


def link_targets(markdown: str) -> list[str]:
    text = prose(markdown)
    return LINK.findall(text) + REFERENCE.findall(text)


def broken_links(page: Path, markdown: str, root: Path) -> list[str]:
    """The page's relative links that lead nowhere: a missing file or directory, a path out of
    the repository, or an anchor no heading of the Markdown page it names has."""
    broken = []
    for target in link_targets(markdown):
        if SCHEME.match(target):
            continue
        path_part, _, fragment = target.partition("#")
        path = (page.parent / unquote(path_part)).resolve() if path_part else page.resolve()
        if not path.is_relative_to(root.resolve()):
            broken.append(f"{target}: outside the repository")
        elif not path.exists():
            broken.append(f"{target}: no such file")
        elif fragment and path.suffix == ".md" and path.is_file():
            text = markdown if path == page.resolve() else path.read_text(encoding="utf-8")
            if unquote(fragment).lower() not in anchors(text):
                broken.append(f"{target}: no heading with that anchor in {path.name}")
    return broken


# --- the repository's pages ----------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_make_target_named_exists(page: Path) -> None:
    named = named_make_targets(page.read_text(encoding="utf-8"))
    if page == README:
        assert {"demo", "test"} <= named  # the two commands of the first screen
    missing = named - make_targets((REPO / "Makefile").read_text(encoding="utf-8"))
    assert not missing, f"make targets the Makefile lacks: {sorted(missing)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_vprov_subcommand_named_exists(page: Path) -> None:
    named = named_vprov_commands(page.read_text(encoding="utf-8"))
    if page == README:
        assert {("worker",), ("status",), ("replay",)} <= named
    assert not unknown_subcommands(named, build_parser())


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path) -> None:
    assert not broken_links(page, page.read_text(encoding="utf-8"), REPO)


def test_the_readme_links_to_the_docs_index_and_every_page_is_in_it() -> None:
    assert "docs/README.md" in link_targets(README.read_text(encoding="utf-8"))
    index = REPO / "docs" / "README.md"
    linked = {t.partition("#")[0] for t in link_targets(index.read_text(encoding="utf-8"))}
    pages = {p.name for p in PAGES if p.parent == index.parent and p != index}
    assert pages <= linked, f"docs/README.md does not link {sorted(pages - linked)}"


# --- the checks themselves, on made-up pages -------------------------------------------------


def test_a_missing_file_an_escape_and_a_wrong_anchor_are_reported(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "ops.md").write_text("# Ops\n\n## Local stack\n\n```sh\n# not a "
                                              "heading\n```\n", encoding="utf-8")
    text = ("See [ops](docs/ops.md), [its stack](docs/ops.md#local-stack), [top](#read-me), "
            "[web](https://example.org/x.md) and `[code](nowhere.md)`.\n\n# Read me\n\n"
            "Broken: [gone](docs/gone.md), [spec](../docs/spec.md), ![plot](docs/img/p.png), "
            "[anchor](docs/ops.md#remote-stack), [comment](docs/ops.md#not-a-heading).\n\n"
            "[ref]: docs/missing.md\n")
    page = tmp_path / "README.md"
    page.write_text(text, encoding="utf-8")
    assert broken_links(page, text, tmp_path) == [
        "docs/gone.md: no such file",
        "../docs/spec.md: outside the repository",
        "docs/img/p.png: no such file",
        "docs/ops.md#remote-stack: no heading with that anchor in ops.md",
        "docs/ops.md#not-a-heading: no heading with that anchor in ops.md",
        "docs/missing.md: no such file",
    ]


def test_headings_get_githubs_anchors() -> None:
    text = ("# Faust defects\n## 1. A record, committed past\n## Ingress: any producer's "
            "partitioner\n## `make test` and *bench*\n## Ingress: any producer's partitioner\n")
    assert anchors(text) == {"faust-defects", "1-a-record-committed-past",
                             "ingress-any-producers-partitioner", "make-test-and-bench",
                             "ingress-any-producers-partitioner-1"}


def test_make_targets_are_read_from_code_only() -> None:
    text = ("Make sure to `make demo`, `KEEP=1 make demo`, `make test PYTEST_ARGS=tests/unit`;\n"
            "```sh\nmake --no-print-directory deploy   # a comment: make nothing\n```\n")
    assert named_make_targets(text) == {"demo", "test", "deploy"}
    assert named_make_targets(text) - make_targets("deploy:\n\techo\nSHELL := bash\n") == {
        "demo", "test"}


def test_an_unknown_subcommand_is_reported() -> None:
    text = ("| `vprov config regions\\|workers\\|compose FILE` | `vprov status VIN` |\n"
            "`vprov vehicle ...`, `vprov topics create`, `.venv/bin/vprov simulate --rate 5`, "
            "`vprov/cli.py`, `vprov-global`\n"
            "```sh\nvprov stauts VIN\nvprov topics delete\nvprov deadletter list|purge\n```\n")
    named = named_vprov_commands(text)
    assert named == {("config", "regions"), ("config", "workers"), ("config", "compose"),
                     ("status",), ("vehicle",), ("topics", "create"), ("simulate",),
                     ("stauts",), ("topics", "delete"), ("deadletter", "list"),
                     ("deadletter", "purge")}
    assert [line.split(":")[0] for line in unknown_subcommands(named, build_parser())] == [
        "vprov deadletter purge", "vprov stauts", "vprov topics delete"]
