"""Beats tracked beside the corpus and training puzzles whose chunks start on them (puzzle.align: beats)."""

import dataclasses
import hashlib
import shutil

import numpy as np
import pytest
import soundfile as sf

from audiosort.config import ConfigError, PuzzleConfig, load_config
from audiosort.data import beats
from audiosort.data.corpus import Corpus
from audiosort.data.prepare import prepare
from audiosort.data.puzzles import BeatTable, PuzzleSpec, TrackTable, draw_starts, sample_puzzles
from audiosort.errors import InputError
from audiosort.features import FrontEnd
from conftest import SAMPLE_RATE, assert_one_line_error, run

# 3 chunks of 0.3 s with gaps of 0.5-1.0 s: at 96-144 bpm every gap window holds a beat or two.
ALIGNED = PuzzleConfig(n_chunks=3, chunk_seconds=0.3, pad_min_seconds=0.5, pad_max_seconds=1.0, align="beats")
# A beat found within this of a click counts as on it: 20 ms, two of the tracker's hops.
TOLERANCE_SAMPLES = 320


def click_track(tempo_bpm, seconds, *, rng, phase=0.37):
    """Decaying 1 kHz clicks at ``tempo_bpm`` over quiet noise: (audio float64, click positions in samples)."""
    frames = round(seconds * SAMPLE_RATE)
    period = 60 / tempo_bpm * SAMPLE_RATE
    clicks = np.arange(phase * period, frames - 400, period).round().astype(np.int64)
    y = rng.normal(0, 0.01, frames)
    t = np.arange(320)
    click = 0.8 * np.sin(2 * np.pi * 1000 * t / SAMPLE_RATE) * np.exp(-t / 60)
    for position in clicks:
        y[position : position + 320] += click
    return y, clicks


def write_click_files(folder, tempos, *, seconds=20.0, seed=0):
    """One 16-bit WAV click track per tempo; returns {file name: click positions}."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    truth = {}
    for k, tempo in enumerate(tempos):
        y, clicks = click_track(tempo, seconds, rng=rng)
        sf.write(folder / f"clicks{k:02d}.wav", y, SAMPLE_RATE, subtype="PCM_16")
        truth[f"clicks{k:02d}.wav"] = clicks
    return truth


@pytest.fixture(scope="module")
def click_corpus(tmp_path_factory):
    """Four click tracks of 20 s (96-144 bpm), all train, prepared with puzzle.align: beats; and their clicks."""
    root = tmp_path_factory.mktemp("clicks")
    truth = write_click_files(root / "src", (96, 120, 144, 108))
    prepare([root / "src"], root / "corpus", puzzle=ALIGNED, split="train", n_puzzles=0, progress=False, jobs=2)
    return root / "corpus", truth


def test_tracked_beats_of_a_click_track_land_on_its_clicks():
    y, clicks = click_track(120, 20.0, rng=np.random.default_rng(1))
    positions, tempo = beats.track_beats((y * 32767).astype(np.int16), sample_rate=SAMPLE_RATE)
    assert tempo == pytest.approx(120, rel=0.03)
    distance = np.abs(positions[:, None] - clicks[None]).min(axis=1)
    # All but a beat at either end, which the tracker may place past the last click.
    assert np.sum(distance <= TOLERANCE_SAMPLES) >= len(clicks) - 2, distance


def test_prepare_tracks_the_train_split_and_train_finds_it_fresh(click_corpus):
    folder, truth = click_corpus
    corpus = Corpus(folder)
    assert beats.beats_path(corpus, "train").is_file()
    told = []
    table = beats.open_beats(corpus, "train", echo=told.append)
    assert told == []  # what prepare wrote is current: nothing tracked again
    tracks = corpus.tracks("train")
    for row, track in enumerate(tracks.track_id):
        clicks = truth[corpus.track_entries[track]["source"]]
        distance = np.abs(table.of(row)[:, None] - clicks[None]).min(axis=1)
        assert np.sum(distance <= TOLERANCE_SAMPLES) >= len(clicks) - 2


def test_every_chunk_of_an_aligned_puzzle_starts_on_a_tracked_beat_with_gaps_in_range(click_corpus):
    folder, truth = click_corpus
    corpus = Corpus(folder)
    tracks = corpus.tracks("train")
    aligned = dataclasses.replace(tracks, beats=beats.open_beats(corpus, "train", tracks))
    spec = PuzzleSpec.from_config(ALIGNED, sample_rate=SAMPLE_RATE)
    puzzles = sample_puzzles(aligned, spec, 2000, rng=np.random.default_rng(0))
    rows = np.searchsorted(tracks.track_id, puzzles.track)
    near_click = []
    for row, starts in zip(rows, puzzles.starts):
        clicks = truth[corpus.track_entries[tracks.track_id[row]]["source"]]
        assert np.isin(starts, aligned.beats.of(row)).all()
        near_click.append(np.abs(starts[:, None] - clicks[None]).min(axis=1) <= TOLERANCE_SAMPLES)
    # Every start on a beat, and so on a click, but for the odd beat the tracker adds past the last click.
    assert np.mean(near_click) > 0.98
    in_time = np.sort(puzzles.starts, axis=1)
    gaps = np.diff(in_time, axis=1) - spec.chunk_samples
    assert gaps.min() >= spec.pad_min_samples and gaps.max() <= spec.pad_max_samples
    assert np.all(in_time[:, -1] + spec.chunk_samples <= tracks.frames[rows])
    # The label still says where each slot's chunk lies in time.
    np.testing.assert_array_equal(np.take_along_axis(puzzles.starts, np.argsort(puzzles.order, axis=1), axis=1), in_time)
    # The chunks are the audio at those starts.
    audio = corpus.track_audio(int(puzzles.track[0]))
    np.testing.assert_array_equal(puzzles.chunks[0, 0], audio[puzzles.starts[0, 0] : puzzles.starts[0, 0] + spec.chunk_samples])


def test_on_a_steady_beat_grid_aligned_gaps_are_exchangeable():
    # Beats every 0.25 s on one long track: the gap window after any beat holds the same beats, so the
    # first and second gaps of a set must be drawn alike (a chain that drew them differently would let the
    # gap pattern tell which chunk came first).
    frames = 600 * SAMPLE_RATE
    grid = np.arange(0, frames, SAMPLE_RATE // 4, dtype=np.int64)
    tracks = dataclasses.replace(
        TrackTable.from_arrays([np.zeros(frames, np.int16)]), beats=BeatTable.from_lists([grid])
    )
    spec = PuzzleSpec(n_chunks=3, chunk_samples=4800, pad_min_samples=8000, pad_max_samples=16000)
    starts = draw_starts(tracks, spec, 40000, rng=np.random.default_rng(3)).starts
    gaps = np.diff(np.sort(starts, axis=1), axis=1) - spec.chunk_samples
    values = np.unique(gaps)
    counts = np.array([[np.sum(gaps[:, 0] == v), np.sum(gaps[:, 1] == v)] for v in values])
    expected = counts.sum(axis=1, keepdims=True) * counts.sum(axis=0) / counts.sum()
    chi_square = ((counts - expected) ** 2 / expected).sum()
    assert len(values) == 2  # 0.75 s and 1.0 s after a 0.3 s chunk: the 2 grid beats in the window
    assert chi_square < 10.8  # p = 0.001 for 1 degree of freedom


def test_the_first_chunk_is_uniform_in_time_not_likelier_where_beats_are_dense():
    # Beats every 0.25 s for 300 s, then every 0.5 s: drawn uniformly among beats, two thirds of the sets
    # would begin in the fast half, and "the chunk of the fastest beat comes first" would tell the order.
    half = 300 * SAMPLE_RATE
    grid = np.concatenate([np.arange(0, half, SAMPLE_RATE // 4), np.arange(half, 2 * half, SAMPLE_RATE // 2)])
    tracks = dataclasses.replace(
        TrackTable.from_arrays([np.zeros(2 * half, np.int16)]), beats=BeatTable.from_lists([grid.astype(np.int64)])
    )
    spec = PuzzleSpec(n_chunks=3, chunk_samples=4800, pad_min_samples=8000, pad_max_samples=16000)
    first = draw_starts(tracks, spec, 20000, rng=np.random.default_rng(4)).starts.min(axis=1)
    latest_start = 2 * half - 3 * spec.chunk_samples - 2 * spec.pad_min_samples
    time_share = (half - SAMPLE_RATE // 4) / latest_start  # times up to the fast half's last beat start there
    assert np.mean(first < half) == pytest.approx(time_share, abs=0.02)


def test_align_none_keeps_the_sampler_stream_of_before():
    # The digest of this stream before puzzle.align existed (commit d21bd61).
    rng = np.random.default_rng(7)
    tracks = TrackTable.from_arrays([np.zeros(n, np.int16) for n in (16000, 40000, 23456)])
    spec = PuzzleSpec(n_chunks=3, chunk_samples=800, pad_min_samples=100, pad_max_samples=4000)
    digest = hashlib.sha256()
    for _ in range(3):
        drawn = draw_starts(tracks, spec, 64, rng=rng)
        for array in (drawn.rows, drawn.starts, drawn.order):
            digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    assert digest.hexdigest() == "6d5dfa2ee9e4b0dea04a886b508ea52d28280dd0469008fa9c1bfced31430027"


def test_tracks_without_beats_are_never_drawn_and_none_at_all_is_refused():
    frames = 20 * SAMPLE_RATE
    grid = np.arange(0, frames, SAMPLE_RATE // 2, dtype=np.int64)
    silent = np.zeros(0, np.int64)
    spec = PuzzleSpec(n_chunks=3, chunk_samples=4800, pad_min_samples=8000, pad_max_samples=16000)
    # Nine beatless tracks to one with beats: drawn as without beats, most sets would need a redraw 50 times over.
    tracks = dataclasses.replace(
        TrackTable.from_arrays([np.zeros(frames, np.int16)] * 10), beats=BeatTable.from_lists([silent] * 9 + [grid])
    )
    assert set(draw_starts(tracks, spec, 4096, rng=np.random.default_rng(0)).rows.tolist()) == {9}
    none_at_all = dataclasses.replace(tracks, beats=BeatTable.from_lists([silent] * 10))
    with pytest.raises(InputError, match="puzzle.align"):
        draw_starts(none_at_all, spec, 8, rng=np.random.default_rng(0))


def test_beats_too_sparse_for_the_gaps_are_refused_naming_puzzle_align():
    tracks = dataclasses.replace(
        TrackTable.from_arrays([np.zeros(20 * SAMPLE_RATE, np.int16)]),
        beats=BeatTable.from_lists([np.arange(0, 20 * SAMPLE_RATE, 5 * SAMPLE_RATE)]),
    )
    spec = PuzzleSpec(n_chunks=3, chunk_samples=4800, pad_min_samples=8000, pad_max_samples=16000)
    with pytest.raises(InputError, match="puzzle.align"):
        draw_starts(tracks, spec, 8, rng=np.random.default_rng(0))


def test_a_stale_or_damaged_beats_file_is_tracked_again(click_corpus, tmp_path):
    folder, _ = click_corpus
    copy = tmp_path / "corpus"
    shutil.copytree(folder, copy)
    corpus = Corpus(copy)
    path = beats.beats_path(corpus, "train")
    kept = beats.open_beats(corpus, "train")
    # Damaged: rebuilt, same beats.
    path.write_bytes(b"not an npz")
    told = []
    again = beats.open_beats(corpus, "train", echo=told.append)
    assert "unreadable" in told[0]
    np.testing.assert_array_equal(again.positions, kept.positions)
    # Stale: the corpus's manifest changed (prepared again), so the file no longer says where it came from.
    manifest = copy / "manifest.json"
    manifest.write_text(manifest.read_text() + "\n")
    told = []
    beats.open_beats(Corpus(copy), "train", echo=told.append)
    assert told and "stale (corpus changed)" in told[0]
    told = []
    beats.open_beats(Corpus(copy), "train", echo=told.append)
    assert told == []


def test_align_beats_needs_per_gap_gaps():
    with pytest.raises(ConfigError, match="puzzle.align"):
        load_config(None, ["puzzle.align=beats", "puzzle.pad_mode=shared"])


def test_cached_features_refuse_align_beats():
    config = load_config(None, ["puzzle.align=beats", "data.features=cached", "model.encoder.type=logmel"])
    with pytest.raises(ConfigError, match="puzzle.align=none"):
        FrontEnd.from_config(config)


def test_audit_refuses_align_beats_in_one_line_naming_it():
    result = run("audit", "--config", "configs/audit.yaml", "--steps", 1, "--puzzles", 50, "--set", "puzzle.align=beats")
    assert_one_line_error(result, "puzzle.align = 'beats' cannot be audited")


def test_train_with_align_beats_tracks_the_beats_on_first_use(music_corpus, tmp_path):
    corpus = tmp_path / "music"
    shutil.copytree(music_corpus, corpus)
    result = run(
        "train", "--config", "configs/tiny.yaml", "--runs-dir", tmp_path / "runs", "--set", f"data.corpus={corpus}",
        "--set", "puzzle.pad_min_seconds=0.5", "--set", "puzzle.pad_max_seconds=1.0", "--set", "puzzle.align=beats",
        "--set", "train.epochs=1",
    )
    assert result.exit_code == 0, result.output
    assert "not tracked yet" in result.output
    assert (corpus / "beats" / "train.npz").is_file()


def test_prepare_align_beats_flag_tracks_the_train_split(tmp_path):
    out = tmp_path / "music"
    result = run(
        "prepare", "--synthetic", "music", "--duration", "60", "--track-seconds", "15", "--puzzles", 10, "--quiet",
        "--chunk-seconds", 0.3, "--pad-min-seconds", 0.5, "--pad-max-seconds", 1.0, "--align", "beats", "--out", out,
    )
    assert result.exit_code == 0, result.output
    corpus = Corpus(out)
    assert corpus.puzzle_settings["align"] == "none"  # the fixed sets it describes are never aligned
    table = beats.open_beats(corpus, "train", echo=pytest.fail)  # fresh: tracking it again would fail here
    assert len(table.first) == len(corpus.tracks("train")) + 1 and len(table.positions) > 0


def test_beats_and_distinct_tracks_are_refused_together():
    with pytest.raises(ConfigError, match="distinct_tracks .* is not built for puzzle.align"):
        load_config(None, ["puzzle.align=beats", "model.contrastive.weight=0.1", "model.contrastive.distinct_tracks=true"])
