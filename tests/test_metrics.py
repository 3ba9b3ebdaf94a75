import dataclasses
import doctest
import itertools
import json
import math
from collections import defaultdict
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from audiosort import decoding, metrics


def random_orders(rng, n_puzzles, n_chunks):
    return np.argsort(rng.random((n_puzzles, n_chunks)), axis=1)

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
    assert metrics.chance(n_chunks).to_dict() == pytest.approx(
        {"position_accuracy": 1 / n_chunks, "exact_accuracy": exact, "kendall_tau": 0.0, "neighbour_share": 2 / n_chunks}
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
    for method in decoding.DECODINGS:
        result = report.decodings[method]
        assert metrics.verdict(result.p_value, n_tests=2) == "at_chance"
        assert result.position_accuracy.value == pytest.approx(1 / 3, abs=0.03)
        assert result.kendall_tau.low < 0.0 < result.kendall_tau.high
    assert report.decodings["hungarian"].exact_accuracy.value == pytest.approx(1 / 6, abs=0.03)
    # Argmax may predict non-permutations, which are never right: below 1/n!, near 1/n^n.
    assert report.decodings["argmax"].exact_accuracy.value == pytest.approx(1 / 27, abs=0.015)
    assert report.order_decoding == "hungarian" and report.order_scores is report.decodings["hungarian"]


def test_perfect_scorer_sorts_above_chance():
    order = random_orders(np.random.default_rng(4), 200, 4)
    report = metrics.score_puzzles(np.log(np.eye(4)[order] * 0.9 + 0.025), order)
    for method in decoding.DECODINGS:
        result = report.decodings[method]
        assert metrics.verdict(result.p_value, n_tests=2) == "above_chance"
        assert result.exact_correct_count == 200
        assert result.position_accuracy == metrics.Estimate(1.0, 1.0, 1.0)
        assert result.kendall_tau.value == 1.0


def test_score_puzzles_to_dict_is_the_json_layout_and_reads_back():
    rng = np.random.default_rng(5)
    report = metrics.score_puzzles(rng.normal(size=(50, 3, 3)).astype(np.float32), random_orders(rng, 50, 3))
    layout = report.to_dict()
    assert json.loads(json.dumps(layout)) == layout
    assert list(layout) == ["argmax", "hungarian", "n_puzzles", "n_chunks", "chance"]
    assert (layout["n_puzzles"], layout["n_chunks"]) == (50, 3)
    assert layout["chance"] == {"position_accuracy": 1 / 3, "exact_accuracy": 1 / 6, "kendall_tau": 0.0, "neighbour_share": 2 / 3}
    # The keys eval.json had before the neighbours, in their order; the neighbours' after them.
    assert list(layout["hungarian"]) == [
        "position_accuracy", "exact_accuracy", "kendall_tau", "exact_correct_count", "p_value", "tau_p_value", "exact_p_value",
        "neighbour_share", "neighbour_p_value",
    ]
    assert list(layout["hungarian"]["kendall_tau"]) == ["value", "low", "high"]
    assert layout["hungarian"]["exact_correct_count"] == report.decodings["hungarian"].exact_correct_count
    assert metrics.PuzzleScores.from_dict({**layout, "verdict": "at_chance", "sanity": False}) == report


def test_puzzle_scores_are_frozen():
    report = metrics.score_puzzles(np.zeros((2, 3, 3)), np.array([[0, 1, 2], [2, 1, 0]]), decodings=("hungarian",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.n_puzzles = 3
    with pytest.raises(TypeError):
        report.decodings["argmax"] = report.order_scores


def test_score_orders_names_the_decoding_that_decided_them():
    order = random_orders(np.random.default_rng(7), 100, 5)
    predicted = order.copy()
    predicted[:30] = np.roll(predicted[:30], 1, axis=1)  # 30 puzzles wrong
    report = metrics.score_orders(predicted, order)
    assert list(report.decodings) == ["path"] and report.order_decoding == "path"
    assert report.order_scores.exact_correct_count == 70
    assert report.order_scores == metrics.score_puzzles(decoding.certain_scores(predicted), order).decodings["hungarian"]
    with pytest.raises(ValueError, match="permutation"):
        metrics.score_orders(np.zeros((1, 3), dtype=int), np.array([[0, 1, 2]]))


def test_position_accuracy_interval_treats_puzzles_not_slots_as_independent():
    # For n=2 under hungarian both slots are right or both wrong: the B puzzles are the independent trials.
    rng = np.random.default_rng(6)
    n_puzzles = 400
    order = random_orders(rng, n_puzzles, 2)
    scored = metrics.score_puzzles(rng.normal(size=(n_puzzles, 2, 2)), order, decodings=("hungarian",))
    interval = scored.decodings["hungarian"].position_accuracy
    slots_right = round(interval.value * 2 * n_puzzles)
    slot_low, slot_high = metrics.wilson_interval(slots_right, 2 * n_puzzles)
    assert interval.high - interval.low > 1.3 * (slot_high - slot_low)


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


@pytest.mark.parametrize(("successes", "trials"), [(0, 1), (1, 1), (0, 10), (10, 10), (3, 7), (50, 100), (999, 1000), (1, 2000)])
@pytest.mark.parametrize("confidence", [0.5, 0.95, 0.99])
def test_wilson_interval_is_the_hand_written_wilson_formula(successes, trials, confidence):
    z = stats.norm.ppf(0.5 + confidence / 2)
    proportion = successes / trials
    denominator = 1 + z**2 / trials
    center = (proportion + z**2 / (2 * trials)) / denominator
    half_width = z / denominator * math.sqrt(proportion * (1 - proportion) / trials + z**2 / (4 * trials**2))
    low = 0.0 if successes == 0 else max(0.0, center - half_width)
    high = 1.0 if successes == trials else min(1.0, center + half_width)
    assert metrics.wilson_interval(successes, trials, confidence=confidence) == pytest.approx((low, high), rel=0, abs=1e-12)


@pytest.mark.parametrize(("only_a", "only_b"), [(1, 0), (0, 1), (3, 3), (30, 0), (7, 12), (60, 41)])
def test_mcnemar_is_the_hand_written_exact_binomial_tail(only_a, only_b):
    # P(K >= only_a) for K ~ Binomial(only_a + only_b, 1/2), summed term by term.
    discordant = only_a + only_b
    expected = sum(math.comb(discordant, k) for k in range(only_a, discordant + 1)) / 2**discordant
    a_correct = np.array([True] * only_a + [False] * only_b + [True, False] * 5)
    b_correct = np.array([False] * only_a + [True] * only_b + [True, False] * 5)
    assert metrics.mcnemar_p_value(a_correct, b_correct) == pytest.approx(expected, rel=0, abs=1e-12)


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
        assert p_values["p_value"] == min(1.0, 2.0 * min(p_values["tau_p_value"], p_values["exact_p_value"]))
    # Binomial(2000, 0.01) lies in [8, 34] with probability 0.9993.
    assert 8 <= tau_below <= 34
    # Doubled, the smaller p-value fires about half as often (0.005): Binomial(2000, 0.005) lies in [2, 20] with
    # probability 0.998; undoubled, these same evaluations gave 1.3 %, which [2, 34] let through.
    assert 2 <= verdict_below <= 20, verdict_below


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
    report = metrics.score_puzzles(decoding.certain_scores(swapped(order, n_swaps, rng)), order)
    result = report.decodings["hungarian"]
    # Almost no puzzle is exact, so the exact-order count alone says "chance"; tau does not.
    assert result.exact_accuracy.value < 0.05 and result.exact_p_value > 0.01
    assert metrics.verdict(result.p_value, n_tests=4) == "above_chance", result
    assert result.kendall_tau.value > 0.1


def neighbours_by_brute_force(n_chunks):
    """P(K = k) as Fractions: K the values differing by one side by side, over every permutation of range(n)."""
    counts = [0] * n_chunks
    for permutation in itertools.permutations(range(n_chunks)):
        counts[sum(abs(a - b) == 1 for a, b in zip(permutation, permutation[1:]))] += 1
    return [Fraction(count, math.factorial(n_chunks)) for count in counts]


@pytest.mark.parametrize("n_chunks", [2, 3, 4, 5, 6, 7])
def test_neighbour_null_is_the_count_over_every_permutation(n_chunks):
    expected = neighbours_by_brute_force(n_chunks)
    np.testing.assert_allclose(metrics._neighbour_null(n_chunks), [float(p) for p in expected], rtol=1e-12, atol=0)
    # Its mean is the chance of the share, 2/n, times the n - 1 pairs.
    assert sum(k * p for k, p in enumerate(expected)) == Fraction(2 * (n_chunks - 1), n_chunks)


@pytest.mark.parametrize("n_chunks, n_puzzles", [(4, 3), (5, 4), (3, 6)])
def test_neighbour_p_value_is_the_exact_tail_of_the_summed_null(n_chunks, n_puzzles):
    per_puzzle = neighbours_by_brute_force(n_chunks)
    total = {0: Fraction(1)}
    for _ in range(n_puzzles):
        step = defaultdict(Fraction)
        for s, p in total.items():
            for k, q in enumerate(per_puzzle):
                step[s + k] += p * q
        total = step
    order = np.broadcast_to(np.arange(n_chunks), (n_puzzles, n_chunks))
    rng = np.random.default_rng(n_chunks)
    for _ in range(30):
        pred = random_orders(rng, n_puzzles, n_chunks)
        found = round(metrics.neighbours_found(pred, order).sum() * (n_chunks - 1))
        exact = sum(p for s, p in total.items() if s >= found)
        assert metrics.neighbour_p_value(pred, order) == pytest.approx(float(exact), rel=1e-9)


def test_neighbours_found_see_the_order_either_way_round():
    order = random_orders(np.random.default_rng(8), 400, 20)
    np.testing.assert_array_equal(metrics.neighbours_found(order, order), 1.0)
    np.testing.assert_array_equal(metrics.neighbours_found(19 - order, order), 1.0)
    # An order known only up to its direction: tau averages 0, exact order and neighbours see it.
    flip = np.arange(400) % 2 == 1
    either = np.where(flip[:, None], 19 - order, order)
    p_values = metrics.chance_p_values(either, order)
    assert p_values["tau_p_value"] > 0.4 and p_values["neighbour_p_value"] < 1e-300
    # At chance: the share's mean is 2/n.
    shares = metrics.neighbours_found(random_orders(np.random.default_rng(9), 4000, 20), order[:1].repeat(4000, axis=0))
    assert shares.mean() == pytest.approx(2 / 20, abs=0.005)


def test_neighbours_alone_see_a_chain_of_right_joins_in_the_wrong_global_order():
    # Each puzzle's true order cut in 5 runs of 4 that are then shuffled: 15 of 19 joins right, no exact order,
    # tau anywhere. 3 puzzles suffice for the neighbours' own test, which leaves the verdict's p-value as it was.
    rng = np.random.default_rng(10)
    order = random_orders(rng, 3, 20)
    runs = np.stack([rng.permutation(5) for _ in range(3)])
    pred = (runs[np.arange(3)[:, None], order // 4] * 4 + order % 4).astype(np.int64)
    p_values = metrics.chance_p_values(pred, order)
    assert p_values["exact_p_value"] == 1.0 and 0 < p_values["neighbour_p_value"] < 1e-10
    assert p_values["p_value"] == min(1.0, 2 * min(p_values["tau_p_value"], p_values["exact_p_value"]))
    assert metrics.neighbours_found(pred, order).mean() >= 15 / 19


@pytest.mark.parametrize("n_chunks", [3, 20])
def test_neighbour_test_false_positive_rate_is_at_most_alpha(n_chunks):
    # 2000 models that know nothing, 200 puzzles each: measured 0.9% (n=3) and 0.75% (n=20) below 0.01,
    # 3.7% and 4.0% below 0.05 (docs/evaluation.md). The test is exact, so discreteness only lowers them.
    rng = np.random.default_rng(100 + n_chunks)
    below = np.zeros(2)
    for _ in range(2000):
        order, pred = random_orders(rng, 200, n_chunks), random_orders(rng, 200, n_chunks)
        p_value = metrics.neighbour_p_value(pred, order)
        below += [p_value < 0.05, p_value < 0.01]
    # Binomial(2000, 0.05) <= 125 and Binomial(2000, 0.01) <= 34 with probability 0.999.
    assert below[0] <= 125 and below[1] <= 34
    assert below[0] >= 40  # not blind: a test that never fires would pass the line above


def test_paired_tau_test_drops_ties_and_sees_what_mcnemar_cannot_at_20_chunks():
    rng = np.random.default_rng(11)
    order = random_orders(rng, 200, 20)
    better, worse = swapped(order, 10, rng), swapped(order, 14, rng)
    p_values = metrics.better_p_values(better, worse, order)
    # Neither sorts a puzzle exactly: McNemar has nothing to count.
    assert p_values["exact_p_value"] == 1.0 and p_values["tau_p_value"] < 1e-4
    assert p_values["p_value"] == pytest.approx(2 * p_values["tau_p_value"], rel=1e-12, abs=0)
    assert metrics.better_p_values(worse, better, order)["tau_p_value"] > 0.99
    # Puzzles on which both score the same tau say nothing: adding them changes no p-value.
    a_tau, b_tau = metrics.kendall_tau(better, order), metrics.kendall_tau(worse, order)
    assert metrics.paired_tau_p_value(np.r_[a_tau, [0.5] * 50], np.r_[b_tau, [0.5] * 50]) == metrics.paired_tau_p_value(a_tau, b_tau)
    assert metrics.paired_tau_p_value(a_tau, a_tau) == 1.0


def test_mcnemar_decides_where_the_order_is_known_only_up_to_its_direction():
    rng = np.random.default_rng(12)
    order = random_orders(rng, 200, 3)
    either = np.where((np.arange(200) % 2 == 1)[:, None], 2 - order, order)
    p_values = metrics.better_p_values(either, random_orders(rng, 200, 3), order)
    assert p_values["exact_p_value"] < 1e-10 and p_values["tau_p_value"] > 0.01
    assert p_values["p_value"] == pytest.approx(2 * p_values["exact_p_value"], rel=1e-12, abs=0)
