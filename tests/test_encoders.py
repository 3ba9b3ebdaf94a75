"""The log-mel ResNet family: width and depth from the config, the sizes its configs promise, saving and
reloading (also across backends), and the MAC count of scripts/encoder_cost.py checked by hand."""

import dataclasses
import importlib.util
import os
import runpy
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from audiosort.config import EncoderConfig, load_config
from audiosort.data.puzzles import PuzzleSpec
from audiosort.models import build_encoder

SAMPLE_RATE = 16000
ONE_SECOND = SAMPLE_RATE
ROOT = Path(__file__).parents[1]
COST = runpy.run_path(str(ROOT / "scripts" / "encoder_cost.py"))
SMALL = EncoderConfig(type="logmel_resnet", embedding_dim=16, filters=4, blocks=3, n_mels=16, pooling="time")


def chunks(batch, samples=ONE_SECOND, seed=0):
    return np.random.default_rng(seed).integers(-(2**15), 2**15, size=(batch, samples), dtype=np.int16)


def residual_blocks(encoder):
    return [layer for layer in encoder.layers if isinstance(layer, keras.layers.Add)]


def test_depth_is_the_number_of_residual_blocks_and_width_doubles_every_other_block():
    encoder = build_encoder(SMALL, chunk_samples=ONE_SECOND, sample_rate=SAMPLE_RATE)
    assert len(residual_blocks(encoder)) == 3
    assert [encoder.get_layer(f"block_{k}_conv_b").filters for k in range(3)] == [4, 4, 8]
    # 98 log-mel frames x 16 bands, halved by the stem's pool and again where the channels double.
    assert encoder.get_layer("block_1_add").output.shape[1:] == (49, 8, 4)
    assert encoder.get_layer("block_2_add").output.shape[1:] == (25, 4, 8)
    deeper = build_encoder(dataclasses.replace(SMALL, blocks=5), chunk_samples=ONE_SECOND, sample_rate=SAMPLE_RATE)
    wider = build_encoder(dataclasses.replace(SMALL, filters=8), chunk_samples=ONE_SECOND, sample_rate=SAMPLE_RATE)
    assert len(residual_blocks(deeper)) == 5 and deeper.count_params() > encoder.count_params()
    assert wider.get_layer("block_2_conv_b").filters == 16 and wider.count_params() > encoder.count_params()


@pytest.mark.parametrize("name, low, high", [("resnet", 5e4, 1e6), ("resnet-gpu", 1e6, 5e6)])
def test_shipped_resnet_configs_have_the_promised_size(name, low, high):
    config = load_config(ROOT / "configs" / f"{name}.yaml")
    spec = PuzzleSpec.from_config(config.puzzle, sample_rate=SAMPLE_RATE)
    assert config.model.encoder.type == "logmel_resnet" and spec.chunk_samples >= ONE_SECOND
    encoder = build_encoder(config.model.encoder, chunk_samples=spec.chunk_samples, sample_rate=SAMPLE_RATE)
    assert low <= encoder.count_params() <= high


@pytest.mark.parametrize("pooling", ["global", "time", "flatten"])
def test_resnet_encoder_reloads_with_identical_outputs(pooling, tmp_path):
    encoder = build_encoder(dataclasses.replace(SMALL, pooling=pooling), chunk_samples=ONE_SECOND, sample_rate=SAMPLE_RATE)
    inputs = chunks(3)
    encoder.save(tmp_path / "encoder.keras")
    reloaded = keras.saving.load_model(tmp_path / "encoder.keras")
    expected = keras.ops.convert_to_numpy(encoder(inputs, training=False))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(reloaded(inputs, training=False)), expected)
    assert expected.shape == (3, 16) and np.isfinite(expected).all()


_JAX_RELOAD = """
import sys
import keras, numpy as np
import audiosort.models
assert keras.backend.backend() == "jax", keras.backend.backend()
encoder = keras.saving.load_model(sys.argv[1])
np.save(sys.argv[3], keras.ops.convert_to_numpy(encoder(np.load(sys.argv[2]), training=False)))
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_an_encoder_saved_under_tensorflow_gives_the_same_embeddings_under_jax(tmp_path):
    encoder = build_encoder(SMALL, chunk_samples=ONE_SECOND, sample_rate=SAMPLE_RATE)
    inputs = chunks(2)
    encoder.save(tmp_path / "encoder.keras")
    np.save(tmp_path / "inputs.npy", inputs)
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    args = [str(tmp_path / name) for name in ("encoder.keras", "inputs.npy", "jax.npy")]
    subprocess.run([sys.executable, "-c", _JAX_RELOAD, *args], env=env, check=True, capture_output=True, timeout=300)
    expected = keras.ops.convert_to_numpy(encoder(inputs, training=False))
    np.testing.assert_allclose(np.load(tmp_path / "jax.npy"), expected, rtol=1e-4, atol=1e-4)


def test_mac_count_of_the_mlp_encoder_is_its_weight_count():
    cfg = EncoderConfig(type="mlp", hidden_units=32, embedding_dim=16)
    encoder = build_encoder(cfg, chunk_samples=800, sample_rate=SAMPLE_RATE)
    assert COST["forward_macs"](encoder) == 800 * 32 + 32 * 32 + 32 * 16


def test_mac_count_of_the_resnet_adds_front_end_and_every_conv():
    encoder = build_encoder(SMALL, chunk_samples=ONE_SECOND, sample_rate=SAMPLE_RATE)
    # Log-mel: 98 frames of a 400-sample window, 257 bins (cos and sin), projected on 16 bands.
    front_end = 98 * (400 * 2 * 257 + 257 * 16)
    stem = 98 * 16 * 9 * 1 * 4
    block_0 = block_1 = 2 * 49 * 8 * 9 * 4 * 4
    block_2 = 25 * 4 * (9 * 4 * 8 + 9 * 8 * 8 + 4 * 8)  # conv_a, conv_b and the 1x1 shortcut
    embedding = 25 * 2 * 8 * 16
    assert COST["forward_macs"](encoder) == front_end + stem + block_0 + block_1 + block_2 + embedding


def test_cost_table_lists_each_config(capsys):
    assert COST["main"]([str(ROOT / "configs" / "resnet.yaml")]) == 0
    row = capsys.readouterr().out.splitlines()[-1]
    assert "| logmel_resnet | 16 | 4 | time | 1 |" in row
