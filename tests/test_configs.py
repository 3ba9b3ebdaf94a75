"""Every config shipped in configs/ loads strictly and builds its model."""

from pathlib import Path

import pytest

from audiosort.config import load_config
from audiosort.data.puzzles import PuzzleSpec
from audiosort.models import build_model

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


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
