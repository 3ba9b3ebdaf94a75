"""The sampler: labels, gaps and shuffles are exactly what the spec says."""

import itertools
import math

import numpy as np
import pytest

from audiosort.config import PuzzleConfig
from audiosort.data.puzzles import (
    PuzzleSpec,
    TrackTable,
    draw_gaps,
    load_puzzle_set,
    make_puzzle_set,
    sample_puzzles,
    save_puzzle_set,
)
from audiosort.errors import InputError


def ramp_tracks(lengths):
    """Tracks whose sample value encodes its own position, so every cut is checkable."""
    return TrackTable.from_arrays([((np.arange(n) + 1000 * k) % 32000).astype(np.int16) for k, n in enumerate(lengths)])


def temporal_starts(puzzles):
    """starts re-ordered from slots into time: (B, n), row ascending if labels are right."""
    by_time = np.empty_like(puzzles.starts)
    np.put_along_axis(by_time, puzzles.order.astype(np.int64), puzzles.starts, axis=1)
    return by_time


def test_chunks_are_the_samples_at_their_starts():
    tracks = ramp_tracks([20000, 30000, 9000])
    spec = PuzzleSpec(n_chunks=4, chunk_samples=500, pad_min_samples=10, pad_max_samples=200)
    puzzles = sample_puzzles(tracks, spec, 300, rng=np.random.default_rng(0))
    assert puzzles.chunks.shape == (300, 4, 500) and puzzles.chunks.dtype == np.int16
    for b in range(300):
        source = tracks.shards[puzzles.track[b]]
        for i in range(4):
            start = puzzles.starts[b, i]
            np.testing.assert_array_equal(puzzles.chunks[b, i], source[start : start + 500])


def test_sorting_slots_by_order_gives_ascending_starts_and_gaps_in_bounds():
    tracks = ramp_tracks([50000])
    spec = PuzzleSpec(n_chunks=5, chunk_samples=300, pad_min_samples=40, pad_max_samples=90)
    puzzles = sample_puzzles(tracks, spec, 2000, rng=np.random.default_rng(1))
    by_time = temporal_starts(puzzles)
    gaps = np.diff(by_time, axis=1) - spec.chunk_samples
    assert gaps.min() >= 40 and gaps.max() <= 90
    assert gaps.min() == 40 and gaps.max() == 90  # both bounds are reachable
    ends = by_time[:, -1] + spec.chunk_samples
    assert by_time.min() >= 0 and ends.max() <= 50000


def test_per_gap_padding_draws_every_gap_independently():
    spec = PuzzleSpec(n_chunks=3, chunk_samples=100, pad_min_samples=0, pad_max_samples=160, pad_mode="per_gap")
    gaps = draw_gaps(spec, 5000, rng=np.random.default_rng(2))
    assert np.mean(gaps[:, 0] != gaps[:, 1]) > 0.95
    assert abs(np.corrcoef(gaps[:, 0], gaps[:, 1])[0, 1]) < 0.05


@pytest.mark.parametrize("mode", ["shared", "fixed"])
def test_shared_and_fixed_padding_repeat_one_gap(mode):
    tracks = ramp_tracks([40000])
    spec = PuzzleSpec(n_chunks=4, chunk_samples=200, pad_min_samples=5, pad_max_samples=80, pad_mode=mode)
    puzzles = sample_puzzles(tracks, spec, 500, rng=np.random.default_rng(3))
    gaps = np.diff(temporal_starts(puzzles), axis=1) - spec.chunk_samples
    assert np.all(gaps == gaps[:, :1])
    if mode == "fixed":
        assert np.all(gaps == 80)
    else:
        assert len(np.unique(gaps[:, 0])) > 50


def test_changing_the_configured_padding_changes_the_measured_gaps():
    # The seed's silent bug: assigning pad_lengths instead of pad_length left the gap at 0.001 s.
    tracks = ramp_tracks([200000])
    measured = {}
    for pad_max in (0.001, 0.05):
        cfg = PuzzleConfig(n_chunks=3, chunk_seconds=0.01, pad_min_seconds=pad_max / 2, pad_max_seconds=pad_max)
        spec = PuzzleSpec.from_config(cfg, sample_rate=16000)
        puzzles = sample_puzzles(tracks, spec, 1000, rng=np.random.default_rng(4))
        gaps = np.diff(temporal_starts(puzzles), axis=1) - spec.chunk_samples
        measured[pad_max] = gaps
        assert gaps.min() >= round(pad_max / 2 * 16000) and gaps.max() <= round(pad_max * 16000)
    assert measured[0.05].mean() > 20 * measured[0.001].mean()


def test_seconds_are_converted_to_samples_by_rounding():
    cfg = PuzzleConfig(n_chunks=3, chunk_seconds=0.2, pad_min_seconds=0.0, pad_max_seconds=0.01)
    spec = PuzzleSpec.from_config(cfg, sample_rate=16000)
    assert (spec.chunk_samples, spec.pad_min_samples, spec.pad_max_samples) == (3200, 0, 160)
    assert spec.max_span_samples == 3 * 3200 + 2 * 160
    with pytest.raises(InputError, match="less than one sample"):
        PuzzleSpec.from_config(PuzzleConfig(chunk_seconds=0.00001), sample_rate=16000)


def test_every_permutation_is_equally_likely():
    tracks = ramp_tracks([10000])
    spec = PuzzleSpec(n_chunks=3, chunk_samples=50, pad_min_samples=0, pad_max_samples=10)
    puzzles = sample_puzzles(tracks, spec, 60000, rng=np.random.default_rng(5))
    perms = {p: 0 for p in itertools.permutations(range(3))}
    for row, count in zip(*np.unique(puzzles.order, axis=0, return_counts=True)):
        perms[tuple(row)] = count
    expected = 60000 / 6
    chi2 = sum((c - expected) ** 2 / expected for c in perms.values())
    assert chi2 < 20.5  # chi-square, 5 degrees of freedom, p = 0.001


def test_tracks_are_drawn_in_proportion_to_the_chunk_sets_they_hold():
    tracks = ramp_tracks([1000 + 100, 1000 + 300])  # 101 and 301 possible starts
    spec = PuzzleSpec(n_chunks=2, chunk_samples=500, pad_min_samples=0, pad_max_samples=0)
    puzzles = sample_puzzles(tracks, spec, 40000, rng=np.random.default_rng(6))
    share = np.mean(puzzles.track == 1)
    assert abs(share - 301 / 402) < 0.01


def test_same_seed_gives_same_puzzles_and_other_seed_does_not():
    tracks = ramp_tracks([30000, 30000])
    spec = PuzzleSpec(n_chunks=3, chunk_samples=100, pad_min_samples=0, pad_max_samples=50)
    a = sample_puzzles(tracks, spec, 64, rng=np.random.default_rng(7))
    b = sample_puzzles(tracks, spec, 64, rng=np.random.default_rng(7))
    c = sample_puzzles(tracks, spec, 64, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a.chunks, b.chunks)
    np.testing.assert_array_equal(a.order, b.order)
    assert not np.array_equal(a.starts, c.starts)


def test_puzzles_from_several_shards_come_from_the_right_shard():
    shard_a = np.arange(5000, dtype=np.int16)
    shard_b = -np.arange(1, 8001, dtype=np.int16)
    tracks = TrackTable(
        shards=(shard_a, shard_b),
        shard=np.array([0, 1, 1]),
        offset=np.array([0, 0, 4000]),
        frames=np.array([5000, 4000, 4000]),
        track_id=np.array([10, 11, 12]),
    )
    spec = PuzzleSpec(n_chunks=2, chunk_samples=100, pad_min_samples=0, pad_max_samples=20)
    puzzles = sample_puzzles(tracks, spec, 500, rng=np.random.default_rng(9))
    assert set(np.unique(puzzles.track)) == {10, 11, 12}
    for b in range(500):
        row = {10: 0, 11: 1, 12: 2}[puzzles.track[b]]
        source = tracks.shards[tracks.shard[row]][tracks.offset[row] : tracks.offset[row] + tracks.frames[row]]
        for i in range(2):
            s = puzzles.starts[b, i]
            np.testing.assert_array_equal(puzzles.chunks[b, i], source[s : s + 100])


def test_min_rms_rejects_chunk_sets_touching_silence():
    loud = (np.random.default_rng(0).standard_normal(20000) * 3000).astype(np.int16)
    audio = np.concatenate([loud, np.zeros(20000, np.int16)])
    tracks = TrackTable.from_arrays([audio])
    spec = PuzzleSpec(n_chunks=3, chunk_samples=400, pad_min_samples=0, pad_max_samples=100, min_rms=0.01)
    puzzles = sample_puzzles(tracks, spec, 1000, rng=np.random.default_rng(10))
    rms = np.sqrt(np.square(puzzles.chunks, dtype=np.float64).mean(axis=-1)) / 32768
    assert rms.min() >= 0.01
    assert puzzles.starts.max() < 20000  # no chunk lies wholly in the silent half
    off = PuzzleSpec(n_chunks=3, chunk_samples=400, pad_min_samples=0, pad_max_samples=100)
    assert sample_puzzles(tracks, off, 1000, rng=np.random.default_rng(10)).starts.max() > 20000


def test_min_rms_on_silence_is_a_clear_error():
    tracks = TrackTable.from_arrays([np.zeros(10000, np.int16)])
    spec = PuzzleSpec(n_chunks=2, chunk_samples=100, pad_min_samples=0, pad_max_samples=0, min_rms=0.01)
    with pytest.raises(InputError, match="min_rms"):
        sample_puzzles(tracks, spec, 10, rng=np.random.default_rng(0))


def test_tracks_too_short_for_a_chunk_set_are_a_clear_error():
    tracks = ramp_tracks([500])
    spec = PuzzleSpec(n_chunks=3, chunk_samples=200, pad_min_samples=0, pad_max_samples=10)
    with pytest.raises(InputError, match="shorter than one chunk set"):
        sample_puzzles(tracks, spec, 4, rng=np.random.default_rng(0))


def test_fixed_set_round_trips_through_npz(tmp_path):
    tracks = ramp_tracks([30000])
    spec = PuzzleSpec(n_chunks=3, chunk_samples=100, pad_min_samples=0, pad_max_samples=50)
    puzzles = make_puzzle_set(tracks, spec, 1000, rng=np.random.default_rng(11), batch_size=300)
    assert len(puzzles) == 1000
    save_puzzle_set(tmp_path / "val.npz", puzzles)
    loaded = load_puzzle_set(tmp_path / "val.npz")
    for name in ("chunks", "order", "track", "starts"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(puzzles, name))
    assert [p.name for p in tmp_path.iterdir()] == ["val.npz"]


def test_loading_a_bad_puzzle_set_names_the_file(tmp_path):
    with pytest.raises(InputError, match="no puzzle set"):
        load_puzzle_set(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(InputError, match="other.npz"):
        load_puzzle_set(tmp_path / "other.npz")


def test_spec_rejects_impossible_geometry():
    with pytest.raises(InputError):
        PuzzleSpec(n_chunks=1, chunk_samples=10, pad_min_samples=0, pad_max_samples=0)
    with pytest.raises(InputError):
        PuzzleSpec(n_chunks=2, chunk_samples=10, pad_min_samples=5, pad_max_samples=4)
    assert math.isclose(PuzzleSpec(2, 10, 0, 0).max_span_samples, 20)
