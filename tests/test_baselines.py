"""The continuity baseline: sorts audio that changes smoothly, stays at chance on white noise, decodes as a model does."""

import numpy as np
import pytest

from audiosort import audio, decoding, metrics
from audiosort.baselines import continuity_scores
from audiosort.data import synthetic
from audiosort.data.puzzles import PuzzleSpec, TrackTable, make_puzzle_set

SAMPLE_RATE = 16000


def sweep_tracks(start_hz, end_hz, *, seconds=10.0):
    """One track: a sine whose frequency moves linearly from start_hz to end_hz (Hz) over `seconds`."""
    time_seconds = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phase_cycles = start_hz * time_seconds + (end_hz - start_hz) / (2 * seconds) * time_seconds**2
    return TrackTable.from_arrays([audio.to_int16(0.5 * np.sin(2 * np.pi * phase_cycles))])


def exact_accuracy(scores, order):
    return metrics.score_puzzles(scores, order).decodings["hungarian"].exact_accuracy.value


# n=8 is exact Held-Karp, n=14 the beam search; a falling sweep shows it follows continuity, not pitch.
@pytest.mark.parametrize("n_chunks", [3, 8, 14])
@pytest.mark.parametrize("start_hz, end_hz", [(300, 3000), (3000, 300)])
def test_frequency_sweep_is_sorted_almost_always(n_chunks, start_hz, end_hz):
    spec = PuzzleSpec(n_chunks=n_chunks, chunk_samples=3200, pad_min_samples=0, pad_max_samples=160)
    puzzles = make_puzzle_set(sweep_tracks(start_hz, end_hz), spec, 300, rng=np.random.default_rng(1))
    scores = continuity_scores(puzzles.chunks, sample_rate=SAMPLE_RATE)
    assert exact_accuracy(scores, puzzles.order) >= 0.97


def test_white_noise_is_sorted_at_chance():
    tracks = TrackTable.from_arrays(
        [audio.to_int16(synthetic.render("noise", 20.0, sample_rate=SAMPLE_RATE, rng=np.random.default_rng([5, k])))
         for k in range(3)]
    )
    spec = PuzzleSpec(n_chunks=3, chunk_samples=800, pad_min_samples=0, pad_max_samples=160)
    puzzles = make_puzzle_set(tracks, spec, 1500, rng=np.random.default_rng(6))
    report = metrics.score_puzzles(continuity_scores(puzzles.chunks, sample_rate=SAMPLE_RATE), puzzles.order)
    low, high = metrics.wilson_interval(report.order_scores.exact_correct_count, 1500, confidence=0.999)
    assert low <= 1 / 6 <= high
    assert report.order_scores.p_value > 0.001


@pytest.mark.parametrize("n_chunks", [2, 3, 7, 8])
def test_scores_are_a_certain_permutation_that_both_decodings_read_back(n_chunks):
    rng = np.random.default_rng(n_chunks)
    chunks = (rng.normal(size=(50, n_chunks, 400)) * 4000).astype(np.int16)
    scores = continuity_scores(chunks, sample_rate=SAMPLE_RATE)
    assert scores.shape == (50, n_chunks, n_chunks) and scores.dtype == np.float64
    assert np.all(np.isfinite(scores)) and set(np.unique(scores)) == {0.0, decoding.LOWEST_SCORE}
    chosen = scores == 0.0
    assert np.all(chosen.sum(axis=1) == 1) and np.all(chosen.sum(axis=2) == 1)
    np.testing.assert_array_equal(decoding.decode(scores, method="argmax"), decoding.decode(scores, method="hungarian"))


def test_silence_and_chunks_shorter_than_an_edge_still_give_a_permutation():
    chunks = np.zeros((4, 3, 100), dtype=np.int16)  # 100 samples: shorter than the 240-sample edge
    chunks[2] = np.random.default_rng(9).integers(-3000, 3000, size=(3, 100))
    scores = continuity_scores(chunks, sample_rate=SAMPLE_RATE)
    assert np.all(np.isfinite(scores))
    assert np.all((scores == 0.0).sum(axis=2) == 1) and np.all((scores == 0.0).sum(axis=1) == 1)


@pytest.mark.parametrize(
    "shape, options, fragment",
    [
        ((5, 1, 400), {}, "(5, 1, 400)"),
        ((5, 400), {}, "(5, 400)"),
        ((5, 3, 400), {"sample_rate": 0}, "sample_rate"),
        ((5, 3, 400), {"edge_seconds": 0.0}, "edge_seconds"),
    ],
)
def test_bad_input_raises_naming_the_value(shape, options, fragment):
    with pytest.raises(ValueError) as error:
        continuity_scores(np.zeros(shape, dtype=np.int16), **{"sample_rate": SAMPLE_RATE, **options})
    assert fragment in str(error.value)
