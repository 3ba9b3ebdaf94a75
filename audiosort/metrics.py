"""Score predicted chunk orders: decoding, accuracies, Kendall tau, tests against chance.

A puzzle has n shuffled chunks. Its label ``order`` (B, n) gives, for slot i,
the temporal position (0 = earliest) of the chunk in that slot. A model gives
``scores`` (B, n, n): row i holds (log-)scores over positions for slot i,
higher meaning more likely. :func:`decode` turns scores into predicted
positions; the other functions compare predictions with labels and say whether
a model sorts better than a scorer that knows nothing about the order.

The null hypothesis throughout is "the scores carry no information about the
order". Since the sampler shuffles every puzzle uniformly, under it each slot is
right with probability 1/n, Kendall tau has mean 0 and a known distribution
(:func:`kendall_tau_p_value`), and the whole order is right with probability at
most 1/n! (exactly 1/n! when the decoding always yields a permutation, less
for argmax, which may repeat a position). Verdicts test both Kendall tau and
the exact-order count (:func:`chance_p_values`): tau has power at every n,
where the exact-order count stops having any once n! dwarfs the puzzles (a
model with tau 0.65 on 20 chunks sorts almost none exactly), and the count
sees an order known only up to its direction, where tau averages 0.

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

import functools
import itertools
import math

import numpy as np
from scipy import optimize, stats

from audiosort.errors import AudiosortError, InputError

DECODINGS = ("argmax", "hungarian")

# Above this many chunks, scoring all n! permutations is slower than one assignment solve per
# puzzle (measured on one CPU core: n=5 enumerates 1.7M puzzles/s against scipy's 0.65M/s,
# n=6 0.29M/s against 0.55M/s, n=7 0.04M/s against 0.48M/s).
_MAX_ENUMERATED_CHUNKS = 5
# Puzzles per enumeration block times n!: keeps the (block, n!) float64 totals near 2 MiB, in cache.
_ENUMERATION_ELEMENTS = 1 << 18


# Stands in for log(0) = -inf, which linear_sum_assignment rejects.
LOWEST_SCORE = -1e30


def finite_scores(scores, *, what="these puzzles"):
    """A model's log-probabilities made safe to decode: -inf (log of 0) becomes ``LOWEST_SCORE``.

    Parameters
    ----------
    scores : array-like [shape=(B, n, n)]
        Row-normalized log-probabilities from the sorter.
    what : str
        What was scored, for the error message.

    Returns
    -------
    np.ndarray [shape=(B, n, n), dtype=float64]

    Raises
    ------
    InputError
        NaN scores: the model's weights are broken.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if np.isnan(scores).any():
        raise InputError(f"the model's scores on {what} contain NaN; its weights are broken")
    return np.maximum(scores, LOWEST_SCORE)


def decode(scores, *, method="argmax"):
    """Predict each slot's temporal position from a model's scores.

    Parameters
    ----------
    scores : np.ndarray [shape=(B, n, n), finite]
        Row ``scores[b, i]`` holds (log-)scores over the n positions for slot i
        of puzzle b; higher means more likely. Any real dtype.
    method : str, keyword-only
        ``"argmax"``: each slot independently takes its best position, so two
        slots may claim the same position. ``"hungarian"``: the permutation
        maximizing ``sum_i scores[b, i, pred[b, i]]``, always a valid order.

    Returns
    -------
    pred : np.ndarray [shape=(B, n), dtype=int64]
        ``pred[b, i]`` is the predicted position of the chunk in slot i.

    Raises
    ------
    AudiosortError
        If ``method`` is not one of :data:`DECODINGS`.
    ValueError
        If ``scores`` is not a finite (B, n, n) array with n >= 1.

    Notes
    -----
    Hungarian decoding enumerates all n! permutations for n <= 5 (vectorized
    over the batch) and calls :func:`scipy.optimize.linear_sum_assignment` per
    puzzle for larger n. Both find the optimum; when several permutations tie
    for it, which one is returned may differ between the two paths. Scores are
    summed in float64.
    """
    _check_method(method, "decoding method")
    scores = np.asarray(scores)
    if scores.ndim != 3 or scores.shape[1] != scores.shape[2] or scores.shape[1] < 1:
        raise ValueError(f"scores must have shape (B, n, n) with n >= 1, got {scores.shape}")
    if not np.all(np.isfinite(scores)):
        # linear_sum_assignment rejects -inf and NaN; clip log(0) before decoding.
        n_bad = int(np.size(scores) - np.count_nonzero(np.isfinite(scores)))
        raise ValueError(f"scores contain {n_bad} non-finite values; clip log-probabilities first")
    if method == "argmax":
        return np.argmax(scores, axis=-1).astype(np.int64)
    if scores.shape[1] <= _MAX_ENUMERATED_CHUNKS:
        return _hungarian_by_enumeration(scores)
    return _hungarian_by_assignment(scores)


@functools.lru_cache(maxsize=None)
def all_permutations(n_chunks):
    """Every permutation of range(n_chunks), in lexicographic order.

    Parameters
    ----------
    n_chunks : int >= 1
        Chunks per puzzle n.

    Returns
    -------
    permutations : np.ndarray [shape=(n!, n), dtype=int64]
        Read-only and cached: the same array for every call with this n.
    """
    permutations = np.array(list(itertools.permutations(range(n_chunks))), dtype=np.int64)
    permutations.setflags(write=False)
    return permutations


def _hungarian_by_enumeration(scores):
    """Best permutation per puzzle by scoring all n! of them; scores (B, n, n) -> (B, n)."""
    n_puzzles, n_chunks = scores.shape[:2]
    permutations = all_permutations(n_chunks)
    scores = scores.astype(np.float64, copy=False)
    chunk = max(1, _ENUMERATION_ELEMENTS // len(permutations))
    best = np.empty(n_puzzles, dtype=np.int64)
    for start in range(0, n_puzzles, chunk):
        block = scores[start : start + chunk]
        # totals[b, p] = sum_i block[b, i, permutations[p, i]], one slot at a time: (chunk, n!) memory, not (chunk, n!, n).
        totals = np.take(block[:, 0], permutations[:, 0], axis=1)
        for slot in range(1, n_chunks):
            totals += np.take(block[:, slot], permutations[:, slot], axis=1)
        best[start : start + chunk] = np.argmax(totals, axis=1)
    return permutations[best]


def _hungarian_by_assignment(scores):
    """Best permutation per puzzle with one assignment solve each; scores (B, n, n) -> (B, n)."""
    pred = np.empty(scores.shape[:2], dtype=np.int64)
    for b, puzzle_scores in enumerate(scores):
        _, pred[b] = optimize.linear_sum_assignment(puzzle_scores, maximize=True)
    return pred


# Held-Karp keeps (2**n, n) best partial paths per puzzle: 12 chunks are 49k states, 13 twice that.
EXACT_PATH_MAX_CHUNKS = 12
# Partial paths kept per puzzle by the beam search above EXACT_PATH_MAX_CHUNKS.
PATH_BEAM_WIDTH = 64
# Float64 elements of the Held-Karp table (puzzles x 2**n x n) held at once: 32 MiB.
_PATH_TABLE_ELEMENTS = 1 << 22


def best_paths(successor, *, first=None, last=None, beam_width=PATH_BEAM_WIDTH):
    """The order of slots with the highest total join score: a best Hamiltonian path per puzzle.

    An order (slots s_0 ... s_{n-1}, slot s_k at position k) scores
    ``first[s_0] + sum_k successor[s_k, s_{k+1}] + last[s_{n-1}]``.

    Parameters
    ----------
    successor : np.ndarray [shape=(B, n, n), finite]
        ``successor[b, i, j]``: score of the chunk in slot j coming right
        after the one in slot i; higher is better. The diagonal is ignored.
    first, last : np.ndarray [shape=(B, n), finite] or None, keyword-only
        Scores of starting (ending) the order with each slot; None for zeros.
    beam_width : int >= 1, keyword-only
        Partial orders kept per puzzle by the beam search (n > 12).

    Returns
    -------
    sequence : np.ndarray [shape=(B, n), dtype=int64]
        ``sequence[b, k]`` is the slot at position k; each row a permutation.

    Notes
    -----
    Up to :data:`EXACT_PATH_MAX_CHUNKS` chunks the Held-Karp dynamic program
    finds the best order exactly in O(2**n n**2) per puzzle, vectorized over
    the batch and over all subsets of one size. Above it, a beam search starts
    a path at every slot and, at each step, extends the partial orders by every
    unplaced slot and keeps the ``beam_width`` best, ranked by their score plus
    the best score each unplaced slot could still be entered with, and only the
    best of those that place the same slots and end at the same one:
    O(n**2 beam_width log(n beam_width)) per puzzle, with no guarantee of the
    optimum. Ties go to the lower slot index.
    """
    successor = np.asarray(successor, dtype=np.float64)
    if successor.ndim != 3 or successor.shape[1] != successor.shape[2] or successor.shape[1] < 1:
        raise ValueError(f"successor must have shape (B, n, n) with n >= 1, got {successor.shape}")
    n_puzzles, n_chunks = successor.shape[:2]
    first = np.zeros((n_puzzles, n_chunks)) if first is None else np.asarray(first, dtype=np.float64)
    last = np.zeros((n_puzzles, n_chunks)) if last is None else np.asarray(last, dtype=np.float64)
    if first.shape != (n_puzzles, n_chunks) or last.shape != (n_puzzles, n_chunks):
        raise ValueError(f"first and last must have shape {(n_puzzles, n_chunks)}, got {first.shape} and {last.shape}")
    if not (np.all(np.isfinite(successor)) and np.all(np.isfinite(first)) and np.all(np.isfinite(last))):
        raise ValueError("successor, first and last scores must be finite; clip log-probabilities first")
    if isinstance(beam_width, bool) or int(beam_width) != beam_width or beam_width < 1:
        raise ValueError(f"beam_width must be a positive int, got {beam_width!r}")
    if n_chunks <= EXACT_PATH_MAX_CHUNKS:
        block = max(1, _PATH_TABLE_ELEMENTS // ((1 << n_chunks) * n_chunks))
        parts = [
            _held_karp(successor[s : s + block], first[s : s + block], last[s : s + block])
            for s in range(0, n_puzzles, block)
        ]
        return np.concatenate(parts) if parts else np.empty((0, n_chunks), dtype=np.int64)
    return _beam_path(successor, first, last, int(beam_width))


def positions_of(sequence):
    """Invert orders of slots into positions: ``sequence (B, n)`` slots by position -> ``(B, n)`` position per slot.

    Parameters
    ----------
    sequence : np.ndarray [shape=(B, n), dtype=int]
        ``sequence[b, k]`` is the slot at position k (as :func:`best_paths` returns).

    Returns
    -------
    positions : np.ndarray [shape=(B, n), dtype=int64]
        ``positions[b, i]`` is the position of slot i: the form of ``order`` labels and :func:`decode`.
    """
    sequence = np.asarray(sequence)
    positions = np.empty(sequence.shape, dtype=np.int64)
    np.put_along_axis(positions, sequence.astype(np.int64), np.arange(sequence.shape[1])[None, :], axis=1)
    return positions


def certain_scores(positions):
    """Position scores that say one order for sure: 0.0 at each slot's position, :data:`LOWEST_SCORE` elsewhere.

    Parameters
    ----------
    positions : np.ndarray [shape=(B, n), dtype=int]
        Position of each slot.

    Returns
    -------
    scores : np.ndarray [shape=(B, n, n), dtype=float64]
        Log-probabilities of certainty, which argmax and hungarian decoding both read back as ``positions``.
    """
    positions = np.asarray(positions)
    return np.where(positions[:, :, None] == np.arange(positions.shape[1]), 0.0, LOWEST_SCORE)


def _held_karp(successor, first, last):
    """Exact best path per puzzle: successor (B, n, n), first and last (B, n) -> (B, n) slots by position."""
    n_puzzles, n_chunks = first.shape
    full = (1 << n_chunks) - 1
    masks = np.arange(1 << n_chunks)
    sizes = np.array([bin(m).count("1") for m in masks])
    # best[b, mask, j]: best score of a path through exactly the slots in mask, ending at slot j.
    best = np.full((n_puzzles, 1 << n_chunks, n_chunks), -np.inf)
    parent = np.zeros((n_puzzles, 1 << n_chunks, n_chunks), dtype=np.int8 if n_chunks < 128 else np.int64)
    singles = 1 << np.arange(n_chunks)
    best[:, singles, np.arange(n_chunks)] = first
    for size in range(2, n_chunks + 1):
        of_size = masks[sizes == size]
        for end in range(n_chunks):
            holding = of_size[(of_size >> end) & 1 == 1]
            # Paths through holding minus end, extended by end: (B, subsets, previous end).
            extended = best[:, holding ^ (1 << end), :] + successor[:, None, :, end]
            parent[:, holding, end] = np.argmax(extended, axis=2)
            best[:, holding, end] = np.max(extended, axis=2)
    rows = np.arange(n_puzzles)
    current = np.argmax(best[:, full, :] + last, axis=1)
    mask = np.full(n_puzzles, full)
    sequence = np.empty((n_puzzles, n_chunks), dtype=np.int64)
    for position in range(n_chunks - 1, -1, -1):
        sequence[:, position] = current
        previous = parent[rows, mask, current].astype(np.int64)
        mask = mask ^ (1 << current)
        current = previous
    return sequence


def _beam_path(successor, first, last, beam_width):
    """Beam search for a good path per puzzle: successor (B, n, n), first and last (B, n) -> (B, n) slots by position."""
    n_puzzles, n_chunks = first.shape
    rows = np.arange(n_puzzles)[:, None]
    # Partial paths through the same slots that end at the same slot have the same futures: keep only the
    # best of them (Held-Karp's merge), or the beam fills with reorderings of one prefix. A set of slots is
    # named by the sum of random 64-bit codes (wrapping), so any n fits; a collision is a 2**-64 event.
    codes = np.random.default_rng(0).integers(-(2**63), 2**63 - 1, size=n_chunks, dtype=np.int64)
    # Paths are ranked by score plus the best score each unplaced slot could still be entered with (its
    # best predecessor or the start): a path that began mid-chain has thrown away one good join, and
    # without this it looks as good as the true prefix until the end, when the beam has lost that prefix.
    rest = np.where(np.eye(n_chunks, dtype=bool), -np.inf, successor).max(axis=1) if n_chunks > 1 else first
    best_entry = np.maximum(rest, first)  # (B, n)
    # Every slot starts a path: cutting to beam_width before any join is seen would judge starts blind.
    start = np.broadcast_to(np.arange(n_chunks), (n_puzzles, n_chunks))
    score = first  # (B, K)
    sequence = start[:, :, None]  # (B, K, t) slots so far
    placed = np.broadcast_to(np.eye(n_chunks, dtype=bool), (n_puzzles, n_chunks, n_chunks))
    placed_code = codes[start]  # (B, K)
    for step in range(1, n_chunks):
        extended = score[:, :, None] + successor[rows, sequence[:, :, -1]]  # (B, K, n)
        if step == n_chunks - 1:
            extended = extended + last[:, None, :]
        extended = np.where(placed, -np.inf, extended)
        still_to_enter = np.sum(np.where(placed, 0.0, best_entry[:, None, :]), axis=2, keepdims=True)
        priority = (extended + still_to_enter - best_entry[:, None, :]).reshape(n_puzzles, -1)
        extended = extended.reshape(n_puzzles, -1)
        with np.errstate(over="ignore"):
            state = ((placed_code[:, :, None] + codes) * 31 + np.arange(n_chunks)).reshape(n_puzzles, -1)
        by_score = np.argsort(-priority, axis=1, kind="stable")
        state = np.take_along_axis(state, by_score, axis=1)
        by_state = np.argsort(state, axis=1, kind="stable")  # within a state, best score first
        grouped = np.take_along_axis(state, by_state, axis=1)
        repeated = np.zeros_like(grouped, dtype=bool)
        repeated[:, 1:] = grouped[:, 1:] == grouped[:, :-1]
        duplicate = np.empty_like(repeated)
        np.put_along_axis(duplicate, by_state, repeated, axis=1)
        candidate_score = np.where(duplicate, -np.inf, np.take_along_axis(priority, by_score, axis=1))
        width = min(beam_width, (n_chunks - step) * sequence.shape[1])
        kept = np.take_along_axis(by_score, np.argsort(-candidate_score, axis=1, kind="stable")[:, :width], axis=1)
        beam, slot = np.divmod(kept, n_chunks)
        score = np.take_along_axis(extended, kept, axis=1)
        sequence = np.concatenate([sequence[rows, beam], slot[:, :, None]], axis=2)
        placed = placed[rows, beam]
        np.put_along_axis(placed, slot[:, :, None], True, axis=2)
        with np.errstate(over="ignore"):
            placed_code = placed_code[rows, beam] + codes[slot]
    return sequence[np.arange(n_puzzles), np.argmax(score, axis=1)]


def position_correct(pred, order):
    """Whether each slot got its true position.

    Parameters
    ----------
    pred : np.ndarray [shape=(B, n), dtype=int]
        Predicted position of the chunk in each slot (from :func:`decode`).
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
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
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
    z = stats.norm.ppf(0.5 + _check_confidence(confidence) / 2)
    proportion = successes / trials
    denominator = 1 + z**2 / trials
    center = (proportion + z**2 / (2 * trials)) / denominator
    half_width = z / denominator * math.sqrt(proportion * (1 - proportion) / trials + z**2 / (4 * trials**2))
    # Rounding would otherwise leave 1e-17 instead of exactly 0 (or 1) at the edges.
    low = 0.0 if successes == 0 else max(0.0, center - half_width)
    high = 1.0 if successes == trials else min(1.0, center + half_width)
    return float(low), float(high)


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


def chance_p_values(pred, order):
    """The test behind every verdict: Kendall tau or the exact-order count above chance, Bonferroni over the two.

    Parameters
    ----------
    pred : np.ndarray [shape=(B, n), dtype=int]
        Predicted positions (:func:`decode`).
    order : np.ndarray [shape=(B, n), dtype=int]
        True positions, a permutation of range(n) per puzzle.

    Returns
    -------
    p_values : dict
        ``tau_p_value`` (:func:`kendall_tau_p_value`), ``exact_p_value``
        (:func:`binomial_p_value` of the exact-order count against 1/n!) and
        ``p_value``: ``min(1, 2 min(tau_p_value, exact_p_value))``, the
        verdict's, all in [0, 1].

    Notes
    -----
    Each statistic is blind where the other sees. The exact-order count has no
    power once n! dwarfs the puzzles (at n = 20 almost no puzzle is exact even
    for a model with tau 0.65). Kendall tau has none for an order known only up
    to its direction: a tone's phase steps v and -v are often equally likely,
    so an observer of a shared gap restores the order or its reverse as a coin
    flips, with mean tau 0 and exact-order accuracy far above 1/n!. Taking
    the smaller p-value, doubled (Bonferroni), keeps the false-positive rate
    at most alpha and sees both; it costs half of alpha where only one of
    them can fire (measured over 2000 random models of 200 puzzles: 0.5% below
    0.01 at n=3 and at n=20, against 1.1% and 0.9% for tau alone).
    """
    pred, order = _check_pair(pred, order)
    exact_count = int(np.count_nonzero(exact_correct(pred, order)))
    tau_p = kendall_tau_p_value(pred, order)
    exact_p = binomial_p_value(exact_count, len(order), 1.0 / math.factorial(order.shape[1]))
    return {"p_value": min(1.0, 2.0 * min(tau_p, exact_p)), "tau_p_value": tau_p, "exact_p_value": exact_p}


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
    return float(stats.binom.sf(only_a - 1, only_a + only_b, 0.5))


def score_puzzles(scores, order, *, decodings=DECODINGS, confidence=0.95):
    """Accuracies with confidence intervals and a test against chance, per decoding.

    Parameters
    ----------
    scores : np.ndarray [shape=(B, n, n), finite]
        Model scores, row i over positions for slot i (see :func:`decode`).
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
        "high"}``; ``exact_correct_count`` (int); ``p_value``,
        ``tau_p_value`` and ``exact_p_value`` (:func:`chance_p_values`:
        ``p_value`` is the one every verdict tests). At top level
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
        _check_method(name, "decoding")
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
            **chance_p_values(pred, order),
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
    if isinstance(n_tests, bool) or not isinstance(n_tests, (int, np.integer)) or n_tests < 1:
        raise ValueError(f"n_tests must be an int >= 1, got {n_tests!r}")
    return "above_chance" if p_value < alpha / n_tests else "at_chance"


def _mean_summary(values, confidence, lowest, highest):
    """Mean of per-puzzle values with its t-interval clipped to [lowest, highest], as plain floats."""
    low, high = mean_interval(values, confidence=confidence)
    return {"value": float(np.mean(values)), "low": max(lowest, low), "high": min(highest, high)}


def _check_method(method, what):
    if method not in DECODINGS:
        raise AudiosortError(f"unknown {what} {method!r}; valid: {', '.join(DECODINGS)}")


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
