"""Issue 27 lever 5, cues that only music has: the tempogram target and the cross-similarity head."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from audiosort.config import EncoderConfig, ModelConfig, SorterConfig, SpectralTargetsConfig, load_config
from audiosort.models import build_model
from audiosort.models.auxiliary import ENVELOPE_BANDS, TEMPOGRAM_LAGS, SpectralTargets, chunk_tempogram

SAMPLE_RATE = 16000
CHUNK_SAMPLES = 8000


def click_train(period_seconds: float, amplitude: float = 0.5, first_sample: int = 37) -> np.ndarray:
    audio = np.zeros(CHUNK_SAMPLES, dtype=np.float32)
    audio[first_sample :: round(period_seconds * SAMPLE_RATE)] = amplitude
    return audio


def noise_chunks(shape: tuple, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((*shape, CHUNK_SAMPLES)) * 3000).astype(np.int16)


@pytest.mark.parametrize("period_seconds", [0.08, 0.1, 0.15])
def test_the_tempogram_of_a_click_train_peaks_at_its_period_whatever_its_loudness(period_seconds):
    audio = np.stack([click_train(period_seconds), click_train(period_seconds, amplitude=0.005), np.zeros(CHUNK_SAMPLES, np.float32)])
    loud, quiet, silent = keras.ops.convert_to_numpy(chunk_tempogram(audio, sample_rate=SAMPLE_RATE))
    lag_seconds = np.array(TEMPOGRAM_LAGS) * 0.01
    assert lag_seconds[np.argmax(loud)] == pytest.approx(period_seconds)
    np.testing.assert_allclose(quiet, loud, atol=1e-4)
    np.testing.assert_array_equal(silent, 0.0)


def targets_config(**targets) -> ModelConfig:
    return ModelConfig(
        encoder=EncoderConfig(type="logmel1d", filters=8, blocks=1, embedding_dim=8),
        sorter=SorterConfig(type="pairwise", hidden_units=8),
        spectral_targets=SpectralTargetsConfig(hidden_units=4, **targets),
    )


def test_the_tempogram_weight_off_leaves_the_spectral_targets_as_they_were():
    built = {
        weights: build_model(targets_config(weight=weights[0], tempogram_weight=weights[1]), n_chunks=3, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE)[0]
        for weights in ((0.5, 0.0), (0.5, 0.2), (0.0, 0.2))
    }
    widths = {weights: model.get_layer("spectral_targets").readout.units for weights, model in built.items()}
    assert widths == {(0.5, 0.0): 12 + ENVELOPE_BANDS, (0.5, 0.2): 12 + ENVELOPE_BANDS + len(TEMPOGRAM_LAGS), (0.0, 0.2): len(TEMPOGRAM_LAGS)}
    # the readout's extra columns are the only new weights: 4 hidden units and a bias per lag
    assert built[(0.5, 0.2)].count_params() - built[(0.5, 0.0)].count_params() == 5 * len(TEMPOGRAM_LAGS)
    chunks = noise_chunks((2, 3))
    built[(0.5, 0.0)](chunks, training=True)
    assert len(built[(0.5, 0.0)].losses) == 1


def test_the_tempogram_loss_is_the_squared_error_of_its_readout_columns(tmp_path):
    layer = SpectralTargets(SAMPLE_RATE, weight=0.5, hidden_units=4, tempogram_weight=2.0)
    embeddings = np.random.default_rng(0).standard_normal((2, 3, 5)).astype(np.float32)
    chunks = noise_chunks((2, 3))
    layer([embeddings, chunks], training=True)
    predicted = keras.ops.convert_to_numpy(layer.readout(layer.hidden(embeddings.reshape(6, 5))))[:, 12 + ENVELOPE_BANDS :]
    target = keras.ops.convert_to_numpy(chunk_tempogram(chunks.reshape(6, -1).astype(np.float32) / 32768, sample_rate=SAMPLE_RATE))
    np.testing.assert_allclose(float(layer.losses[-1]), 2.0 * np.mean((predicted - target) ** 2), rtol=1e-4)
    model, _ = build_model(targets_config(tempogram_weight=0.2), n_chunks=3, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE)
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras").get_layer("spectral_targets")
    assert (reloaded.weight, reloaded.tempogram_weight) == (0.0, 0.2)


def test_tempogram_weight_is_reachable_from_the_command_line():
    assert load_config(overrides=["model.spectral_targets.tempogram_weight=0.3"]).model.spectral_targets.tempogram_weight == 0.3
