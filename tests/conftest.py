"""Shared fixtures: tiny corpora made by the synthetic generators, in tmp folders."""

import numpy as np
import pytest
import soundfile as sf

from audiosort.config import PuzzleConfig
from audiosort.data import synthetic
from audiosort.data.corpus import prepare_synthetic

SAMPLE_RATE = 16000
# Small puzzles keep the corpora tiny: 3 chunks of 0.05 s with gaps up to 0.01 s.
TINY_PUZZLE = PuzzleConfig(n_chunks=3, chunk_seconds=0.05, pad_min_seconds=0.0, pad_max_seconds=0.01)


@pytest.fixture(scope="session")
def music_corpus(tmp_path_factory):
    """3 minutes of synthetic music in 12 tracks of 15 s, with 200-puzzle val/test sets."""
    out = tmp_path_factory.mktemp("corpora") / "music"
    prepare_synthetic(
        "music", out, duration_seconds=180, track_seconds=15, puzzle=TINY_PUZZLE, n_puzzles=200, progress=False
    )
    return out


def write_music_files(folder, count, *, seconds=3.0, sample_rate=22050, seed=0, prefix="song"):
    """Write `count` stereo FLAC files of synthetic music; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(count):
        y = synthetic.music(seconds, sample_rate=sample_rate, rng=rng)
        path = folder / f"{prefix}{k:02d}.flac"
        sf.write(path, np.stack([y, 0.5 * y], axis=1), sample_rate)
        paths.append(path)
    return paths
