"""The seam term: the flush edge spectra in the model equal the continuity baseline's, and an untrained seam head sorts as it does."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from audiosort import baselines, decoding, metrics, spectra
from audiosort.config import EncoderConfig, ModelConfig, SorterConfig
from audiosort.data import synthetic
from audiosort.errors import ConfigError
from audiosort.models import build_model
from audiosort.models.layers import EdgeLogMel, SeamScores
from audiosort.predict import position_scores

SAMPLE_RATE = 16000
EDGE_SAMPLES = round(spectra.EDGE_SECONDS * SAMPLE_RATE)


def seam_config(sorter: str, *, seam: bool = True) -> ModelConfig:
    return ModelConfig(
        encoder=EncoderConfig(type="mlp", embedding_dim=8, hidden_units=16),
        sorter=SorterConfig(type=sorter, hidden_units=16, seam=seam),
    )


def music_puzzles(n_puzzles: int, n_chunks: int, chunk_samples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Puzzles of consecutive chunks (no gap) of synthetic music, shuffled: chunks (B, n, L) int16, order (B, n)."""
    rng = np.random.default_rng(seed)
    track = synthetic.music(30.0, sample_rate=SAMPLE_RATE, rng=rng)
    starts = rng.integers(0, track.size - n_chunks * chunk_samples, size=n_puzzles)
    order = np.stack([rng.permutation(n_chunks) for _ in range(n_puzzles)])
    chunks = np.stack([track[s + order[b, :, None] * chunk_samples + np.arange(chunk_samples)] for b, s in enumerate(starts)])
    return (chunks * 32767).astype(np.int16), order


def test_edge_log_mel_is_the_baselines_windowed_spectrum_of_each_flush_edge():
    chunks = music_puzzles(4, 1, 4000)[0][:, 0]
    edges = keras.ops.convert_to_numpy(EdgeLogMel(SAMPLE_RATE, EDGE_SAMPLES)((chunks / 32768.0).astype(np.float32)))
    for index, samples in ((0, chunks[:, -EDGE_SAMPLES:]), (1, chunks[:, :EDGE_SAMPLES])):
        expected = spectra.edge_log_mel(samples / 32768.0, sample_rate=SAMPLE_RATE)
        np.testing.assert_allclose(edges[:, index], expected, atol=2e-3)


def test_edge_log_mel_sees_the_last_sample_of_a_chunk():
    """The encoder's valid-padded frames miss a chunk's last few ms; the seam's edges must not."""
    chunk = np.zeros((1, 4000), dtype=np.float32)
    clicked = chunk.copy()
    clicked[0, -3] = 0.5
    layer = EdgeLogMel(SAMPLE_RATE, EDGE_SAMPLES)
    quiet, loud = (keras.ops.convert_to_numpy(layer(x)) for x in (chunk, clicked))
    assert np.all(loud[0, 0] > quiet[0, 0] + 1.0)  # the tail hears it in every band
    np.testing.assert_array_equal(loud[0, 1], quiet[0, 1])  # the head does not


@pytest.mark.parametrize("sorter, n_chunks", [("pairwise", 3), ("pairwise", 4), ("successor", 5)])
def test_an_untrained_seam_head_sorts_as_the_continuity_baseline(sorter, n_chunks):
    chunks, order = music_puzzles(200, n_chunks, 4000)
    keras.utils.set_random_seed(0)
    model, _ = build_model(seam_config(sorter), n_chunks=n_chunks, chunk_samples=chunks.shape[2], sample_rate=SAMPLE_RATE)
    model_pred = decoding.decode(position_scores(model, chunks), method="hungarian")
    baseline_pred = decoding.decode(baselines.continuity_scores(chunks, sample_rate=SAMPLE_RATE), method="hungarian")
    baseline_right = metrics.exact_correct(baseline_pred, order)
    assert baseline_right.mean() > 1.5 * metrics.chance(n_chunks).exact_accuracy  # the baseline sorts this music: a real comparison
    assert np.mean(np.all(model_pred == baseline_pred, axis=1)) >= 0.97
    np.testing.assert_allclose(metrics.exact_correct(model_pred, order).mean(), baseline_right.mean(), atol=0.02)


def test_without_the_seam_term_an_untrained_head_does_not_sort_as_the_baseline():
    """The control of the test above: the agreement comes from the seam term, not from the puzzles."""
    chunks, _ = music_puzzles(200, 3, 4000)
    keras.utils.set_random_seed(0)
    model, _ = build_model(seam_config("pairwise", seam=False), n_chunks=3, chunk_samples=chunks.shape[2], sample_rate=SAMPLE_RATE)
    model_pred = decoding.decode(position_scores(model, chunks), method="hungarian")
    baseline_pred = decoding.decode(baselines.continuity_scores(chunks, sample_rate=SAMPLE_RATE), method="hungarian")
    assert np.mean(np.all(model_pred == baseline_pred, axis=1)) < 0.6


def test_seam_band_weights_change_the_distance_and_start_at_one():
    edges = np.zeros((1, 2, 2, 3), dtype=np.float32)
    edges[0, 0, 0] = [1.0, 0.0, 0.0]  # slot 0's tail differs from slot 1's head in band 0 only
    layer = SeamScores(initial_scale=2.0)
    scores = keras.ops.convert_to_numpy(layer(edges))
    assert scores.shape == (1, 2, 2, 1)
    np.testing.assert_allclose(scores[0, 0, 1, 0], -2.0, atol=1e-5)
    layer.band_weight.assign(np.array([np.log(np.expm1(4.0)), 0.0, 0.0], dtype=np.float32))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(edges))[0, 0, 1, 0], -4.0, atol=1e-4)


@pytest.mark.parametrize("sorter", ["pairwise", "successor"])
def test_a_seam_model_reloads_with_identical_outputs(sorter, tmp_path):
    chunks, _ = music_puzzles(4, 3, 800)
    model, _ = build_model(seam_config(sorter), n_chunks=3, chunk_samples=800, sample_rate=SAMPLE_RATE)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(reloaded(chunks)), keras.ops.convert_to_numpy(model(chunks)))


def test_seam_and_mismatch_are_refused_on_heads_that_do_not_score_joins():
    with pytest.raises(ConfigError, match="model.sorter.seam"):
        SorterConfig(type="mlp", seam=True)
    with pytest.raises(ConfigError, match="model.sorter.mismatch"):
        SorterConfig(type="successor", mismatch=True)
    dataclasses.replace(SorterConfig(type="pairwise"), seam=True, mismatch=True)
