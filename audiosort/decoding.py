"""Scores to orders: argmax, Hungarian assignment, best Hamiltonian paths (Held-Karp, beam search).

A puzzle has n shuffled chunks. Position scores ``(B, n, n)`` hold, in row i,
(log-)scores over the n temporal positions of the chunk in slot i; :func:`decode`
turns them into predicted positions ``(B, n)``, the form of ``order`` labels.
Join scores ``(B, n, n)`` ("slot j right after slot i") are decoded by
:func:`best_paths` into the slot at each position; :func:`positions_of` inverts
that, and :func:`certain_scores` writes an order back as position scores that
every decoding reads as that order. The decoders live apart from what they
decode for, as librosa keeps its dynamic-programming decoders in
``sequence.py``; :mod:`audiosort.metrics` scores what they return.

Example
-------
>>> scores = np.log(np.array([[[0.6, 0.4, 0.0], [0.7, 0.3, 0.0], [0.0, 0.1, 0.9]]]) + 1e-9)
>>> decode(scores, method="argmax"), decode(scores, method="hungarian")
(array([[0, 0, 2]]), array([[1, 0, 2]]))
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
from scipy import optimize
from scipy.special import log_softmax

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
    check_decoding(method, "decoding method")
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
# Partial paths kept per puzzle and direction by the beam search above EXACT_PATH_MAX_CHUNKS. Measured
# against Held-Karp on random normal scores (scripts/beam_eval.py, docs/evaluation.md): 128, both
# directions and the polish find the optimum of 0.98 of 12-chunk puzzles, where the earlier one-way
# beam of 64 without polish found 0.34; it costs 1.3x (n = 50) to 1.8x (n = 20) that beam's time.
PATH_BEAM_WIDTH = 128
# Float64 elements of the Held-Karp table (puzzles x 2**n x n) held at once: 32 MiB.
_PATH_TABLE_ELEMENTS = 1 << 22
# Float64 elements of the beam's candidates (puzzles x width x n) or the polish's moves held at once: 16 MiB.
_SEARCH_ELEMENTS = 1 << 21
# The beam ranks only this many times its width of best candidates exactly; the rest cannot make the cut
# unless more than half of those are duplicates (measured: the same paths as ranking all, 3.5x faster at n = 50).
_BEAM_PRESELECT = 2
# Segments of up to this many slots are moved by the polish (Or-opt).
_MOVED_SEGMENT_MAX = 3


def best_paths(successor, *, first=None, last=None, beam_width=PATH_BEAM_WIDTH, exact_max_chunks=EXACT_PATH_MAX_CHUNKS):
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
        Partial orders kept per puzzle and direction by the beam search (n > ``exact_max_chunks``).
    exact_max_chunks : int >= 0, keyword-only
        Held-Karp up to this many chunks, the search above (0: the search at
        every n, to measure it against Held-Karp). Held-Karp's table is
        ``(2**n, n)`` floats per puzzle: 8 MiB at n = 16.

    Returns
    -------
    sequence : np.ndarray [shape=(B, n), dtype=int64]
        ``sequence[b, k]`` is the slot at position k; each row a permutation.

    Notes
    -----
    Up to ``exact_max_chunks`` chunks the Held-Karp dynamic program
    finds the best order exactly in O(2**n n**2) per puzzle, vectorized over
    the batch and over all subsets of one size. Above it, no guarantee of the
    optimum: a beam search is run forwards (from the first slot) and backwards
    (from the last, on the transposed scores), each path it returns is polished
    by local search, and the better of the two is kept.

    The beam starts a path at every slot and, at each step, extends the partial
    orders by every unplaced slot and keeps the ``beam_width`` best, and only
    the best of those that place the same slots and end at the same one. They
    are ranked by their score plus a bound on what the rest can add: the
    smaller of the best score each unplaced slot can be entered with (plus
    the best end) and the best score each unplaced slot and the path's end can
    be left by. O(n**2 beam_width log beam_width) per puzzle and direction.

    The polish (:func:`_polish_paths`) repeats the best improving move until
    none is left: a segment of up to 3 slots moved elsewhere (Or-opt) or a
    segment reversed (2-opt), the edges included.

    On random normal scores this finds the exact optimum of 0.98 of puzzles
    of 12 chunks at the default width (docs/evaluation.md has the table).
    Ties go to the lower slot index in Held-Karp; in the beam, candidates tied
    at its cut are kept in an unspecified but deterministic order.
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
    if isinstance(exact_max_chunks, bool) or int(exact_max_chunks) != exact_max_chunks or exact_max_chunks < 0:
        raise ValueError(f"exact_max_chunks must be an int >= 0, got {exact_max_chunks!r}")
    if n_chunks <= exact_max_chunks:
        search, block = _held_karp, max(1, _PATH_TABLE_ELEMENTS // ((1 << n_chunks) * n_chunks))
    else:
        search = functools.partial(_searched_path, beam_width=int(beam_width))
        per_puzzle = max(_BEAM_PRESELECT * int(beam_width) * n_chunks, _MOVED_SEGMENT_MAX * (n_chunks + 1) ** 2)
        block = max(1, _SEARCH_ELEMENTS // per_puzzle)
    parts = [search(successor[s : s + block], first[s : s + block], last[s : s + block]) for s in range(0, n_puzzles, block)]
    return np.concatenate(parts) if parts else np.empty((0, n_chunks), dtype=np.int64)


def path_scores(successor, first, last, sequence):
    """Total score of each order, as :func:`best_paths` maximizes it.

    Parameters
    ----------
    successor : np.ndarray [shape=(B, n, n)]
    first, last : np.ndarray [shape=(B, n)]
        As for :func:`best_paths` (zeros there for None).
    sequence : np.ndarray [shape=(B, n), dtype=int]
        Slot at each position.

    Returns
    -------
    np.ndarray [shape=(B,), dtype=float64]
        ``first[s_0] + sum_k successor[s_k, s_{k+1}] + last[s_{n-1}]`` per puzzle.
    """
    sequence = np.asarray(sequence, dtype=np.int64)
    rows = np.arange(len(sequence))
    joins = np.asarray(successor, dtype=np.float64)[rows[:, None], sequence[:, :-1], sequence[:, 1:]].sum(axis=1)
    return np.asarray(first, dtype=np.float64)[rows, sequence[:, 0]] + joins + np.asarray(last, dtype=np.float64)[rows, sequence[:, -1]]


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


def _searched_path(successor, first, last, *, beam_width):
    """Beam search both ways, each polished, the better kept: (B, n, n), (B, n), (B, n) -> (B, n) slots by position."""
    forwards = _polish_paths(successor, first, last, _beam_path(successor, first, last, beam_width))
    backwards = _beam_path(np.swapaxes(successor, 1, 2), last, first, beam_width)[:, ::-1]
    backwards = _polish_paths(successor, first, last, np.ascontiguousarray(backwards))
    better = path_scores(successor, first, last, backwards) > path_scores(successor, first, last, forwards)
    return np.where(better[:, None], backwards, forwards)


def _beam_path(successor, first, last, beam_width):
    """Beam search for a good path per puzzle: successor (B, n, n), first and last (B, n) -> (B, n) slots by position."""
    n_puzzles, n_chunks = first.shape
    rows = np.arange(n_puzzles)[:, None]
    # Partial paths through the same slots that end at the same slot have the same futures: keep only the
    # best of them (Held-Karp's merge), or the beam fills with reorderings of one prefix. A set of slots is
    # named by the sum of random 64-bit codes (wrapping), so any n fits; a collision is a 2**-64 event.
    codes = np.random.default_rng(0).integers(-(2**63), 2**63 - 1, size=n_chunks, dtype=np.int64)
    # Paths are ranked by score plus a bound on what the rest can add: a path that began mid-chain has thrown
    # away one good join, and without a bound it looks as good as the true prefix until the end, when the
    # beam has lost that prefix. Every unplaced slot is still entered from a slot (the start is taken), and
    # the path's end and every unplaced slot are still left, to a slot or the end: both sums bound the rest,
    # and the smaller is the tighter (measured: 0.67 of 12-chunk puzzles exact, against 0.45 with entries
    # alone and the start counted).
    off_diagonal = ~np.eye(n_chunks, dtype=bool)
    best_entry = np.where(off_diagonal, successor, -np.inf).max(axis=1) if n_chunks > 1 else first  # (B, n)
    best_exit = np.maximum(np.where(off_diagonal, successor, -np.inf).max(axis=2), last) if n_chunks > 1 else last
    best_last = last.max(axis=1)[:, None, None]
    # Every slot starts a path: cutting to beam_width before any join is seen would judge starts blind.
    start = np.broadcast_to(np.arange(n_chunks), (n_puzzles, n_chunks))
    score = first  # (B, K)
    sequence = start[:, :, None]  # (B, K, t) slots so far
    placed = np.broadcast_to(np.eye(n_chunks, dtype=bool), (n_puzzles, n_chunks, n_chunks))
    placed_code = codes[start]  # (B, K)
    shortlist = _BEAM_PRESELECT * beam_width
    for step in range(1, n_chunks):
        extended = score[:, :, None] + successor[rows, sequence[:, :, -1]]  # (B, K, n)
        bound = np.sum(np.where(placed, 0.0, best_entry[:, None, :]), axis=2, keepdims=True) - best_entry[:, None, :]
        if step == n_chunks - 1:
            extended = extended + last[:, None, :]
        else:
            still_to_leave = np.sum(np.where(placed, 0.0, best_exit[:, None, :]), axis=2, keepdims=True)
            bound = np.minimum(bound + best_last, still_to_leave)
        extended = np.where(placed, -np.inf, extended)
        priority = (extended + bound).reshape(n_puzzles, -1)
        extended = extended.reshape(n_puzzles, -1)
        with np.errstate(over="ignore"):
            state = ((placed_code[:, :, None] + codes) * 31 + np.arange(n_chunks)).reshape(n_puzzles, -1)
        if priority.shape[1] > shortlist:
            # Only the best few can make the cut: rank those exactly, in candidate order among equals.
            best_few = np.sort(np.argpartition(-priority, shortlist, axis=1)[:, :shortlist], axis=1)
            by_score = np.take_along_axis(
                best_few, np.argsort(-np.take_along_axis(priority, best_few, axis=1), axis=1, kind="stable"), axis=1
            )
        else:
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


@functools.lru_cache(maxsize=None)
def _polish_moves(n_nodes):
    """The polish's moves on a cycle of ``n_nodes`` (node 0 the edge, never moved), as read-only int64 arrays.

    Or-opt ``(start, length, after)``: the segment ``tour[start : start + length]`` (1 <= start, start +
    length <= n_nodes, length <= 3) moved to right after the node now at ``after``. 2-opt ``(low, high)``:
    ``tour[low : high + 1]`` reversed (1 <= low < high <= n_nodes - 1).
    """
    moves = [
        (start, length, after)
        for length in range(1, _MOVED_SEGMENT_MAX + 1)
        for start in range(1, n_nodes - length + 1)
        for after in range(n_nodes)
        if not start - 1 <= after <= start + length - 1
    ]
    or_opt = np.array(moves, dtype=np.int64).reshape(-1, 3).T
    low, high = np.triu_indices(n_nodes, k=1)
    two_opt = np.stack([low[low >= 1], high[low >= 1]])
    for array in (or_opt, two_opt):
        array.setflags(write=False)
    return or_opt, two_opt


def _polish_paths(successor, first, last, sequence):
    """Local search from each path: best improving Or-opt or 2-opt move until none improves; (B, n) -> (B, n).

    The path is a cycle through the edge node 0 (slot s is node s + 1): first and last are its edges' scores,
    so moves at the ends need no special case. A move counts only if it gains more than the rounding error of
    the terms it sums, so that near-ties (and sums holding LOWEST_SCORE) cannot make it cycle.
    """
    n_puzzles, n_chunks = sequence.shape
    n_nodes = n_chunks + 1
    joins = np.full((n_puzzles, n_nodes, n_nodes), -np.inf)
    joins[:, 1:, 1:] = successor
    joins[:, 0, 1:] = first
    joins[:, 1:, 0] = last
    tour = np.concatenate([np.zeros((n_puzzles, 1), dtype=np.int64), sequence + 1], axis=1)
    (start, length, after), (low, high) = _polish_moves(n_nodes)
    node = np.arange(n_nodes)
    active = np.arange(n_puzzles)
    # Every move gains, so this ends; the cap only bounds the cost of pathological inputs.
    for _ in range(n_nodes * n_nodes):
        if active.size == 0:
            break
        t, w = tour[active], joins[active]
        rows = np.arange(active.size)[:, None]
        before, head, tail = t[:, start - 1], t[:, start], t[:, start + length - 1]
        behind, at, next_to = t[:, (start + length) % n_nodes], t[:, after], t[:, (after + 1) % n_nodes]
        terms = (
            w[rows, before, behind], w[rows, at, head], w[rows, tail, next_to],  # joins made
            -w[rows, before, head], -w[rows, tail, behind], -w[rows, at, next_to],  # joins broken
        )
        move_gain = _gain_above_rounding(sum(terms), sum(np.abs(x) for x in terms))
        # 2-opt: the reversed segment's inner joins run backwards; both directions summed along the tour.
        forward = w[rows, t, np.roll(t, -1, axis=1)]
        backward = w[rows, np.roll(t, -1, axis=1), t]
        forward_sum = np.concatenate([np.zeros((active.size, 1)), np.cumsum(forward, axis=1)], axis=1)
        backward_sum = np.concatenate([np.zeros((active.size, 1)), np.cumsum(backward, axis=1)], axis=1)
        outer = (
            w[rows, t[:, low - 1], t[:, high]], w[rows, t[:, low], t[:, (high + 1) % n_nodes]],
            -forward[:, low - 1], -forward[:, high],
        )
        inner = (backward_sum[:, high] - backward_sum[:, low]) - (forward_sum[:, high] - forward_sum[:, low])
        tour_magnitude = np.abs(forward).sum(axis=1, keepdims=True) + np.abs(backward).sum(axis=1, keepdims=True)
        reversal_gain = _gain_above_rounding(sum(outer) + inner, sum(np.abs(x) for x in outer) + tour_magnitude)
        best_move, best_reversal = np.argmax(move_gain, axis=1), np.argmax(reversal_gain, axis=1)
        picked = np.arange(active.size)
        move_gain, reversal_gain = move_gain[picked, best_move], reversal_gain[picked, best_reversal]
        improves = np.maximum(move_gain, reversal_gain) > -np.inf
        if not improves.any():
            break
        s, n, a = start[best_move][:, None], length[best_move][:, None], after[best_move][:, None]
        # Which old position lands at each new one, for a segment moved forwards (a > s) or backwards.
        forwards = np.where(node < s, node, np.where(node <= a - n, node + n, np.where(node <= a, s + node - (a - n + 1), node)))
        backwards = np.where(node <= a, node, np.where(node <= a + n, s + node - a - 1, np.where(node < s + n, node - n, node)))
        lo, hi = low[best_reversal][:, None], high[best_reversal][:, None]
        reversed_ = np.where((node >= lo) & (node <= hi), lo + hi - node, node)
        source = np.where((reversal_gain > move_gain)[:, None], reversed_, np.where(a > s, forwards, backwards))
        tour[active[improves]] = np.take_along_axis(t, source, axis=1)[improves]
        active = active[improves]
    return tour[:, 1:] - 1


def _gain_above_rounding(gain, magnitude):
    """``gain`` where it exceeds float64 rounding of sums of ``magnitude``, else -inf: (B, moves) -> (B, moves)."""
    return np.where(gain > 1e-12 * magnitude, gain, -np.inf)


def best_successor_paths(logits: np.ndarray) -> np.ndarray:
    """The best order of slots under the successor head's logits.

    A path's score is the sum, over its n + 1 joins (edge -> first slot, slot
    -> slot, last slot -> edge), of each join's row log-softmax ("j follows i")
    plus its column log-softmax ("i precedes j"): the two halves of the
    training loss.

    Parameters
    ----------
    logits : np.ndarray [shape=(B, n + 1, n + 1), finite]
        Successor logits; index n is the puzzle's edge.

    Returns
    -------
    np.ndarray [shape=(B, n), dtype=int64]
        Slot at each position, as :func:`best_paths`.
    """
    logits = np.asarray(logits, dtype=np.float64)
    joins = log_softmax(logits, axis=-1) + log_softmax(logits, axis=-2)
    joins = np.maximum(joins, LOWEST_SCORE)
    n_chunks = logits.shape[1] - 1
    return best_paths(joins[:, :n_chunks, :n_chunks], first=joins[:, n_chunks, :n_chunks], last=joins[:, :n_chunks, n_chunks])


def check_decoding(method, what="decoding"):
    """Raise AudiosortError unless ``method`` is one of :data:`DECODINGS`; ``what`` names it in the message."""
    if method not in DECODINGS:
        raise AudiosortError(f"unknown {what} {method!r}; valid: {', '.join(DECODINGS)}")
