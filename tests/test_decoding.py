import doctest

import numpy as np
import pytest

from audiosort import decoding, metrics
from audiosort.errors import AudiosortError


def test_argmax_repeats_a_position_that_hungarian_resolves():
    probabilities = np.array([[[0.90, 0.10, 0.00], [0.80, 0.15, 0.05], [0.00, 0.10, 0.90]]])
    scores = np.log(probabilities + 1e-9)
    np.testing.assert_array_equal(decoding.decode(scores, method="argmax"), [[0, 0, 2]])
    np.testing.assert_array_equal(decoding.decode(scores, method="hungarian"), [[0, 1, 2]])


@pytest.mark.parametrize("n_chunks", range(2, 10))
def test_hungarian_always_returns_a_permutation(n_chunks):
    scores = np.random.default_rng(n_chunks).normal(size=(200, n_chunks, n_chunks))
    pred = decoding.decode(scores, method="hungarian")
    assert pred.shape == (200, n_chunks) and pred.dtype == np.int64
    np.testing.assert_array_equal(np.sort(pred, axis=1), np.broadcast_to(np.arange(n_chunks), pred.shape))


@pytest.mark.parametrize("n_chunks", range(3, 8))
def test_enumeration_and_assignment_paths_find_the_same_permutation(n_chunks, monkeypatch):
    # Small blocks, so that 700 puzzles span several of them for every n here.
    monkeypatch.setattr(decoding, "_ENUMERATION_ELEMENTS", 1000)
    scores = np.random.default_rng(n_chunks).normal(size=(700, n_chunks, n_chunks)).astype(np.float32)
    np.testing.assert_array_equal(
        decoding._hungarian_by_enumeration(scores), decoding._hungarian_by_assignment(scores)
    )


def test_unknown_decoding_names_the_value_and_the_valid_ones():
    with pytest.raises(AudiosortError, match=r"'greedy'.*argmax, hungarian"):
        decoding.decode(np.zeros((1, 3, 3)), method="greedy")
    with pytest.raises(AudiosortError, match=r"'greedy'"):
        metrics.score_puzzles(np.zeros((1, 3, 3)), np.array([[0, 1, 2]]), decodings=("argmax", "greedy"))


def test_decode_rejects_non_finite_scores():
    scores = np.zeros((2, 3, 3))
    scores[1, 0, 2] = -np.inf
    with pytest.raises(ValueError, match="1 non-finite"):
        decoding.decode(scores, method="hungarian")


def test_finite_scores_let_log_of_zero_decode_and_refuse_nan():
    with np.errstate(divide="ignore"):
        scores = np.log(np.array([[[1.0, 0.0], [0.0, 1.0]]]))  # -inf where a probability is 0
    np.testing.assert_array_equal(decoding.decode(decoding.finite_scores(scores), method="hungarian"), [[0, 1]])
    with pytest.raises(AudiosortError, match="NaN"):
        decoding.finite_scores(np.full((1, 2, 2), np.nan), what="val")


def brute_force_best_paths(successor, first, last):
    """Score every order of every puzzle: the oracle for best_paths."""
    n_chunks = successor.shape[1]
    orders = decoding.all_permutations(n_chunks)
    totals = first[:, orders[:, 0]] + last[:, orders[:, -1]]
    if n_chunks > 1:
        totals = totals + successor[:, orders[:, :-1], orders[:, 1:]].sum(axis=2)
    return orders[np.argmax(totals, axis=1)], totals.max(axis=1)


def path_totals(successor, first, last, sequence):
    rows = np.arange(len(sequence))[:, None]
    joins = successor[rows, sequence[:, :-1], sequence[:, 1:]].sum(axis=1)
    return first[rows[:, 0], sequence[:, 0]] + joins + last[rows[:, 0], sequence[:, -1]]


@pytest.mark.parametrize("n_chunks", range(1, 8))
def test_held_karp_finds_the_brute_force_best_order(n_chunks):
    rng = np.random.default_rng(n_chunks)
    successor, first, last = rng.normal(size=(60, n_chunks, n_chunks)), rng.normal(size=(60, n_chunks)), rng.normal(size=(60, n_chunks))
    expected, best_total = brute_force_best_paths(successor, first, last)
    sequence = decoding.best_paths(successor, first=first, last=last)
    # Continuous random scores do not tie, so the best order is unique.
    np.testing.assert_array_equal(sequence, expected)
    np.testing.assert_allclose(path_totals(successor, first, last, sequence), best_total)


def test_beam_search_mostly_finds_the_exact_best_order_on_small_puzzles():
    rng = np.random.default_rng(3)
    successor, first, last = rng.normal(size=(200, 6, 6)), rng.normal(size=(200, 6)), rng.normal(size=(200, 6))
    expected, _ = brute_force_best_paths(successor, first, last)
    beam = decoding._beam_path(successor, first, last, beam_width=32)
    assert np.all(np.sort(beam, axis=1) == np.arange(6))
    assert (beam == expected).all(axis=1).mean() >= 0.9
    np.testing.assert_array_equal(decoding._beam_path(successor, first, last, beam_width=1000), expected)


@pytest.mark.parametrize("n_chunks", [13, 40])
def test_beam_search_returns_permutations_and_follows_a_planted_chain(n_chunks):
    rng = np.random.default_rng(n_chunks)
    truth = rng.permuted(np.tile(np.arange(n_chunks), (30, 1)), axis=1)  # slots by position
    successor = rng.normal(size=(30, n_chunks, n_chunks))
    rows = np.arange(30)[:, None]
    successor[rows, truth[:, :-1], truth[:, 1:]] += 8.0
    # A narrow beam needs to know the start: without it, every rotation of the chain scores alike for a while.
    first = np.where(np.arange(n_chunks) == truth[:, :1], 8.0, 0.0)
    sequence = decoding.best_paths(successor, first=first, beam_width=8)
    assert np.all(np.sort(sequence, axis=1) == np.arange(n_chunks))
    np.testing.assert_array_equal(sequence, truth)


def random_path_puzzles(n_puzzles, n_chunks, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_puzzles, n_chunks, n_chunks)), rng.normal(size=(n_puzzles, n_chunks)), rng.normal(size=(n_puzzles, n_chunks))


@pytest.mark.parametrize(("n_chunks", "least_optimal"), [(10, 0.95), (12, 0.9)])
def test_search_finds_the_held_karp_optimum_on_random_scores(n_chunks, least_optimal, monkeypatch):
    # Random scores plant no chain. Measured (scripts/beam_eval.py, 200 puzzles): the search finds the optimum
    # of 0.99-1.00 at n = 10 and 0.98-0.99 at n = 12; a one-way beam of 64 without polish found 0.61 and 0.40.
    successor, first, last = random_path_puzzles(100, n_chunks, seed=n_chunks)
    optimum = decoding.best_paths(successor, first=first, last=last)
    monkeypatch.setattr(decoding, "EXACT_PATH_MAX_CHUNKS", 0)
    searched = decoding.best_paths(successor, first=first, last=last)
    assert np.all(np.sort(searched, axis=1) == np.arange(n_chunks))
    best, found = path_totals(successor, first, last, optimum), path_totals(successor, first, last, searched)
    assert np.all(found <= best + 1e-9)  # Held-Karp is the optimum
    assert np.mean(found >= best - 1e-9) >= least_optimal


def all_neighbours(sequence):
    """Every order one Or-opt move (a segment of 1-3 slots put elsewhere) or one reversal away, by plain lists."""
    sequence = list(sequence)
    n_chunks = len(sequence)
    for length in (1, 2, 3):
        for start in range(n_chunks - length + 1):
            segment, rest = sequence[start : start + length], sequence[:start] + sequence[start + length :]
            for where in range(len(rest) + 1):
                yield rest[:where] + segment + rest[where:]
    for low in range(n_chunks):
        for high in range(low + 1, n_chunks):
            yield sequence[:low] + sequence[low : high + 1][::-1] + sequence[high + 1 :]


def test_polish_leaves_no_improving_move_and_never_loses():
    successor, first, last = random_path_puzzles(40, 7, seed=5)
    rng = np.random.default_rng(6)
    start = rng.permuted(np.tile(np.arange(7), (40, 1)), axis=1)
    polished = decoding._polish_paths(successor, first, last, start)
    assert np.all(np.sort(polished, axis=1) == np.arange(7))
    totals = path_totals(successor, first, last, polished)
    assert np.all(totals >= path_totals(successor, first, last, start) - 1e-12)
    assert np.any(totals > path_totals(successor, first, last, start) + 1e-3)
    for b in range(40):
        neighbours = np.array(list(all_neighbours(polished[b])))
        scores = path_totals(successor[[b] * len(neighbours)], first[[b] * len(neighbours)], last[[b] * len(neighbours)], neighbours)
        assert scores.max() <= totals[b] + 1e-9, f"puzzle {b}: a neighbour scores {scores.max()} > {totals[b]}"


def test_path_scores_is_the_total_the_search_maximizes():
    successor, first, last = random_path_puzzles(20, 6, seed=2)
    sequence, best_total = brute_force_best_paths(successor, first, last)
    np.testing.assert_allclose(decoding.path_scores(successor, first, last, sequence), best_total)


def test_positions_of_inverts_an_order_and_certain_scores_decode_back_to_it():
    rng = np.random.default_rng(0)
    sequence = rng.permuted(np.tile(np.arange(9), (20, 1)), axis=1)
    positions = decoding.positions_of(sequence)
    np.testing.assert_array_equal(np.take_along_axis(sequence, positions, axis=1), np.tile(np.arange(9), (20, 1)))
    for method in decoding.DECODINGS:
        np.testing.assert_array_equal(decoding.decode(decoding.certain_scores(positions), method=method), positions)


def test_best_paths_rejects_non_finite_scores_and_bad_shapes():
    with pytest.raises(ValueError, match="finite"):
        decoding.best_paths(np.full((1, 3, 3), np.nan))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        decoding.best_paths(np.zeros((2, 3, 3)), first=np.zeros((2, 4)))


def test_module_example_runs():
    assert doctest.testmod(decoding).failed == 0


def test_exact_max_chunks_chooses_between_held_karp_and_the_search():
    rng = np.random.default_rng(0)
    successor, first, last = rng.normal(size=(60, 9, 9)), rng.normal(size=(60, 9)), rng.normal(size=(60, 9))
    exact = decoding.best_paths(successor, first=first, last=last)  # 9 chunks: Held-Karp by default
    searched = decoding.best_paths(successor, first=first, last=last, beam_width=1, exact_max_chunks=0)
    exact_scores = decoding.path_scores(successor, first, last, exact)
    searched_scores = decoding.path_scores(successor, first, last, searched)
    # A beam of one misses the optimum somewhere in 60 random puzzles, and never beats it.
    assert np.all(searched_scores <= exact_scores + 1e-9) and np.any(searched_scores < exact_scores - 1e-9)
    with pytest.raises(ValueError, match="exact_max_chunks"):
        decoding.best_paths(successor, exact_max_chunks=-1)
