"""Score predicted chunk orders: accuracies, Kendall tau, intervals and tests against chance.

A puzzle has n shuffled chunks. Its label ``order`` (B, n) gives, for slot i,
the temporal position (0 = earliest) of the chunk in that slot. A model gives
``scores`` (B, n, n): row i holds (log-)scores over positions for slot i,
higher meaning more likely. :func:`audiosort.decoding.decode` turns scores into
predicted positions; the functions here compare predictions with labels and say
whether a model sorts better than a scorer that knows nothing about the order.

The null hypothesis throughout is "the scores carry no information about the
order". Since the sampler shuffles every puzzle uniformly, under it each slot is
right with probability 1/n, Kendall tau has mean 0 and a known distribution
(:func:`kendall_tau_p_value`), and the whole order is right with probability at
most 1/n! (exactly 1/n! when the decoding always yields a permutation, less
for argmax, which may repeat a position). Verdicts test both Kendall tau and
the exact-order count (:func:`chance_p_values`): tau has power at every n,
where the exact-order count stops having any once n! dwarfs the puzzles (a
model with tau 0.65 on 20 chunks sorts almost none exactly), and the count
sees an order known only up to its direction, where tau averages 0. Beside
the verdict, the true neighbours placed side by side have their own test
(:func:`neighbour_p_value`): they see a leak that links chunks here and
there without placing the whole, where both are nearly blind. Two
scorers on the same puzzles are compared by paired tests on tau and on the
exact order (:func:`better_p_values`).

Example
-------
>>> order = np.array([[2, 0, 1], [0, 1, 2], [1, 2, 0], [2, 1, 0]] * 5)
>>> scores = np.log(np.eye(3)[order] * 0.9 + 0.05)  # peaked on the true positions
>>> report = score_puzzles(scores, order)
>>> report.decodings["hungarian"].exact_accuracy.value, report.chance.exact_accuracy
(1.0, 0.16666666666666666)
>>> verdict(report.order_scores.p_value, n_tests=2)
'above_chance'
>>> report.to_dict()["hungarian"]["exact_accuracy"]["value"]  # the JSON of eval.json and metrics.json
1.0
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from fractions import Fraction
from types import MappingProxyType

import numpy as np
from scipy import stats

from audiosort.decoding import DECODINGS, check_decoding, decode
from audiosort.errors import is_int

# Orders decided before scoring, by the best-path search over join scores (a successor head, the
# continuity baseline): scored by :func:`score_orders`, not decoded from position scores.
PATH_DECODING = "path"
# The decodings whose every prediction is a permutation. A scored set has one of them, and its test
# against chance (and so its verdict) is that decoding's: argmax's exact-order count never exceeds it.
ORDER_DECODINGS = ("hungarian", PATH_DECODING)
SCORED_DECODINGS = (*DECODINGS, PATH_DECODING)


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A mean over puzzles with its confidence interval: ``value`` in ``[low, high]``."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict:
        """``{"value", "low", "high"}``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, entry: Mapping) -> Estimate:
        """Read :meth:`to_dict`'s layout back."""
        return cls(float(entry["value"]), float(entry["low"]), float(entry["high"]))


@dataclasses.dataclass(frozen=True)
class Chance:
    """What a scorer with no information about the order gets on average (see :func:`chance`)."""

    position_accuracy: float
    exact_accuracy: float
    kendall_tau: float
    neighbour_share: float

    def to_dict(self) -> dict:
        """``{"position_accuracy", "exact_accuracy", "kendall_tau", "neighbour_share"}``."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class DecodingScores:
    """One decoding's accuracies on a set of puzzles, and its test against chance.

    Attributes
    ----------
    position_accuracy, exact_accuracy, kendall_tau : Estimate
        Fraction of slots right, of puzzles in exact order, and Kendall tau,
        each with its confidence interval (see :func:`score_puzzles`).
    exact_correct_count : int
        Puzzles in exact order.
    p_value : float in [0, 1]
        The verdict's test against chance (:func:`chance_p_values`): the
        smaller of tau's and the exact order's below, doubled (Bonferroni).
    tau_p_value, exact_p_value : float in [0, 1] or None
        Kendall tau against its null (a continuity-corrected normal tail,
        :func:`kendall_tau_p_value`), and the exact-order count against
        1/n! (one-sided binomial); None where a file written before they were
        reported is read back.
    neighbour_share : Estimate or None
        Share of the chunk pairs placed side by side that are neighbours in
        time, either way round (:func:`neighbours_found`; chance 2/n); None
        in a file written before it was reported.
    neighbour_p_value : float in [0, 1] or None
        The neighbours found against their exact null
        (:func:`neighbour_p_value`): their own test, outside the verdict's
        ``p_value``; None as ``neighbour_share``.
    """

    position_accuracy: Estimate
    exact_accuracy: Estimate
    kendall_tau: Estimate
    exact_correct_count: int
    p_value: float
    tau_p_value: float | None = None
    exact_p_value: float | None = None
    neighbour_share: Estimate | None = None
    neighbour_p_value: float | None = None

    def to_dict(self) -> dict:
        """The JSON layout: each estimate as ``{"value", "low", "high"}``, then the count and the p-values."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, entry: Mapping) -> DecodingScores:
        """Read :meth:`to_dict`'s layout back; other keys (a report's ``verdict``) are ignored."""
        estimates = ("position_accuracy", "exact_accuracy", "kendall_tau", "neighbour_share")
        return cls(
            **{name: Estimate.from_dict(entry[name]) for name in estimates if entry.get(name) is not None},
            exact_correct_count=int(entry["exact_correct_count"]),
            p_value=float(entry["p_value"]),
            tau_p_value=entry.get("tau_p_value"),
            exact_p_value=entry.get("exact_p_value"),
            neighbour_p_value=entry.get("neighbour_p_value"),
        )


@dataclasses.dataclass(frozen=True)
class PuzzleScores:
    """What :func:`score_puzzles` and :func:`score_orders` measure on one set of puzzles.

    The one type of a set's scores, written by training and eval and read back
    from ``metrics.json`` and ``eval.json`` through :meth:`from_dict`.

    Attributes
    ----------
    decodings : Mapping of str to DecodingScores
        Read-only, in the order scored: ``argmax`` and ``hungarian`` for
        position scores, ``path`` for orders found by the best-path search.
    n_puzzles, n_chunks : int
        Puzzles scored, and chunks n per puzzle.
    chance : Chance
        Chance at this n.
    """

    decodings: Mapping[str, DecodingScores]
    n_puzzles: int
    n_chunks: int
    chance: Chance

    def __post_init__(self):
        object.__setattr__(self, "decodings", MappingProxyType(dict(self.decodings)))
        if sum(name in self.decodings for name in ORDER_DECODINGS) != 1:
            raise ValueError(f"need exactly one of {ORDER_DECODINGS} among the decodings, got {list(self.decodings)}")

    @property
    def order_decoding(self) -> str:
        """The decoding whose order is the answer (``hungarian`` or ``path``): the verdict is its test."""
        return next(name for name in ORDER_DECODINGS if name in self.decodings)

    @property
    def order_scores(self) -> DecodingScores:
        """The scores of :attr:`order_decoding`."""
        return self.decodings[self.order_decoding]

    def to_dict(self) -> dict:
        """JSON-ready: one entry per decoding (:meth:`DecodingScores.to_dict`), then ``n_puzzles``, ``n_chunks``, ``chance``."""
        return {
            **{name: scores.to_dict() for name, scores in self.decodings.items()},
            "n_puzzles": self.n_puzzles,
            "n_chunks": self.n_chunks,
            "chance": self.chance.to_dict(),
        }

    @classmethod
    def from_dict(cls, entry: Mapping) -> PuzzleScores:
        """Read :meth:`to_dict`'s layout back, e.g. from ``metrics.json`` or an ``eval.json`` dataset (other keys ignored).

        Chance follows from ``n_chunks``, so a file written before a statistic
        was added still reads back with that statistic's chance.
        """
        n_chunks = int(entry["n_chunks"])
        return cls(
            {name: DecodingScores.from_dict(entry[name]) for name in SCORED_DECODINGS if name in entry},
            int(entry["n_puzzles"]),
            n_chunks,
            chance(n_chunks),
        )


def position_correct(pred, order):
    """Whether each slot got its true position.

    Parameters
    ----------
    pred : np.ndarray [shape=(B, n), dtype=int]
        Predicted position of the chunk in each slot (from :func:`audiosort.decoding.decode`).
    order : np.ndarray [shape=(B, n), dtype=int]
        True position of the chunk in each slot.

    Returns
    -------
    correct : np.ndarray [shape=(B, n), dtype=bool]
    """
    pred, order = _check_pair(pred, order)
    return pred == order


def exact_correct(pred, order):
    """Whether each puzzle's whole order is right.

    Parameters
    ----------
    pred : np.ndarray [shape=(B, n), dtype=int]
        Predicted positions.
    order : np.ndarray [shape=(B, n), dtype=int]
        True positions.

    Returns
    -------
    correct : np.ndarray [shape=(B,), dtype=bool]
        True where every slot of the puzzle is right.
    """
    return position_correct(pred, order).all(axis=1)


def kendall_tau(pred, order):
    """Kendall rank correlation between predicted and true positions, per puzzle.

    Parameters
    ----------
    pred : np.ndarray [shape=(B, n), dtype=int]
        Predicted positions; may repeat a position (argmax decoding).
    order : np.ndarray [shape=(B, n), dtype=int]
        True positions, a permutation of range(n) per puzzle.

    Returns
    -------
    tau : np.ndarray [shape=(B,), dtype=float64]
        In [-1, 1]: 1 for the true order, -1 for its reverse.

    Notes
    -----
    This is tau-a: (concordant - discordant) / (n (n - 1) / 2) over all slot
    pairs. A pair tied in ``pred`` counts as neither, so repeated positions
    pull tau towards 0 instead of being rescaled as tau-b would.
    """
    pred, order = _check_pair(pred, order)
    if pred.shape[1] < 2:
        raise ValueError(f"Kendall tau needs n >= 2 chunks per puzzle, got n={pred.shape[1]}")
    first, second = np.triu_indices(pred.shape[1], k=1)
    concordance = np.sign(pred[:, first] - pred[:, second]) * np.sign(order[:, first] - order[:, second])
    return concordance.mean(axis=1, dtype=np.float64)


def chance(n):
    """What a scorer with no information about the order gets on average.

    Parameters
    ----------
    n : int >= 2
        Chunks per puzzle.

    Returns
    -------
    chance : Chance
        ``position_accuracy`` 1/n, ``exact_accuracy`` 1/n! (an upper bound for
        argmax, which may predict non-permutations), ``kendall_tau`` 0.0,
        ``neighbour_share`` 2/n (each of the n - 1 pairs placed side by side
        is one of the n - 1 neighbouring pairs, either way round, among the
        n (n - 1) / 2 pairs).
    """
    if not is_int(n) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    n = int(n)
    return Chance(position_accuracy=1.0 / n, exact_accuracy=1.0 / math.factorial(n), kendall_tau=0.0, neighbour_share=2.0 / n)


def wilson_interval(successes, trials, *, confidence=0.95):
    """Wilson score interval for a binomial proportion.

    Parameters
    ----------
    successes : int, 0 <= successes <= trials
        Number of successes.
    trials : int >= 1
        Number of independent trials.
    confidence : float in (0, 1), keyword-only
        Two-sided coverage of the interval.

    Returns
    -------
    low, high : float
        Bounds within [0, 1] that contain ``successes / trials``.
    """
    successes, trials = _check_counts(successes, trials)
    interval = stats.binomtest(successes, trials).proportion_ci(_check_confidence(confidence), method="wilson")
    return float(interval.low), float(interval.high)


def mean_interval(values, *, confidence=0.95):
    """Student-t confidence interval for the mean of independent values.

    Parameters
    ----------
    values : np.ndarray [shape=(N,), finite], N >= 1
        One value per independent unit (e.g. Kendall tau per puzzle).
    confidence : float in (0, 1), keyword-only
        Two-sided coverage of the interval.

    Returns
    -------
    low, high : float
        Symmetric about the mean; ``(v, v)`` when all values equal v
        (including N = 1), where the sample spread is zero.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(f"values must be a non-empty finite 1-D array, got shape {values.shape}")
    confidence = _check_confidence(confidence)
    mean = float(values.mean())
    if np.all(values == values[0]):
        return mean, mean
    standard_error = values.std(ddof=1) / math.sqrt(values.size)
    t = stats.t.ppf(0.5 + confidence / 2, df=values.size - 1)
    return float(mean - t * standard_error), float(mean + t * standard_error)


def binomial_p_value(successes, trials, p):
    """One-sided binomial test: P(X >= successes) for X ~ Binomial(trials, p).

    Parameters
    ----------
    successes : int, 0 <= successes <= trials
        Observed successes (e.g. puzzles with the exact order right).
    trials : int >= 1
        Independent trials (puzzles).
    p : float in [0, 1]
        Success probability under the null hypothesis (e.g. 1/n!).

    Returns
    -------
    p_value : float
        In [0, 1]; small means more successes than chance explains.
    """
    successes, trials = _check_counts(successes, trials)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p!r}")
    return float(stats.binom.sf(successes - 1, trials, p))


def kendall_tau_p_value(pred, order):
    """One-sided test that predicted positions agree with the true ones more than chance, by Kendall tau.

    Parameters
    ----------
    pred : np.ndarray [shape=(B, n), dtype=int]
        Predicted positions; may repeat a position (argmax decoding).
    order : np.ndarray [shape=(B, n), dtype=int]
        True positions, a permutation of range(n) per puzzle.

    Returns
    -------
    p_value : float in [0, 1]
        P(S >= s) under the null, where S sums Kendall's concordant minus
        discordant pairs over the B puzzles (s as observed): small means the
        predictions agree with the order more than chance explains. 1.0 when
        every prediction ties all its slots (nothing to test). It underflows to
        0.0 below about 1e-308.

    Notes
    -----
    Under the null (the scores carry no information about the order) the
    predictions are independent of the order, which the sampler draws
    uniformly: given a puzzle's prediction, its S is the S of a fixed ranking
    against a uniform random permutation. That null is exact at every n, and
    Kendall tau keeps its power where the exact-order count has none (at
    n = 20 a model that gets every slot within a swap or two of right still
    sorts almost no puzzle exactly). Per puzzle, S has mean 0 and variance
    ``(n (n - 1) (2n + 5) - sum_t t (t - 1) (2t + 5)) / 18``, the sum over
    groups of t slots predicted at the same position (Kendall 1948, ch. 4; with
    no ties it is the Mahonian distribution of inversions, variance
    ``2 (2n + 5) / (9 n (n - 1))`` on the tau scale). Puzzles are independent,
    so the total S has the summed variance, and S moves in steps of 2; the
    p-value is the normal tail with a continuity correction of 1. S is bounded
    and its kurtosis negative, so the normal tail is heavier than the exact
    one below p = 0.04: there the test errs towards "at chance". Against the
    exact convolution of Mahonian distributions, from 60 pairs in all (20
    puzzles of 3 chunks, 3 of 20), it is within 15% of the exact p-value in
    [0.002, 0.05], never below it under 0.04 and at most 1% below it above
    (tests/test_metrics.py checks these), and 1.1-1.8 times it at 1e-5.
    Over 2000 random models of 200 puzzles, 1.1% (n=3) and 0.9% (n=20) had a
    p-value below 0.01.
    """
    pred, order = _check_pair(pred, order)
    n_chunks = pred.shape[1]
    if n_chunks < 2:
        raise ValueError(f"Kendall tau needs n >= 2 chunks per puzzle, got n={n_chunks}")
    first, second = np.triu_indices(n_chunks, k=1)
    concordance = np.sign(pred[:, first] - pred[:, second]) * np.sign(order[:, first] - order[:, second])
    total = int(concordance.sum())
    # Slots predicted at each position, per puzzle: (B, n) tie-group sizes (0 and 1 add no ties).
    tied = np.zeros((len(pred), max(n_chunks, int(pred.max()) + 1)), dtype=np.int64)
    np.add.at(tied, (np.arange(len(pred))[:, None], pred), 1)
    variance = (n_chunks * (n_chunks - 1) * (2 * n_chunks + 5) * len(pred) - np.sum(tied * (tied - 1) * (2 * tied + 5))) / 18
    if variance <= 0:
        return 1.0
    return float(stats.norm.sf((total - 1) / math.sqrt(variance)))


def neighbours_found(pred, order):
    """Per puzzle, the share of chunk pairs placed side by side that are neighbours in time, either way round.

    Parameters
    ----------
    pred : np.ndarray [shape=(B, n), dtype=int]
        Predicted positions; may repeat a position (argmax decoding), where
        slots predicted at one position stand in slot order.
    order : np.ndarray [shape=(B, n), dtype=int]
        True positions, a permutation of range(n) per puzzle.

    Returns
    -------
    share : np.ndarray [shape=(B,), dtype=float64]
        In [0, 1]: of the n - 1 chunks predicted right after another, those
        whose true position is one before or one after it. 1 for the true
        order and for its reverse; chance 2/n.

    Notes
    -----
    Tau needs the direction and the exact order needs every join; this needs
    neither. An observer that links a chunk to its true neighbour now and then
    (brown noise's edges across short gaps) or that knows the order only up to
    its direction (a tone's shared phase step) finds many true neighbours at
    any n while its tau stays near 0 and its exact order near 1/n!.
    """
    pred, order = _check_pair(pred, order)
    sequence = np.argsort(pred, axis=1, kind="stable")
    true_positions = np.take_along_axis(order, sequence, axis=1)
    return (np.abs(np.diff(true_positions, axis=1)) == 1).mean(axis=1, dtype=np.float64)


def neighbour_p_value(pred, order):
    """One-sided exact test that a prediction finds more true neighbours than chance.

    Parameters
    ----------
    pred : np.ndarray [shape=(B, n), dtype=int]
        Predicted positions; may repeat a position (argmax decoding).
    order : np.ndarray [shape=(B, n), dtype=int]
        True positions, a permutation of range(n) per puzzle.

    Returns
    -------
    p_value : float in [0, 1]
        P(K >= k) under the null, K the true neighbours placed side by side
        summed over the B puzzles (:func:`neighbours_found` times n - 1), k as
        observed. It underflows to 0.0 below about 1e-300.

    Notes
    -----
    Under the null the prediction is independent of the order, which the
    sampler draws uniformly, so the true positions read along any one
    predicted sequence are a uniform random permutation: K per puzzle is the
    number of adjacent entries differing by one in a uniform permutation of
    n, whatever the prediction. Its distribution is exact by inclusion and
    exclusion (:func:`_neighbour_null`: the permutations holding j given
    neighbouring pairs side by side, the pairs forming c runs of values, number
    (n - j)! 2^c), and the total over the puzzles its B-fold convolution, so
    the test is exact at every n and B; discrete, it errs towards "at chance".
    At n = 2 every order places its one pair side by side: p is 1.
    """
    pred, order = _check_pair(pred, order)
    n_puzzles, n_chunks = pred.shape
    found = int(np.rint(neighbours_found(pred, order).sum() * (n_chunks - 1)))
    offset, total = _summed(_neighbour_null(n_chunks), n_puzzles)
    return float(min(1.0, total[max(0, found - offset):].sum()))


@functools.cache
def _neighbour_null(n_chunks):
    """P(K = k) for k in 0..n-1 (n,): K the neighbouring values side by side in a uniform permutation of n."""
    total = math.factorial(n_chunks)

    def holding(pairs):
        # Permutations with ``pairs`` given neighbouring pairs side by side, summed over the C(n-1, pairs) choices.
        if pairs == 0:
            return total
        return sum(
            math.comb(pairs - 1, runs - 1) * math.comb(n_chunks - pairs, runs) * 2**runs
            for runs in range(1, pairs + 1)
        ) * math.factorial(n_chunks - pairs)

    at_least = [holding(pairs) for pairs in range(n_chunks)]
    exactly = [
        sum((-1) ** (pairs - k) * math.comb(pairs, k) * at_least[pairs] for pairs in range(k, n_chunks))
        for k in range(n_chunks)
    ]
    return np.array([Fraction(count, total) for count in exactly], dtype=np.float64)


def _summed(pmf, copies):
    """The distribution of a sum of ``copies`` independent draws of ``pmf``: ``(offset, pmf)``, pmf[i] = P(sum = offset + i).

    By repeated squaring; probabilities below 1e-300 are dropped from both
    ends as they appear, which keeps the support to where the mass is.
    """
    result, result_offset = np.ones(1), 0
    power, power_offset = np.asarray(pmf, dtype=np.float64), 0
    while copies:
        if copies & 1:
            result, result_offset = _trimmed(np.convolve(result, power), result_offset + power_offset)
        copies >>= 1
        if copies:
            power, power_offset = _trimmed(np.convolve(power, power), 2 * power_offset)
    return result_offset, result


def _trimmed(pmf, offset):
    kept = np.flatnonzero(pmf >= 1e-300)
    return pmf[kept[0] : kept[-1] + 1], offset + int(kept[0])


def chance_p_values(pred, order):
    """The tests against chance: the verdict's (Kendall tau or the exact-order count, Bonferroni over the two) and the neighbours'.

    Parameters
    ----------
    pred : np.ndarray [shape=(B, n), dtype=int]
        Predicted positions (:func:`audiosort.decoding.decode`).
    order : np.ndarray [shape=(B, n), dtype=int]
        True positions, a permutation of range(n) per puzzle.

    Returns
    -------
    p_values : dict
        ``tau_p_value`` (:func:`kendall_tau_p_value`), ``exact_p_value``
        (:func:`binomial_p_value` of the exact-order count against 1/n!),
        ``p_value``: ``min(1, 2 min(tau_p_value, exact_p_value))``, the
        verdict's, and ``neighbour_p_value`` (:func:`neighbour_p_value`),
        the neighbours' own test, all in [0, 1].

    Notes
    -----
    Each of the verdict's statistics is blind where the other sees. The
    exact-order count has no power once n! dwarfs the puzzles (at n = 20
    almost no puzzle is exact even for a model with tau 0.65). Kendall tau has
    none for an order known only up to its direction: a tone's phase steps v
    and -v are often equally likely, so an observer of a shared gap restores
    the order or its reverse as a coin flips, with mean tau 0 and exact-order
    accuracy far above 1/n!. Taking the smaller p-value, doubled
    (Bonferroni), keeps the false-positive rate at most alpha and sees both;
    it costs half of alpha where only one of them can fire (measured over 2000
    random models of 200 puzzles: 0.5% below 0.01 at n=3 and at n=20, against
    1.1% and 0.9% for tau alone). Neither sees much of a leak that links a
    chunk to its neighbour here and there without placing the whole (brown
    noise across gaps of 0-5 ms at n = 20: tau 0.03); the neighbours found
    do, and are tested on their own beside the verdict, which they leave
    unchanged (:meth:`audiosort.verdicts.Verdicts.neighbour_verdict`).
    """
    pred, order = _check_pair(pred, order)
    exact_count = int(np.count_nonzero(exact_correct(pred, order)))
    tau_p = kendall_tau_p_value(pred, order)
    exact_p = binomial_p_value(exact_count, len(order), 1.0 / math.factorial(order.shape[1]))
    return {
        "p_value": min(1.0, 2.0 * min(tau_p, exact_p)),
        "tau_p_value": tau_p,
        "exact_p_value": exact_p,
        "neighbour_p_value": neighbour_p_value(pred, order),
    }


def paired_tau_p_value(a_tau, b_tau):
    """One-sided Wilcoxon signed-rank test that scorer A's per-puzzle Kendall tau exceeds B's on the same puzzles.

    Parameters
    ----------
    a_tau, b_tau : np.ndarray [shape=(N,), dtype=float64]
        Kendall tau of A and of B per puzzle (:func:`kendall_tau`).

    Returns
    -------
    p_value : float in [0, 1]
        Small means A's tau is higher on more puzzles, and by more, than
        chance explains. 1.0 when the two agree on every puzzle.

    Notes
    -----
    Puzzles on which both score the same tau say nothing about which is
    better, as the puzzles both get right or wrong in McNemar's test: they
    are dropped before ranking (Wilcoxon's treatment of zeros), and the
    differences that are left, ranked with ties averaged, give the normal
    approximation with scipy's tie correction (exact where there are no ties
    and at most 50 differences).
    """
    a_tau, b_tau = np.asarray(a_tau, dtype=np.float64), np.asarray(b_tau, dtype=np.float64)
    if a_tau.ndim != 1 or a_tau.shape != b_tau.shape:
        raise ValueError(f"a_tau and b_tau must be 1-D of equal length, got {a_tau.shape} and {b_tau.shape}")
    # Taus are multiples of 1/(n (n - 1) / 2): rounding makes equal differences tie, as ranks need.
    differences = np.round(a_tau - b_tau, 12)
    differences = differences[differences != 0]
    if differences.size == 0:
        return 1.0
    return float(stats.wilcoxon(differences, alternative="greater", zero_method="wilcox").pvalue)


def better_p_values(a_pred, b_pred, order):
    """Whether scorer A sorts the same puzzles better than B: paired tests on Kendall tau and on the exact order.

    Parameters
    ----------
    a_pred, b_pred : np.ndarray [shape=(B, n), dtype=int]
        Positions predicted by A and by B.
    order : np.ndarray [shape=(B, n), dtype=int]
        True positions, a permutation of range(n) per puzzle.

    Returns
    -------
    p_values : dict
        ``tau_p_value`` (:func:`paired_tau_p_value`), ``exact_p_value``
        (:func:`mcnemar_p_value` of the exact orders) and ``p_value``: the
        smaller, doubled (Bonferroni), at most 1: the comparison's.

    Notes
    -----
    McNemar's test on exact orders is blind from about n = 7, where both
    scorers sort almost no puzzle exactly; the tau test sees there. McNemar
    still sees an order known only up to its direction, where tau's
    differences cancel. Over simulated pairs of scorers at n = 3, 5 and 20
    (docs/evaluation.md, "False positives and power") the smaller p doubled
    lost little power against the better test at each n and kept the
    false-positive rate under alpha.
    """
    a_pred, order = _check_pair(a_pred, order)
    b_pred, _ = _check_pair(b_pred, order)
    p_values = {
        "tau_p_value": paired_tau_p_value(kendall_tau(a_pred, order), kendall_tau(b_pred, order)),
        "exact_p_value": mcnemar_p_value(exact_correct(a_pred, order), exact_correct(b_pred, order)),
    }
    return {"p_value": min(1.0, 2.0 * min(p_values.values())), **p_values}


def mcnemar_p_value(a_correct, b_correct):
    """One-sided exact McNemar test that scorer A is right more often than B.

    Parameters
    ----------
    a_correct : np.ndarray [shape=(N,), dtype=bool]
        Whether A got each puzzle right.
    b_correct : np.ndarray [shape=(N,), dtype=bool]
        Whether B got the same puzzles right.

    Returns
    -------
    p_value : float
        P(K >= k) for K ~ Binomial(d, 1/2), where d counts the puzzles on
        which exactly one scorer is right and k those among them that A got.
        1.0 when there are no such puzzles.

    Notes
    -----
    Puzzles both scorers get right or wrong say nothing about which is better;
    pairing on the same puzzles is what makes this test stronger than
    comparing two accuracies.
    """
    a_correct = np.asarray(a_correct)
    b_correct = np.asarray(b_correct)
    if a_correct.ndim != 1 or a_correct.shape != b_correct.shape:
        raise ValueError(f"a_correct and b_correct must be 1-D of equal length, got {a_correct.shape} and {b_correct.shape}")
    if a_correct.dtype != bool or b_correct.dtype != bool:
        raise ValueError(f"a_correct and b_correct must be bool, got {a_correct.dtype} and {b_correct.dtype}")
    only_a = int(np.count_nonzero(a_correct & ~b_correct))
    only_b = int(np.count_nonzero(~a_correct & b_correct))
    if only_a + only_b == 0:
        return 1.0
    return float(stats.binomtest(only_a, only_a + only_b, 0.5, alternative="greater").pvalue)


def score_puzzles(scores, order, *, decodings=DECODINGS, confidence=0.95):
    """Accuracies with confidence intervals and a test against chance, per decoding.

    Parameters
    ----------
    scores : np.ndarray [shape=(B, n, n), finite]
        Model scores, row i over positions for slot i (see :func:`audiosort.decoding.decode`).
    order : np.ndarray [shape=(B, n), dtype=int]
        True positions; each row a permutation of range(n).
    decodings : sequence of str, keyword-only
        Names from :data:`audiosort.decoding.DECODINGS` to score; ``hungarian`` among them.
    confidence : float in (0, 1), keyword-only
        Two-sided coverage of every interval.

    Returns
    -------
    PuzzleScores
        For each decoding, position accuracy, exact accuracy, Kendall tau and
        the share of true neighbours found, each an :class:`Estimate`; the
        exact-order count; ``p_value``, ``tau_p_value``, ``exact_p_value`` and
        ``neighbour_p_value`` (:func:`chance_p_values`: ``p_value`` is the
        one every verdict tests). ``to_dict()`` is the JSON
        layout of ``eval.json`` and ``metrics.json``.

    Notes
    -----
    Puzzles are the independent units, slots are not: slots of one puzzle
    share its audio and, under hungarian decoding, one wrong slot forces
    another. A Wilson interval over the B*n slots would be too narrow, so
    position accuracy takes a t-interval (:func:`mean_interval`) over the
    per-puzzle fraction of slots right, as Kendall tau does over per-puzzle
    tau and the neighbour share over per-puzzle shares. Exact accuracy, one
    Bernoulli trial per puzzle, takes a Wilson interval. t-interval bounds
    are clipped to the metric's range.
    """
    for name in decodings:
        check_decoding(name, "decoding")
    order, scores = _check_order(order), np.asarray(scores)
    if scores.shape != order.shape + order.shape[1:]:
        raise ValueError(f"need order (B, n) and scores (B, n, n), got {order.shape} and {scores.shape}")
    return _scored({name: decode(scores, method=name) for name in decodings}, order, _check_confidence(confidence))


def score_orders(predicted, order, *, decoding=PATH_DECODING, confidence=0.95):
    """:func:`score_puzzles` for orders decided before scoring, under the name of the decoding that decided them.

    Parameters
    ----------
    predicted : np.ndarray [shape=(B, n), dtype=int]
        Predicted position of each slot, a permutation per puzzle (e.g.
        :func:`audiosort.decoding.positions_of` of :func:`audiosort.decoding.best_paths`).
    order : np.ndarray [shape=(B, n), dtype=int]
        True positions.
    decoding : str, keyword-only
        What decided them, one of :data:`ORDER_DECODINGS` (default ``path``).
    confidence : float in (0, 1), keyword-only
        Two-sided coverage of every interval.

    Returns
    -------
    PuzzleScores
        With one decoding, ``decoding``.
    """
    if decoding not in ORDER_DECODINGS:
        raise ValueError(f"decoding must be one of {ORDER_DECODINGS}, got {decoding!r}")
    order, predicted = _check_order(order), np.asarray(predicted)
    if predicted.shape != order.shape:
        raise ValueError(f"need predicted and order of one shape (B, n), got {predicted.shape} and {order.shape}")
    if not np.array_equal(np.sort(predicted, axis=1), np.broadcast_to(np.arange(order.shape[1]), order.shape)):
        raise ValueError(f"every row of predicted must be a permutation of range({order.shape[1]})")
    return _scored({decoding: predicted}, order, _check_confidence(confidence))


def _scored(predictions, order, confidence):
    """PuzzleScores of each named prediction (B, n) against the true order (B, n)."""
    n_puzzles, n_chunks = order.shape
    reference = chance(n_chunks)
    scored = {}
    for name, pred in predictions.items():
        exact_count = int(np.count_nonzero(exact_correct(pred, order)))
        scored[name] = DecodingScores(
            position_accuracy=_mean_summary(position_correct(pred, order).mean(axis=1), confidence, 0.0, 1.0),
            exact_accuracy=Estimate(exact_count / n_puzzles, *wilson_interval(exact_count, n_puzzles, confidence=confidence)),
            kendall_tau=_mean_summary(kendall_tau(pred, order), confidence, -1.0, 1.0),
            exact_correct_count=exact_count,
            neighbour_share=_mean_summary(neighbours_found(pred, order), confidence, 0.0, 1.0),
            **chance_p_values(pred, order),
        )
    return PuzzleScores(scored, int(n_puzzles), int(n_chunks), reference)


def verdict(p_value, *, alpha=0.01, n_tests=1):
    """Whether a result is above chance after a Bonferroni correction.

    Parameters
    ----------
    p_value : float in [0, 1]
        One-sided p-value against chance (e.g. from :func:`score_puzzles`).
    alpha : float in (0, 1), keyword-only
        Family-wise false-positive rate.
    n_tests : int >= 1, keyword-only
        Tests in the family (e.g. decodings times datasets); each is held to
        ``alpha / n_tests``.

    Returns
    -------
    verdict : str
        ``"above_chance"`` if ``p_value < alpha / n_tests``, else ``"at_chance"``.
    """
    if not 0.0 <= p_value <= 1.0:
        raise ValueError(f"p_value must be in [0, 1], got {p_value!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not is_int(n_tests) or n_tests < 1:
        raise ValueError(f"n_tests must be an int >= 1, got {n_tests!r}")
    return "above_chance" if p_value < alpha / n_tests else "at_chance"


def _mean_summary(values, confidence, lowest, highest):
    """Mean of per-puzzle values with its t-interval clipped to [lowest, highest], as plain floats."""
    low, high = mean_interval(values, confidence=confidence)
    return Estimate(float(np.mean(values)), max(lowest, low), min(highest, high))


def _check_order(order):
    """``order`` as an array, checked: (B, n) with B >= 1, n >= 2, each row a permutation of range(n)."""
    order = np.asarray(order)
    if order.ndim != 2 or order.shape[0] < 1 or order.shape[1] < 2:
        raise ValueError(f"need order (B, n) with B >= 1 and n >= 2, got {order.shape}")
    if not np.array_equal(np.sort(order, axis=1), np.broadcast_to(np.arange(order.shape[1]), order.shape)):
        raise ValueError(f"every row of order must be a permutation of range({order.shape[1]})")
    return order

def _check_confidence(confidence):
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(confidence)


def _check_counts(successes, trials):
    if not 1 <= trials or not 0 <= successes <= trials:
        raise ValueError(f"need trials >= 1 and 0 <= successes <= trials, got {successes} of {trials}")
    return int(successes), int(trials)


def _check_pair(pred, order):
    pred = np.asarray(pred)
    order = np.asarray(order)
    if pred.ndim != 2 or pred.shape != order.shape:
        raise ValueError(f"pred and order must both have shape (B, n), got {pred.shape} and {order.shape}")
    if not (np.issubdtype(pred.dtype, np.integer) and np.issubdtype(order.dtype, np.integer)):
        raise ValueError(f"pred and order must be integer positions, got {pred.dtype} and {order.dtype}")
    # Signed, so that differences of unsigned positions cannot wrap around.
    return pred.astype(np.int64, copy=False), order.astype(np.int64, copy=False)
