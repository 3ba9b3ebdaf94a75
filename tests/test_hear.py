"""audiosort.hear: the HEAR 2021 API: attributes, shapes, millisecond timestamps, batching, lengths, float input."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from audiosort import hear
from audiosort.config import EncoderConfig
from audiosort.run import RunEncoder
from audiosort.errors import InputError
from audiosort.models.encoders import build_encoder
from conftest import SAMPLE_RATE

CHUNK_SAMPLES = 800  # the tiny run's 0.05 s chunks at 16 kHz: the hop is one chunk, 50 ms


@pytest.fixture(scope="module")
def model(tiny_run):
    return hear.load_model(str(tiny_run))


def noise(n_sounds, n_samples, *, amplitude=0.3, seed=0):
    rng = np.random.default_rng(seed)
    return (amplitude * rng.uniform(-1, 1, size=(n_sounds, n_samples))).astype(np.float32)


def test_model_has_the_hear_attributes(model, tiny_run):
    assert model.sample_rate == SAMPLE_RATE
    assert model.scene_embedding_size == model.timestamp_embedding_size == 16
    from_file = hear.load_model(str(tiny_run / "encoder.keras"))
    assert (from_file.sample_rate, from_file.timestamp_embedding_size) == (SAMPLE_RATE, 16)


def test_model_is_a_tf_module_for_hears_validator(model):
    # hearvalidator rejects anything that is neither a tf.Module nor a torch.nn.Module.
    assert isinstance(model, tf.Module)


def test_load_model_needs_a_run(tmp_path):
    with pytest.raises(InputError, match="no default model"):
        hear.load_model()
    with pytest.raises(InputError, match="no run folder or encoder file"):
        hear.load_model(str(tmp_path / "nowhere"))


@pytest.mark.parametrize(
    "n_samples",
    [1, 300, CHUNK_SAMPLES, CHUNK_SAMPLES + 1, 3 * SAMPLE_RATE],
    ids=["one-sample", "shorter-than-a-chunk", "one-chunk", "one-chunk-and-a-sample", "three-seconds"],
)
def test_timestamp_embeddings_every_50_ms_from_0_cover_the_sound(model, n_samples):
    embeddings, timestamps = hear.get_timestamp_embeddings(noise(2, n_samples), model)
    n_timestamps = 1 + n_samples // CHUNK_SAMPLES
    assert embeddings.shape == (2, n_timestamps, 16) and embeddings.dtype == np.float32
    assert timestamps.shape == (2, n_timestamps) and timestamps.dtype == np.float32
    assert np.isfinite(embeddings).all()
    np.testing.assert_array_equal(timestamps[0], timestamps[1])
    np.testing.assert_allclose(timestamps[0], 50.0 * np.arange(n_timestamps))  # milliseconds, frame centers
    assert timestamps[0, -1] <= n_samples / SAMPLE_RATE * 1000 < timestamps[0, -1] + 50.0


def test_scene_embedding_is_the_mean_of_timestamp_embeddings(model):
    sounds = noise(3, SAMPLE_RATE)
    scene = hear.get_scene_embeddings(sounds, model)
    assert scene.shape == (3, model.scene_embedding_size) and scene.dtype == np.float32
    embeddings, _ = hear.get_timestamp_embeddings(sounds, model)
    np.testing.assert_allclose(scene, embeddings.mean(axis=1), rtol=1e-6)


def test_a_sound_embeds_the_same_alone_or_in_a_batch(model):
    sounds = noise(3, 2 * SAMPLE_RATE + 123)
    together, _ = hear.get_timestamp_embeddings(sounds, model)
    for k in range(3):
        alone, _ = hear.get_timestamp_embeddings(sounds[k : k + 1], model)
        np.testing.assert_allclose(alone[0], together[k], rtol=1e-5, atol=1e-6)
    assert not np.allclose(together[0], together[1])


def test_float_input_reaches_the_encoder_scaled_to_int16(model):
    silence = hear.get_scene_embeddings(np.zeros((1, SAMPLE_RATE), np.float32), model)
    quiet = hear.get_scene_embeddings(noise(1, SAMPLE_RATE, amplitude=0.01), model)
    loud = hear.get_scene_embeddings(noise(1, SAMPLE_RATE, amplitude=0.8), model)
    # Fed as raw floats, every sample in (-1, 1) would be cast to int16 zero: all three would be silence.
    assert not np.allclose(quiet, silence) and not np.allclose(loud, quiet) and not np.allclose(loud, silence)
    # And the scale is int16's full scale: frame 1 of a two-chunk sound (samples 400-1199, centered on 800)
    # embeds as those samples times 32768, rounded, fed to the encoder by hand.
    sound = noise(1, 2 * CHUNK_SAMPLES, amplitude=0.8)
    embeddings, _ = hear.get_timestamp_embeddings(sound, model)
    pcm = np.clip(np.round(sound[0, CHUNK_SAMPLES // 2 : 3 * CHUNK_SAMPLES // 2] * 32768), -32768, 32767).astype(np.int16)
    np.testing.assert_allclose(embeddings[0, 1], model.encoder.embed(pcm[None])[0], rtol=1e-5, atol=1e-6)


def test_float64_and_tensorflow_tensors_are_accepted(model):
    sounds = noise(2, 4000)
    expected, _ = hear.get_timestamp_embeddings(sounds, model)
    as_float64, _ = hear.get_timestamp_embeddings(sounds.astype(np.float64), model)
    as_tensor, _ = hear.get_timestamp_embeddings(tf.constant(sounds), model)
    np.testing.assert_allclose(as_float64, expected, rtol=1e-6)
    np.testing.assert_allclose(as_tensor, expected, rtol=1e-6)


@pytest.mark.parametrize(
    "audio, fragment",
    [
        (np.zeros(1600, np.float32), "shape (n_sounds, n_samples)"),
        (np.zeros((2, 0), np.float32), "shape (n_sounds, n_samples)"),
        (np.zeros((2, 1600), np.int16), "floating-point"),
        (np.full((1, 1600), np.nan, np.float32), "NaN"),
    ],
    ids=["1-d", "empty", "int16", "nan"],
)
def test_bad_audio_raises_naming_the_problem(model, audio, fragment):
    with pytest.raises(InputError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        hear.get_timestamp_embeddings(audio, model)


def test_chunks_longer_than_50_ms_keep_a_50_ms_hop():
    chunk_samples = 3200  # 0.2 s, the seed's chunks
    config = EncoderConfig(hidden_units=8, embedding_dim=4)
    encoder = build_encoder(config, chunk_samples=chunk_samples, sample_rate=SAMPLE_RATE)
    model = hear.HearModel(RunEncoder(encoder, SAMPLE_RATE, chunk_samples, Path("unsaved.keras")))
    assert model.hop_samples == 800
    for n_samples in (1000, chunk_samples, SAMPLE_RATE):
        embeddings, timestamps = hear.get_timestamp_embeddings(noise(1, n_samples), model)
        assert embeddings.shape == (1, 1 + n_samples // 800, 4)
        np.testing.assert_allclose(np.diff(timestamps[0]), 50.0)


_JAX_CHECK = """
import sys
import numpy as np
import keras
from audiosort import hear
assert keras.backend.backend() == "jax", keras.backend.backend()
model = hear.load_model(sys.argv[1])
embeddings, timestamps = hear.get_timestamp_embeddings(np.load(sys.argv[2]), model)
np.save(sys.argv[3], embeddings)
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_the_api_gives_the_same_embeddings_under_jax(model, tiny_run, tmp_path):
    sounds = noise(2, 5000)
    np.save(tmp_path / "sounds.npy", sounds)
    expected, _ = hear.get_timestamp_embeddings(sounds, model)
    repo_root = str(Path(__file__).resolve().parents[1])
    result = subprocess.run(
        [sys.executable, "-c", _JAX_CHECK, str(tiny_run), str(tmp_path / "sounds.npy"), str(tmp_path / "jax.npy")],
        env={**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": repo_root},
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "jax.npy"), expected, rtol=1e-4, atol=1e-5)


_JAX_MODULE_TYPE = """
import sys
if sys.argv[2] == "tensorflow-imported":  # as hearvalidator and HEAR's evaluation kit do before load_model
    import tensorflow as tf
import keras
from audiosort import hear
model = hear.load_model(sys.argv[1])
is_tf_module = "tensorflow" in sys.modules and isinstance(model, sys.modules["tensorflow"].Module)
print(keras.backend.backend(), is_tf_module, "tensorflow" in sys.modules)
"""


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
@pytest.mark.parametrize(
    "imported, expected",
    [("tensorflow-imported", "jax True True"), ("tensorflow-not-imported", "jax False False")],
)
def test_under_jax_load_model_gives_hears_validator_a_tf_module_without_importing_tensorflow_itself(
    tiny_run, imported, expected
):
    repo_root = str(Path(__file__).resolve().parents[1])
    result = subprocess.run(
        [sys.executable, "-c", _JAX_MODULE_TYPE, str(tiny_run), imported],
        env={**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": repo_root},
        cwd=repo_root, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == expected
