"""Errors and help at the right layer: the library names parameters (resume=True, n_puzzles), only cli.py names flags;
the CLI's help reads the library's defaults instead of repeating them."""

import ast
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from audiosort import dream
from audiosort import run as run_module
from audiosort.cli import as_flags, main
from audiosort.config import load_config
from audiosort.errors import ConfigError, InputError
from conftest import assert_one_line_error, run

LIBRARY = Path(__file__).resolve().parent.parent / "audiosort"
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]+(?:-[a-z0-9]+)*")


def _docstrings(tree: ast.AST) -> set[int]:
    nodes = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, nodes) and node.body and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def test_no_library_string_outside_cli_names_a_flag():
    # Every string the code builds (messages, and the labels it passes into messages), not docstrings,
    # which may say which command runs a function.
    found = []
    for path in sorted(LIBRARY.rglob("*.py")):
        if path == LIBRARY / "cli.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                found += [f"{path.relative_to(LIBRARY)}:{node.lineno}: {flag}" for flag in FLAG.findall(node.value)]
    assert not found, "library strings naming CLI flags (name the parameter; cli.PARAMETER_FLAGS translates):\n" + "\n".join(found)


def test_a_library_error_names_the_parameters(tmp_path):
    config = load_config(None, ["name=x"])
    with pytest.raises(InputError, match=r"^resume=True continues a run and overwrite=True deletes it"):
        run_module.open_run(tmp_path / "x", config, resume=True, overwrite=True)
    with pytest.raises(ConfigError, match=r"^unknown key 'train.epoch' in overrides"):
        load_config(None, ["train.epoch=3"])


@pytest.mark.parametrize(
    "message, shown",
    [
        ("runs/x already exists; pass resume=True to continue it, overwrite=True to replace it",
         "runs/x already exists; pass --resume to continue it, --overwrite to replace it"),
        ("unknown key 'a.b' in overrides; did you mean 'c'?", "unknown key 'a.b' in --set; did you mean 'c'?"),
        ("group_pattern='(' is not a regular expression", "--group-pattern '(' is not a regular expression"),
        ("ask for fewer (n_puzzles)", "ask for fewer (--puzzles)"),
        # Config keys, paths and file names that contain a parameter's name are not parameters.
        ("data.n_puzzles in configs/overrides.yaml", "data.n_puzzles in configs/overrides.yaml"),
        ("runs/overrides/out=1 is not a folder", "runs/overrides/out=1 is not a folder"),
    ],
)
def test_the_cli_spells_parameters_as_its_flags(message, shown):
    assert as_flags(message) == shown


def test_the_cli_shows_a_library_error_with_flags(tmp_path):
    result = run("train", "--config", "configs/tiny.yaml", "--set", "train.epoch=3", "--runs-dir", tmp_path)
    assert_one_line_error(result, "unknown key 'train.epoch' in --set")


def test_dream_help_states_the_defaults_dream_uses():
    shown = " ".join(CliRunner().invoke(main, ["dream", "--help"], terminal_width=200).output.split())
    for default in (
        f"(default {dream.DEFAULT_SECONDS:g};",
        f"per octave (default {dream.DEFAULT_STEPS})",
        f"stages (default {dream.DEFAULT_OCTAVES})",
        f"waveform's (default {dream.DEFAULT_STEP_SIZE:g})",
        f"variation (default {dream.DEFAULT_TV_WEIGHT:g})",
    ):
        assert default in shown
