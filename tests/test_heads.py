"""The head registry: every head's contract in one entry, and a new head added by registering it alone."""

from __future__ import annotations

import csv
import dataclasses

import keras
import numpy as np
import pytest

from audiosort.config import SorterConfig, load_config
from audiosort.errors import ConfigError
from audiosort.evaluate import evaluate
from audiosort.heads import HEAD_KEYS, HEADS, Head, head_of, model_name
from audiosort.models import build_sorter
from audiosort.models.sorters import JOIN_SCORE_LAYERS, SEAM_BANDS
from audiosort.predict import position_scores
from audiosort.run import load_run_model
from audiosort.train import train
from conftest import TINY_TRAIN

TOY_MAX_CHUNKS = 4


def toy_build(embeddings, cfg, *, n_chunks):
    """Each slot's position scores from its own embedding alone: one Dense(n) shared by the slots."""
    return keras.layers.Dense(n_chunks, name="scores")(embeddings)


@keras.saving.register_keras_serializable(package="audiosort_test")
def first_slot_right(order, log_probs):
    """1.0 per puzzle whose slot 0 has its true position as its row's argmax: ``(B,)``."""
    predicted = keras.ops.argmax(log_probs[:, 0], axis=-1)
    return keras.ops.cast(keras.ops.equal(predicted, keras.ops.cast(order[:, 0], predicted.dtype)), "float32")


@pytest.fixture
def toy_head(monkeypatch):
    """Registers a "toy" head for one test; its decode passes scores through and records their shapes."""
    decoded = []

    def decode(scores):
        decoded.append(scores.shape)
        return scores

    head = Head(
        build=toy_build,
        loss=lambda sorter: keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=lambda: {"first_slot_accuracy": first_slot_right},
        decode=decode,
        max_n=TOY_MAX_CHUNKS,
        max_n_reason="is a toy",
    )
    monkeypatch.setitem(HEADS, "toy", head)
    return decoded


def test_a_head_registered_alone_trains_predicts_and_evaluates_through_the_normal_paths(toy_head, music_corpus, tmp_path):
    config = load_config(None, [f"data.corpus={music_corpus}", "name=toy", *TINY_TRAIN, "model.sorter.type=toy"])
    run_dir = train(config, runs_dir=tmp_path, verbose=0)
    with open(run_dir / "history.csv") as f:
        columns = next(csv.reader(f))
    # Its own metric, logged by train under the name its entry gives, for train and val.
    assert {"first_slot_accuracy", "val_first_slot_accuracy", "loss", "val_loss"} <= set(columns)
    # The run's val scores (the corpus's 200 val puzzles) went through its decode after each of the 2 epochs
    # (the decoded val columns of history.csv) and for metrics.json.
    assert toy_head == [(200, 3, 3)] * 3 and "val_hungarian_exact_accuracy" in columns
    model = load_run_model(run_dir)
    assert model.name == model_name("toy") and head_of(model) is HEADS["toy"]
    chunks = np.zeros((5, 3, model.input_shape[2]), dtype=np.int16)
    assert position_scores(model, chunks).shape == (5, 3, 3) and toy_head[-1] == (5, 3, 3)
    report = evaluate(run_dir, sanity=("noise",), n_puzzles=40)
    assert [result.scores.n_puzzles for result in report.datasets] == [200, 40]  # the corpus's test set, noise
    assert toy_head[-2:] == [(200, 3, 3), (40, 3, 3)]  # both decoded by its entry


def test_a_registered_head_is_held_to_its_own_limits(toy_head):
    build_sorter(SorterConfig(type="toy"), n_chunks=TOY_MAX_CHUNKS, embedding_dim=8)
    with pytest.raises(ConfigError, match=r"'toy' is a toy: n_chunks must be <= 4, got 5; use 'rank' or 'successor'"):
        build_sorter(SorterConfig(type="toy"), n_chunks=TOY_MAX_CHUNKS + 1, embedding_dim=8)
    with pytest.raises(ConfigError, match=r"'toy' is built for one n"):
        build_sorter(SorterConfig(type="toy"), n_chunks=None, embedding_dim=8)


def test_config_accepts_only_registered_heads_and_their_normalizations(toy_head):
    assert SorterConfig(type="toy", normalization="sinkhorn").type == "toy"
    for name, head in HEADS.items():
        if head.softmax_only:
            with pytest.raises(ConfigError, match="must be softmax"):
                SorterConfig(type=name, normalization="sinkhorn")
    with pytest.raises(ConfigError, match=r"'toys'.*'toy'"):
        SorterConfig(type="toys")


def test_every_head_declares_a_known_output_and_consistent_limits():
    assert {name for name, head in HEADS.items() if head.any_n} == {"rank", "successor"}
    assert {name: head.max_n for name, head in HEADS.items() if head.max_n} == {"attention": 7, "pairwise": 7}
    assert {name for name, head in HEADS.items() if head.outputs == "successors"} == {"successor"}
    with pytest.raises(ValueError, match="outputs"):
        Head(build=toy_build, loss=list, metrics=dict, outputs="ranks")
    with pytest.raises(ValueError, match="max_n"):
        Head(build=toy_build, loss=list, metrics=dict, any_n=True, max_n=5)


def test_a_head_owns_the_sorter_keys_it_declares(monkeypatch):
    monkeypatch.setitem(HEADS, "toy", Head(build=toy_build, loss=list, metrics=dict, keys=("mismatch",)))
    assert SorterConfig(type="toy", mismatch=True).mismatch
    with pytest.raises(ConfigError, match=r"model.sorter.mismatch = True needs model.sorter.type 'pairwise' or 'toy'"):
        SorterConfig(type="mlp", mismatch=True)
    with pytest.raises(ConfigError, match=r"model.sorter.loss = 'orders' needs model.sorter.type 'pairwise'"):
        SorterConfig(type="toy", loss="orders")
    with pytest.raises(ValueError, match="keys"):
        Head(build=toy_build, loss=list, metrics=dict, keys=("hidden_units",))
    assert set(HEAD_KEYS) <= {field.name for field in dataclasses.fields(SorterConfig)}


@pytest.mark.parametrize("head, seam", [("pairwise", False), ("pairwise", True), ("successor", False), ("successor", True)])
def test_join_scores_are_the_sorters_own_layers_at_its_n_and_run_at_any_n(head, seam):
    cfg = SorterConfig(type=head, hidden_units=8, seam=seam, mismatch=head == "pairwise")
    sorter = build_sorter(cfg, n_chunks=3, embedding_dim=4)
    embeddings = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    inputs = [embeddings, np.zeros((2, 3, 2, SEAM_BANDS), np.float32)] if seam else embeddings
    in_graph = keras.Model(sorter.input, [sorter.get_layer(name).output for name in JOIN_SCORE_LAYERS])(inputs)
    for ours, theirs in zip(HEADS[head].join_scores(sorter, embeddings), in_graph):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(theirs), rtol=1e-6)
    successor, first, last = HEADS[head].join_scores(sorter, np.zeros((2, 9, 4), np.float32))
    assert (successor.shape, first.shape, last.shape) == ((2, 9, 9, 1), (2, 9, 1), (2, 9, 1))
    assert {name for name, entry in HEADS.items() if entry.join_scores} == {"pairwise", "successor"}
