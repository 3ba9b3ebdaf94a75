"""The ideal observers of the sanity sets (DESIGN.md, "Leaks to know"), checked against brute force and DESIGN.md."""

import itertools
from collections import defaultdict
from fractions import Fraction

import numpy as np
import pytest

from audiosort import audio, leaks, metrics
from audiosort.data import synthetic
from audiosort.data.puzzles import PuzzleSpec, TrackTable, draw_gaps, make_puzzle_set
from audiosort.leaks import ideal_brown_accuracy, ideal_noise_accuracy, ideal_tone_accuracy
from audiosort.sanity import sanity_ideal_observer, sanity_puzzles
from audiosort.verdicts import ideal_sorts

DESIGN_N2 = dict(n_chunks=2, chunk_samples=3200, pad_min_samples=0)  # 0.2 s chunks at 16 kHz, as in DESIGN.md


@pytest.mark.parametrize(
    "method, pad_max_samples, expected",
    [("exact", 160, 0.997), ("tiled", 160, 0.525), ("tiled", 143, 0.500)],
)
def test_ideal_tone_observer_matches_design_md(method, pad_max_samples, expected):
    spec = PuzzleSpec(**DESIGN_N2, pad_max_samples=pad_max_samples)
    ideal = ideal_tone_accuracy(spec, sample_rate=16000, method=method)
    assert ideal.exact_accuracy == pytest.approx(expected, abs=0.002)
    assert ideal.n_chunks == 2 and ideal.chance == 0.5


@pytest.mark.parametrize("method", ["tiled", "exact"])
def test_fixed_gap_tone_is_sorted_perfectly_by_the_ideal_observer(method):
    spec = PuzzleSpec(**DESIGN_N2, pad_max_samples=160, pad_mode="fixed")
    assert ideal_tone_accuracy(spec, sample_rate=16000, method=method).exact_accuracy == 1.0


def test_tiled_tone_observer_depends_on_chunk_length_unless_gaps_cover_whole_periods():
    # With 17 residues one count more likely, their reflection -r - 2L overlaps them by 2L mod 36.
    short = PuzzleSpec(n_chunks=2, chunk_samples=800, pad_min_samples=0, pad_max_samples=160)
    assert ideal_tone_accuracy(short, sample_rate=16000).exact_accuracy == pytest.approx(165 / 322)
    whole = PuzzleSpec(n_chunks=3, chunk_samples=800, pad_min_samples=0, pad_max_samples=143)
    assert ideal_tone_accuracy(whole, sample_rate=16000).exact_accuracy == pytest.approx(1 / 6)


def test_shared_gap_tone_leaks_for_three_chunks_even_over_whole_periods():
    per_gap = PuzzleSpec(n_chunks=3, chunk_samples=3200, pad_min_samples=0, pad_max_samples=143)
    shared = PuzzleSpec(n_chunks=3, chunk_samples=3200, pad_min_samples=0, pad_max_samples=143, pad_mode="shared")
    assert ideal_tone_accuracy(per_gap, sample_rate=16000).exact_accuracy == pytest.approx(1 / 6)
    assert ideal_tone_accuracy(shared, sample_rate=16000).exact_accuracy > 0.45


def brute_force_tone(n_chunks, chunk_samples, gaps, cycles_per_sample):
    """The ideal observer by dictionaries of Fractions: every gap tuple, every order."""
    combinations = list(itertools.product(gaps, repeat=n_chunks - 1))
    table = defaultdict(lambda: defaultdict(Fraction))
    orders = list(itertools.permutations(range(n_chunks)))
    for steps in combinations:
        phases = [Fraction(0)]
        for gap in steps:
            phases.append((phases[-1] + (chunk_samples + gap) * cycles_per_sample) % 1)
        for order in orders:
            seen = tuple((phases[order[i]] - phases[order[0]]) % 1 for i in range(1, n_chunks))
            table[seen][order] += Fraction(1, len(combinations))
    return float(sum(max(row.values()) for row in table.values()) / len(orders))


@pytest.mark.parametrize("method, pad_max_samples", [("tiled", 50), ("exact", 30)])
def test_ideal_tone_observer_equals_brute_force_for_three_chunks(method, pad_max_samples):
    spec = PuzzleSpec(n_chunks=3, chunk_samples=1000, pad_min_samples=5, pad_max_samples=pad_max_samples)
    cycles = Fraction(1, 36) if method == "tiled" else Fraction(440, 16000)
    expected = brute_force_tone(3, 1000, range(5, pad_max_samples + 1), cycles)
    assert ideal_tone_accuracy(spec, sample_rate=16000, method=method).exact_accuracy == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "method, pad_mode, pad_max_samples",
    [("tiled", "per_gap", 160), ("exact", "per_gap", 40), ("tiled", "shared", 143), ("tiled", "fixed", 160)],
)
def test_tone_observer_on_puzzles_agrees_with_the_enumeration(monkeypatch, method, pad_mode, pad_max_samples):
    # The same observer two ways: enumerated exactly, and decoding 3000 puzzles (best path per gap,
    # progression extrapolated for a shared or fixed gap) once the enumeration is switched off.
    spec = PuzzleSpec(n_chunks=3, chunk_samples=3200, pad_min_samples=0, pad_max_samples=pad_max_samples, pad_mode=pad_mode)
    exact = ideal_tone_accuracy(spec, sample_rate=16000, method=method)
    starts, order = tone_puzzles(spec, 3000)
    monkeypatch.setattr(leaks, "_MAX_TONE_OUTCOMES", 0)
    estimated = ideal_tone_accuracy(spec, sample_rate=16000, method=method, starts=starts, order=order)
    assert exact.p_value is None and estimated.monte_carlo_puzzles == 3000
    # A shared or fixed gap is one step for the whole puzzle: the observer extrapolates it, it does not search paths.
    assert ("best path" if pad_mode == "per_gap" else "phases extrapolated") in estimated.method, estimated.method
    low, high = metrics.wilson_interval(round(estimated.exact_accuracy * 3000), 3000, confidence=0.999)
    assert low <= exact.exact_accuracy <= high, (estimated, exact)
    # Per-puzzle tau has standard deviation at most 1: 3.3 standard errors of the mean over 3000.
    assert estimated.kendall_tau == pytest.approx(exact.kendall_tau, abs=3.3 / 3000**0.5)


def tone_puzzles(spec, n_puzzles, seed=0):
    """Chunk starts (B, n) in samples and labels (B, n) of puzzles cut as the sampler cuts them (its draw_gaps)."""
    rng = np.random.default_rng(seed)
    gaps = draw_gaps(spec, n_puzzles, rng=rng)
    temporal = np.concatenate([np.zeros((n_puzzles, 1), np.int64), np.cumsum(spec.chunk_samples + gaps, axis=1)], axis=1)
    order = np.argsort(rng.random((n_puzzles, spec.n_chunks)), axis=1)
    return 1000 + temporal[np.arange(n_puzzles)[:, None], order], order


# 0.2 s chunks at 16 kHz; gaps of 0-143 samples are 4 whole periods of the tiled tone (36 samples).
OBSERVED_SETS = {
    "tiled per gap over whole periods": ("tone", "per_gap", 0, 143, False),
    "tiled, one shared gap": ("tone", "shared", 0, 143, True),
    # A fixed gap of 5 samples steps the phase by 3205 mod 36 = 1 sample: 36 distinct phases, so n=20
    # sorts fully. (With 160 samples the step, 12, repeats every 3 chunks: it tells only k mod 3.)
    "tiled, fixed gap": ("tone", "fixed", 0, 5, True),
    # 0-5 ms: 81 of the 400 phase steps. (With 0-10 ms, 161 of them, so many paths fit 20 chunks' phases that
    # the most likely one is as good as any: tau 0.000 on 600 puzzles.)
    "exact 440 Hz per integer gap": ("tone-exact", "per_gap", 0, 80, True),
    "brown noise 0.2 s apart": ("brown", "per_gap", 3200, 3523, False),
    "brown noise 0-5 ms apart": ("brown", "per_gap", 0, 80, True),
    "brown noise touching": ("brown", "fixed", 0, 0, True),
}


@pytest.mark.parametrize("n_chunks", [3, 10, pytest.param(20, marks=pytest.mark.slow)])
@pytest.mark.parametrize("case", list(OBSERVED_SETS))
def test_ideal_observers_see_each_known_leak_at_every_n_and_nothing_without_it(case, n_chunks):
    kind, pad_mode, low, high, leaky = OBSERVED_SETS[case]
    spec = PuzzleSpec(n_chunks=n_chunks, chunk_samples=3200, pad_min_samples=low, pad_max_samples=high, pad_mode=pad_mode)
    puzzles, _ = sanity_puzzles(kind, spec, sample_rate=16000, n_puzzles=600, seed=1)
    ideal = sanity_ideal_observer(kind, puzzles, spec, 16000)
    assert ideal.n_chunks == n_chunks
    assert ideal_sorts(ideal, n_tests=3) == leaky, ideal
    if not leaky:
        assert abs(ideal.kendall_tau) < 0.05 and ideal.exact_accuracy < ideal.chance + 0.02, ideal


def test_white_noise_observer_is_exactly_chance():
    assert ideal_noise_accuracy(PuzzleSpec(2, 800, 0, 0)).exact_accuracy == 0.5
    assert ideal_noise_accuracy(PuzzleSpec(3, 800, 0, 160)).exact_accuracy == pytest.approx(1 / 6)


def brown_puzzles(spec, n_puzzles=400):
    tracks = [
        audio.to_int16(synthetic.render("brown", 10.0, sample_rate=16000, rng=np.random.default_rng([3, k])))
        for k in range(4)
    ]
    return make_puzzle_set(TrackTable.from_arrays(tracks), spec, n_puzzles, rng=np.random.default_rng(4))


def test_brown_noise_observer_sorts_touching_chunks_and_not_distant_ones():
    touching = PuzzleSpec(n_chunks=2, chunk_samples=800, pad_min_samples=0, pad_max_samples=0)
    puzzles = brown_puzzles(touching)
    assert ideal_brown_accuracy(puzzles.chunks, puzzles.order, touching, sample_rate=16000).exact_accuracy > 0.9
    # Edges 0.5 s apart are nearly independent (correlation exp(-2 pi 5 x 0.5) = 1.5e-7).
    distant = PuzzleSpec(n_chunks=3, chunk_samples=800, pad_min_samples=8000, pad_max_samples=8100)
    puzzles = brown_puzzles(distant)
    accuracy = ideal_brown_accuracy(puzzles.chunks, puzzles.order, distant, sample_rate=16000).exact_accuracy
    low, high = metrics.wilson_interval(round(accuracy * 400), 400, confidence=0.999)
    assert low <= 1 / 6 <= high
