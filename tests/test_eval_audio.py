"""Scoring a run on any folder of music (eval --audio), and on held-out sources (the ood split)."""

import json
import shutil
import tempfile

from conftest import assert_one_line_error, latest_eval, run, write_music_files

QUICK = ["--puzzles", "50", "--sanity", "noise"]


def test_eval_audio_scores_every_track_of_a_folder_under_its_name(tiny_run, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    music = tmp_path / "new music"
    write_music_files(music, 4, seconds=2.0, seed=7)
    (music / "broken.wav").write_bytes(b"RIFF")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    before = run("eval", run_dir, *QUICK)
    assert before.exit_code == 0, before.output
    result = run("eval", run_dir, "--audio", music, *QUICK)
    assert result.exit_code == 0, result.output
    assert "4 tracks" in result.stdout and "1 file(s) skipped" in result.stdout
    assert "skipped broken.wav" in result.stderr
    assert latest_eval(run_dir) == run_dir / "eval" / "new_music-n3"
    report = json.loads((latest_eval(run_dir) / "eval.json").read_text())
    scored = report["datasets"]["new_music"]
    assert scored["n_puzzles"] == 50 and "continuity" in scored["baselines"] and not scored["sanity"]
    assert scored["kind"] == "audio" and scored["audio"] == [str(music)]
    assert report["settings"]["audio"] == [str(music.resolve())]
    assert set(report["datasets"]) == {"new_music", "noise"}
    # The corpus split's report is kept beside it; nothing was written to disk but the reports.
    assert set(json.loads((run_dir / "eval" / "test-n3" / "eval.json").read_text())["datasets"]) == {"test", "noise"}
    assert list(scratch.iterdir()) == [] and not list(tmp_path.glob("**/manifest.json"))


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
    datasets = json.loads((latest_eval(tiny_run) / "eval.json").read_text())["datasets"]
    assert list(datasets) == ["test", "ood", "noise"]
    assert datasets["ood"]["split"] == "ood" and datasets["ood"]["fixed_set"] and not datasets["ood"]["sanity"]
    assert "ood" in result.stdout
