"""Scoring a run on any folder of music (eval --audio), and on held-out sources (the ood split)."""

import json
import tempfile
from pathlib import Path

from conftest import assert_one_line_error, run, write_music_files

QUICK = ["--puzzles", "50", "--sanity", "noise"]


def test_eval_audio_scores_every_track_of_a_folder_as_test(tiny_run, tmp_path, monkeypatch):
    # Temporary folders go where this test can see them, and each one made is recorded.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    made = []

    def recording_mkdtemp(*args, **kwargs):
        made.append(Path(real_mkdtemp(*args, **kwargs)))
        return str(made[-1])

    real_mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", recording_mkdtemp)
    music = tmp_path / "new music"
    write_music_files(music, 4, seconds=2.0, seed=7)
    (music / "broken.wav").write_bytes(b"RIFF")
    result = run("eval", tiny_run, "--audio", music, *QUICK)
    assert result.exit_code == 0, result.output
    assert "4 tracks" in result.stdout and "1 file(s) skipped" in result.stdout
    assert "skipped broken.wav" in result.stderr
    report = json.loads((tiny_run / "eval.json").read_text())
    test = report["datasets"]["test"]
    assert test["n_puzzles"] == 50 and "continuity" in test["baselines"]
    assert set(report["datasets"]) == {"test", "noise"}
    # The temporary corpus was made in the temp folder and is gone, with nothing else left there.
    assert made and all(folder.parent == scratch and not folder.exists() for folder in made)
    assert list(scratch.iterdir()) == []


def test_eval_audio_with_a_corpus_is_one_line(tiny_run, music_corpus, tmp_path):
    write_music_files(tmp_path / "music", 2, seconds=2.0)
    assert_one_line_error(run("eval", tiny_run, "--audio", tmp_path / "music", "--corpus", music_corpus), "--audio")


def test_eval_audio_on_a_folder_without_music_is_one_line(tiny_run, tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run("eval", tiny_run, "--audio", tmp_path / "empty", *QUICK), "no audio files found")


def test_eval_scores_the_ood_split_beside_test(tiny_run, tmp_path):
    src = tmp_path / "src"
    write_music_files(src / "home", 6, seconds=2.0)
    write_music_files(src / "away", 3, seconds=2.0, seed=3)
    corpus = tmp_path / "corpus"
    flags = ["--chunk-seconds", "0.05", "--pad-min-seconds", "0", "--pad-max-seconds", "0.01", "--puzzles", "40"]
    assert run("prepare", src, "--out", corpus, "--test-sources", "away/*", "--quiet", *flags).exit_code == 0
    result = run("eval", tiny_run, "--corpus", corpus, *QUICK)
    assert result.exit_code == 0, result.output
    datasets = json.loads((tiny_run / "eval.json").read_text())["datasets"]
    assert list(datasets) == ["test", "ood", "noise"]
    assert datasets["ood"]["split"] == "ood" and datasets["ood"]["fixed_set"] and not datasets["ood"]["sanity"]
    assert "ood" in result.stdout
