"""Gap regression (``model.gap_regression``, issue 27 lever 5): its targets, its training twin, and what it leaves alone."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import itertools

import keras
import numpy as np
import pytest

from audiosort.config import GapRegressionConfig, load_config
from audiosort.data.pipeline import prefetched_puzzle_batches
from audiosort.data.puzzles import PuzzleSpec, TrackTable, puzzle_batches, relative_starts, sample_puzzles
from audiosort.errors import ConfigError
from audiosort.heads import HEADS
from audiosort.models import build_model, build_training_twin
from audiosort.models.auxiliary import GapRegression
from audiosort.train import train
from conftest import TINY_TRAIN, numbers_under_jax
from test_models import SAMPLE_RATE, random_chunks, tiny_model_config

# 3 chunks of 50 ms, gaps of 0-100 ms: spans up to 350 ms, in tracks of 0.6 s.
SPEC = PuzzleSpec(n_chunks=3, chunk_samples=800, pad_min_samples=0, pad_max_samples=1600)


def gap_config(weight: float, hidden_units: int = 32):
    return dataclasses.replace(tiny_model_config(), gap_regression=GapRegressionConfig(weight=weight, hidden_units=hidden_units))


def built(weight: float, seed: int = 0):
    keras.utils.set_random_seed(seed)
    model, _ = build_model(gap_config(weight), n_chunks=3, chunk_samples=SPEC.chunk_samples, sample_rate=SAMPLE_RATE)
    if weight == 0:
        return model, None
    twin = build_training_twin(model, gap_config(weight), pad_min_samples=SPEC.pad_min_samples, pad_max_samples=SPEC.pad_max_samples)
    return model, twin


def ramp_tracks(count: int = 8, samples: int = 9600) -> TrackTable:
    """Tracks whose level rises steadily (a DC ramp over ±0.8 full scale, plus noise): a chunk's mean tells its time."""
    rng = np.random.default_rng(1)
    ramp = np.linspace(-0.8, 0.8, samples) * 2**15
    return TrackTable.from_arrays([(ramp + 500 * rng.normal(size=samples)).astype(np.int16) for _ in range(count)])


def test_the_targets_are_each_puzzles_gaps_in_temporal_order_scaled_to_the_range():
    spec = dataclasses.replace(SPEC, n_chunks=5)
    puzzles = sample_puzzles(ramp_tracks(samples=16000), spec, 64, rng=np.random.default_rng(0))
    layer = GapRegression(spec.chunk_samples, 400, 2000, weight=1.0)
    targets = keras.ops.convert_to_numpy(layer.gap_targets(relative_starts(puzzles.starts)))
    for b in range(64):
        by_time = np.sort(puzzles.starts[b])  # brute force, from the starts within the track
        gaps = [by_time[k + 1] - (by_time[k] + spec.chunk_samples) for k in range(4)]
        np.testing.assert_allclose(targets[b], [(gap - 400) / 1600 for gap in gaps], atol=1e-6)
    # The gaps drawn from [0, 1600] samples, scaled over [400, 2000]: shifted by a quarter, as they should be.
    assert -0.25 - 1e-6 <= targets.min() and targets.max() <= 0.75 + 1e-6


def test_the_pipeline_hands_each_chunks_offset_beside_the_same_puzzles():
    tracks = ramp_tracks()
    plain = puzzle_batches(tracks, SPEC, 16, rng=np.random.default_rng(4))
    reference = [sample_puzzles(tracks, SPEC, 16, rng=rng) for rng in [np.random.default_rng(4)] for _ in range(3)]
    with contextlib.closing(prefetched_puzzle_batches(tracks, SPEC, 16, rng=np.random.default_rng(4), offsets=True)) as stream:
        for ((chunks, offsets), order), (plain_chunks, plain_order), puzzles in zip(stream, plain, reference):
            np.testing.assert_array_equal(chunks, plain_chunks)
            np.testing.assert_array_equal(order, plain_order)
            assert offsets.dtype == np.int32
            np.testing.assert_array_equal(offsets, puzzles.starts - puzzles.starts.min(axis=1, keepdims=True))
            # The earliest chunk is at 0, and the offsets order the slots as the label does.
            np.testing.assert_array_equal(np.argsort(np.argsort(offsets, axis=1), axis=1), order)


def test_the_saved_model_is_todays_and_the_twin_adds_the_loss_in_training_only():
    chunks = random_chunks(np.random.default_rng(2), 8, samples=SPEC.chunk_samples)
    offsets = np.tile(np.array([[1700, 0, 3000]], dtype=np.int32), (8, 1))
    off, _ = built(0.0)
    model, twin = built(0.5)
    # The model is built exactly as without the head: same layers, same weights from the same seed.
    assert [layer.name for layer in model.layers] == [layer.name for layer in off.layers]
    for on_weight, off_weight in zip(model.weights, off.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(on_weight), keras.ops.convert_to_numpy(off_weight))
    # The twin shares the model's layers (training it trains the model) and adds only the head's weights.
    assert {id(w) for w in model.weights} < {id(w) for w in twin.weights}
    assert {w.path for w in twin.weights} - {w.path for w in model.weights} == {
        f"gap_regression/{name}/{kind}" for name in ("gap_hidden", "gap") for kind in ("kernel", "bias")
    }
    np.testing.assert_array_equal(twin.predict([chunks, offsets], verbose=0), model.predict(chunks, verbose=0))
    twin([chunks, offsets], training=False)
    assert twin.losses == []  # evaluation and prediction compute nothing extra
    twin([chunks, offsets], training=True)
    assert len(twin.losses) == 1 and float(keras.ops.convert_to_numpy(twin.losses[0])) > 0
    model(chunks, training=True)
    assert model.losses == []


def test_the_twin_saves_and_reloads_with_its_head(tmp_path):
    chunks = random_chunks(np.random.default_rng(6), 8, samples=SPEC.chunk_samples)
    offsets = np.tile(np.array([[0, 2400, 900]], dtype=np.int32), (8, 1))
    _, twin = built(0.5)
    twin.save(tmp_path / "twin.keras")
    reloaded = keras.saving.load_model(tmp_path / "twin.keras")
    layer = reloaded.get_layer("gap_regression")
    assert (layer.weight, layer.pad_max_samples, layer.chunk_samples) == (0.5, SPEC.pad_max_samples, SPEC.chunk_samples)
    np.testing.assert_array_equal(reloaded.predict([chunks, offsets], verbose=0), twin.predict([chunks, offsets], verbose=0))
    predicted = [keras.ops.convert_to_numpy(m.get_layer("gap_regression").predicted_gaps(np.ones((8, 3, 16), "float32"), offsets)) for m in (twin, reloaded)]
    np.testing.assert_array_equal(*predicted)


def gap_error(twin: keras.Model, puzzles) -> float:
    """The twin's gap loss on ``puzzles`` (weight 1): the head's mean squared error against the scaled gaps.

    In training mode, as fit computes it: the tiny encoder's batch-norm statistics, not its moving averages.
    """
    twin([puzzles.chunks, relative_starts(puzzles.starts)], training=True)
    (loss,) = twin.losses
    return float(keras.ops.convert_to_numpy(loss))


def trained_gap_error(steps: int = 150) -> tuple[float, float, float]:
    """Fit a tiny twin ``steps`` steps on puzzles of ramp tracks; its gap loss on held-out puzzles before and after, and the targets' variance."""
    _, twin = built(1.0)
    twin.compile(optimizer=keras.optimizers.Adam(3e-3), loss=HEADS["mlp"].loss(), metrics=HEADS["mlp"].compile_metrics())
    tracks = ramp_tracks()
    held_out = sample_puzzles(tracks, SPEC, 256, rng=np.random.default_rng(99))
    before = gap_error(twin, held_out)
    with contextlib.closing(prefetched_puzzle_batches(tracks, SPEC, 32, rng=np.random.default_rng(5), offsets=True, workers=1)) as stream:
        twin.fit(stream, steps_per_epoch=steps, epochs=1, verbose=0)
    after = gap_error(twin, held_out)
    variance = float(np.var(keras.ops.convert_to_numpy(twin.get_layer("gap_regression").gap_targets(relative_starts(held_out.starts)))))
    return before, after, variance


def test_training_the_twin_teaches_the_embeddings_the_gaps():
    # A chunk's level tells its time here, so two embeddings can tell the gap between them: the error must fall
    # well below the variance of the targets, what predicting their mean would leave.
    before, after, variance = trained_gap_error()
    assert after < before and after < 0.3 * variance, (before, after, variance)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_training_the_twin_teaches_the_gaps_under_jax_too():
    before, after, variance = numbers_under_jax("test_gap_regression", "trained_gap_error()")
    assert after < before and after < 0.3 * variance, (before, after, variance)


def test_the_config_keys_are_checked_and_named():
    config = load_config(None, ["model.gap_regression.weight=0.3", "model.gap_regression.hidden_units=64"])
    assert config.model.gap_regression == GapRegressionConfig(weight=0.3, hidden_units=64)
    assert load_config(None).model.gap_regression.weight == 0.0
    with pytest.raises(ConfigError, match="did you mean .weight."):
        load_config(None, ["model.gap_regression.wieght=0.1"])
    with pytest.raises(ConfigError, match="model.gap_regression.weight = -0.1 must be >= 0"):
        load_config(None, ["model.gap_regression.weight=-0.1"])
    with pytest.raises(ConfigError, match="needs gaps that vary"):
        load_config(None, ["model.gap_regression.weight=0.1", "puzzle.pad_mode=fixed"])
    with pytest.raises(ConfigError, match="needs gaps that vary"):
        load_config(None, ["model.gap_regression.weight=0.1", "puzzle.pad_min_seconds=1.0"])
    with pytest.raises(ConfigError, match="needs data.features = 'raw'"):
        load_config(None, ["model.gap_regression.weight=0.1", "data.features=cached", "model.encoder.type=logmel"])


def test_a_run_with_gap_regression_saves_models_that_load_and_run_without_it(music_corpus, tmp_path):
    config = load_config(
        None, ["name=gaps", f"data.corpus={music_corpus}", *TINY_TRAIN, "model.gap_regression.weight=0.5", "model.views.enabled=true",
               "model.views.edge_mask_seconds=0.005"]
    )
    run_dir = train(config, runs_dir=tmp_path, verbose=0)
    assert load_config(run_dir / "config.yaml").model.gap_regression == GapRegressionConfig(weight=0.5)
    model = keras.saving.load_model(run_dir / "model.keras")
    encoder = keras.saving.load_model(run_dir / "encoder.keras")
    assert all(not isinstance(layer, GapRegression) for layer in itertools.chain(model.layers, encoder.layers))
    assert len(model.inputs) == 1  # the chunks alone: eval, predict, embed and HEAR feed it as before
    chunks = random_chunks(np.random.default_rng(3), 4, samples=model.input_shape[-1])
    assert model.predict(chunks, verbose=0).shape == (4, 3, 3)
    # The run wrote the usual val scores, from the model without the head.
    assert (run_dir / "metrics.json").exists() and (run_dir / "checkpoints" / "best.weights.h5").exists()
