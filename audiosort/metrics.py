"""Score predicted chunk orders: accuracies, Kendall tau, intervals and tests against chance.

A puzzle has n shuffled chunks. Its label ``order`` (B, n) gives, for slot i,
the temporal position (0 = earliest) of the chunk in that slot. A model gives
``scores`` (B, n, n): row i holds (log-)scores over positions for slot i,
higher meaning more likely. :func:`audiosort.decoding.decode` turns scores into
predicted positions; the functions here compare predictions with labels and say
whether a model sorts better than a scorer that knows nothing about the order.

The null hypothesis throughout is "the scores carry no information about the
order". Since the sampler shuffles every puzzle uniformly, under it each slot is
right with probability 1/n, Kendall tau has mean 0, and the whole order is
right with probability at most 1/n! (exactly 1/n! when the decoding always
yields a permutation, less for argmax, which may repeat a position). Testing
exact-order counts against 1/n! is therefore valid, if conservative, for argmax.

Example
-------
>>> order = np.array([[2, 0, 1], [0, 1, 2], [1, 2, 0], [2, 1, 0]] * 5)
>>> scores = np.log(np.eye(3)[order] * 0.9 + 0.05)  # peaked on the true positions
>>> report = score_puzzles(scores, order)
>>> report["hungarian"]["exact_accuracy"]["value"], report["chance"]["exact_accuracy"]
(1.0, 0.16666666666666666)
>>> verdict(report["hungarian"]["p_value"], n_tests=2)
'above_chance'
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from audiosort.decoding import DECODINGS, check_decoding, decode
from audiosort.errors import is_int


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
    chance : dict
        ``position_accuracy`` 1/n, ``exact_accuracy`` 1/n! (an upper bound for
        argmax, which may predict non-permutations), ``kendall_tau`` 0.0.
    """
    if not is_int(n) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    return {
        "position_accuracy": 1.0 / int(n),
        "exact_accuracy": 1.0 / math.factorial(int(n)),
        "kendall_tau": 0.0,
    }


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
        Names from :data:`DECODINGS` to score.
    confidence : float in (0, 1), keyword-only
        Two-sided coverage of every interval.

    Returns
    -------
    report : dict
        JSON-serializable. For each decoding, ``position_accuracy``,
        ``exact_accuracy`` and ``kendall_tau``, each ``{"value", "low",
        "high"}``; ``exact_correct_count`` (int); ``p_value`` (one-sided
        binomial test of the exact-order count against 1/n!). At top level
        ``n_puzzles``, ``n_chunks`` and ``chance`` (:func:`chance`).

    Notes
    -----
    Puzzles are the independent units, slots are not: slots of one puzzle
    share its audio and, under hungarian decoding, one wrong slot forces
    another. A Wilson interval over the B*n slots would be too narrow, so
    position accuracy takes a t-interval (:func:`mean_interval`) over the
    per-puzzle fraction of slots right, as Kendall tau does over per-puzzle
    tau. Exact accuracy, one Bernoulli trial per puzzle, takes a Wilson
    interval. t-interval bounds are clipped to the metric's range.
    """
    for name in decodings:
        check_decoding(name, "decoding")
    confidence = _check_confidence(confidence)
    order = np.asarray(order)
    scores = np.asarray(scores)
    if order.ndim != 2 or order.shape[0] < 1 or order.shape[1] < 2 or scores.shape != order.shape + order.shape[1:]:
        raise ValueError(f"need order (B, n) with B >= 1, n >= 2 and scores (B, n, n), got {order.shape} and {scores.shape}")
    n_puzzles, n_chunks = order.shape
    if not np.array_equal(np.sort(order, axis=1), np.broadcast_to(np.arange(n_chunks), order.shape)):
        raise ValueError(f"every row of order must be a permutation of range({n_chunks})")
    reference = chance(n_chunks)
    report = {}
    for name in decodings:
        pred = decode(scores, method=name)
        exact = exact_correct(pred, order)
        exact_count = int(np.count_nonzero(exact))
        exact_low, exact_high = wilson_interval(exact_count, n_puzzles, confidence=confidence)
        report[name] = {
            "position_accuracy": _mean_summary(position_correct(pred, order).mean(axis=1), confidence, 0.0, 1.0),
            "exact_accuracy": {"value": exact_count / n_puzzles, "low": exact_low, "high": exact_high},
            "kendall_tau": _mean_summary(kendall_tau(pred, order), confidence, -1.0, 1.0),
            "exact_correct_count": exact_count,
            "p_value": binomial_p_value(exact_count, n_puzzles, reference["exact_accuracy"]),
        }
    report["n_puzzles"] = int(n_puzzles)
    report["n_chunks"] = int(n_chunks)
    report["chance"] = reference
    return report


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
    return {"value": float(np.mean(values)), "low": max(lowest, low), "high": min(highest, high)}

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
