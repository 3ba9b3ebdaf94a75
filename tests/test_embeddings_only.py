"""The embeddings-only loss (``model.embeddings_only``, issue 27 lever 2): what it scores, where its gradients go, and what it leaves alone."""

from __future__ import annotations

import contextlib
import dataclasses
import math

import keras
import numpy as np
import pytest

from audiosort.config import EmbeddingsOnlyConfig, EncoderConfig, ModelConfig, SorterConfig, load_config
from audiosort.data.pipeline import prefetched_puzzle_batches
from audiosort.data.puzzles import PuzzleSpec, relative_starts, sample_puzzles
from audiosort.errors import ConfigError
from audiosort.heads import HEADS
from audiosort.models import build_model, build_training_twin
from audiosort.models.auxiliary import EmbeddingsOnlyOrder
from audiosort.models.sorters import JOIN_SCORE_LAYERS
from audiosort.train import train
from conftest import TINY_TRAIN
from test_gap_regression import SPEC, ramp_tracks
from test_models import SAMPLE_RATE, random_chunks


def config(weight: float = 0.5, stop_gradient: bool = False) -> ModelConfig:
    return ModelConfig(
        encoder=EncoderConfig(type="mlp", embedding_dim=16, hidden_units=32),
        sorter=SorterConfig(type="pairwise", hidden_units=32, seam=True),
        embeddings_only=EmbeddingsOnlyConfig(weight=weight, stop_gradient=stop_gradient),
    )


def built(weight: float = 0.5, stop_gradient: bool = False, seed: int = 0):
    """A tiny seam model, its training twin, and the join-score layers drawn at random (they start at zero)."""
    keras.utils.set_random_seed(seed)
    model, encoder = build_model(config(weight, stop_gradient), n_chunks=3, chunk_samples=SPEC.chunk_samples, sample_rate=SAMPLE_RATE)
    # Zero kernels (the seam head starts as the continuity baseline) would make every order equally likely
    # without the seam, and pass no gradient to the encoder: draw them, so both tests below can see something.
    rng = np.random.default_rng(seed)
    for name in JOIN_SCORE_LAYERS:
        layer = model.get_layer("sorter").get_layer(name)
        kernel, bias = layer.get_weights()
        layer.set_weights([rng.normal(0, 0.5, kernel.shape).astype("float32"), bias])
    twin = build_training_twin(model, config(weight, stop_gradient), pad_min_samples=SPEC.pad_min_samples, pad_max_samples=SPEC.pad_max_samples)
    return model, encoder, twin


def mute_seam(model: keras.Model) -> None:
    """Set the seam's log scale to -80, as scripts/mute_seam.py does: its scores become 0."""
    seam = model.get_layer("sorter").get_layer("seam")
    band_weight, _ = seam.get_weights()
    seam.set_weights([band_weight, np.asarray(-80.0, dtype="float32")])


def offsets_of(order: np.ndarray) -> np.ndarray:
    """Chunk starts (samples from the earliest) that put each slot at ``order``'s position, with uneven gaps."""
    return (order * SPEC.chunk_samples + order**2 * 100).astype(np.int32)


def test_the_loss_is_the_row_cross_entropy_of_the_same_head_with_its_seam_muted():
    rng = np.random.default_rng(1)
    chunks = random_chunks(rng, 8, samples=SPEC.chunk_samples)
    order = np.stack([rng.permutation(3) for _ in range(8)])
    model, _, twin = built(weight=0.5)
    np.testing.assert_array_equal(twin.predict([chunks, offsets_of(order)], verbose=0), model.predict(chunks, verbose=0))
    twin([chunks, offsets_of(order)], training=False)
    assert twin.losses == []  # evaluation and prediction compute nothing extra
    twin([chunks, offsets_of(order)], training=True)
    (loss,) = twin.losses
    # The brute-force reference: the saved model itself, its seam muted, in training mode (the same batch statistics).
    mute_seam(model)
    log_probs = keras.ops.convert_to_numpy(model(chunks, training=True))
    cross_entropy = -np.take_along_axis(log_probs, order[:, :, None], axis=-1).mean()
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(loss)), 0.5 * cross_entropy, rtol=1e-5)
    # Not a constant: uniform orders would give log 3 per slot.
    assert abs(cross_entropy - math.log(3)) > 0.05, cross_entropy


def one_sgd_step(fitted: keras.Model, encoder: keras.Model, inputs, order) -> tuple[bool, bool]:
    """Whether one plain gradient step on ``fitted`` moved the encoder's weights, and the sorter head's."""
    fitted.compile(optimizer=keras.optimizers.SGD(0.1), loss=HEADS["pairwise"].loss())
    sorter = fitted.get_layer("sorter") if "sorter" in {layer.name for layer in fitted.layers} else None
    before = [w.numpy().copy() for w in encoder.trainable_weights], [w.numpy().copy() for w in sorter.trainable_weights]
    fitted.train_on_batch(inputs, order)
    after = [w.numpy() for w in encoder.trainable_weights], [w.numpy() for w in sorter.trainable_weights]
    return tuple(any(not np.array_equal(a, b) for a, b in zip(old, new, strict=True)) for old, new in zip(before, after, strict=True))


def test_the_stop_gradient_keeps_the_seam_models_loss_out_of_the_encoder_and_the_twin_trains_it():
    rng = np.random.default_rng(2)
    chunks = random_chunks(rng, 8, samples=SPEC.chunk_samples)
    order = np.stack([rng.permutation(3) for _ in range(8)])
    model, encoder, _ = built(stop_gradient=False)
    assert one_sgd_step(model, encoder, chunks, order) == (True, True)
    model, encoder, _ = built(stop_gradient=True)
    assert one_sgd_step(model, encoder, chunks, order) == (False, True)  # the head learns, the encoder does not
    model, encoder, twin = built(stop_gradient=True)
    assert one_sgd_step(twin, encoder, [chunks, offsets_of(order)], order) == (True, True)  # through the embeddings-only loss


def embeddings_only_cross_entropy(twin: keras.Model, puzzles) -> float:
    """The twin's embeddings-only loss on ``puzzles`` (weight 1), in training mode as fit computes it: nats per slot."""
    twin([puzzles.chunks, relative_starts(puzzles.starts)], training=True)
    (loss,) = twin.losses
    return float(keras.ops.convert_to_numpy(loss))


def test_behind_the_stop_gradient_the_encoder_learns_to_sort_from_the_embeddings_only_loss():
    # A chunk's level tells its time in the ramp tracks; the seam's edges tell it too, but behind the stop-gradient
    # only the embeddings-only loss reaches the encoder: if the embeddings come to sort, that loss taught them.
    spec = dataclasses.replace(SPEC, n_chunks=3)
    _, _, twin = built(weight=1.0, stop_gradient=True)
    twin.compile(optimizer=keras.optimizers.Adam(3e-3), loss=HEADS["pairwise"].loss())
    held_out = sample_puzzles(ramp_tracks(), spec, 256, rng=np.random.default_rng(99))
    before = embeddings_only_cross_entropy(twin, held_out)
    with contextlib.closing(prefetched_puzzle_batches(ramp_tracks(), spec, 32, rng=np.random.default_rng(5), offsets=True, workers=1)) as stream:
        twin.fit(stream, steps_per_epoch=150, epochs=1, verbose=0)
    after = embeddings_only_cross_entropy(twin, held_out)
    assert after < 0.5 * math.log(3) and after < before, (before, after)


def test_the_config_keys_are_checked_and_named():
    seam = ["model.sorter.type=pairwise", "model.sorter.seam=true"]
    loaded = load_config(None, [*seam, "model.embeddings_only.weight=0.5", "model.embeddings_only.stop_gradient=true"])
    assert loaded.model.embeddings_only == EmbeddingsOnlyConfig(weight=0.5, stop_gradient=True)
    assert loaded.model.training_twin and not load_config(None, seam).model.training_twin
    with pytest.raises(ConfigError, match="did you mean .stop_gradient."):
        load_config(None, [*seam, "model.embeddings_only.stop_gradeint=true"])
    with pytest.raises(ConfigError, match="needs model.embeddings_only.weight > 0"):
        load_config(None, [*seam, "model.embeddings_only.stop_gradient=true"])
    with pytest.raises(ConfigError, match="must be >= 0"):
        load_config(None, [*seam, "model.embeddings_only.weight=-1"])
    for other in (["model.sorter.type=pairwise"], ["model.sorter.type=successor", "model.sorter.seam=true"],
                  [*seam, "model.sorter.cross_similarity=true", "model.encoder.type=logmel"]):
        with pytest.raises(ConfigError, match="needs model.sorter.type 'pairwise' with model.sorter.seam: true"):
            load_config(None, [*other, "model.embeddings_only.weight=0.5"])
    with pytest.raises(ConfigError, match="needs data.features = 'raw'"):
        load_config(None, [*seam, "model.embeddings_only.weight=0.5", "data.features=cached", "model.encoder.type=logmel"])


def test_a_run_with_the_embeddings_only_loss_saves_a_model_that_takes_the_chunks_alone(music_corpus, tmp_path):
    overrides = ["model.sorter.type=pairwise", "model.sorter.seam=true", "model.embeddings_only.weight=0.5", "model.embeddings_only.stop_gradient=true"]
    run_dir = train(load_config(None, ["name=alone", f"data.corpus={music_corpus}", *TINY_TRAIN, *overrides]), runs_dir=tmp_path, verbose=0)
    model = keras.saving.load_model(run_dir / "model.keras")
    assert len(model.inputs) == 1 and "sorter_stop_gradient" in {layer.name for layer in model.layers}
    assert not any(isinstance(layer, EmbeddingsOnlyOrder) for layer in model.layers)
    chunks = random_chunks(np.random.default_rng(3), 4, samples=model.input_shape[-1])
    assert model.predict(chunks, verbose=0).shape == (4, 3, 3)
    assert (run_dir / "metrics.json").exists() and (run_dir / "checkpoints" / "best.weights.h5").exists()
