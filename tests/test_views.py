"""Issue 27's levers in the model: two paths in (per-chunk views, seam dropout) and the spectral targets."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
from scipy import stats

from audiosort.config import Config, ContrastiveConfig, EncoderConfig, ModelConfig, SorterConfig, SpectralTargetsConfig, ViewsConfig, load_config
from audiosort.errors import ConfigError
from audiosort.models import build_model
from audiosort.models.auxiliary import ENVELOPE_BANDS, SpectralTargets, chunk_descriptors, descriptor_filterbank
from audiosort.models.objectives import SamePuzzleContrast, same_puzzle_contrastive_loss
from audiosort.models.views import ChunkViews, SeamDropout

SAMPLE_RATE = 16000
CHUNK_SAMPLES = 4000
MASK = 320
SHIFT = 160


def noise_chunks(n_rows: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n_rows, CHUNK_SAMPLES)) * 3000).astype(np.int16)


def views(**kwargs) -> ChunkViews:
    settings = dict(gain_db=6.0, tilt_db_per_octave=3.0, shift_samples=SHIFT, edge_mask_samples=MASK, seed=1)
    return ChunkViews(SAMPLE_RATE, **(settings | kwargs))


def test_in_inference_only_the_edges_are_silenced():
    chunks = noise_chunks(6)
    out = keras.ops.convert_to_numpy(views()(chunks, training=False))
    assert out.dtype == np.int16
    assert not out[:, :MASK].any() and not out[:, -MASK:].any()
    np.testing.assert_array_equal(out[:, MASK:-MASK], chunks[:, MASK:-MASK])


def test_in_training_each_chunk_gets_its_own_view_and_the_edges_stay_silent():
    chunk = noise_chunks(1)
    same = np.repeat(chunk, 8, axis=0)
    out = keras.ops.convert_to_numpy(views()(same, training=True)).astype(np.float64)
    assert not out[:, :MASK].any() and not out[:, -MASK:].any()
    # eight copies of one chunk, eight different views
    assert len({row.tobytes() for row in out}) == 8
    # the gain never makes a chunk louder than the tilt alone could: attenuation in [-6, 0] dB
    rms = np.sqrt(np.mean(out[:, MASK:-MASK] ** 2, axis=1)) / np.sqrt(np.mean(chunk[0, MASK:-MASK].astype(np.float64) ** 2))
    assert np.all(rms < 1.6) and np.all(rms > 0.3)


def test_the_shift_moves_the_audio_by_whole_samples_within_the_bound():
    chunk = noise_chunks(1)
    out = keras.ops.convert_to_numpy(views(gain_db=0.0, tilt_db_per_octave=0.0)(np.repeat(chunk, 32, axis=0), training=True))
    inner = slice(MASK, CHUNK_SAMPLES - MASK)
    shifts = []
    for row in out:
        matches = [s for s in range(-SHIFT, SHIFT + 1) if np.array_equal(row[inner], chunk[0, MASK - s : CHUNK_SAMPLES - MASK - s])]
        assert len(matches) == 1
        shifts.append(matches[0])
    assert len(set(shifts)) > 10


def test_view_draws_do_not_depend_on_the_slot():
    """Gain is drawn i.i.d. per chunk: the loudest slot of a puzzle of identical chunks is uniform (chi-square)."""
    n_puzzles, n_chunks = 600, 3
    chunk = noise_chunks(1)
    batch = np.repeat(chunk, n_puzzles * n_chunks, axis=0)
    out = keras.ops.convert_to_numpy(views(tilt_db_per_octave=0.0, shift_samples=0)(batch, training=True)).astype(np.float64)
    loudness = np.mean(out**2, axis=1).reshape(n_puzzles, n_chunks)
    counts = np.bincount(np.argmax(loudness, axis=1), minlength=n_chunks)
    assert stats.chisquare(counts).pvalue > 0.001


def test_seam_dropout_drops_whole_puzzles_at_its_rate_and_only_in_training():
    seam = np.ones((4000, 3, 3, 1), dtype=np.float32)
    layer = SeamDropout(0.3, seed=2)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(seam, training=False)), seam)
    out = keras.ops.convert_to_numpy(layer(seam, training=True))
    per_puzzle = out.reshape(len(seam), -1)
    assert np.all((per_puzzle == 0).all(axis=1) | (per_puzzle == 1).all(axis=1))
    dropped = int((per_puzzle == 0).all(axis=1).sum())
    assert stats.binomtest(dropped, len(seam), 0.3).pvalue > 0.001


def model_config(**sorter) -> ModelConfig:
    return ModelConfig(
        encoder=EncoderConfig(type="logmel1d", filters=8, blocks=1, embedding_dim=8),
        sorter=SorterConfig(type="pairwise", hidden_units=8, seam=True, mismatch=True, **sorter),
        views=ViewsConfig(enabled=True),
    )


def test_the_encoder_path_cannot_see_the_edges_but_the_seam_does():
    model, _ = build_model(model_config(), n_chunks=3, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE)
    mask = model.get_layer("chunk_views").edge_mask_samples
    paths = keras.Model(model.input, [model.get_layer("unfold_slots").output, model.get_layer("seam_unfold_slots").output])
    chunks = noise_chunks(3).reshape(1, 3, CHUNK_SAMPLES)
    edited = chunks.copy()
    edited[..., :mask] = noise_chunks(3, seed=1).reshape(1, 3, CHUNK_SAMPLES)[..., :mask]
    edited[..., -mask:] = 0
    (embeddings, seam), (edited_embeddings, edited_seam) = (
        [keras.ops.convert_to_numpy(out) for out in paths(x, training=False)] for x in (chunks, edited)
    )
    np.testing.assert_array_equal(edited_embeddings, embeddings)
    assert np.abs(edited_seam - seam).max() > 1.0


def test_a_model_with_views_and_seam_dropout_reloads_with_identical_outputs(tmp_path):
    model, _ = build_model(model_config(seam_dropout=0.5), n_chunks=3, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE)
    chunks = noise_chunks(6).reshape(2, 3, CHUNK_SAMPLES)
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(reloaded(chunks, training=False)), keras.ops.convert_to_numpy(model(chunks, training=False)), atol=1e-6
    )
    assert reloaded.get_layer("sorter").get_layer("seam_dropout").rate == 0.5
    assert reloaded.get_layer("chunk_views").edge_mask_samples == round(0.04 * SAMPLE_RATE)


def test_seam_dropout_needs_the_seam_and_the_mask_must_leave_audio():
    with pytest.raises(ConfigError, match="model.sorter.seam_dropout"):
        SorterConfig(type="pairwise", seam_dropout=0.5)
    with pytest.raises(ConfigError, match="model.sorter.seam_dropout"):
        SorterConfig(type="pairwise", seam=True, seam_dropout=1.0)
    config = Config(model=ModelConfig(views=ViewsConfig(enabled=True)))
    with pytest.raises(ConfigError, match="model.views.edge_mask_seconds"):
        dataclasses.replace(config, puzzle=dataclasses.replace(config.puzzle, chunk_seconds=0.08))
    with pytest.raises(ConfigError, match="model.views.gain_db"):
        ViewsConfig(gain_db=-1.0)


def test_views_keys_are_reachable_from_the_command_line():
    config = load_config(overrides=["model.views.enabled=true", "model.views.edge_mask_seconds=0.03"])
    assert config.model.views.enabled and config.model.views.edge_mask_seconds == 0.03


def tone(frequency: float, seconds: float = 0.5, amplitude: float = 0.3) -> np.ndarray:
    time = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * frequency * time)).astype(np.float32)


def test_chunk_descriptors_name_the_pitch_class_and_ignore_loudness():
    filterbank = descriptor_filterbank(SAMPLE_RATE)
    # A4, C5 and E5: pitch classes 9, 0 and 4 (chroma starts at C)
    audio = np.stack([tone(440.0), tone(523.25), tone(659.26), tone(440.0, amplitude=0.03)])
    descriptors = keras.ops.convert_to_numpy(chunk_descriptors(audio, filterbank))
    assert descriptors.shape == (4, 12 + ENVELOPE_BANDS)
    assert list(np.argmax(descriptors[:, :12], axis=1)) == [9, 0, 4, 9]
    np.testing.assert_allclose(descriptors[3], descriptors[0], atol=1e-3)
    np.testing.assert_allclose(descriptors.reshape(4, -1)[:, :12].mean(axis=1), 0.0, atol=1e-5)
    # the envelope of a low tone has its energy in lower bands than a high one's
    low, high = keras.ops.convert_to_numpy(chunk_descriptors(np.stack([tone(200.0), tone(3000.0)]), filterbank))[:, 12:]
    assert np.argmax(low) < np.argmax(high)


def test_spectral_targets_add_a_loss_in_training_only_and_reload(tmp_path):
    cfg = dataclasses.replace(model_config(), spectral_targets=SpectralTargetsConfig(weight=0.5))
    model, _ = build_model(cfg, n_chunks=3, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE)
    chunks = noise_chunks(6).reshape(2, 3, CHUNK_SAMPLES)
    model(chunks, training=False)
    assert not model.losses
    model(chunks, training=True)
    (loss,) = model.losses
    assert float(loss) > 0
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(reloaded(chunks)), keras.ops.convert_to_numpy(model(chunks)), atol=1e-6
    )
    assert reloaded.get_layer("spectral_targets").weight == 0.5


def test_the_spectral_targets_loss_is_the_squared_error_of_the_readout():
    layer = SpectralTargets(SAMPLE_RATE, weight=2.0, hidden_units=4)
    embeddings = np.random.default_rng(0).standard_normal((2, 3, 5)).astype(np.float32)
    chunks = noise_chunks(6).reshape(2, 3, CHUNK_SAMPLES)
    out = layer([embeddings, chunks], training=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(out), embeddings)
    predicted = keras.ops.convert_to_numpy(layer.readout(layer.hidden(embeddings.reshape(6, 5))))
    target = keras.ops.convert_to_numpy(chunk_descriptors(chunks.reshape(6, -1).astype(np.float32) / 32768, layer.filterbank))
    np.testing.assert_allclose(float(layer.losses[-1]), 2.0 * np.mean((predicted - target) ** 2), rtol=1e-4)


def test_with_a_projection_head_the_contrastive_loss_compares_the_projections(tmp_path):
    layer = SamePuzzleContrast(1.0, 0.1, projection_units=6)
    embeddings = np.random.default_rng(1).standard_normal((4, 3, 5)).astype(np.float32)
    out = layer(embeddings, training=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(out), embeddings)
    projected = layer.projection(layer.projection_hidden(embeddings))
    expected = float(same_puzzle_contrastive_loss(projected, 0.1))
    np.testing.assert_allclose(float(layer.losses[-1]), expected, rtol=1e-5)
    assert abs(expected - float(same_puzzle_contrastive_loss(embeddings, 0.1))) > 1e-3
    cfg = dataclasses.replace(model_config(), contrastive=ContrastiveConfig(weight=0.1, projection_units=6))
    model, _ = build_model(cfg, n_chunks=3, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE)
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras").get_layer("same_puzzle_contrast")
    original = model.get_layer("same_puzzle_contrast")
    assert reloaded.projection_units == 6
    np.testing.assert_array_equal(reloaded.projection.get_weights()[0], original.projection.get_weights()[0])
