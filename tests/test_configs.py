"""Every config shipped in configs/ loads strictly, builds its model, states only what it changes, and its
header comment's numbers agree with its values; every sweep file validates."""

import re
from pathlib import Path

import pytest
import yaml

from audiosort.config import Config, load_config, read_config_file, to_dict
from audiosort.data.puzzles import PuzzleSpec
from audiosort.errors import ConfigError
from audiosort.models import build_model
from audiosort.sweep import load_sweep

FOLDER = Path(__file__).parents[1] / "configs"
SWEEPS = sorted(FOLDER.glob("sweep-*.yaml"))
CONFIGS = sorted(set(FOLDER.glob("*.yaml")) - set(SWEEPS))
SHARED = sorted(FOLDER.glob("shared/*.yaml"))


def test_the_documented_configs_exist():
    assert {p.stem for p in CONFIGS} >= {"seed", "demo", "conv1d", "logmel", "attention", "tiny"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_loads_and_builds(path):
    config = load_config(path)
    assert config.name == path.stem
    spec = PuzzleSpec.from_config(config.puzzle, sample_rate=config.data.sample_rate)
    model, encoder = build_model(
        config.model, n_chunks=spec.n_chunks, chunk_samples=spec.chunk_samples, sample_rate=config.data.sample_rate
    )
    # Position scores, or the successor head's joins over the n chunks and the puzzle's edge.
    size = spec.n_chunks + 1 if config.model.sorter.type == "successor" else spec.n_chunks
    assert model.output_shape == (None, size, size)
    assert encoder.output_shape == (None, config.model.encoder.embedding_dim)


def _leaves(raw, prefix=""):
    for key, value in raw.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _lookup(tree, dotted):
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def restated_keys(path):
    """Keys of a config file whose value is the one it would have anyway (its base's, else the default)."""
    own = yaml.safe_load(path.read_text()) or {}
    base = read_config_file(path.parent / own.pop("base")) if "base" in own else {}
    defaults = to_dict(Config())
    restated = []
    for key, value in _leaves(own):
        inherited = _lookup(base, key)
        if value == (inherited if inherited is not None else _lookup(defaults, key)):
            restated.append(key)
    return restated


@pytest.mark.parametrize("path", CONFIGS + SHARED, ids=lambda p: p.stem)
def test_shipped_config_states_only_what_differs_from_its_base_and_the_defaults(path):
    assert restated_keys(path) == [], f"{path.name} restates these values; delete them"


def test_a_restated_default_or_base_value_is_caught(tmp_path):
    (tmp_path / "shared.yaml").write_text("puzzle: {chunk_seconds: 0.5}\n")
    config = tmp_path / "c.yaml"
    config.write_text("base: shared.yaml\npuzzle: {chunk_seconds: 0.5, n_chunks: 3, pad_mode: shared}\n")
    assert restated_keys(config) == ["puzzle.chunk_seconds", "puzzle.n_chunks"]


def _header(path):
    """The comment lines before the first key: what the file says it is."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# "))
    return " ".join(lines)


NUMBER = r"(\d[\d,]*(?:\.\d+)?)"


def header_claims(text):
    """(what, claimed, key) for each number a header states in a form we can check."""
    claims = []
    for count, seconds in re.findall(rf"\b{NUMBER} chunks of {NUMBER} s\b", text):
        claims += [("n_chunks", int(count), "puzzle.n_chunks"), ("chunk_seconds", float(seconds), "puzzle.chunk_seconds")]
    for count in re.findall(r"\bn=(\d+)\b", text) + re.findall(r"\bsort (\d+) chunks\b", text):
        claims.append(("n_chunks", int(count), "puzzle.n_chunks"))
    for seconds in re.findall(rf"\b{NUMBER} s chunks\b", text):
        claims.append(("chunk_seconds", float(seconds), "puzzle.chunk_seconds"))
    gap_ranges = re.findall(rf"\bgaps (?:of )?{NUMBER}-{NUMBER} (ms|s)\b", text)
    gap_ranges += re.findall(rf"\b{NUMBER}-{NUMBER} (ms|s) per gap\b", text)
    for low, high, unit in gap_ranges:
        scale = 1000 if unit == "ms" else 1
        claims += [("gap min", float(low) / scale, "puzzle.pad_min_seconds"), ("gap max", float(high) / scale, "puzzle.pad_max_seconds")]
    for steps, batch in re.findall(rf"\b{NUMBER} steps of {NUMBER} puzzles\b", text):
        claims += [("steps", int(steps.replace(",", "")), "steps"), ("batch", int(batch), "train.batch_size")]
    return claims


def _value(config, key):
    if key == "steps":
        return config.train.epochs * config.train.steps_per_epoch
    return _lookup(to_dict(config), key)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_header_comment_numbers_agree_with_the_values(path):
    config = load_config(path)
    wrong = [
        f"{what}: comment says {claimed}, {key} is {_value(config, key)}"
        for what, claimed, key in header_claims(_header(path))
        if _value(config, key) != pytest.approx(claimed)
    ]
    assert wrong == [], f"{path.name}: {wrong}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_header_states_numbers_the_parser_checks(path):
    # A header the parser reads nothing from passes the test above vacuously (demo.yaml's did).
    assert header_claims(_header(path)), f"{path.name}: no checkable number in its header"


def test_the_readme_main_config_header_claims_its_puzzle():
    claims = {(what, claimed) for what, claimed, _ in header_claims(_header(FOLDER / "demo.yaml"))}
    assert claims == {("n_chunks", 3), ("gap min", 0.5), ("gap max", 1.0)}


def test_a_comment_that_disagrees_with_its_value_is_caught(tmp_path):
    # configs/seed.yaml as it once was: the comment names the seed's gaps, the file set none (0.5-1.0 s ran).
    path = tmp_path / "seed.yaml"
    path.write_text("# 3 chunks of 0.2 s with gaps of 0-10 ms.\nname: seed\n")
    claims = header_claims(_header(path))
    config = load_config(path)
    assert [what for what, claimed, key in claims if _value(config, key) != pytest.approx(claimed)] == ["gap min", "gap max"]


def test_base_file_is_merged_under_the_config_section_by_section(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "corpus.yaml").write_text("data: {corpus: data/x}\npuzzle: {chunk_seconds: 0.5, n_chunks: 4}\n")
    path = tmp_path / "c.yaml"
    path.write_text("name: c\nbase: shared/corpus.yaml\npuzzle: {n_chunks: 5}\n")
    config = load_config(path, ["puzzle.pad_max_seconds=2.0"])
    assert (config.data.corpus, config.puzzle.chunk_seconds, config.puzzle.n_chunks) == ("data/x", 0.5, 5)
    assert config.puzzle.pad_max_seconds == 2.0
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="its own base"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "typo.yaml").write_text("base: shared/missing.yaml\n")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "typo.yaml")


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_shipped_sweep_validates_every_run(path):
    sweep = load_sweep(path)
    assert sweep.name == path.stem
    assert len(sweep.configs()) >= 5


def test_the_seed_study_has_at_least_eight_runs():
    assert len(load_sweep(FOLDER / "sweep-seed.yaml").runs()) >= 8
