"""audiosort listen: one puzzle cut from a file, written as original/shuffled/sorted wavs; orders printed."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiosort import audio
from audiosort.listen import BOUNDARY_SILENCE_SECONDS, ListenResult, listen
from conftest import SAMPLE_RATE, assert_one_line_error, run, write_music_files

CHUNK_SAMPLES = 800  # the tiny run's 0.05 s chunks at 16 kHz
SILENCE_SAMPLES = round(BOUNDARY_SILENCE_SECONDS * SAMPLE_RATE)
WAVS = ("original.wav", "shuffled.wav", "sorted.wav")


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    """A 3 s stereo FLAC at 22.05 kHz."""
    return write_music_files(tmp_path_factory.mktemp("songs"), 1, seconds=3.0)[0]



def read_chunks(path):
    """The chunks of a listen wav: int16 (n, L), checking the silence between them."""
    samples, rate = sf.read(path, dtype="int16")
    assert rate == SAMPLE_RATE and sf.info(path).subtype == "PCM_16"
    stride = CHUNK_SAMPLES + SILENCE_SAMPLES
    assert len(samples) == 3 * CHUNK_SAMPLES + 2 * SILENCE_SAMPLES
    for k in range(2):
        assert not samples[k * stride + CHUNK_SAMPLES : (k + 1) * stride].any()
    return np.stack([samples[k * stride : k * stride + CHUNK_SAMPLES] for k in range(3)])



def test_listen_writes_three_wavs_and_prints_both_orders(tiny_run, song, tmp_path):
    result = run("listen", tiny_run, song, "--out", tmp_path / "out", "--seed", 3)
    assert result.exit_code == 0, result.output
    assert "true order:" in result.stdout and "predicted order:" in result.stdout
    assert ("-> right" in result.stdout) != ("-> wrong" in result.stdout)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(WAVS)
    for name in WAVS:
        read_chunks(tmp_path / "out" / name)


def test_the_wavs_hold_the_puzzle_in_true_slot_and_predicted_order(tiny_run, song, tmp_path):
    result = listen(tiny_run, song, out=tmp_path, seed=1)
    original, shuffled, ordered = (read_chunks(tmp_path / name) for name in WAVS)
    pcm = audio.to_int16(audio.load(song, sample_rate=SAMPLE_RATE))
    start = round(result.start_seconds * SAMPLE_RATE)
    gaps = np.round(result.gaps_seconds * SAMPLE_RATE).astype(int)
    chunk_starts = start + np.arange(3) * CHUNK_SAMPLES + np.concatenate([[0], np.cumsum(gaps)])
    for position, chunk_start in enumerate(chunk_starts):
        np.testing.assert_array_equal(original[position], pcm[chunk_start : chunk_start + CHUNK_SAMPLES])
    assert sorted(result.order.tolist()) == sorted(result.predicted.tolist()) == [0, 1, 2]
    for slot in range(3):
        np.testing.assert_array_equal(shuffled[slot], original[result.order[slot]])
        np.testing.assert_array_equal(ordered[result.predicted[slot]], shuffled[slot])
    assert result.correct == np.array_equal(ordered, original)


def test_start_places_the_puzzle_and_the_seed_repeats_it(tiny_run, song, tmp_path):
    placed = listen(tiny_run, song, out=tmp_path / "a", start_seconds=1.25, seed=0)
    assert placed.start_seconds == 1.25
    again = listen(tiny_run, song, out=tmp_path / "b", start_seconds=1.25, seed=0)
    np.testing.assert_array_equal(placed.order, again.order)
    for name in WAVS:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    starts = {listen(tiny_run, song, out=tmp_path / "c", seed=seed).start_seconds for seed in range(3)}
    assert len(starts) == 3


def test_a_file_shorter_than_one_puzzle_exits_2_with_one_line(tiny_run, tmp_path):
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(2000, dtype=np.float32), SAMPLE_RATE)  # 0.125 s < 3 chunks of 0.05 s
    result = run("listen", tiny_run, short, "--out", tmp_path / "out")
    assert_one_line_error(result, "shorter than one puzzle")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "start, fragment", [("2.95", "does not leave room"), ("-0.5", "'--start': -0.5 is not in the range x>=0")]
)
def test_a_start_without_room_for_the_puzzle_exits_2(tiny_run, song, tmp_path, start, fragment):
    assert_one_line_error(run("listen", tiny_run, song, "--out", tmp_path, "--start", start), fragment)


def test_missing_audio_or_run_exits_2(tiny_run, song, tmp_path):
    assert_one_line_error(run("listen", tiny_run, tmp_path / "nope.flac", "--out", tmp_path), "cannot read")
    assert_one_line_error(run("listen", tmp_path / "norun", song, "--out", tmp_path), "no run folder")


def test_lines_say_right_or_how_many_chunks_are_in_place():
    puzzle = dict(source="a.flac", start_seconds=1.0, chunk_seconds=0.2, out=Path("o"), order=np.array([2, 0, 1]))
    gaps_seconds = np.array([0.01, 0.002])
    right = ListenResult(predicted=np.array([2, 0, 1]), gaps_seconds=gaps_seconds, **puzzle)
    wrong = ListenResult(predicted=np.array([2, 1, 0]), gaps_seconds=gaps_seconds, **puzzle)
    assert right.correct and "[2, 0, 1]  -> right" in right.lines()[2]
    assert not wrong.correct and "wrong (1 of 3 chunks in place)" in wrong.lines()[2]
    assert "gaps 0.010, 0.002 s" in right.lines()[0]
