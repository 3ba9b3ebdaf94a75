import doctest
import json

import numpy as np
import pytest
from scipy import stats

from audiosort import metrics
from audiosort.errors import AudiosortError


def random_orders(rng, n_puzzles, n_chunks):
    return np.argsort(rng.random((n_puzzles, n_chunks)), axis=1)


def test_argmax_repeats_a_position_that_hungarian_resolves():
    probabilities = np.array([[[0.90, 0.10, 0.00], [0.80, 0.15, 0.05], [0.00, 0.10, 0.90]]])
    scores = np.log(probabilities + 1e-9)
    np.testing.assert_array_equal(metrics.decode(scores, method="argmax"), [[0, 0, 2]])
    np.testing.assert_array_equal(metrics.decode(scores, method="hungarian"), [[0, 1, 2]])


@pytest.mark.parametrize("n_chunks", range(2, 10))
def test_hungarian_always_returns_a_permutation(n_chunks):
    scores = np.random.default_rng(n_chunks).normal(size=(200, n_chunks, n_chunks))
    pred = metrics.decode(scores, method="hungarian")
    assert pred.shape == (200, n_chunks) and pred.dtype == np.int64
    np.testing.assert_array_equal(np.sort(pred, axis=1), np.broadcast_to(np.arange(n_chunks), pred.shape))


@pytest.mark.parametrize("n_chunks", range(3, 8))
def test_enumeration_and_assignment_paths_find_the_same_permutation(n_chunks, monkeypatch):
    # Small blocks, so that 700 puzzles span several of them for every n here.
    monkeypatch.setattr(metrics, "_ENUMERATION_ELEMENTS", 1000)
    scores = np.random.default_rng(n_chunks).normal(size=(700, n_chunks, n_chunks)).astype(np.float32)
    np.testing.assert_array_equal(
        metrics._hungarian_by_enumeration(scores), metrics._hungarian_by_assignment(scores)
    )


def test_unknown_decoding_names_the_value_and_the_valid_ones():
    with pytest.raises(AudiosortError, match=r"'greedy'.*argmax, hungarian"):
        metrics.decode(np.zeros((1, 3, 3)), method="greedy")
    with pytest.raises(AudiosortError, match=r"'greedy'"):
        metrics.score_puzzles(np.zeros((1, 3, 3)), np.array([[0, 1, 2]]), decodings=("argmax", "greedy"))


def test_decode_rejects_non_finite_scores():
    scores = np.zeros((2, 3, 3))
    scores[1, 0, 2] = -np.inf
    with pytest.raises(ValueError, match="1 non-finite"):
        metrics.decode(scores, method="hungarian")


def test_kendall_tau_is_one_for_the_true_order_and_minus_one_for_its_reverse():
    order = random_orders(np.random.default_rng(0), 50, 5)
    np.testing.assert_array_equal(metrics.kendall_tau(order, order), 1.0)
    np.testing.assert_array_equal(metrics.kendall_tau(4 - order, order), -1.0)


def test_kendall_tau_matches_scipy_on_permutations():
    rng = np.random.default_rng(1)
    pred, order = random_orders(rng, 100, 6), random_orders(rng, 100, 6)
    expected = [stats.kendalltau(p, o).statistic for p, o in zip(pred, order)]
    np.testing.assert_allclose(metrics.kendall_tau(pred, order), expected)


def test_kendall_tau_counts_tied_predictions_as_zero():
    # Pairs (0, 2) and (1, 2) agree, pair (0, 1) is tied in pred: tau-a = 2/3 (tau-b would give 0.816).
    np.testing.assert_allclose(metrics.kendall_tau(np.array([[0, 0, 2]]), np.array([[0, 1, 2]])), [2 / 3])


@pytest.mark.parametrize(("n_chunks", "exact"), [(2, 1 / 2), (3, 1 / 6), (5, 1 / 120)])
def test_chance_is_one_over_n_per_slot_and_one_over_n_factorial_per_order(n_chunks, exact):
    assert metrics.chance(n_chunks) == pytest.approx(
        {"position_accuracy": 1 / n_chunks, "exact_accuracy": exact, "kendall_tau": 0.0}
    )


def test_wilson_interval_matches_known_value_for_zero_successes():
    assert metrics.wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert metrics.wilson_interval(10, 10)[1] == 1.0


@pytest.mark.parametrize(("successes", "trials"), [(0, 1), (1, 1), (3, 7), (50, 100), (999, 1000)])
def test_wilson_interval_contains_the_observed_proportion_within_unit_range(successes, trials):
    low, high = metrics.wilson_interval(successes, trials, confidence=0.99)
    assert 0.0 <= low <= successes / trials <= high <= 1.0


def test_mean_interval_is_the_student_t_interval():
    values = np.random.default_rng(2).normal(size=40)
    expected = stats.t.interval(0.9, df=39, loc=values.mean(), scale=stats.sem(values))
    assert metrics.mean_interval(values, confidence=0.9) == pytest.approx(expected)


def test_mean_interval_of_equal_values_collapses_to_the_value():
    assert metrics.mean_interval(np.full(20, 0.5)) == (0.5, 0.5)
    assert metrics.mean_interval(np.array([1.0])) == (1.0, 1.0)


def test_binomial_p_value_is_not_significant_at_exactly_chance():
    p_value = metrics.binomial_p_value(2000 // 6, 2000, 1 / 6)
    assert 0.3 < p_value < 0.7
    assert metrics.verdict(p_value) == "at_chance"


def test_binomial_p_value_is_tiny_well_above_chance():
    assert metrics.binomial_p_value(700, 2000, 1 / 6) < 1e-10


def test_verdict_divides_alpha_among_tests():
    assert metrics.verdict(0.004) == "above_chance"
    assert metrics.verdict(0.004, n_tests=4) == "at_chance"


def test_random_scorer_sorts_at_chance():
    rng = np.random.default_rng(3)
    order = random_orders(rng, 3000, 3)
    report = metrics.score_puzzles(rng.normal(size=(3000, 3, 3)), order)
    for decoding in metrics.DECODINGS:
        result = report[decoding]
        assert metrics.verdict(result["p_value"], n_tests=2) == "at_chance"
        assert result["position_accuracy"]["value"] == pytest.approx(1 / 3, abs=0.03)
        assert result["kendall_tau"]["low"] < 0.0 < result["kendall_tau"]["high"]
    assert report["hungarian"]["exact_accuracy"]["value"] == pytest.approx(1 / 6, abs=0.03)
    # Argmax may predict non-permutations, which are never right: below 1/n!, near 1/n^n.
    assert report["argmax"]["exact_accuracy"]["value"] == pytest.approx(1 / 27, abs=0.015)


def test_perfect_scorer_sorts_above_chance():
    order = random_orders(np.random.default_rng(4), 200, 4)
    report = metrics.score_puzzles(np.log(np.eye(4)[order] * 0.9 + 0.025), order)
    for decoding in metrics.DECODINGS:
        result = report[decoding]
        assert metrics.verdict(result["p_value"], n_tests=2) == "above_chance"
        assert result["exact_correct_count"] == 200
        assert result["position_accuracy"] == {"value": 1.0, "low": 1.0, "high": 1.0}
        assert result["kendall_tau"]["value"] == 1.0


def test_score_puzzles_report_is_plain_json():
    rng = np.random.default_rng(5)
    report = metrics.score_puzzles(rng.normal(size=(50, 3, 3)).astype(np.float32), random_orders(rng, 50, 3))
    assert json.loads(json.dumps(report)) == report
    assert (report["n_puzzles"], report["n_chunks"]) == (50, 3)
    assert report["chance"] == metrics.chance(3)
    assert set(report["hungarian"]) == {"position_accuracy", "exact_accuracy", "kendall_tau", "exact_correct_count", "p_value", "tau_p_value", "exact_p_value"}


def test_position_accuracy_interval_treats_puzzles_not_slots_as_independent():
    # For n=2 under hungarian both slots are right or both wrong: the B puzzles are the independent trials.
    rng = np.random.default_rng(6)
    n_puzzles = 400
    order = random_orders(rng, n_puzzles, 2)
    interval = metrics.score_puzzles(rng.normal(size=(n_puzzles, 2, 2)), order, decodings=("hungarian",))[
        "hungarian"
    ]["position_accuracy"]
    slots_right = round(interval["value"] * 2 * n_puzzles)
    slot_low, slot_high = metrics.wilson_interval(slots_right, 2 * n_puzzles)
    assert interval["high"] - interval["low"] > 1.3 * (slot_high - slot_low)


def test_score_puzzles_rejects_orders_that_are_not_permutations():
    with pytest.raises(ValueError, match="permutation"):
        metrics.score_puzzles(np.zeros((1, 3, 3)), np.array([[0, 0, 2]]))


def test_mcnemar_is_tiny_when_a_alone_is_right_on_30_puzzles():
    both = np.ones(100, dtype=bool)
    a_correct = np.concatenate([both, np.ones(30, dtype=bool)])
    b_correct = np.concatenate([both, np.zeros(30, dtype=bool)])
    assert metrics.mcnemar_p_value(a_correct, b_correct) == pytest.approx(0.5**30)
    assert metrics.mcnemar_p_value(b_correct, a_correct) == 1.0


def test_mcnemar_of_identical_results_is_one():
    correct = np.random.default_rng(7).random(100) < 0.4
    assert metrics.mcnemar_p_value(correct, correct) == 1.0


def test_module_example_runs():
    assert doctest.testmod(metrics).failed == 0


def test_finite_scores_let_log_of_zero_decode_and_refuse_nan():
    with np.errstate(divide="ignore"):
        scores = np.log(np.array([[[1.0, 0.0], [0.0, 1.0]]]))  # -inf where a probability is 0
    np.testing.assert_array_equal(metrics.decode(metrics.finite_scores(scores), method="hungarian"), [[0, 1]])
    with pytest.raises(AudiosortError, match="NaN"):
        metrics.finite_scores(np.full((1, 2, 2), np.nan), what="val")


def brute_force_best_paths(successor, first, last):
    """Score every order of every puzzle: the oracle for best_paths."""
    n_chunks = successor.shape[1]
    orders = metrics.all_permutations(n_chunks)
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
    sequence = metrics.best_paths(successor, first=first, last=last)
    # Continuous random scores do not tie, so the best order is unique.
    np.testing.assert_array_equal(sequence, expected)
    np.testing.assert_allclose(path_totals(successor, first, last, sequence), best_total)


def test_beam_search_mostly_finds_the_exact_best_order_on_small_puzzles():
    rng = np.random.default_rng(3)
    successor, first, last = rng.normal(size=(200, 6, 6)), rng.normal(size=(200, 6)), rng.normal(size=(200, 6))
    expected, _ = brute_force_best_paths(successor, first, last)
    beam = metrics._beam_path(successor, first, last, beam_width=32)
    assert np.all(np.sort(beam, axis=1) == np.arange(6))
    assert (beam == expected).all(axis=1).mean() >= 0.9
    np.testing.assert_array_equal(metrics._beam_path(successor, first, last, beam_width=1000), expected)


@pytest.mark.parametrize("n_chunks", [13, 40])
def test_beam_search_returns_permutations_and_follows_a_planted_chain(n_chunks):
    rng = np.random.default_rng(n_chunks)
    truth = rng.permuted(np.tile(np.arange(n_chunks), (30, 1)), axis=1)  # slots by position
    successor = rng.normal(size=(30, n_chunks, n_chunks))
    rows = np.arange(30)[:, None]
    successor[rows, truth[:, :-1], truth[:, 1:]] += 8.0
    # A narrow beam needs to know the start: without it, every rotation of the chain scores alike for a while.
    first = np.where(np.arange(n_chunks) == truth[:, :1], 8.0, 0.0)
    sequence = metrics.best_paths(successor, first=first, beam_width=8)
    assert np.all(np.sort(sequence, axis=1) == np.arange(n_chunks))
    np.testing.assert_array_equal(sequence, truth)


def test_positions_of_inverts_an_order_and_certain_scores_decode_back_to_it():
    rng = np.random.default_rng(0)
    sequence = rng.permuted(np.tile(np.arange(9), (20, 1)), axis=1)
    positions = metrics.positions_of(sequence)
    np.testing.assert_array_equal(np.take_along_axis(sequence, positions, axis=1), np.tile(np.arange(9), (20, 1)))
    for method in metrics.DECODINGS:
        np.testing.assert_array_equal(metrics.decode(metrics.certain_scores(positions), method=method), positions)


def test_best_paths_rejects_non_finite_scores_and_bad_shapes():
    with pytest.raises(ValueError, match="finite"):
        metrics.best_paths(np.full((1, 3, 3), np.nan))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        metrics.best_paths(np.zeros((2, 3, 3)), first=np.zeros((2, 4)))


def mahonian(n_chunks):
    """P(a uniform random permutation of n has i inversions), i = 0 .. n(n-1)/2: the exact null of Kendall tau."""
    distribution = np.array([1.0])
    for k in range(1, n_chunks + 1):
        distribution = np.convolve(distribution, np.ones(k)) / k
    return distribution


def with_inversions(n_chunks, inversions):
    """A permutation of range(n) with exactly ``inversions`` inversions (its Lehmer code filled greedily)."""
    code, left = [], inversions
    for i in range(n_chunks):
        code.append(min(left, n_chunks - 1 - i))
        left -= code[-1]
    remaining, permutation = list(range(n_chunks)), []
    for digit in code:
        permutation.append(remaining.pop(digit))
    return permutation


@pytest.mark.parametrize("n_chunks, n_puzzles", [(3, 20), (5, 10), (10, 5), (20, 3), (20, 20), (3, 100)])
def test_kendall_tau_p_value_is_conservative_and_close_to_the_exact_null(n_chunks, n_puzzles):
    # The exact null of the summed inversions over the puzzles: the Mahonian distribution convolved n_puzzles times.
    total = np.array([1.0])
    for _ in range(n_puzzles):
        total = np.convolve(total, mahonian(n_chunks))
    exact_p_at = np.cumsum(total)  # P(inversions <= d): as few inversions (as much agreement) as seen, or fewer
    pairs = n_chunks * (n_chunks - 1) // 2
    order = np.broadcast_to(np.arange(n_chunks), (n_puzzles, n_chunks))
    checked = 0
    for inversions in range(0, n_puzzles * pairs // 2 + 1):
        exact_p = exact_p_at[inversions]
        if not 1e-8 < exact_p < 0.5:
            continue
        per_puzzle = [min(pairs, max(0, inversions - k * pairs)) for k in range(n_puzzles)]
        pred = np.array([with_inversions(n_chunks, count) for count in per_puzzle])
        p_value = metrics.kendall_tau_p_value(pred, order)
        # Never claims more than the data show where verdicts are decided (p < 0.04), and within 1% above it.
        assert p_value >= exact_p * (1.0 if exact_p < 0.04 else 0.99), (inversions, p_value, exact_p)
        if 0.002 <= exact_p <= 0.05:
            assert p_value <= 1.15 * exact_p, (inversions, p_value, exact_p)
            checked += 1
    assert checked >= 2


@pytest.mark.parametrize("n_chunks, n_puzzles", [(3, 200), (20, 200)])
def test_a_uniform_random_model_is_at_chance_with_a_false_positive_rate_near_alpha(n_chunks, n_puzzles):
    # 2000 independent evaluations of a model that knows nothing: measured 0.011 (n=3) and 0.009 (n=20) of them
    # with tau's p below 0.01, and 0.005 with the verdict's (the smaller of two p-values, doubled).
    rng = np.random.default_rng(n_chunks)
    tau_below, verdict_below = 0, 0
    for _ in range(2000):
        order, pred = random_orders(rng, n_puzzles, n_chunks), random_orders(rng, n_puzzles, n_chunks)
        p_values = metrics.chance_p_values(pred, order)
        tau_below += p_values["tau_p_value"] < 0.01
        verdict_below += metrics.verdict(p_values["p_value"], alpha=0.01) == "above_chance"
    # Binomial(2000, 0.01) lies in [8, 34] with probability 0.9993.
    assert 8 <= tau_below <= 34
    assert 2 <= verdict_below <= 34


def swapped(order, n_swaps, rng):
    """Each puzzle's true positions with ``n_swaps`` random pairs of slots exchanged: a partial leak."""
    pred = order.copy()
    rows = np.arange(len(order))
    for _ in range(n_swaps):
        first, second = (rng.integers(0, order.shape[1], size=len(order)) for _ in range(2))
        pred[rows, first], pred[rows, second] = pred[rows, second], pred[rows, first].copy()
    return pred


@pytest.mark.parametrize("n_chunks, n_swaps", [(20, 3), (20, 12), (50, 10), (50, 40)])
def test_a_planted_partial_leak_is_above_chance_at_many_chunks(n_chunks, n_swaps):
    rng = np.random.default_rng(n_chunks + n_swaps)
    order = random_orders(rng, 300, n_chunks)
    report = metrics.score_puzzles(metrics.certain_scores(swapped(order, n_swaps, rng)), order)
    result = report["hungarian"]
    # Almost no puzzle is exact, so the exact-order count alone says "chance"; tau does not.
    assert result["exact_accuracy"]["value"] < 0.05 and result["exact_p_value"] > 0.01
    assert metrics.verdict(result["p_value"], n_tests=4) == "above_chance", result
    assert result["kendall_tau"]["value"] > 0.1
