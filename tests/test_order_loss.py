"""The pairwise head's order-level loss (``model.sorter.loss: orders``): -log P(true order) over all n! orders."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from audiosort.config import SorterConfig, load_config
from audiosort.errors import ConfigError
from audiosort.heads import HEADS
from audiosort.models import build_model
from audiosort.models.layers import PermutationMarginals
from audiosort.models.objectives import OrderLoss
from audiosort.predict import position_scores
from test_models import CHUNK_SAMPLES, SAMPLE_RATE, random_chunks, tiny_model_config


def all_orders(n: int) -> list[list[int]]:
    """Every sequence of the slots 0 .. n-1, built by hand (not itertools): the enumeration the test trusts."""
    if n == 1:
        return [[0]]
    return [rest[:k] + [n - 1] + rest[k:] for rest in all_orders(n - 1) for k in range(n)]


def true_order_nll(successor, first, last, order) -> np.ndarray:
    """-log P(true order) per puzzle, in numpy: score every order, softmax, read the one ``order`` gives.

    ``order[b, i]`` is the position of slot i, so the true sequence of slots is its argsort.
    """
    nll = []
    for b in range(len(order)):
        sequences = all_orders(order.shape[1])
        scores = np.array(
            [first[b, s[0]] + sum(successor[b, s[k], s[k + 1]] for k in range(len(s) - 1)) + last[b, s[-1]] for s in sequences],
            dtype=np.float64,
        )
        log_p = scores - np.log(np.exp(scores - scores.max()).sum()) - scores.max()
        nll.append(-log_p[sequences.index(list(np.argsort(order[b])))])
    return np.array(nll)


@pytest.mark.parametrize("n", [3, 4])
def test_order_loss_is_minus_the_log_probability_of_the_true_order(n):
    rng = np.random.default_rng(n)
    batch = 12
    successor = rng.normal(size=(batch, n, n)).astype("float32") * 2
    first, last = (rng.normal(size=(batch, n)).astype("float32") for _ in range(2))
    order = np.stack([rng.permutation(n) for _ in range(batch)])
    outputs = PermutationMarginals(n, with_orders=True)([successor, first, last])
    terms = keras.ops.convert_to_numpy(OrderLoss().call(order, outputs))
    assert terms.shape == (batch, 1)
    np.testing.assert_allclose(terms[:, 0], true_order_nll(successor, first, last, order), rtol=1e-4, atol=1e-5)
    # The position columns are the marginals the rows loss trains: the order columns only follow them.
    marginals = keras.ops.convert_to_numpy(PermutationMarginals(n)([successor, first, last]))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(outputs)[:, :, :n], marginals)


def test_the_loss_option_picks_the_pairwise_heads_loss_and_is_checked():
    assert isinstance(HEADS["pairwise"].loss(SorterConfig(type="pairwise", loss="orders")), OrderLoss)
    assert not isinstance(HEADS["pairwise"].loss(SorterConfig(type="pairwise")), OrderLoss)
    with pytest.raises(ConfigError, match="model.sorter.loss = 'order' must be one of"):
        SorterConfig(type="pairwise", loss="order")
    with pytest.raises(ConfigError, match="model.sorter.loss = 'orders' needs model.sorter.type 'pairwise'"):
        SorterConfig(type="mlp", loss="orders")
    with pytest.raises(ConfigError, match="did you mean .loss."):
        load_config(None, ["model.sorter.type=pairwise", "model.sorter.los=orders"])


def order_loss_model(n_chunks: int):
    config = tiny_model_config(sorter="pairwise")
    config = dataclasses.replace(config, sorter=dataclasses.replace(config.sorter, loss="orders"))
    model, _ = build_model(config, n_chunks=n_chunks, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE)
    head = HEADS["pairwise"]
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=head.loss(config.sorter), metrics=head.compile_metrics())
    return model


def test_a_tiny_model_memorizes_a_fixed_batch_of_noise_puzzles_with_the_order_loss():
    # Random orders on noise can only be memorized: reaching them all shows the loss reads the true order
    # (a loss that picked, say, the inverse permutation would train the 4-cycles and 3-cycles wrong).
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n_chunks, batch, steps = 4, 64, 150
    chunks = random_chunks(rng, batch, n_chunks=n_chunks)
    order = np.stack([rng.permutation(n_chunks) for _ in range(batch)])
    model = order_loss_model(n_chunks)
    history = model.fit(np.tile(chunks, (steps, 1, 1)), np.tile(order, (steps, 1)), batch_size=batch, shuffle=False, verbose=0)
    assert history.history["loss"][0] > 0.5  # it started far from the answer: what it learned, it learned here
    predicted = position_scores(model, chunks).argmax(axis=-1)
    assert predicted.shape == (batch, n_chunks)
    assert np.all(predicted == order)
    assert model.evaluate(chunks, order, verbose=0, return_dict=True)["exact_accuracy"] == 1.0


def test_a_compiled_order_loss_model_reloads_with_its_loss_and_identical_outputs(tmp_path):
    rng = np.random.default_rng(1)
    chunks = random_chunks(rng, 8)
    order = np.stack([rng.permutation(3) for _ in range(8)])
    model = order_loss_model(3)
    model.fit(chunks, order, batch_size=8, verbose=0)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(reloaded(chunks, training=False)), keras.ops.convert_to_numpy(model(chunks, training=False))
    )
    assert isinstance(reloaded.loss, OrderLoss)
    expected = model.evaluate(chunks, order, verbose=0, return_dict=True)
    np.testing.assert_allclose(reloaded.evaluate(chunks, order, verbose=0, return_dict=True)["loss"], expected["loss"], rtol=1e-5)
    assert position_scores(reloaded, chunks).shape == (8, 3, 3)
