"""Many chunks: the rank head and its Plackett-Luce loss, models for any n, and the n curriculum of a run."""

from __future__ import annotations

import csv
import json
import importlib.util
import itertools
import math
import textwrap

import keras
import numpy as np
import pytest

from audiosort import decoding, metrics
from audiosort.config import EncoderConfig, ModelConfig, SorterConfig, TrainConfig, load_config, n_chunks_schedule
from audiosort.errors import ConfigError
from audiosort.evaluate import evaluate
from audiosort.heads import HEADS
from audiosort.models import build_model, build_sorter
from audiosort.models.layers import TimePositionScores
from audiosort.models.objectives import PlackettLuceLoss
from audiosort.train import train
from conftest import TINY_TRAIN, latest_eval, run, run_under_jax

SAMPLE_RATE = 16000
CHUNK_SAMPLES = 160


def rank_model_config() -> ModelConfig:
    return ModelConfig(
        encoder=EncoderConfig(type="mlp", embedding_dim=16, hidden_units=32),
        sorter=SorterConfig(type="rank", attention_layers=1, attention_heads=2),
    )


def drifting_puzzles(rng, n_puzzles, n_chunks):
    """Noise chunks on an offset that rises from -3000 to 3000 (int16) over their positions: a known order."""
    order = rng.permuted(np.tile(np.arange(n_chunks), (n_puzzles, 1)), axis=1)
    offset = -3000.0 + 6000.0 * order[:, :, None] / (n_chunks - 1)
    chunks = (offset + 500.0 * rng.normal(size=(n_puzzles, n_chunks, CHUNK_SAMPLES))).astype(np.int16)
    return chunks, order


def test_time_position_scores_decode_to_the_argsort_of_the_times_and_give_them_back():
    time = np.random.default_rng(0).normal(size=(50, 9)) * 3
    log_probs = keras.ops.convert_to_numpy(keras.ops.log_softmax(TimePositionScores()(time), axis=-1))
    np.testing.assert_array_equal(decoding.decode(log_probs, method="hungarian"), np.argsort(np.argsort(time, axis=1), axis=1))
    np.testing.assert_allclose(log_probs[..., 1] - log_probs[..., 0] + 0.5, time, atol=1e-4)


def test_plackett_luce_loss_is_the_negative_log_likelihood_of_the_order_plus_row_cross_entropy():
    rng = np.random.default_rng(1)
    time = rng.normal(size=(4, 4))
    log_probs = np.asarray(keras.ops.log_softmax(TimePositionScores()(time), axis=-1))
    order = np.array([list(p) for p in itertools.permutations(range(4))][:4])
    terms = np.asarray(PlackettLuceLoss().call(order, log_probs))
    for b in range(4):
        # Plackett-Luce draws the latest chunk first: slots from the last position down.
        remaining, likelihood = list(np.argsort(order[b])), 1.0
        while remaining:
            weights = np.exp(time[b, remaining])
            likelihood *= weights[-1] / weights.sum()
            remaining.pop()
        cross_entropy = -log_probs[b, np.arange(4), order[b]].sum()
        assert terms[b].sum() == pytest.approx(-math.log(likelihood) + cross_entropy, rel=1e-4)


def test_the_orders_plackett_luce_likelihoods_sum_to_one_so_no_order_is_favoured_for_free():
    time = np.random.default_rng(2).normal(size=(1, 4))
    log_probs = np.asarray(keras.ops.log_softmax(TimePositionScores()(time), axis=-1))
    orders = np.array(list(itertools.permutations(range(4))))
    terms = np.asarray(PlackettLuceLoss().call(orders, np.repeat(log_probs, len(orders), axis=0)))
    cross_entropy = -log_probs[0][np.arange(4)[None, :], orders].sum(axis=1)
    assert np.exp(-(terms.sum(axis=1) - cross_entropy)).sum() == pytest.approx(1.0, rel=1e-4)


def test_one_rank_model_takes_any_n_and_is_permutation_equivariant():
    model, _ = build_model(rank_model_config(), n_chunks=None, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE)
    rng = np.random.default_rng(3)
    for n_chunks in (2, 5, 13):
        chunks = rng.integers(-3000, 3000, size=(4, n_chunks, CHUNK_SAMPLES)).astype(np.int16)
        log_probs = keras.ops.convert_to_numpy(model(chunks, training=False))
        assert log_probs.shape == (4, n_chunks, n_chunks)
        np.testing.assert_allclose(np.exp(log_probs).sum(axis=-1), 1.0, atol=1e-5)
        shuffle = rng.permutation(n_chunks)
        permuted = keras.ops.convert_to_numpy(model(chunks[:, shuffle], training=False))
        np.testing.assert_allclose(permuted, log_probs[:, shuffle], atol=1e-4)


def test_a_head_sized_by_n_refuses_to_be_built_for_any_n():
    with pytest.raises(ConfigError, match="rank"):
        build_sorter(SorterConfig(type="attention"), n_chunks=None, embedding_dim=8)


def test_rank_head_needs_softmax_rows():
    with pytest.raises(ConfigError, match="softmax"):
        SorterConfig(type="rank", normalization="sinkhorn")


def test_tiny_rank_model_learns_a_drift_on_few_chunks_and_sorts_more():
    # Trained on 3 and 5 chunks only, then asked for 8: the head must have learned a rule, not a size.
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model, _ = build_model(rank_model_config(), n_chunks=None, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=HEADS["rank"].loss())
    for n_chunks in (3, 5):
        chunks, order = drifting_puzzles(rng, 2048, n_chunks)
        model.fit(chunks, order, batch_size=32, verbose=0)
    chunks, order = drifting_puzzles(rng, 200, 8)
    scores = decoding.finite_scores(model.predict(chunks, verbose=0))
    tau = metrics.kendall_tau(decoding.decode(scores, method="hungarian"), order).mean()
    assert tau > 0.9


@pytest.mark.parametrize(
    "text", ["5:3", "0:3,0:5", "0:3,2", "0:1", "0:3,a:5", "0:3,99:5"]
)
def test_a_malformed_schedule_is_a_config_error_naming_the_key(text):
    with pytest.raises(ConfigError, match="train.n_chunks_schedule"):
        TrainConfig(epochs=10, n_chunks_schedule=text)


def test_schedule_parses_into_epochs_and_n():
    assert n_chunks_schedule(TrainConfig(epochs=10, n_chunks_schedule="0:3, 2:5,7:10")) == [(0, 3), (2, 5), (7, 10)]
    assert n_chunks_schedule(TrainConfig()) == []


def test_a_run_grows_n_as_scheduled_and_validates_at_the_final_n(music_corpus, tmp_path):
    config = load_config(
        None,
        [f"data.corpus={music_corpus}", "name=grow", *TINY_TRAIN, "model.sorter.type=rank",
         "model.sorter.attention_layers=1", "train.epochs=3", "train.steps_per_epoch=3",
         "puzzle.n_chunks=4", "train.n_chunks_schedule=0:2,1:3,2:4"],
    )
    run_dir = train(config, runs_dir=tmp_path, verbose=0)
    with open(run_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2]
    model = keras.saving.load_model(run_dir / "model.keras")
    assert model.input_shape[1] is None
    # audiosort eval takes the any-n model on the run's 4-chunk test puzzles.
    report = evaluate(run_dir, sanity=(), n_puzzles=50)
    assert report.datasets[0].scores.n_chunks == 4
    # The README's loop keeps every n's report; asking one again replaces only its own.
    for n_chunks in (3, 5, 3):
        result = run("eval", run_dir, "--n-chunks", n_chunks, "--sanity", "", "--puzzles", 30)
        assert result.exit_code == 0, result.output
        assert latest_eval(run_dir).name == f"test-n{n_chunks}"
    reports = sorted(folder.name for folder in (run_dir / "eval").iterdir() if folder.is_dir())
    assert reports == ["test-n3", "test-n4", "test-n5"]
    for name in reports:
        written = json.loads((run_dir / "eval" / name / "eval.json").read_text())
        assert written["datasets"]["test"]["n_chunks"] == int(name.removeprefix("test-n"))
        assert written["settings"]["n_chunks"] == int(name.removeprefix("test-n"))


def test_a_schedule_that_ends_away_from_puzzle_n_is_refused(music_corpus, tmp_path):
    config = load_config(
        None, [f"data.corpus={music_corpus}", *TINY_TRAIN, "model.sorter.type=rank", "train.n_chunks_schedule=0:2,1:4"]
    )
    with pytest.raises(ConfigError, match="puzzle.n_chunks = 3"):
        train(config, runs_dir=tmp_path, verbose=0)


_JAX_RANK_CHECK = textwrap.dedent(
    """
    import keras, numpy as np
    from audiosort.models import build_model
    from audiosort.heads import HEADS
    from test_many_chunks import CHUNK_SAMPLES, SAMPLE_RATE, drifting_puzzles, rank_model_config
    assert keras.backend.backend() == "jax", keras.backend.backend()
    model, _ = build_model(rank_model_config(), n_chunks=None, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE)
    model.compile(optimizer="adam", loss=HEADS["rank"].loss())
    rng = np.random.default_rng(0)
    for n_chunks in (3, 6):
        chunks, order = drifting_puzzles(rng, 64, n_chunks)
        history = model.fit(chunks, order, batch_size=32, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][-1])
        log_probs = np.asarray(model(chunks, training=False))
        assert log_probs.shape == (64, n_chunks, n_chunks), log_probs.shape
        np.testing.assert_allclose(np.exp(log_probs).sum(axis=-1), 1.0, atol=1e-5)
    print("ok")
    """
)


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_rank_head_trains_on_growing_n_under_jax():
    assert run_under_jax(_JAX_RANK_CHECK).strip().endswith("ok")
