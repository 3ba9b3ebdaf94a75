"""`audiosort prepare` through the CLI: bad input is skipped or refused, never a traceback."""

import json
import wave

import numpy as np
import soundfile as sf

from conftest import assert_one_line_error, run, write_music_files

PUZZLE_FLAGS = ["--chunk-seconds", "0.05", "--pad-min-seconds", "0", "--pad-max-seconds", "0.01", "--puzzles", "20", "--quiet"]




def test_bad_files_are_skipped_and_reported_and_good_ones_kept(tmp_path):
    src = tmp_path / "src"
    good = write_music_files(src, 4, seconds=1.0)
    (src / "corrupt.wav").write_bytes(b"RIFF" + np.random.default_rng(0).bytes(3000))
    (src / "empty.flac").write_bytes(b"")
    (src / "notes.mp3").write_text("this is a text file, not audio\n")
    sf.write(src / "silent.wav", np.zeros(16000, np.float32), 16000)
    sf.write(src / "short.wav", np.random.default_rng(1).standard_normal(800).astype(np.float32) * 0.1, 16000)
    full = src / "full.ogg"
    sf.write(full, np.random.default_rng(2).standard_normal(48000).astype(np.float32) * 0.1, 48000, format="OGG")
    (src / "truncated.ogg").write_bytes(full.read_bytes()[:200])
    with wave.open(str(src / "headeronly.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)

    result = run("prepare", src, "--out", tmp_path / "corpus", *PUZZLE_FLAGS)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "corpus" / "manifest.json").read_text())
    reasons = {s["source"]: s["reason"] for s in manifest["skipped"]}
    assert set(reasons) == {
        "corrupt.wav", "empty.flac", "notes.mp3", "silent.wav", "short.wav", "truncated.ogg", "headeronly.wav"
    }
    assert "silent" in reasons["silent.wav"] and "too short" in reasons["short.wav"]
    assert reasons["empty.flac"] == "empty file"
    kept = {t["source"] for t in manifest["tracks"]}
    assert kept == {p.name for p in good} | {"full.ogg"}
    assert "skipped 7 file(s)" in result.stdout and "corrupt.wav" in result.stdout


def test_summary_reports_tracks_and_hours_per_split(tmp_path):
    src = tmp_path / "src"
    write_music_files(src, 5, seconds=1.0)
    result = run("prepare", src, "--out", tmp_path / "corpus", *PUZZLE_FLAGS)
    assert result.exit_code == 0, result.output
    for split in ("train", "val", "test"):
        assert split in result.stdout
    assert str(tmp_path / "corpus") in result.stdout


def test_nothing_usable_is_exit_2_with_one_line(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.wav").write_bytes(b"garbage")
    result = run("prepare", src, "--out", tmp_path / "corpus", *PUZZLE_FLAGS)
    assert_one_line_error(result, "no usable audio")
    assert not (tmp_path / "corpus").exists()


def test_missing_source_is_exit_2(tmp_path):
    result = run("prepare", tmp_path / "nope", "--out", tmp_path / "corpus", *PUZZLE_FLAGS)
    assert_one_line_error(result, "no such file or folder")


def test_folder_without_audio_is_exit_2(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "readme.txt").write_text("hi")
    result = run("prepare", tmp_path / "src", "--out", tmp_path / "corpus", *PUZZLE_FLAGS)
    assert_one_line_error(result, "no audio files found")


def test_unwritable_out_is_exit_2(tmp_path):
    src = tmp_path / "src"
    write_music_files(src, 3, seconds=1.0)
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    result = run("prepare", src, "--out", blocker / "corpus", *PUZZLE_FLAGS)
    assert_one_line_error(result, "cannot write corpus")


def test_existing_out_needs_overwrite(tmp_path):
    out = tmp_path / "corpus"
    args = ["prepare", "--synthetic", "tone", "--duration", "30s", "--track-seconds", "10", "--out", out, *PUZZLE_FLAGS]
    assert run(*args).exit_code == 0
    assert_one_line_error(run(*args), "already exists")
    assert run(*args, "--overwrite").exit_code == 0


def test_synthetic_corpus_through_the_cli(tmp_path):
    out = tmp_path / "brown"
    result = run("prepare", "--synthetic", "brown", "--duration", "1m", "--track-seconds", "20", "--out", out, *PUZZLE_FLAGS)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["tracks"]) == 3 and all(t["frames"] == 320000 for t in manifest["tracks"])


def test_puzzle_settings_come_from_config_and_flags_override(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("seed: 5\npuzzle: {n_chunks: 4, chunk_seconds: 0.04, pad_mode: shared}\n")
    out = tmp_path / "t"
    result = run(
        "prepare", "--synthetic", "noise", "--duration", "30s", "--track-seconds", "10", "--out", out,
        "--config", config, "--n-chunks", "5", "--puzzles", "7", "--quiet",
    )
    assert result.exit_code == 0, result.output
    settings = json.loads((out / "manifest.json").read_text())["puzzles"]
    assert (settings["n_chunks"], settings["chunk_seconds"], settings["pad_mode"], settings["seed"]) == (5, 0.04, "shared", 5)
    assert np.load(out / "puzzles" / "test.npz")["chunks"].shape == (7, 5, 640)


def test_config_typo_in_prepare_is_exit_2(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("puzzle: {pad_lengths: 0.01}\n")
    result = run("prepare", "--synthetic", "noise", "--duration", "30s", "--out", tmp_path / "x", "--config", config)
    assert_one_line_error(result, "unknown key 'puzzle.pad_lengths'")


def test_bad_duration_is_exit_2(tmp_path):
    result = run("prepare", "--synthetic", "noise", "--duration", "5x", "--out", tmp_path / "x")
    assert_one_line_error(result, "duration")
