"""Write docs/config-keys.md, every config key with its type, default and meaning, from audiosort/config.py.

The page is generated from the dataclasses (keys, types, defaults) and the comments beside their fields
(meanings), so it cannot drift from the code: tests/test_config_keys.py fails when the committed page
differs from what this script writes.

    python scripts/config_keys.py            # rewrite docs/config-keys.md
    python scripts/config_keys.py --check    # exit 1 when docs/config-keys.md is out of date
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import sys
import tokenize
import typing
from pathlib import Path

from audiosort import config

PAGE = Path(__file__).resolve().parent.parent / "docs" / "config-keys.md"
HEADER = """# Config keys

Every key of a config file and of `--set section.key=value`, with its type and
default. Generated from `audiosort/config.py` by `python scripts/config_keys.py`
(do not edit by hand; `tests/test_config_keys.py` fails when this page is out
of date). `audiosort config CONFIG [--set ...]` prints a config with every key
resolved; a config file states only what differs from these defaults.
"""


def field_comments(source: str) -> dict[tuple[str, str], str]:
    """``{(class name, field name): comment}``: the comment lines just above a field and the one on its line."""
    comments = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    lines = source.splitlines()
    found = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        for statement in node.body:
            if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
                continue
            above = []
            line = statement.lineno - 1
            while line in comments and lines[line - 1].lstrip().startswith("#"):
                above.insert(0, comments[line])
                line -= 1
            beside = [comments[statement.end_lineno]] if statement.end_lineno in comments else []
            found[(node.name, statement.target.id)] = " ".join(above + beside)
    return found


def type_name(hint) -> str:
    return " or ".join(kind.__name__ for kind in typing.get_args(hint)) if typing.get_args(hint) else hint.__name__


def default_text(value) -> str:
    if value == "":
        return '`""`'
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"


def sections(cls=config.Config, prefix: str = ""):
    """``(section, class, [(key, type, default, field name)])`` for ``cls`` and, depth first, its sub-sections."""
    hints = typing.get_type_hints(cls)
    rows, nested = [], []
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            nested.append((f"{prefix}{field.name}", hint))
        else:
            rows.append((f"{prefix}{field.name}", type_name(hint), field.default, field.name))
    if rows:
        yield prefix.rstrip(".") or "top level", cls, rows
    for section, hint in nested:
        yield from sections(hint, f"{section}.")


def render() -> str:
    """The whole page, as this script writes it."""
    comments = field_comments(inspect.getsource(config))
    parts = [HEADER]
    for section, cls, rows in sections():
        parts.append(f"\n## {section}\n")
        doc = (cls.__doc__ or "").strip().split("\n\n")[0]
        if doc and not doc.startswith(f"{cls.__name__}("):  # a dataclass without a docstring gets its signature
            parts.append(f"\n{' '.join(doc.split())}\n")
        parts.append("\n| key | type | default | what |\n|---|---|---|---|\n")
        for key, kind, default, name in rows:
            what = comments.get((cls.__name__, name), "").replace("|", "\\|")
            parts.append(f"| `{key}` | {kind} | {default_text(default)} | {what} |\n")
    return "".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the page is out of date")
    args = parser.parse_args()
    page = render()
    if args.check:
        if not PAGE.exists() or PAGE.read_text() != page:
            print(f"{PAGE} is out of date: run python scripts/config_keys.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(page)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
