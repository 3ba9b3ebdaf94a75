"""Every config shipped in configs/ loads strictly and builds its model; every sweep file validates."""

from pathlib import Path

import pytest

from audiosort.config import load_config
from audiosort.data.puzzles import PuzzleSpec
from audiosort.models import build_model
from audiosort.sweep import load_sweep

FOLDER = Path(__file__).parents[1] / "configs"
SWEEPS = sorted(FOLDER.glob("sweep-*.yaml"))
CONFIGS = sorted(set(FOLDER.glob("*.yaml")) - set(SWEEPS))


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
    assert model.output_shape == (None, spec.n_chunks, spec.n_chunks)
    assert encoder.output_shape == (None, config.model.encoder.embedding_dim)


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_shipped_sweep_validates_every_run(path):
    sweep = load_sweep(path)
    assert sweep.name == path.stem
    assert len(sweep.configs()) >= 5


def test_the_seed_study_has_at_least_eight_runs():
    assert len(load_sweep(FOLDER / "sweep-seed.yaml").runs()) >= 8
