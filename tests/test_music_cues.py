"""Issue 27 lever 5, cues that only music has: the tempogram target and the cross-similarity head."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from audiosort.config import EncoderConfig, ModelConfig, SorterConfig, SpectralTargetsConfig, load_config
from audiosort.errors import ConfigError
from audiosort.evaluate import evaluate
from audiosort.heads import HEADS
from audiosort.models import build_model
from audiosort.models.auxiliary import ENVELOPE_BANDS, TEMPOGRAM_LAGS, SpectralTargets, chunk_tempogram
from audiosort.models.build import build_feature_model
from audiosort.models.layers import CrossSimilarity
from audiosort.models.sorters import CROSS_SIMILARITY_FILTERS, CROSS_SIMILARITY_UNITS, build_sorter, join_scores
from audiosort.run import load_encoder, load_run_model
from audiosort.train import train
from conftest import TINY_TRAIN, numbers_under_jax

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
        (weight, tempo): build_model(
            targets_config(weight=weight, tempogram_weight=tempo), n_chunks=3, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE
        )[0]
        for weight, tempo in ((0.5, 0.0), (0.5, 0.2), (0.0, 0.2))
    }
    widths = {weights: model.get_layer("spectral_targets").readout.units for weights, model in built.items()}
    lags = len(TEMPOGRAM_LAGS)
    assert widths == {(0.5, 0.0): 12 + ENVELOPE_BANDS, (0.5, 0.2): 12 + ENVELOPE_BANDS + lags, (0.0, 0.2): lags}
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


def test_cross_similarity_features_see_the_order_of_a_chunks_frames_and_only_its_own_pairs():
    layer = CrossSimilarity(8, 4)
    frames = np.random.default_rng(0).standard_normal((1, 3, 6, 10)).astype(np.float32)
    reordered = frames.copy()
    reordered[0, 0] = frames[0, 0, ::-1]
    before, after = (keras.ops.convert_to_numpy(layer(x)) for x in (frames, reordered))
    assert before.shape == (1, 3, 3, 8)
    changed = np.abs(after - before).max(axis=-1)[0] > 1e-4
    # every pair with chunk 0 changes; the pairs of chunks 1 and 2 do not
    np.testing.assert_array_equal(changed, [[True, True, True], [True, False, False], [True, False, False]])


def cross_config(cross_similarity: bool, **sorter) -> ModelConfig:
    return ModelConfig(
        encoder=EncoderConfig(type="logmel1d", filters=8, blocks=2, embedding_dim=8),
        sorter=SorterConfig(type="pairwise", hidden_units=8, mismatch=True, cross_similarity=cross_similarity, **sorter),
    )


def test_the_pairwise_head_scores_change_when_a_chunks_frames_are_reordered_in_time():
    sorter = build_sorter(cross_config(True).sorter, n_chunks=3, embedding_dim=8, frame_shape=(6, 10))
    rng = np.random.default_rng(1)
    embeddings = rng.standard_normal((1, 3, 8)).astype(np.float32)
    frames = rng.standard_normal((1, 3, 6, 10)).astype(np.float32)
    reordered = frames.copy()
    reordered[0, 1] = frames[0, 1, [3, 0, 5, 1, 4, 2]]
    before, after = (keras.ops.convert_to_numpy(sorter([embeddings, x], training=False)) for x in (frames, reordered))
    assert np.abs(after - before).max() > 1e-4


def test_cross_similarity_off_builds_todays_model_and_on_keeps_the_saved_encoder(tmp_path):
    (off, off_encoder), (on, on_encoder) = (
        build_model(cross_config(flag, seam=True), n_chunks=3, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE)
        for flag in (False, True)
    )
    assert len(off.get_layer("sorter").inputs) == 2 and "cross_similarity" not in {layer.name for layer in off.get_layer("sorter").layers}
    cross = on.get_layer("sorter").get_layer("cross_similarity")
    frame_channels = on.get_layer("sorter").inputs[2].shape[-1]
    # the only new weights: the cross-similarity net and its features' rows in the pair MLP's first layer (8 units)
    assert on.count_params() - off.count_params() == cross.count_params() + cross.output.shape[-1] * 8
    filters = CROSS_SIMILARITY_FILTERS
    assert cross.count_params() == frame_channels * CROSS_SIMILARITY_UNITS + (9 * filters + filters) + (9 * filters * filters + filters)
    assert on_encoder.count_params() == off_encoder.count_params() and on_encoder.output_shape == (None, 8)
    chunks = noise_chunks((2, 3))
    frames, embeddings = (keras.ops.convert_to_numpy(x) for x in on.get_layer("encoder")(chunks.reshape(6, -1), training=False))
    assert frames.shape == (6, *on.get_layer("sorter").inputs[2].shape[2:])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(on_encoder(chunks.reshape(6, -1), training=False)), embeddings, atol=1e-6)
    on_encoder.save(tmp_path / "encoder.keras")
    on.save(tmp_path / "model.keras")
    assert keras.saving.load_model(tmp_path / "encoder.keras").output_shape == (None, 8)
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(reloaded(chunks)), keras.ops.convert_to_numpy(on(chunks)), atol=1e-5)


def test_cross_similarity_is_refused_where_there_are_no_frames_to_compare():
    with pytest.raises(ConfigError, match="model.sorter.cross_similarity"):
        ModelConfig(sorter=SorterConfig(type="pairwise", cross_similarity=True))
    with pytest.raises(ConfigError, match="model.sorter.cross_similarity"):
        SorterConfig(type="attention", cross_similarity=True)
    model, encoder = build_model(cross_config(True), n_chunks=3, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE)
    with pytest.raises(ConfigError, match="data.features = 'cached'"):
        build_feature_model(model, encoder)
    with pytest.raises(ConfigError, match="model.sorter.cross_similarity"):
        join_scores(model.get_layer("sorter"), np.zeros((1, 3, 8), np.float32))


def test_a_tiny_run_with_cross_similarity_trains_and_evaluates(music_corpus, tmp_path):
    overrides = [
        *TINY_TRAIN, "model.encoder.type=logmel1d", "model.encoder.filters=8", "model.encoder.blocks=1",
        "model.sorter.type=pairwise", "model.sorter.cross_similarity=true", "model.sorter.seam=true",
    ]
    config = load_config(None, [f"data.corpus={music_corpus}", "name=cross", *overrides])
    run_dir = train(config, runs_dir=tmp_path, verbose=0)
    assert "cross_similarity" in {layer.name for layer in load_run_model(run_dir).get_layer("sorter").layers}
    assert load_encoder(run_dir).encoder.output_shape == (None, 16)  # what embed, probe and HEAR read: the embedding alone
    report = evaluate(run_dir, sanity=("noise",), n_puzzles=40)
    assert [result.scores.n_puzzles for result in report.datasets] == [200, 40]


def one_step_with_both_cues() -> tuple[float, float]:
    """The loss of one training step of a model with the tempogram target and the cross-similarity head, and a 0.1 s click train's tempo."""
    cfg = dataclasses.replace(cross_config(True, seam=True), spectral_targets=SpectralTargetsConfig(tempogram_weight=0.5))
    model, _ = build_model(cfg, n_chunks=3, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE)
    model.compile(optimizer="adam", loss=HEADS["pairwise"].loss(cfg.sorter))
    order = np.stack([np.random.default_rng(k).permutation(3) for k in range(4)])
    loss = float(np.asarray(model.train_on_batch(noise_chunks((4, 3)), order)).ravel()[0])
    tempogram = keras.ops.convert_to_numpy(chunk_tempogram(click_train(0.1)[None], sample_rate=SAMPLE_RATE))[0]
    return loss, TEMPOGRAM_LAGS[int(np.argmax(tempogram))] * 0.01


def test_both_cues_train_under_tensorflow_and_jax():
    loss, period = one_step_with_both_cues()
    assert np.isfinite(loss) and period == pytest.approx(0.1)
    jax_loss, jax_period = numbers_under_jax("test_music_cues", "one_step_with_both_cues()")
    assert np.isfinite(jax_loss) and jax_period == pytest.approx(0.1)
