"""Models: shapes, normalizations, equivariance, the int16 front end, log-mel, saving, a tiny fit."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import os
import subprocess
import sys
import textwrap

import keras
import librosa
import numpy as np
import pytest

from audiosort.config import ENCODER_TYPES, NORMALIZATIONS, EncoderConfig, ModelConfig, SorterConfig
from audiosort.errors import ConfigError
from audiosort.heads import HEADS, PAIRWISE_MAX_CHUNKS
from audiosort.models import ENCODERS, build_encoder, build_model, build_sorter
from audiosort.models import NORMALIZATIONS as NORMALIZATION_LAYERS
from audiosort.models.layers import (
    CrossSimilarity,
    EdgeLogMel,
    ExpectedRankScores,
    FoldSlots,
    Int16ToFloat,
    JoinMismatch,
    LogMelSpectrogram,
    PairFeatures,
    PermutationMarginals,
    RowLogSoftmax,
    SeamScores,
    Sinkhorn,
    SuccessorLogits,
    TimePositionScores,
    TimeStatistics,
    UnfoldSlots,
)

SAMPLE_RATE = 16000
CHUNK_SAMPLES = 320  # 20 ms, shorter than the 25 ms log-mel frame: logmel encoders clamp it to one frame
N_CHUNKS = 3


def tiny_model_config(encoder: str = "mlp", sorter: str = "mlp", normalization: str = "softmax") -> ModelConfig:
    return ModelConfig(
        encoder=EncoderConfig(type=encoder, embedding_dim=16, hidden_units=32, filters=8, blocks=2, n_mels=16),
        sorter=SorterConfig(
            type=sorter, normalization=normalization, hidden_units=32, attention_layers=1, attention_heads=2, sinkhorn_iterations=10
        ),
    )


def random_chunks(rng: np.random.Generator, batch: int, n_chunks: int = N_CHUNKS, samples: int = CHUNK_SAMPLES) -> np.ndarray:
    return rng.integers(-(2**15), 2**15, size=(batch, n_chunks, samples), dtype=np.int16)


def test_registries_offer_exactly_the_names_config_accepts():
    assert tuple(ENCODERS) == ENCODER_TYPES
    assert tuple(NORMALIZATION_LAYERS) == NORMALIZATIONS
    # The pairwise head's limit in the registry is the one its enumerating layer enforces.
    assert PAIRWISE_MAX_CHUNKS == PermutationMarginals.MAX_ENUMERATED_CHUNKS


# The rank head reads its times from softmax rows, so it takes no Sinkhorn (SorterConfig refuses it); the
# successor head outputs no positions (tests/test_successor.py, and the test below).
VALID_COMBINATIONS = [
    names for names in itertools.product(ENCODER_TYPES, HEADS, NORMALIZATIONS)
    if names[1:] != ("rank", "sinkhorn") and names[1] != "successor"
]


@pytest.mark.parametrize("encoder", ENCODER_TYPES)
def test_every_encoder_under_the_successor_head_gives_finite_float32_join_logits(encoder):
    model, _ = build_model(tiny_model_config(encoder, "successor"), n_chunks=N_CHUNKS, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE)
    logits = keras.ops.convert_to_numpy(model(random_chunks(np.random.default_rng(0), 4), training=False))
    assert logits.shape == (4, N_CHUNKS + 1, N_CHUNKS + 1)
    assert logits.dtype == np.float32
    assert np.isfinite(logits).all()


@pytest.mark.parametrize("encoder, sorter, normalization", VALID_COMBINATIONS)
def test_every_combination_gives_normalized_log_probs(encoder, sorter, normalization):
    model, chunk_encoder = build_model(
        tiny_model_config(encoder, sorter, normalization), n_chunks=N_CHUNKS, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE
    )
    chunks = random_chunks(np.random.default_rng(0), 4)
    log_probs = keras.ops.convert_to_numpy(model(chunks, training=False))
    embeddings = keras.ops.convert_to_numpy(chunk_encoder(chunks[:, 0], training=False))
    assert log_probs.shape == (4, N_CHUNKS, N_CHUNKS)
    assert log_probs.dtype == np.float32
    assert embeddings.shape == (4, 16)
    np.testing.assert_allclose(np.exp(log_probs).sum(axis=-1), 1.0, atol=1e-5)
    assert model.get_layer("encoder") is chunk_encoder


@pytest.fixture
def mixed_bfloat16():
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_dtype_policy("float32")


@pytest.mark.parametrize("encoder", ENCODER_TYPES)
def test_front_end_and_output_stay_float32_under_mixed_precision(encoder, mixed_bfloat16):
    model, chunk_encoder = build_model(
        tiny_model_config(encoder, "attention", "sinkhorn"), n_chunks=N_CHUNKS, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE
    )
    assert chunk_encoder.get_layer("int16_to_float").compute_dtype == "float32"
    if encoder == "logmel":
        assert chunk_encoder.get_layer("log_mel").compute_dtype == "float32"
    assert chunk_encoder.get_layer("embedding").compute_dtype == "bfloat16"
    log_probs = keras.ops.convert_to_numpy(model(random_chunks(np.random.default_rng(0), 4), training=False))
    assert log_probs.dtype == np.float32
    np.testing.assert_allclose(np.exp(log_probs).sum(axis=-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("encoder", ["conv1d", "logmel"])
def test_encoders_accept_chunks_shorter_than_a_stft_frame(encoder):
    cfg = dataclasses.replace(tiny_model_config(encoder).encoder, blocks=4)
    chunk_encoder = build_encoder(cfg, chunk_samples=160, sample_rate=SAMPLE_RATE)  # 10 ms
    embeddings = keras.ops.convert_to_numpy(chunk_encoder(random_chunks(np.random.default_rng(0), 2, 1, 160)[:, 0]))
    assert embeddings.shape == (2, 16)
    assert np.isfinite(embeddings).all()


def test_sinkhorn_output_is_nearly_doubly_stochastic():
    scores = np.random.default_rng(0).normal(scale=3.0, size=(8, 5, 5)).astype(np.float32)
    probs = np.exp(keras.ops.convert_to_numpy(Sinkhorn(50)(scores)))
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs.sum(axis=-2), 1.0, atol=1e-3)


def test_row_log_softmax_rows_sum_to_one_and_columns_need_not():
    scores = np.random.default_rng(0).normal(scale=3.0, size=(8, 5, 5)).astype(np.float32)
    probs = np.exp(keras.ops.convert_to_numpy(RowLogSoftmax()(scores)))
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)
    assert np.abs(probs.sum(axis=-2) - 1.0).max() > 0.1


def test_attention_sorter_is_permutation_equivariant():
    sorter = build_sorter(tiny_model_config(sorter="attention").sorter, n_chunks=5, embedding_dim=16)
    embeddings = np.random.default_rng(0).normal(size=(4, 5, 16)).astype(np.float32)
    permutation = np.array([3, 0, 4, 1, 2])
    scores = keras.ops.convert_to_numpy(sorter(embeddings))
    permuted_scores = keras.ops.convert_to_numpy(sorter(embeddings[:, permutation]))
    np.testing.assert_allclose(permuted_scores, scores[:, permutation], atol=1e-5)
    assert np.abs(scores[:, permutation] - scores).max() > 1e-3  # the check above is not vacuous


def test_full_attention_sinkhorn_model_is_permutation_equivariant():
    model, _ = build_model(
        tiny_model_config("conv1d", "attention", "sinkhorn"), n_chunks=N_CHUNKS, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE
    )
    chunks = random_chunks(np.random.default_rng(0), 4)
    permutation = np.array([2, 0, 1])
    log_probs = keras.ops.convert_to_numpy(model(chunks, training=False))
    permuted = keras.ops.convert_to_numpy(model(chunks[:, permutation], training=False))
    np.testing.assert_allclose(permuted, log_probs[:, permutation], atol=1e-5)


@pytest.mark.parametrize("encoder", ENCODER_TYPES)
def test_encoder_scales_int16_to_unit_range_inside_the_model(encoder):
    chunk_encoder = build_encoder(tiny_model_config(encoder).encoder, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE)
    assert chunk_encoder.inputs[0].dtype == "int16"
    front_end = keras.Model(chunk_encoder.input, chunk_encoder.get_layer("int16_to_float").output)
    chunks = random_chunks(np.random.default_rng(0), 4, 1)[:, 0]
    chunks[0, :2] = [-32768, 32767]  # full scale both ways
    audio = keras.ops.convert_to_numpy(front_end(chunks))
    np.testing.assert_array_equal(audio, chunks.astype(np.float32) / 32768.0)
    assert audio.min() == -1.0 and audio.max() < 1.0
    # The layers after the front end see audio in [-1, 1): a full-scale chunk gives finite,
    # moderate embeddings, and quiet audio is not crushed to zero by the scaling.
    embeddings = keras.ops.convert_to_numpy(chunk_encoder(chunks, training=False))
    assert np.isfinite(embeddings).all() and np.abs(embeddings).max() < 1e3


def test_int16_to_float_maps_full_scale_to_unit_range():
    samples = np.array([[-32768, -16384, 0, 16384, 32767]], dtype=np.int16)
    audio = keras.ops.convert_to_numpy(Int16ToFloat()(samples))
    np.testing.assert_array_equal(audio, [[-1.0, -0.5, 0.0, 0.5, 32767 / 32768]])


def test_log_mel_energy_of_a_1khz_sine_peaks_in_the_band_holding_1khz():
    t = np.arange(SAMPLE_RATE // 5) / SAMPLE_RATE
    sine = (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)[None]
    log_mel = keras.ops.convert_to_numpy(LogMelSpectrogram(SAMPLE_RATE, 400, 160, 512, 64)(sine))
    assert log_mel.shape == (1, 1 + (len(t) - 400) // 160, 64)
    band = int(log_mel[0].mean(axis=0).argmax())
    edges = librosa.mel_frequencies(64 + 2, fmin=0.0, fmax=SAMPLE_RATE / 2)  # band k spans edges[k]..edges[k + 2]
    assert edges[band] < 1000.0 < edges[band + 2]


def test_log_mel_equals_librosa_melspectrogram():
    audio = np.random.default_rng(0).uniform(-1, 1, size=(2, 3200)).astype(np.float32)
    ours = keras.ops.convert_to_numpy(LogMelSpectrogram(SAMPLE_RATE, 400, 160, 512, 64)(audio))
    for row, log_mel in zip(audio, ours):
        # librosa centres a 400-sample window in each 512-sample frame: offset by 56 samples.
        padded = np.pad(row, (512 - 400) // 2)
        mel = librosa.feature.melspectrogram(
            y=padded, sr=SAMPLE_RATE, n_fft=512, hop_length=160, win_length=400, center=False, power=2.0, n_mels=64
        )
        np.testing.assert_allclose(log_mel, np.log(mel.T + 1e-6), atol=1e-3)


def _assert_reloads_identically(model: keras.Model, inputs: np.ndarray, tmp_path) -> None:
    path = tmp_path / "m.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(reloaded(inputs, training=False)), keras.ops.convert_to_numpy(model(inputs, training=False))
    )


@pytest.mark.parametrize("encoder", ENCODER_TYPES)
def test_saved_encoder_reloads_with_identical_outputs(encoder, tmp_path):
    chunk_encoder = build_encoder(tiny_model_config(encoder).encoder, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE)
    _assert_reloads_identically(chunk_encoder, random_chunks(np.random.default_rng(0), 4, 1)[:, 0], tmp_path)


@pytest.mark.parametrize(
    "encoder, pooling, dropout",
    [("logmel", "time", 0.2), ("logmel", "flatten", 0.0), ("conv1d", "time", 0.0), ("logmel1d", "stats", 0.0), ("logmel", "stats", 0.0)],
)
def test_pooled_variants_reload_with_identical_outputs(encoder, pooling, dropout, tmp_path):
    cfg = dataclasses.replace(tiny_model_config(encoder).encoder, pooling=pooling, dropout=dropout)
    chunk_encoder = build_encoder(cfg, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE)
    _assert_reloads_identically(chunk_encoder, random_chunks(np.random.default_rng(0), 4, 1)[:, 0], tmp_path)


def test_time_pooling_tells_where_in_the_chunk_a_sound_is_and_global_pooling_barely_does():
    """A 1 kHz burst at a 0.5 s chunk's start vs its end: the same sound, placed differently."""
    samples = SAMPLE_RATE // 2
    burst = (8000 * np.sin(2 * np.pi * 1000 * np.arange(samples // 5) / SAMPLE_RATE)).astype(np.int16)
    chunks = np.zeros((2, samples), dtype=np.int16)
    chunks[0, : burst.size] = burst
    chunks[1, -burst.size :] = burst
    change = {}
    for pooling in ("global", "time"):
        keras.utils.set_random_seed(0)
        cfg = dataclasses.replace(tiny_model_config("logmel").encoder, pooling=pooling)
        embeddings = np.asarray(build_encoder(cfg, chunk_samples=samples, sample_rate=SAMPLE_RATE)(chunks))
        change[pooling] = np.linalg.norm(embeddings[0] - embeddings[1]) / np.linalg.norm(embeddings[0])
    assert change["time"] > 0.15, change
    assert change["global"] < 0.6 * change["time"], change


def test_time_statistics_are_the_mean_and_std_over_time_of_each_feature_kept_apart():
    feature_map = np.random.default_rng(0).normal(size=(2, 7, 3, 4)).astype("float32")  # (B, T, F, C)
    pooled = keras.ops.convert_to_numpy(TimeStatistics()(feature_map))
    flat = feature_map.reshape(2, 7, 12)
    np.testing.assert_allclose(pooled, np.concatenate([flat.mean(axis=1), flat.std(axis=1)], axis=1), atol=1e-3)


def test_encoder_pooling_and_dropout_are_checked():
    with pytest.raises(ConfigError, match="model.encoder.pooling"):
        EncoderConfig(type="logmel", pooling="mean")
    with pytest.raises(ConfigError, match="model.encoder.dropout"):
        EncoderConfig(type="logmel", dropout=1.0)


@pytest.mark.parametrize("sorter, normalization", [("attention", "sinkhorn"), ("mlp", "softmax"), ("rank", "softmax")])
def test_saved_model_reloads_with_identical_outputs(sorter, normalization, tmp_path):
    model, _ = build_model(
        tiny_model_config("logmel", sorter, normalization), n_chunks=N_CHUNKS, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE
    )
    _assert_reloads_identically(model, random_chunks(np.random.default_rng(0), 4), tmp_path)


@pytest.mark.parametrize(
    "layer",
    [
        Int16ToFloat(),
        LogMelSpectrogram(SAMPLE_RATE, 400, 160, 512, 40, f_min=20.0, f_max=7600.0, log_offset=1e-5),
        FoldSlots(),
        UnfoldSlots(4),
        RowLogSoftmax(),
        Sinkhorn(7),
        PairFeatures(),
        PermutationMarginals(4),
        ExpectedRankScores(),
        TimePositionScores(),
        UnfoldSlots(None),
        SuccessorLogits(),
        JoinMismatch(),
        TimeStatistics(),
        EdgeLogMel(SAMPLE_RATE, 240),
        SeamScores(initial_scale=2.0),
        CrossSimilarity(8, 4),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_custom_layer_config_round_trips_through_keras_serialization(layer):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer)
    assert restored.get_config() == layer.get_config()


def test_unknown_names_raise_config_error_listing_the_valid_ones():
    cfg = tiny_model_config()
    # Config validation rejects these names first; bypass it to reach the builders.
    encoder_cfg = cfg.encoder
    object.__setattr__(encoder_cfg, "type", "rnn")
    with pytest.raises(ConfigError, match=r"'rnn'.*\['conv1d', 'logmel', 'logmel1d', 'logmel_resnet', 'mlp'\]"):
        build_encoder(encoder_cfg, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE)
    sorter_cfg = tiny_model_config().sorter
    object.__setattr__(sorter_cfg, "type", "lstm")
    with pytest.raises(ConfigError, match=r"'lstm'.*\['attention', 'mlp', 'pairwise', 'precedence', 'rank', 'successor'\]"):
        build_sorter(sorter_cfg, n_chunks=N_CHUNKS, embedding_dim=16)
    model_cfg = tiny_model_config()
    object.__setattr__(model_cfg.sorter, "normalization", "sparsemax")
    with pytest.raises(ConfigError, match=r"'sparsemax'.*\['sinkhorn', 'softmax'\]"):
        build_model(model_cfg, n_chunks=N_CHUNKS, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE)


def test_pairwise_sorter_is_permutation_equivariant_and_doubly_stochastic():
    sorter = build_sorter(tiny_model_config(sorter="pairwise").sorter, n_chunks=5, embedding_dim=16)
    embeddings = np.random.default_rng(0).normal(size=(3, 5, 16)).astype("float32")
    log_probs = keras.ops.convert_to_numpy(sorter(embeddings, training=False))
    permutation = np.array([3, 0, 4, 1, 2])
    permuted = keras.ops.convert_to_numpy(sorter(embeddings[:, permutation], training=False))
    np.testing.assert_allclose(permuted, log_probs[:, permutation], atol=1e-5)
    np.testing.assert_allclose(np.exp(log_probs).sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.exp(log_probs).sum(axis=2), 1.0, atol=1e-5)


def test_permutation_marginals_are_uniform_without_evidence_and_follow_a_strong_chain():
    marginals = PermutationMarginals(3)
    zeros = [np.zeros((1, 3, 3), "float32"), np.zeros((1, 3), "float32"), np.zeros((1, 3), "float32")]
    np.testing.assert_allclose(np.exp(keras.ops.convert_to_numpy(marginals(zeros))), 1 / 3, atol=1e-6)
    # Slot 2 -> slot 0 -> slot 1 strongly: slot 2 first, slot 0 second, slot 1 last.
    successor = np.zeros((1, 3, 3), "float32")
    successor[0, 2, 0] = successor[0, 0, 1] = 20.0
    log_probs = keras.ops.convert_to_numpy(marginals([successor, zeros[1], zeros[2]]))
    assert log_probs[0].argmax(axis=1).tolist() == [1, 2, 0]
    assert np.exp(log_probs[0]).max(axis=1).min() > 0.999
    # Weak links: orders score 2 for (2,0,1), 1 for (0,1,2) and (1,2,0), 0 for the other three. Slot 1 is
    # last in (2,0,1) and (0,2,1), so P(slot 1 at position 2) = (e^2 + e^0) / (e^2 + 2e + 3).
    successor[0, 2, 0] = successor[0, 0, 1] = 1.0
    log_probs = keras.ops.convert_to_numpy(marginals([successor, zeros[1], zeros[2]]))
    e = np.e
    assert np.exp(log_probs[0, 1, 2]) == pytest.approx((e**2 + 1) / (e**2 + 2 * e + 3), rel=1e-5)


@pytest.mark.parametrize("sorter", ["pairwise", "precedence"])
def test_pair_scoring_sorters_are_permutation_equivariant(sorter):
    head = build_sorter(tiny_model_config(sorter=sorter).sorter, n_chunks=6, embedding_dim=16)
    embeddings = np.random.default_rng(1).normal(size=(3, 6, 16)).astype("float32")
    permutation = np.array([5, 2, 0, 4, 1, 3])
    scores = keras.ops.convert_to_numpy(head(embeddings, training=False))
    permuted = keras.ops.convert_to_numpy(head(embeddings[:, permutation], training=False))
    np.testing.assert_allclose(permuted, scores[:, permutation], atol=1e-4)


def test_expected_rank_scores_put_each_slot_at_its_rank_among_confident_precedences():
    positions = np.random.default_rng(2).permutation(20)  # true position of each slot
    before = np.where(positions[:, None] < positions[None, :], 10.0, -10.0).astype("float32")[None]
    scores = keras.ops.convert_to_numpy(ExpectedRankScores()(before))
    assert scores[0].argmax(axis=1).tolist() == positions.tolist()
    # No evidence: every slot's expected rank is the middle, (n - 1) / 2.
    flat = keras.ops.convert_to_numpy(ExpectedRankScores()(np.zeros((1, 5, 5), "float32")))
    assert flat[0].argmax(axis=1).tolist() == [2] * 5


def test_pairwise_sorter_refuses_more_chunks_than_it_can_enumerate():
    with pytest.raises(ConfigError, match="n_chunks must be <= 7, got 8"):
        build_sorter(tiny_model_config(sorter="pairwise").sorter, n_chunks=8, embedding_dim=16)


def test_logmel_frame_under_one_sample_is_a_config_error():
    cfg = dataclasses.replace(tiny_model_config("logmel").encoder, frame_seconds=1e-5)
    with pytest.raises(ConfigError, match="frame_seconds"):
        build_encoder(cfg, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE)


def test_tiny_model_memorizes_a_fixed_batch_of_noise_puzzles():
    # Random labels on noise can only be memorized, so reaching 100% shows that the
    # loss, the labels and the (B, n, n) row layout are wired together correctly.
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    chunks = random_chunks(rng, 64)
    order = rng.permuted(np.tile(np.arange(N_CHUNKS), (64, 1)), axis=1)
    model, _ = build_model(tiny_model_config(), n_chunks=N_CHUNKS, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    steps = 150
    # One epoch over repeated copies: the same batch every step, without per-epoch overhead.
    model.fit(np.tile(chunks, (steps, 1, 1)), np.tile(order, (steps, 1)), batch_size=64, shuffle=False, verbose=0)
    predicted = keras.ops.convert_to_numpy(model(chunks, training=False)).argmax(axis=-1)
    assert (predicted == order).mean() == 1.0


_JAX_SHAPE_CHECK = textwrap.dedent(
    """
    import itertools, keras, numpy as np
    from audiosort.models import build_model
    from tests.test_models import CHUNK_SAMPLES, N_CHUNKS, SAMPLE_RATE, VALID_COMBINATIONS, random_chunks, tiny_model_config
    assert keras.backend.backend() == "jax", keras.backend.backend()
    chunks = random_chunks(np.random.default_rng(0), 4)
    for names in VALID_COMBINATIONS:
        model, _ = build_model(tiny_model_config(*names), n_chunks=N_CHUNKS, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE)
        log_probs = np.asarray(model(chunks, training=False))
        assert log_probs.shape == (4, N_CHUNKS, N_CHUNKS), (names, log_probs.shape)
        np.testing.assert_allclose(np.exp(log_probs).sum(axis=-1), 1.0, atol=1e-5)
    print("ok")
    """
)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed; the models are checked under TensorFlow only")
def test_every_combination_builds_and_runs_under_jax():
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": repo_root}
    result = subprocess.run([sys.executable, "-c", _JAX_SHAPE_CHECK], env=env, cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
