"""Ideal observers of the sanity sets: how well the puzzle pipeline lets anyone sort them.

A sanity set "at chance" is only worth something next to the accuracy an
observer that knows exactly how the audio and the gaps were made could reach
on it (DESIGN.md, "Leaks to know"). If that observer is at chance, the pipeline
leaks no order; if it is not, a model at chance was merely too weak to find the
leak. Each function here gives that observer's exact-order accuracy.

- White noise: samples are independent, so every order of the chunks is
  equally likely whatever the gaps: exactly 1/n!.
- Tone: a chunk tells its phase and nothing else, so the observer sees the
  phases of the n slots relative to slot 0. Enumerating every order and every
  combination of gaps gives the exact accuracy (:func:`ideal_tone_accuracy`).
- Brown noise: a Markov process, so the chunk edges carry everything; the
  observer picks the order with the highest likelihood of the edge samples,
  scored on the puzzles themselves (:func:`ideal_brown_accuracy`).

Example
-------
>>> spec = PuzzleSpec(n_chunks=2, chunk_samples=3200, pad_min_samples=0, pad_max_samples=160)
>>> round(ideal_tone_accuracy(spec, sample_rate=16000, method="exact").exact_accuracy, 3)
0.997
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from fractions import Fraction
from typing import NamedTuple

import numpy as np
from scipy.special import logsumexp

from audiosort.data import synthetic
from audiosort.data.puzzles import PuzzleSpec
from audiosort.errors import InputError

# (order, gap combination) pairs enumerated at most for the tone; beyond it the
# pairwise (n=2) observer is reported. n=3 exact 440 Hz with 10 ms gaps at 16 kHz: 155k.
_MAX_TONE_OUTCOMES = 1 << 22
# Orders the brown-noise observer scores per puzzle at most (n <= 6).
_MAX_BROWN_ORDERS = 720
# Floats held at once by the brown-noise observer's per-gap likelihoods.
_BLOCK_ELEMENTS = 1 << 22
# Largest denominator of the exact tone's phase step per sample, in cycles: steps
# closer than 1 / (sample_rate * 1e6) cycle count as equal (no 16-bit chunk tells them apart).
_MAX_PHASE_DENOMINATOR = 10**6


class IdealObserver(NamedTuple):
    """An ideal observer's exact-order accuracy and what it was computed for.

    Attributes
    ----------
    exact_accuracy : float in [0, 1]
        Probability of restoring the whole order.
    n_chunks : int >= 2
        Chunks per puzzle it was computed for: the spec's n, or 2 where the
        n-chunk enumeration is too large (the pairwise observer).
    method : str
        How it was obtained, in words.
    monte_carlo_puzzles : int or None
        Puzzles it was estimated on, where it is a Monte Carlo estimate (brown
        noise); None where it is exact.
    """

    exact_accuracy: float
    n_chunks: int
    method: str
    monte_carlo_puzzles: int | None = None

    @property
    def chance(self) -> float:
        """1 / n_chunks!: what no information gives."""
        return 1.0 / math.factorial(self.n_chunks)


def ideal_noise_accuracy(spec: PuzzleSpec) -> IdealObserver:
    """White noise: exactly chance, 1 / n!, for any gaps (independent samples carry no order)."""
    return IdealObserver(1.0 / math.factorial(spec.n_chunks), spec.n_chunks, "exact: independent samples carry no order")


def ideal_tone_accuracy(
    spec: PuzzleSpec, *, sample_rate: int, frequency_hz: float = 440.0, method: str = "tiled"
) -> IdealObserver:
    """Exact-order accuracy of an observer that measures each chunk's phase exactly.

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

    Returns
    -------
    IdealObserver
        For ``spec.n_chunks`` chunks when its enumeration has at most 4M
        (order, gap combination) pairs, else for n=2 (pairwise).

    Notes
    -----
    The tone's start phase is uniform, so a chunk's absolute phase says
    nothing; the observation is the phase of each slot relative to slot 0.
    From one chunk's start to the next, the phase advances by
    ``(L + g) * c mod 1`` cycles, with L the chunk length, g the gap and c the
    cycles per sample (``1 / period`` tiled, ``frequency_hz / sample_rate``
    exact). Every order of the slots and every gap combination (independent
    per gap, one shared gap, or the fixed gap) is enumerated with its
    probability; for each distinct observation the observer picks the most
    likely order, so the accuracy is the sum over observations of the largest
    P(observation | order), divided by n!.

    For n=2 this reduces to comparing the step ``(L + g) c`` with its
    negative (the reversed order). Tiled, with period p and gaps covering k
    whole periods, every residue is equally likely and the accuracy is 0.5;
    otherwise some residues are one count more likely, and whether their
    negatives are too depends on ``2 L mod p``: the chunk length matters
    (0.2 s at 16 kHz with gaps 0-160 samples: 0.525, 0.05 s: 0.512). Exact
    440 Hz at 16 kHz advances 11/400 cycle per sample, so the 161 steps of gaps
    0-160 and their negatives coincide only where ``2 L + g1 + g2`` is a
    multiple of 400: once for 0.2 s chunks (g1 = g2 = 0), giving 321/322 = 0.997.
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
    requested_chunks = spec.n_chunks
    enumeration_size = math.factorial(requested_chunks) * len(values) ** (requested_chunks - 1)
    pairwise = spec.pad_mode == "per_gap" and enumeration_size > _MAX_TONE_OUTCOMES
    if pairwise:
        spec = dataclasses.replace(spec, n_chunks=2)
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
    how = f"{method} tone: phase steps of all {len(orders)} orders x {len(steps)} gap combinations enumerated"
    if pairwise:
        how = f"pairwise (n=2; {enumeration_size} outcomes for n={requested_chunks} are too many to enumerate): {how}"
    return IdealObserver(min(accuracy, 1.0), spec.n_chunks, how)


def ideal_brown_accuracy(
    chunks: np.ndarray, order: np.ndarray, spec: PuzzleSpec, *, sample_rate: int
) -> IdealObserver | None:
    """Exact-order accuracy, on the given puzzles, of the maximum-likelihood observer of brown noise.

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
    IdealObserver or None
        None for n > 6 (too many orders to score per puzzle).

    Notes
    -----
    The noise is a stationary Gaussian AR(1) process with pole
    ``a = exp(-2 pi 5 / sample_rate)``: given the last sample x of one chunk
    and a gap of g samples, the next chunk starts at ``N(a^(g+1) x,
    s^2 (1 - a^(2 (g+1))))``, s the noise's standard deviation (estimated from
    the chunks). By the Markov property the likelihood of an order is the
    stationary density of its first chunk's first sample times these
    transitions (averaged over the gap distribution: per gap, over one shared
    gap, or at the fixed gap); the rest of each chunk is the same under every
    order. The observer picks the most likely order, so this is a Monte Carlo
    estimate of the Bayes-optimal accuracy, exact up to the per-track
    normalization and int16 rounding, which it ignores. Short gaps leave the
    edges strongly correlated (about 0.8 for n=2 with gaps of 0-10 ms at 16 kHz),
    so brown noise at chance then says the model did not use continuity, not
    that it could not.
    """
    n_chunks = chunks.shape[1]
    if math.factorial(n_chunks) > _MAX_BROWN_ORDERS:
        return None
    samples = chunks.astype(np.float64)
    variance = float(samples.var())
    starts, ends = samples[:, :, 0], samples[:, :, -1]
    gaps, gap_weights = _gap_distribution(spec)
    gap_values = gaps[:, 0]
    correlation = math.exp(-2 * math.pi * synthetic.BROWN_NOISE_LEAK_HZ / sample_rate) ** (gap_values + 1.0)
    conditional_variance = variance * (1.0 - correlation**2)
    orders = _orders(n_chunks)
    sequence = np.argsort(orders, axis=1)  # sequence[o, k]: slot at temporal position k
    earlier, later = sequence[:, :-1], sequence[:, 1:]
    log_weights = np.log(gap_weights)
    block = max(1, _BLOCK_ELEMENTS // (n_chunks * max(n_chunks, len(orders)) * len(gap_values)))
    right = 0
    for first in range(0, len(chunks), block):
        end_sample = ends[first : first + block, :, None, None]
        start_sample = starts[first : first + block, None, :, None]
        # transition[b, i, j, g]: log density of slot j's first sample following slot i's last across gap g.
        residual = start_sample - correlation * end_sample
        transition = -0.5 * (residual**2 / conditional_variance + np.log(conditional_variance))
        opening = -0.5 * starts[first : first + block] ** 2 / variance  # (b, n): stationary density of a first sample
        if spec.pad_mode == "per_gap":
            per_step = logsumexp(transition + log_weights, axis=-1)[:, earlier, later].sum(axis=-1)
        else:
            per_step = logsumexp(transition[:, earlier, later].sum(axis=2) + log_weights, axis=-1)
        likelihood = opening[:, sequence[:, 0]] + per_step
        guess = orders[np.argmax(likelihood, axis=1)]
        right += int(np.count_nonzero(np.all(guess == order[first : first + block], axis=1)))
    how = f"brown noise, maximum-likelihood order from the chunk edges, Monte Carlo on these {len(chunks)} puzzles"
    return IdealObserver(right / len(chunks), n_chunks, how, monte_carlo_puzzles=len(chunks))


def _gap_distribution(spec: PuzzleSpec) -> tuple[np.ndarray, np.ndarray]:
    """Possible gaps of one step, in samples ``(G, 1)`` int64, and their probabilities ``(G,)``.

    ``per_gap`` and ``shared`` draw each step's gap uniformly in the range (shared
    then repeats it); ``fixed`` always uses ``pad_max_samples``.
    """
    if spec.pad_mode == "fixed":
        return np.array([[spec.pad_max_samples]], dtype=np.int64), np.ones(1)
    gaps = np.arange(spec.pad_min_samples, spec.pad_max_samples + 1, dtype=np.int64)[:, None]
    return gaps, np.full(len(gaps), 1.0 / len(gaps))


def _orders(n_chunks: int) -> np.ndarray:
    """All n! labels ``(n!, n)`` int64: row o gives the temporal position of each slot."""
    return np.array(list(itertools.permutations(range(n_chunks))), dtype=np.int64)
