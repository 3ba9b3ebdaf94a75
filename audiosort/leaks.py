"""Ideal observers of the sanity sets: how well the puzzle pipeline lets anyone sort them.

A sanity set "at chance" is only worth something next to the accuracy an
observer that knows exactly how the audio and the gaps were made could reach
on it (DESIGN.md, "Leaks to know"). If that observer is at chance, the pipeline
leaks no order; if it is not, a model at chance was merely too weak to find the
leak. Each function here gives that observer's exact-order accuracy, its
Kendall tau (chance 0) and its share of true neighbours found (chance 2/n),
which the verdicts test: at 20 chunks even an observer that sorts most of each
puzzle restores almost no whole order, and one that links a chunk to its
neighbour here and there (brown noise across short gaps) has a tau near 0.

- White noise: samples are independent, so every order of the chunks is
  equally likely whatever the gaps: exactly 1/n!, tau 0.
- Tone: a chunk tells its phase and nothing else, so the observer sees the
  phases of the n slots relative to slot 0. Enumerating every order and every
  combination of gaps gives the exact accuracy where that fits (up to 6
  chunks); above, the observer decodes the puzzles themselves: the best path
  through the phase steps' likelihoods, or a shared step's progression
  extrapolated over the whole order (:func:`ideal_tone_accuracy`).
- Brown noise: a Markov process, so the chunk edges carry everything; the
  observer picks the order with the highest likelihood of the edge samples,
  the best path through the join likelihoods, scored on the puzzles
  themselves (:func:`ideal_brown_accuracy`).

Example
-------
>>> spec = PuzzleSpec(n_chunks=2, chunk_samples=3200, pad_min_samples=0, pad_max_samples=160)
>>> round(ideal_tone_accuracy(spec, sample_rate=16000, method="exact").exact_accuracy, 3)
0.997
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from typing import NamedTuple

import numpy as np
from scipy.special import logsumexp

from audiosort import decoding, metrics
from audiosort.data import synthetic
from audiosort.data.puzzles import PuzzleSpec
from audiosort.errors import InputError

# (order, gap combination) pairs enumerated at most for the tone; beyond it the observer runs on the
# puzzles. n=3 exact 440 Hz with 10 ms gaps at 16 kHz: 155k.
_MAX_TONE_OUTCOMES = 1 << 22
# Chunks the tone's enumeration goes to at most: its (n!, n!) table of Kendall taus stays small.
_MAX_ENUMERATED_CHUNKS = 6
# Orders the brown-noise observer of a shared gap scores per puzzle at most (n <= 6).
_MAX_BROWN_ORDERS = 720
# Gap values the brown-noise observer averages its joins over at most.
_MAX_BROWN_GAPS = 64
# Floats held at once by the brown-noise observer's per-gap likelihoods.
_BLOCK_ELEMENTS = 1 << 22
# Largest denominator of the exact tone's phase step per sample, in cycles: steps
# closer than 1 / (sample_rate * 1e6) cycle count as equal (no 16-bit chunk tells them apart).
_MAX_PHASE_DENOMINATOR = 10**6


class IdealObserver(NamedTuple):
    """An ideal observer's accuracy on a sanity set, and how it was obtained.

    Attributes
    ----------
    exact_accuracy : float in [0, 1]
        Probability of restoring the whole order (its estimate on the puzzles).
    kendall_tau : float in [-1, 1]
        Mean Kendall tau between its order and the true one: what the verdicts
        test, with power at every n (chance 0).
    neighbour_share : float in [0, 1]
        Mean share of the chunk pairs it places side by side that are
        neighbours in time, either way round
        (:func:`audiosort.metrics.neighbours_found`; chance 2/n).
    n_chunks : int >= 2
        Chunks per puzzle.
    method : str
        How it was obtained, in words.
    monte_carlo_puzzles : int or None
        Puzzles it was estimated on, where it is a Monte Carlo estimate (brown
        noise; the tone at many chunks); None where it is exact.
    p_value : float in [0, 1] or None
        Where it is a Monte Carlo estimate, the p-value of its guesses against
        chance, by the test of the verdicts
        (:func:`audiosort.metrics.chance_p_values`: Kendall tau or the
        exact-order count); None where exact (no sampling noise to test).
    neighbour_p_value : float in [0, 1] or None
        Where it is a Monte Carlo estimate, the p-value of the true neighbours
        it found against chance (:func:`audiosort.metrics.neighbour_p_value`,
        the neighbours' own test); None where exact.
    """

    exact_accuracy: float
    kendall_tau: float
    neighbour_share: float
    n_chunks: int
    method: str
    monte_carlo_puzzles: int | None = None
    p_value: float | None = None
    neighbour_p_value: float | None = None

    @property
    def chance(self) -> float:
        """1 / n_chunks!: the exact-order accuracy no information gives (Kendall tau: 0)."""
        return 1.0 / math.factorial(self.n_chunks)


def ideal_noise_accuracy(spec: PuzzleSpec) -> IdealObserver:
    """White noise: exactly chance, 1 / n!, tau 0 and neighbours 2 / n, for any gaps (independent samples carry no order)."""
    return IdealObserver(
        1.0 / math.factorial(spec.n_chunks), 0.0, 2.0 / spec.n_chunks, spec.n_chunks,
        "exact: independent samples carry no order",
    )


def ideal_tone_accuracy(
    spec: PuzzleSpec,
    *,
    sample_rate: int,
    frequency_hz: float = 440.0,
    method: str = "tiled",
    starts: np.ndarray | None = None,
    order: np.ndarray | None = None,
) -> IdealObserver:
    """Accuracy of an observer that measures each chunk's phase exactly and knows how the gaps are drawn.

    Parameters
    ----------
    spec : PuzzleSpec
        Chunk length, gap range and ``pad_mode`` (per_gap, shared or fixed),
        in samples.
    sample_rate : int > 0
        Hz.
    frequency_hz : float > 0, keyword-only
        Requested tone frequency, in Hz, as given to
        :func:`audiosort.data.synthetic.tone`.
    method : {"tiled", "exact"}, keyword-only
        The tone's construction: ``"tiled"`` repeats one period of
        ``round(sample_rate / frequency_hz)`` samples; ``"exact"`` is a sine
        at ``frequency_hz``.
    starts, order : np.ndarray [shape=(B, n), dtype=int], optional, keyword-only
        The puzzles' chunk offsets within their track, in samples, and labels
        (:class:`audiosort.data.puzzles.Puzzles`). Needed where the
        enumeration is too large: the observer is then run on these puzzles.

    Returns
    -------
    IdealObserver
        Exact where every (order, gap combination) pair can be enumerated (at
        most 6 chunks and 4M pairs), else a Monte Carlo estimate on the
        puzzles given, with its p-value against chance.

    Raises
    ------
    InputError
        Unknown ``method`` or a frequency outside (0, sample_rate / 2).
    ValueError
        The enumeration is too large and no puzzles were given.

    Notes
    -----
    The tone's start phase is uniform, so a chunk's absolute phase says
    nothing; the observation is the phase of each slot relative to slot 0.
    From one chunk's start to the next, the phase advances by
    ``(L + g) * c mod 1`` cycles, with L the chunk length, g the gap and c the
    cycles per sample (``1 / period`` tiled, ``frequency_hz / sample_rate``
    exact). The observer picks the most likely order given the phases.

    Exact: every order of the slots and every gap combination (independent
    per gap, one shared gap, or the fixed gap) is enumerated with its
    probability; the accuracy is the sum over observations of the largest
    P(observation | order), divided by n!, and Kendall tau and the neighbours
    found are averaged the same way. For n=2 this reduces to comparing the step ``(L + g) c`` with
    its negative (the reversed order). Tiled, with period p and gaps covering
    k whole periods, every residue is equally likely and the accuracy is 0.5;
    otherwise some residues are one count more likely, and whether their
    negatives are too depends on ``2 L mod p``: the chunk length matters
    (0.2 s at 16 kHz with gaps 0-160 samples: 0.525, 0.05 s: 0.512). Exact
    440 Hz at 16 kHz advances 11/400 cycle per sample, so the 161 steps of gaps
    0-160 and their negatives coincide only where ``2 L + g1 + g2`` is a
    multiple of 400: once for 0.2 s chunks (g1 = g2 = 0), giving 321/322 = 0.997.

    Monte Carlo, per gap: the steps are independent, so P(phases | order) is
    the product of P(step) over consecutive chunks and the most likely order
    is the best path through ``log P(phase_j - phase_i)``, found by the search
    that decodes the continuity baseline (:func:`audiosort.decoding.best_paths`:
    exact up to 12 chunks, beam search above). Shared or fixed: every step is
    the same v, so the phases in temporal order are ``p0 + k v``; the
    observer extrapolates that progression for each possible v, most likely
    first, and takes the first that the slots' phases fill (where several v
    fit one order it counts only the likeliest, a hair below the optimum).
    """
    if method not in synthetic.TONE_METHODS:
        raise InputError(f"unknown tone method {method!r}; choose one of {', '.join(synthetic.TONE_METHODS)}")
    if not 0 < frequency_hz < sample_rate / 2:
        raise InputError(f"tone frequency {frequency_hz} Hz must be > 0 and below half the sample rate ({sample_rate} Hz)")
    if method == "tiled":
        cycles_per_sample = Fraction(1, round(sample_rate / frequency_hz))
    else:
        cycles_per_sample = Fraction(frequency_hz).limit_denominator(_MAX_PHASE_DENOMINATOR) / sample_rate
    # Phases live on the lattice of 1/cycle_units cycle, as exact integers.
    step_units, cycle_units = cycles_per_sample.numerator % cycles_per_sample.denominator, cycles_per_sample.denominator
    gaps, gap_weights = _gap_distribution(spec)
    # Phase advance from one chunk's start to the next, per possible gap, in lattice units.
    advance = np.array([(spec.chunk_samples + int(g)) * step_units % cycle_units for g in gaps[:, 0]], dtype=np.int64)
    values, inverse = np.unique(advance, return_inverse=True)
    value_weights = np.bincount(inverse.reshape(-1), weights=gap_weights)
    n_chunks = spec.n_chunks
    combinations = len(values) ** (n_chunks - 1) if spec.pad_mode == "per_gap" else len(values)
    if n_chunks <= _MAX_ENUMERATED_CHUNKS and math.factorial(n_chunks) * combinations <= _MAX_TONE_OUTCOMES:
        return _enumerated_tone(spec, values, value_weights, cycle_units, method)
    if starts is None or order is None:
        raise ValueError(
            f"{math.factorial(n_chunks) * combinations:.3g} (order, gap) pairs are too many to enumerate; "
            "give the puzzles' starts and order"
        )
    starts = np.asarray(starts, dtype=np.int64)
    order = np.asarray(order, dtype=np.int64)
    # Relative phases of the slots, as the chunks show them (same track: the start phase cancels).
    phases = (starts - starts[:, :1]) % cycle_units * step_units % cycle_units
    if spec.pad_mode == "per_gap":
        log_step = np.full(cycle_units, decoding.LOWEST_SCORE)
        log_step[values] = np.log(value_weights)
        steps = (phases[:, None, :] - phases[:, :, None]) % cycle_units  # steps[b, i, j]: slot i's phase to slot j's
        guessed = decoding.positions_of(decoding.best_paths(log_step[steps]))
        how = f"{method} tone: most likely order of the phase steps (best path), Monte Carlo on these {len(order)} puzzles"
    else:
        guessed = _progression_positions(phases, values, value_weights, cycle_units)
        how = f"{method} tone: phases extrapolated at every possible step, Monte Carlo on these {len(order)} puzzles"
    return _observed(guessed, order, how)


def _enumerated_tone(spec, values, value_weights, cycle_units, method) -> IdealObserver:
    """The tone observer's exact accuracy and Kendall tau by enumerating orders and gap combinations."""
    n_steps = spec.n_chunks - 1
    # Every gap combination as steps (combinations, n - 1) with its probability (combinations,).
    if spec.pad_mode == "per_gap":
        index = np.array(list(itertools.product(range(len(values)), repeat=n_steps)), dtype=np.int64)
        steps, weights = values[index], np.prod(value_weights[index], axis=1)
    else:
        steps, weights = np.repeat(values[:, None], n_steps, axis=1), value_weights
    # Phase at each chunk's start, in temporal order, relative to the first: (combinations, n).
    phases = np.concatenate([np.zeros((len(steps), 1), np.int64), np.cumsum(steps, axis=1) % cycle_units], axis=1)
    orders = _orders(spec.n_chunks)  # orders[o, i]: temporal position of slot i
    slot_phases = phases[:, orders]  # (combinations, orders, n)
    observed = (slot_phases[..., 1:] - slot_phases[..., :1]) % cycle_units
    observed = observed.reshape(-1, n_steps)
    if cycle_units**n_steps < 2**62:
        # One integer per observation: a 1-D unique is ~10x faster than unique over rows.
        observed = observed @ cycle_units ** np.arange(n_steps, dtype=np.int64)
    outcomes, which = np.unique(observed, axis=0, return_inverse=True)
    # likelihood[outcome, order] = P(outcome | order), accumulated over gap combinations.
    cells = which.reshape(-1) * len(orders) + np.tile(np.arange(len(orders)), len(steps))
    likelihood = np.bincount(cells, weights=np.repeat(weights, len(orders)), minlength=len(outcomes) * len(orders))
    likelihood = likelihood.reshape(len(outcomes), len(orders))
    accuracy = float(likelihood.max(axis=1).sum() / len(orders))
    # tau_between[a, t]: Kendall tau of guessing order a when the truth is order t.
    guesses, truths = np.repeat(orders, len(orders), axis=0), np.tile(orders, (len(orders), 1))
    tau_between = metrics.kendall_tau(guesses, truths).reshape(len(orders), len(orders))
    neighbours_between = metrics.neighbours_found(guesses, truths).reshape(len(orders), len(orders))
    guess = np.argmax(likelihood, axis=1)
    tau = float(np.sum(likelihood * tau_between[guess]) / len(orders))
    neighbours = float(np.sum(likelihood * neighbours_between[guess]) / len(orders))
    how = f"{method} tone: phase steps of all {len(orders)} orders x {len(steps)} gap combinations enumerated"
    return IdealObserver(min(accuracy, 1.0), tau, neighbours, spec.n_chunks, how)


def _progression_positions(phases, values, value_weights, cycle_units) -> np.ndarray:
    """Positions (B, n) of the likeliest shared step whose progression the phases (B, n) fill; slot order where none."""
    n_puzzles, n_chunks = phases.shape
    guessed = np.broadcast_to(np.arange(n_chunks), phases.shape).copy()
    best_weight = np.full(n_puzzles, -np.inf)
    for rank in np.argsort(-value_weights, kind="stable"):
        progression = np.arange(n_chunks, dtype=np.int64) * values[rank] % cycle_units  # phase of position k
        by_phase = np.argsort(progression, kind="stable")
        for first in range(n_chunks):
            relative = (phases - phases[:, first : first + 1]) % cycle_units
            slots_by_phase = np.argsort(relative, axis=1, kind="stable")
            fits = np.all(np.take_along_axis(relative, slots_by_phase, axis=1) == progression[by_phase], axis=1)
            fits &= value_weights[rank] > best_weight
            if not fits.any():
                continue
            candidate = np.empty_like(guessed)
            np.put_along_axis(candidate, slots_by_phase, np.broadcast_to(by_phase, phases.shape), axis=1)
            guessed[fits] = candidate[fits]
            best_weight[fits] = value_weights[rank]
    return guessed


def ideal_brown_accuracy(chunks: np.ndarray, order: np.ndarray, spec: PuzzleSpec, *, sample_rate: int) -> IdealObserver:
    """Accuracy, on the given puzzles, of the maximum-likelihood observer of brown noise.

    Parameters
    ----------
    chunks : np.ndarray [shape=(B, n, L), dtype=int16]
        Puzzles cut from :func:`audiosort.data.synthetic.brown_noise` audio.
    order : np.ndarray [shape=(B, n), dtype=int]
        Their labels (temporal position of each slot).
    spec : PuzzleSpec
        The gap range and ``pad_mode`` the puzzles were cut with, in samples.
    sample_rate : int > 0
        Hz; sets the noise's pole (5 Hz).

    Returns
    -------
    IdealObserver
        A Monte Carlo estimate on these puzzles, with its p-value against chance.

    Notes
    -----
    The noise is a stationary Gaussian AR(1) process with pole
    ``a = exp(-2 pi 5 / sample_rate)``: given the last sample x of one chunk
    and a gap of g samples, the next chunk starts at ``N(a^(g+1) x,
    s^2 (1 - a^(2 (g+1))))``, s the noise's standard deviation (estimated from
    the chunks). By the Markov property the likelihood of an order is the
    stationary density of its first chunk's first sample times these
    transitions (averaged over the gap distribution); the rest of each chunk
    is the same under every order. Per gap (and fixed), the likelihood is a
    product of joins, so the most likely order is the best path through the
    join log-likelihoods, found by the search that decodes the continuity
    baseline and the successor head (:func:`audiosort.decoding.best_paths`:
    Held-Karp, exact, up to 12 chunks; beam search above). A shared gap ties
    the joins together: up to 6 chunks every order is scored; above, the
    joins are scored as if each gap were drawn on its own (a weaker observer,
    so a lower bound). Over more than 64 gap values the average runs over
    64 evenly spaced ones (the density varies smoothly with the gap). This
    is a Monte Carlo estimate of the Bayes-optimal observer, exact up to the
    per-track normalization and int16 rounding, which it ignores. Short gaps
    leave the edges strongly correlated (about 0.8 for n=2 with gaps of
    0-10 ms at 16 kHz), so brown noise at chance then says the model did not
    use continuity, not that it could not.
    """
    n_chunks = chunks.shape[1]
    order = np.asarray(order, dtype=np.int64)
    samples = chunks.astype(np.float64)
    variance = float(samples.var())
    starts, ends = samples[:, :, 0], samples[:, :, -1]
    gaps, gap_weights = _gap_distribution(spec)
    if len(gaps) > _MAX_BROWN_GAPS:
        gaps = gaps[np.linspace(0, len(gaps) - 1, _MAX_BROWN_GAPS).round().astype(np.int64)]
        gap_weights = np.full(len(gaps), 1.0 / len(gaps))
    gap_values = gaps[:, 0]
    correlation = math.exp(-2 * math.pi * synthetic.BROWN_NOISE_LEAK_HZ / sample_rate) ** (gap_values + 1.0)
    conditional_variance = variance * (1.0 - correlation**2)
    enumerate_orders = spec.pad_mode == "shared" and math.factorial(n_chunks) <= _MAX_BROWN_ORDERS
    orders = _orders(n_chunks) if enumerate_orders else None
    log_weights = np.log(gap_weights)
    block = max(1, _BLOCK_ELEMENTS // (n_chunks * max(n_chunks, len(orders) if enumerate_orders else 1) * len(gap_values)))
    guessed = np.empty_like(order)
    for first in range(0, len(chunks), block):
        rows = slice(first, first + block)
        end_sample = ends[rows, :, None, None]
        start_sample = starts[rows, None, :, None]
        # transition[b, i, j, g]: log density of slot j's first sample following slot i's last across gap g.
        residual = start_sample - correlation * end_sample
        transition = -0.5 * (residual**2 / conditional_variance + np.log(conditional_variance))
        opening = -0.5 * starts[rows] ** 2 / variance  # (b, n): stationary density of a first sample
        if enumerate_orders:
            sequence = np.argsort(orders, axis=1)  # sequence[o, k]: slot at temporal position k
            joined = transition[:, sequence[:, :-1], sequence[:, 1:]].sum(axis=2)
            likelihood = opening[:, sequence[:, 0]] + logsumexp(joined + log_weights, axis=-1)
            guessed[rows] = orders[np.argmax(likelihood, axis=1)]
        else:
            joins = np.maximum(logsumexp(transition + log_weights, axis=-1), decoding.LOWEST_SCORE)
            guessed[rows] = decoding.positions_of(decoding.best_paths(joins, first=opening))
    search = "every order scored" if enumerate_orders else "best path through the joins"
    return _observed(guessed, order, f"brown noise, most likely order from the chunk edges ({search}), Monte Carlo on "
                     f"these {len(chunks)} puzzles")


def _observed(guessed: np.ndarray, order: np.ndarray, how: str) -> IdealObserver:
    """A Monte Carlo observer's accuracy, Kendall tau, neighbours and p-values from its guesses (B, n) and the labels (B, n)."""
    p_values = metrics.chance_p_values(guessed, order)
    return IdealObserver(
        float(np.mean(metrics.exact_correct(guessed, order))),
        float(np.mean(metrics.kendall_tau(guessed, order))),
        float(np.mean(metrics.neighbours_found(guessed, order))),
        order.shape[1],
        how,
        monte_carlo_puzzles=len(order),
        p_value=p_values["p_value"],
        neighbour_p_value=p_values["neighbour_p_value"],
    )


def _gap_distribution(spec: PuzzleSpec) -> tuple[np.ndarray, np.ndarray]:
    """Possible gaps of one step, in samples ``(G, 1)`` int64, and their probabilities ``(G,)``.

    ``per_gap`` and ``shared`` draw each step's gap uniformly among the
    multiples of ``grid_samples`` in the range (shared then repeats it);
    ``fixed`` always uses ``pad_max_samples``.
    """
    if spec.pad_mode == "fixed":
        return np.array([[spec.pad_max_samples]], dtype=np.int64), np.ones(1)
    gaps = np.arange(spec.pad_min_samples, spec.pad_max_samples + 1, spec.grid_samples, dtype=np.int64)[:, None]
    return gaps, np.full(len(gaps), 1.0 / len(gaps))


def _orders(n_chunks: int) -> np.ndarray:
    """All n! labels ``(n!, n)`` int64: row o gives the temporal position of each slot."""
    return np.array(list(itertools.permutations(range(n_chunks))), dtype=np.int64)
