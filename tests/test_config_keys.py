"""Finding config keys (issue 21 §5): `audiosort config` prints the resolved config; docs/config-keys.md lists every key."""

import runpy
from pathlib import Path

import pytest
import yaml

from audiosort.config import Config, _all_keys, load_config
from conftest import assert_one_line_error, run

REPO = Path(__file__).resolve().parent.parent


def test_config_prints_every_key_resolved_and_reads_back_to_the_same_config(tmp_path):
    config = REPO / "configs" / "many20-successor.yaml"
    result = run("config", config, "--set", "train.learning_rate=1e-5", "--set", "seed=7")
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.stdout)
    flat = {}
    pending = [("", printed)]
    while pending:
        prefix, node = pending.pop()
        for key, value in node.items():
            if isinstance(value, dict):
                pending.append((f"{prefix}{key}.", value))
            else:
                flat[prefix + key] = value
    assert sorted(flat) == sorted(_all_keys(Config))
    (tmp_path / "printed.yaml").write_text(result.stdout)
    expected = load_config(config, ["train.learning_rate=1e-5", "seed=7"])
    assert load_config(tmp_path / "printed.yaml") == expected
    lines = result.stdout.splitlines()
    assert "  learning_rate: 1.0e-05  # default: 0.001" in lines
    assert "seed: 7  # default: 0" in lines
    assert "  sample_rate: 16000" in lines  # a default: no comment


def test_config_without_a_file_prints_the_defaults(tmp_path):
    result = run("config")
    assert result.exit_code == 0, result.output
    assert "# default" not in result.stdout
    (tmp_path / "defaults.yaml").write_text(result.stdout)
    assert load_config(tmp_path / "defaults.yaml") == Config()


def test_config_names_the_closest_key_for_a_typo():
    result = run("config", REPO / "configs" / "demo.yaml", "--set", "train.learning_rat=0.1")
    assert_one_line_error(result, "unknown key 'train.learning_rat' in --set; did you mean 'learning_rate'?")


def test_config_with_a_missing_file_is_one_line(tmp_path):
    assert_one_line_error(run("config", tmp_path / "nowhere.yaml"), "cannot read config")


def test_the_config_key_page_is_up_to_date_with_config_py():
    script = runpy.run_path(str(REPO / "scripts" / "config_keys.py"))
    page = (REPO / "docs" / "config-keys.md").read_text()
    assert page == script["render"](), "docs/config-keys.md is out of date: run python scripts/config_keys.py"
    for key in _all_keys(Config):
        assert f"| `{key}` |" in page


@pytest.mark.parametrize("key", ["puzzle.n_chunks", "model.sorter.type", "train.jit_compile"])
def test_the_config_key_page_gives_each_keys_default(key):
    section, _, name = key.rpartition(".")
    node = Config()
    for part in section.split("."):
        node = getattr(node, part)
    default = getattr(node, name)
    shown = str(default).lower() if isinstance(default, bool) else str(default)
    row = next(line for line in (REPO / "docs" / "config-keys.md").read_text().splitlines() if line.startswith(f"| `{key}` |"))
    assert row.split(" | ")[2] == f"`{shown}`"
