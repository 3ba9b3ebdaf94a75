"""The successor head: "what follows what" logits, their row-and-column loss, and path decoding in eval."""

from __future__ import annotations

import importlib.util
import itertools
import math
import textwrap

import keras
import numpy as np
import pytest

from audiosort import audio, decoding, metrics
from audiosort.config import EncoderConfig, ModelConfig, SorterConfig, load_config
from audiosort.data.corpus import Corpus
from audiosort.data.puzzles import PuzzleSpec
from audiosort.errors import ConfigError, InputError
from audiosort.evaluate import evaluate
from audiosort.heads import HEADS, head_of
from audiosort.listen import BOUNDARY_SILENCE_SECONDS, listen
from audiosort.run import load_run_model
from audiosort.models import build_model, build_sorter
from audiosort.models.layers import SuccessorLogits
from audiosort.models.objectives import SuccessorLoss, successor_targets
from audiosort.predict import position_scores
from audiosort.train import train
from conftest import TINY_TRAIN, run_under_jax, write_music_files

SAMPLE_RATE = 16000
CHUNK_SAMPLES = 160
OFFSET_STEP = 600.0  # int16 units from one position to the next, whatever n


def successor_model_config() -> ModelConfig:
    return ModelConfig(
        encoder=EncoderConfig(type="mlp", embedding_dim=16, hidden_units=32),
        sorter=SorterConfig(type="successor", hidden_units=32),
    )


def stepping_puzzles(rng, n_puzzles, n_chunks):
    """Noise chunks on an offset one OFFSET_STEP higher at every position: neighbours differ by one step at any n."""
    order = rng.permuted(np.tile(np.arange(n_chunks), (n_puzzles, 1)), axis=1)
    offset = -4000.0 + OFFSET_STEP * order[:, :, None]
    chunks = (offset + 300.0 * rng.normal(size=(n_puzzles, n_chunks, CHUNK_SAMPLES))).astype(np.int16)
    return chunks, order


def true_neighbours(order):
    """(following, preceding) of every node by plain loops over positions; node n is the edge."""
    n = len(order)
    slot_at = {int(position): slot for slot, position in enumerate(order)}
    following = [slot_at.get(int(order[i]) + 1, n) for i in range(n)] + [slot_at[0]]
    preceding = [slot_at.get(int(order[j]) - 1, n) for j in range(n)] + [slot_at[n - 1]]
    return following, preceding


def test_successor_targets_name_each_slots_neighbours_and_the_edge():
    rng = np.random.default_rng(0)
    for n_chunks in (2, 3, 7, 20):
        order = np.stack([rng.permutation(n_chunks) for _ in range(5)])
        following, preceding = (np.asarray(t) for t in successor_targets(order))
        for b in range(5):
            want_following, want_preceding = true_neighbours(order[b])
            assert following[b].tolist() == want_following
            assert preceding[b].tolist() == want_preceding


def test_successor_logits_place_joins_starts_and_ends_and_mask_the_diagonal():
    rng = np.random.default_rng(1)
    successor, first, last = rng.normal(size=(2, 4, 4)), rng.normal(size=(2, 4)), rng.normal(size=(2, 4))
    logits = np.asarray(SuccessorLogits()([successor[..., None], first[..., None], last[..., None]]))
    assert logits.shape == (2, 5, 5)
    off_diagonal = ~np.eye(4, dtype=bool)
    np.testing.assert_allclose(logits[:, :4, :4][:, off_diagonal], successor[:, off_diagonal], rtol=1e-6)
    np.testing.assert_allclose(logits[:, 4, :4], first, rtol=1e-6)
    np.testing.assert_allclose(logits[:, :4, 4], last, rtol=1e-6)
    assert np.all(logits[:, np.arange(5), np.arange(5)] == SuccessorLogits.MASKED)


def test_successor_loss_is_ln_n_when_undecided_and_near_zero_when_sure_and_right():
    order = np.array([[2, 0, 1, 3], [0, 1, 2, 3]])
    undecided = np.asarray(SuccessorLogits()([np.zeros((2, 4, 4, 1)), np.zeros((2, 4, 1)), np.zeros((2, 4, 1))]))
    # Each row and column has n allowed entries (n + 1 nodes less the diagonal).
    np.testing.assert_allclose(np.asarray(SuccessorLoss().call(order, undecided)), math.log(4), rtol=1e-5)
    following, _ = true_neighbours(order[0])
    sure = np.where(np.eye(5, dtype=bool), SuccessorLogits.MASKED, 0.0)
    sure[np.arange(5), following] = 30.0
    terms = np.asarray(SuccessorLoss().call(order[:1], sure[None]))
    assert terms.max() < 1e-6
    wrong = np.asarray(SuccessorLoss().call(order[1:], sure[None]))
    assert wrong.mean() > 5


def test_the_path_decoder_reads_back_the_order_from_sure_logits_at_small_and_large_n():
    rng = np.random.default_rng(2)
    for n_chunks in (2, 6, 20):  # Held-Karp, then beam search
        order = np.stack([rng.permutation(n_chunks) for _ in range(8)])
        logits = rng.normal(size=(8, n_chunks + 1, n_chunks + 1))
        for b in range(8):
            following, _ = true_neighbours(order[b])
            logits[b, np.arange(n_chunks + 1), following] += 8.0
        sequence = decoding.best_successor_paths(logits)
        np.testing.assert_array_equal(decoding.positions_of(sequence), order)


def test_the_path_decoder_agrees_with_brute_force_over_all_orders():
    rng = np.random.default_rng(3)
    n_chunks = 5
    logits = rng.normal(size=(20, n_chunks + 1, n_chunks + 1)) * 2
    row = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    column = logits - np.log(np.exp(logits).sum(axis=-2, keepdims=True))
    joins = row + column
    sequences = decoding.best_successor_paths(logits)
    for b in range(20):
        def score(path):
            nodes = [n_chunks, *path, n_chunks]
            return sum(joins[b, i, j] for i, j in zip(nodes[:-1], nodes[1:]))
        best = max(itertools.permutations(range(n_chunks)), key=score)
        assert score(sequences[b]) == pytest.approx(score(best))


def test_one_successor_model_takes_any_n_and_is_permutation_equivariant():
    model, _ = build_model(successor_model_config(), n_chunks=None, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE)
    assert head_of(model) is HEADS["successor"] and head_of(model).outputs == "successors"
    rng = np.random.default_rng(4)
    for n_chunks in (2, 5, 13):
        chunks = rng.integers(-3000, 3000, size=(3, n_chunks, CHUNK_SAMPLES)).astype(np.int16)
        logits = keras.ops.convert_to_numpy(model(chunks, training=False))
        assert logits.shape == (3, n_chunks + 1, n_chunks + 1)
        shuffle = rng.permutation(n_chunks)
        nodes = np.append(shuffle, n_chunks)  # the edge node stays last
        permuted = keras.ops.convert_to_numpy(model(chunks[:, shuffle], training=False))
        np.testing.assert_allclose(permuted, logits[:, nodes][:, :, nodes], atol=1e-4)
        scores = position_scores(model, chunks)
        for method in decoding.DECODINGS:
            predicted = decoding.decode(scores, method=method)
            assert sorted(predicted[0].tolist()) == list(range(n_chunks))


def test_tiny_successor_model_learns_joins_on_few_chunks_and_sorts_more():
    # Trained on 4 and 6 chunks, then asked for 10 (Held-Karp) and 16 (beam search): joins, not a size.
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model, _ = build_model(successor_model_config(), n_chunks=None, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=HEADS["successor"].loss(), metrics=HEADS["successor"].compile_metrics())
    for n_chunks in (4, 6):
        chunks, order = stepping_puzzles(rng, 2048, n_chunks)
        model.fit(chunks, order, batch_size=32, verbose=0)
    for n_chunks in (10, 16):
        chunks, order = stepping_puzzles(rng, 100, n_chunks)
        predicted = decoding.decode(position_scores(model, chunks), method="hungarian")
        assert metrics.kendall_tau(predicted, order).mean() > 0.9, n_chunks


def test_eval_at_another_n_needs_a_model_for_any_n(tiny_run):
    with pytest.raises(InputError, match="sorts only 3 chunks"):
        evaluate(tiny_run, sanity=(), n_puzzles=20, n_chunks=5)
    with pytest.raises(InputError, match="at least 2"):
        evaluate(tiny_run, sanity=(), n_puzzles=20, n_chunks=1)


def test_attention_head_is_retired_for_many_chunks_and_successor_needs_softmax():
    with pytest.raises(ConfigError, match="'rank' or 'successor'"):
        build_sorter(SorterConfig(type="attention"), n_chunks=8, embedding_dim=8)
    build_sorter(SorterConfig(type="attention"), n_chunks=7, embedding_dim=8)
    with pytest.raises(ConfigError, match="softmax"):
        SorterConfig(type="successor", normalization="sinkhorn")


def test_a_successor_run_grows_n_and_eval_and_listen_decode_its_paths(music_corpus, tmp_path):
    config = load_config(
        None,
        [f"data.corpus={music_corpus}", "name=succ", *TINY_TRAIN, "model.sorter.type=successor",
         "model.sorter.hidden_units=16", "train.epochs=2", "train.steps_per_epoch=3",
         "puzzle.n_chunks=4", "train.n_chunks_schedule=0:3,1:4"],
    )
    run_dir = train(config, runs_dir=tmp_path, verbose=0)
    history = (run_dir / "history.csv").read_text()
    assert "successor_accuracy" in history and "val_exact_accuracy" in history
    # Each epoch also logs val decoded as eval decodes a successor head: its best path.
    assert "val_path_exact_accuracy" in history and "val_path_kendall_tau" in history and "val_hungarian" not in history
    report = evaluate(run_dir, sanity=("noise",), n_puzzles=40)
    test = report.datasets[0].scores
    assert test.n_chunks == 4 and test.n_puzzles == 40
    # Decoded by path search: one row, named "path", not two identical rows named argmax and hungarian.
    assert list(test.decodings) == ["path"] and report.to_dict()["verdict_decoding"] == "path"
    assert sum(line.startswith("| test | ") for line in report.lines()) == 1
    assert any(line.replace("**", "").startswith("| test | path | ") for line in report.lines())
    # Eval scored the best path of the model's own successor logits on the corpus's test puzzles: recomputed here.
    spec = PuzzleSpec.from_config(config.puzzle, sample_rate=config.data.sample_rate)
    puzzles, _ = Corpus(music_corpus).puzzles_for("test", spec, n_puzzles=40, seed=0)
    model = load_run_model(run_dir, spec)
    logits = model.predict(puzzles.chunks, verbose=0)
    paths = decoding.positions_of(decoding.best_successor_paths(decoding.finite_scores(logits)))
    assert test.decodings["path"].kendall_tau.value == pytest.approx(metrics.kendall_tau(paths, puzzles.order).mean())
    assert "continuity" in report.to_dict()["datasets"]["test"]["baselines"]
    # The any-n model sorts puzzles of another n; a fixed-n model refuses to (tiny_run: 3 chunks).
    six = evaluate(run_dir, sanity=(), n_puzzles=20, n_chunks=6).datasets[0].scores
    assert six.n_chunks == 6 and six.n_puzzles == 20
    song = write_music_files(tmp_path / "songs", 1, seconds=3.0)[0]
    result = listen(run_dir, song, out=tmp_path / "listen", start_seconds=1.0)
    # Its answer is the model's best path for the chunks in shuffled.wav, and sorted.wav plays them in that order.
    rate = config.data.sample_rate
    step = spec.chunk_samples + round(BOUNDARY_SILENCE_SECONDS * rate)
    shuffled = audio.load(tmp_path / "listen" / "shuffled.wav", sample_rate=rate)
    chunks = np.stack([shuffled[k * step : k * step + spec.chunk_samples] for k in range(4)])
    chunks = audio.to_int16(chunks)
    logits = model.predict(chunks[None], verbose=0)
    assert result.predicted.tolist() == decoding.positions_of(decoding.best_successor_paths(decoding.finite_scores(logits)))[0].tolist()
    played = audio.load(tmp_path / "listen" / "sorted.wav", sample_rate=rate)
    expected = np.concatenate([shuffled[k * step : k * step + spec.chunk_samples] for k in np.argsort(result.predicted)])
    assert np.allclose(np.concatenate([played[k * step : k * step + spec.chunk_samples] for k in range(4)]), expected)


_JAX_SUCCESSOR_CHECK = textwrap.dedent(
    """
    import keras, numpy as np
    from audiosort.models import build_model
    from audiosort.heads import HEADS
    from audiosort.predict import position_scores
    from test_successor import CHUNK_SAMPLES, SAMPLE_RATE, stepping_puzzles, successor_model_config
    assert keras.backend.backend() == "jax", keras.backend.backend()
    model, _ = build_model(successor_model_config(), n_chunks=None, chunk_samples=CHUNK_SAMPLES, sample_rate=SAMPLE_RATE)
    model.compile(optimizer="adam", loss=HEADS["successor"].loss(), metrics=HEADS["successor"].compile_metrics())
    rng = np.random.default_rng(0)
    for n_chunks in (3, 6):
        chunks, order = stepping_puzzles(rng, 64, n_chunks)
        history = model.fit(chunks, order, batch_size=32, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][-1])
        assert np.asarray(model(chunks, training=False)).shape == (64, n_chunks + 1, n_chunks + 1)
        assert position_scores(model, chunks).shape == (64, n_chunks, n_chunks)
    print("ok")
    """
)


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_successor_head_trains_on_growing_n_under_jax():
    assert run_under_jax(_JAX_SUCCESSOR_CHECK).strip().endswith("ok")
