"""The same-track contrastive auxiliary (``model.contrastive``): its loss, its place in training, and what it leaves alone."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import itertools

import keras
import numpy as np
import pytest

from audiosort.config import AugmentConfig, ContrastiveConfig, load_config
from audiosort.data.puzzles import PuzzleSpec, TrackTable, draw_starts, puzzle_batches, sample_puzzles
from audiosort.errors import ConfigError, InputError
from audiosort.heads import HEADS
from audiosort.models import build_feature_model, build_model
from audiosort.models.objectives import SamePuzzleContrast, same_puzzle_contrastive_loss
from audiosort.train import train
from audiosort.train import train_batches
from conftest import TINY_TRAIN, assert_one_line_error, numbers_under_jax, run
from test_models import CHUNK_SAMPLES, SAMPLE_RATE, random_chunks, tiny_model_config


def reference_loss(embeddings: np.ndarray, temperature: float) -> float:
    """Supervised contrastive L_out (Khosla et al. 2020, eq. 2), anchor by anchor in float64 loops."""
    batch, n, _ = embeddings.shape
    flat = embeddings.reshape(batch * n, -1).astype(np.float64)
    unit = flat / np.linalg.norm(flat, axis=1, keepdims=True)
    total = 0.0
    for a in range(batch * n):
        others = [k for k in range(batch * n) if k != a]
        scores = np.array([unit[a] @ unit[k] / temperature for k in others])
        log_denominator = np.log(np.sum(np.exp(scores - scores.max()))) + scores.max()
        positives = [k for k in others if k // n == a // n]
        total += -np.mean([unit[a] @ unit[p] / temperature - log_denominator for p in positives])
    return total / (batch * n)


def loss_of(embeddings: np.ndarray, temperature: float = 0.1) -> float:
    return float(keras.ops.convert_to_numpy(same_puzzle_contrastive_loss(embeddings.astype("float32"), temperature)))


def clustered_embeddings(rng: np.random.Generator, batch: int, n: int, dim: int = 16, spread: float = 0.05) -> np.ndarray:
    """Every puzzle's n chunks near one random direction of its own: ``(batch, n, dim)``."""
    centres = rng.normal(size=(batch, 1, dim))
    return centres + spread * rng.normal(size=(batch, n, dim))


@pytest.mark.parametrize("batch, n", [(5, 3), (4, 4), (2, 2)])
def test_the_loss_matches_a_numpy_reference(batch, n):
    rng = np.random.default_rng(batch * 10 + n)
    embeddings = rng.normal(size=(batch, n, 8))
    for temperature in (0.1, 0.5):
        assert loss_of(embeddings, temperature) == pytest.approx(reference_loss(embeddings, temperature), rel=1e-4)


def test_puzzles_clustered_by_track_score_low_and_shuffled_high():
    rng = np.random.default_rng(0)
    batch, n = 16, 3
    clustered = clustered_embeddings(rng, batch, n)
    shuffled = rng.permutation(clustered.reshape(batch * n, -1)).reshape(clustered.shape)
    chance = np.log(batch * n - 1)  # every other chunk equally likely
    assert loss_of(clustered) == pytest.approx(reference_loss(clustered, 0.1), rel=1e-4)
    # Its floor is log(n - 1): an anchor's n - 1 positives at best share the softmax's mass equally.
    assert np.log(n - 1) - 1e-5 < loss_of(clustered) < np.log(n - 1) + 0.05
    assert loss_of(shuffled) > 0.9 * chance
    # Equal embeddings carry no information: the loss is the uniform softmax's, exactly.
    assert loss_of(np.ones((batch, n, 4))) == pytest.approx(chance, rel=1e-5)
    # Scale does not matter (cosine similarity), and an all-zero embedding stays finite.
    assert loss_of(7.0 * clustered) == pytest.approx(loss_of(clustered), rel=1e-4)
    assert np.isfinite(loss_of(np.zeros((batch, n, 4))))


def test_the_config_keys_are_checked_and_named():
    config = load_config(None, ["model.contrastive.weight=0.1", "model.contrastive.temperature=0.2"])
    assert config.model.contrastive == ContrastiveConfig(weight=0.1, temperature=0.2)
    assert load_config(None).model.contrastive.weight == 0.0
    with pytest.raises(ConfigError, match=r"model.contrastive.weight = -0.1 must be >= 0"):
        load_config(None, ["model.contrastive.weight=-0.1"])
    with pytest.raises(ConfigError, match=r"model.contrastive.temperature = 0.0 must be > 0"):
        load_config(None, ["model.contrastive.temperature=0"])
    with pytest.raises(ConfigError, match="did you mean .weight."):
        load_config(None, ["model.contrastive.wieght=0.1"])


def contrast_config(weight: float, sorter: str = "pairwise"):
    return dataclasses.replace(tiny_model_config(sorter=sorter), contrastive=ContrastiveConfig(weight=weight))


def built(weight: float, sorter: str = "pairwise", seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model, _ = build_model(contrast_config(weight, sorter), n_chunks=3, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE)
    return model


@pytest.mark.parametrize("sorter", ["pairwise", "mlp"])
def test_weight_zero_builds_todays_model_and_the_auxiliary_changes_no_output(sorter):
    chunks = random_chunks(np.random.default_rng(2), 8)
    off, on = built(0.0, sorter), built(0.5, sorter)
    # The model with the auxiliary, less its one layer, is the model without: nothing else is added at weight 0.
    assert [layer.name for layer in off.layers] == [layer.name for layer in on.layers if layer.name != "same_puzzle_contrast"]
    assert isinstance(on.get_layer("same_puzzle_contrast"), SamePuzzleContrast)
    assert [w.path for w in on.weights] == [w.path for w in off.weights]
    for on_weight, off_weight in zip(on.weights, off.weights):  # same seed, same draws: the layer takes no randomness
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(on_weight), keras.ops.convert_to_numpy(off_weight))
    np.testing.assert_array_equal(on.predict(chunks, verbose=0), off.predict(chunks, verbose=0))
    on(chunks, training=False)
    assert on.losses == []  # inference computes nothing extra
    on(chunks, training=True)
    assert len(on.losses) == 1


def one_track_per_puzzle(rng: np.random.Generator, batch: int) -> np.ndarray:
    """Puzzles whose 3 chunks share what no other puzzle has: a tone at the puzzle's own frequency, in white noise."""
    t = np.arange(CHUNK_SAMPLES) / SAMPLE_RATE
    frequencies = rng.uniform(200, 6000, size=(batch, 1, 1))
    audio = 0.5 * np.sin(2 * np.pi * frequencies * t + rng.uniform(0, 2 * np.pi, size=(batch, 3, 1)))
    audio += 0.1 * rng.normal(size=(batch, 3, CHUNK_SAMPLES))
    return (audio * 2**14).astype(np.int16)


def trained_contrast(weight: float, steps: int = 40) -> float:
    """Train a tiny pairwise model ``steps`` steps on one fixed batch; the contrastive loss of its embeddings after."""
    rng = np.random.default_rng(3)
    chunks = one_track_per_puzzle(rng, 32)
    order = np.stack([rng.permutation(3) for _ in range(32)])
    model = built(weight)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=HEADS["pairwise"].loss(), metrics=HEADS["pairwise"].compile_metrics())
    model.fit(np.tile(chunks, (steps, 1, 1)), np.tile(order, (steps, 1)), batch_size=32, shuffle=False, verbose=0)
    encoder = model.get_layer("encoder")
    embeddings = encoder.predict(chunks.reshape(-1, CHUNK_SAMPLES), verbose=0).reshape(32, 3, -1)
    return loss_of(embeddings)


def test_training_with_the_auxiliary_pulls_each_puzzles_chunks_together():
    # Same seed, same batches: only the auxiliary differs, so the gap is what its gradient did to the encoder.
    without, with_it = trained_contrast(0.0), trained_contrast(1.0)
    assert with_it < 0.6 * without, (with_it, without)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_training_with_the_auxiliary_pulls_chunks_together_under_jax_too():
    without, with_it = numbers_under_jax("test_contrastive", "(trained_contrast(0.0), trained_contrast(1.0))")
    assert with_it < 0.6 * without, (with_it, without)


def test_a_run_with_the_auxiliary_saves_a_model_that_reloads_with_it(music_corpus, tmp_path):
    config = load_config(
        None, ["name=contrast", f"data.corpus={music_corpus}", *TINY_TRAIN, "model.contrastive.weight=0.2", "model.contrastive.temperature=0.3"]
    )
    run_dir = train(config, runs_dir=tmp_path, verbose=0)
    assert load_config(run_dir / "config.yaml").model.contrastive == ContrastiveConfig(weight=0.2, temperature=0.3)
    model = keras.saving.load_model(run_dir / "model.keras")
    layer = model.get_layer("same_puzzle_contrast")
    assert (layer.weight, layer.temperature) == (0.2, 0.3)
    # The encoder saved beside it is the plain encoder: embed, probe and HEAR read it as before.
    encoder = keras.saving.load_model(run_dir / "encoder.keras")
    assert all(not isinstance(layer, SamePuzzleContrast) for layer in encoder.layers)


def test_a_model_with_the_auxiliary_reloads_with_identical_outputs_and_still_trains_with_it(tmp_path):
    chunks = random_chunks(np.random.default_rng(4), 8)
    model = built(0.5)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    layer = reloaded.get_layer("same_puzzle_contrast")
    assert (layer.weight, layer.temperature) == (0.5, 0.1)
    np.testing.assert_array_equal(reloaded.predict(chunks, verbose=0), model.predict(chunks, verbose=0))
    model(chunks, training=True)
    reloaded(chunks, training=True)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(reloaded.losses[0]), keras.ops.convert_to_numpy(model.losses[0]), rtol=1e-5
    )
    assert float(keras.ops.convert_to_numpy(reloaded.losses[0])) > 0


def test_the_cached_feature_twin_trains_with_the_auxiliary_too():
    # data.features = cached trains build_feature_model's twin, not the model: the auxiliary must be in it.
    config = dataclasses.replace(
        contrast_config(0.5), encoder=dataclasses.replace(tiny_model_config().encoder, type="logmel1d", pooling="time")
    )
    keras.utils.set_random_seed(0)
    model, encoder = build_model(config, n_chunks=3, chunk_samples=800, sample_rate=SAMPLE_RATE)
    twin = build_feature_model(model, encoder)
    frames = np.random.default_rng(5).normal(size=(4, *twin.input_shape[1:])).astype("float32")
    twin([frames], training=False)
    assert twin.losses == []
    twin([frames], training=True)
    assert len(twin.losses) == 1 and float(keras.ops.convert_to_numpy(twin.losses[0])) > 0


# model.contrastive.distinct_tracks: the sampler never puts two puzzles of one track in a training batch.

DISTINCT_SPEC = PuzzleSpec(n_chunks=3, chunk_samples=400, pad_min_samples=0, pad_max_samples=300)


def twelve_tracks(quiet_share: float = 0.0) -> TrackTable:
    """12 tracks of 4000 to 11700 samples, track k a constant 1000 + 100 k (its id in every chunk); the first ``quiet_share`` silent."""
    tracks = []
    for k in range(12):
        audio = np.full(4000 + 700 * k, 1000 + 100 * k, dtype=np.int16)
        audio[: int(quiet_share * len(audio))] = 0
        tracks.append(audio)
    return TrackTable.from_arrays(tracks)


def test_distinct_tracks_off_draws_todays_stream_number_for_number():
    # Pinned from the sampler before the option existed (the same call at commit d21bd61).
    drawn = draw_starts(twelve_tracks(), DISTINCT_SPEC, 10, rng=np.random.default_rng(11))
    assert drawn.rows.tolist() == [6, 7, 9, 5, 3, 10, 9, 7, 10, 8]
    assert drawn.starts[:2].tolist() == [[7668, 7230, 6790], [2684, 2134, 1495]]
    plain = puzzle_batches(twelve_tracks(), DISTINCT_SPEC, 10, rng=np.random.default_rng(12))
    stream = train_batches(
        twelve_tracks(), DISTINCT_SPEC, 10, rng=np.random.default_rng(12), augment=AugmentConfig(), sample_rate=SAMPLE_RATE,
        distinct_tracks=False,
    )
    with contextlib.closing(stream):
        for (chunks, order), (plain_chunks, plain_order) in itertools.islice(zip(stream, plain), 5):
            np.testing.assert_array_equal(chunks, plain_chunks)
            np.testing.assert_array_equal(order, plain_order)


@pytest.mark.parametrize("quiet_share", [0.0, 0.6])
def test_distinct_tracks_puts_each_track_in_a_batch_at_most_once(quiet_share):
    # 10 puzzles of 12 tracks: drawn with replacement, nearly every batch repeats a track (the first draw above does).
    # Quiet tracks make min_rms redraw puzzles, which must avoid the tracks the batch kept.
    tracks = twelve_tracks(quiet_share)
    spec = dataclasses.replace(DISTINCT_SPEC, min_rms=0.01 if quiet_share else 0.0)
    for batch in range(20):
        puzzles = sample_puzzles(tracks, spec, 10, rng=np.random.default_rng(batch), distinct_tracks=True)
        assert len(set(puzzles.track.tolist())) == 10, puzzles.track
    stream = train_batches(
        tracks, spec, 10, rng=np.random.default_rng(3), augment=AugmentConfig(), sample_rate=SAMPLE_RATE, distinct_tracks=True
    )
    with contextlib.closing(stream):
        for chunks, _ in itertools.islice(stream, 10):
            track_of_puzzle = (chunks.max(axis=(1, 2)) - 1000) // 100
            assert len(set(track_of_puzzle.tolist())) == 10, track_of_puzzle


def test_distinct_tracks_with_fewer_tracks_than_a_batch_names_the_parameters(music_corpus, tmp_path):
    with pytest.raises(InputError, match="distinct_tracks needs batch_size = 13 tracks .* 12 do"):
        sample_puzzles(twelve_tracks(), DISTINCT_SPEC, 13, rng=np.random.default_rng(0), distinct_tracks=True)
    result = run(
        "train", "--config", "configs/tiny.yaml", "--runs-dir", tmp_path, "--set", f"data.corpus={music_corpus}",
        "--set", "train.batch_size=16", "--set", "model.contrastive.weight=0.1", "--set", "model.contrastive.distinct_tracks=true",
    )
    assert_one_line_error(result, "model.contrastive.distinct_tracks needs train.batch_size = 16 train tracks")
    assert not list(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="model.contrastive.distinct_tracks = True needs model.contrastive.weight > 0"):
        load_config(None, ["model.contrastive.distinct_tracks=true"])
    with pytest.raises(ConfigError, match="did you mean .distinct_tracks."):
        load_config(None, ["model.contrastive.distinct_track=true"])
