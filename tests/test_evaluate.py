"""audiosort eval: reports against chance, sanity verdicts, baselines and exit codes."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from audiosort import audio, baselines, decoding, evaluate as evaluate_module, metrics, verdicts
from audiosort.data import synthetic
from audiosort.data.corpus import Corpus
from audiosort.data.prepare import prepare_synthetic
from audiosort.data.puzzles import PuzzleSpec, TrackTable, make_puzzle_set
from audiosort.audit import AuditReport
from audiosort.config import load_config
from audiosort.evaluate import EvalReport
from audiosort.predict import position_scores
from audiosort.run import load_run_model
from audiosort.verdicts import BaselineResult, DatasetResult, score_dataset
from conftest import TINY_PUZZLE, assert_one_line_error, latest_eval, run


@pytest.fixture(scope="module")
def eval_run(tiny_run, tmp_path_factory):
    """A copy of the session's tiny run (trained once, read-only): eval writes its reports into the run folder."""
    copy = tmp_path_factory.mktemp("eval") / "tiny"
    shutil.copytree(tiny_run, copy)
    return copy


@pytest.fixture(scope="module")
def corpus_8k(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpora") / "noise8k"
    prepare_synthetic(
        "noise", out, duration_seconds=20, track_seconds=5, sample_rate=8000, puzzle=TINY_PUZZLE, n_puzzles=20,
        progress=False,
    )
    return out



def test_eval_writes_json_markdown_and_confusion_images_with_chance(eval_run, music_corpus):
    result = run("eval", eval_run, "--puzzles", 200)
    # Ten steps of a tiny MLP on music learn no leak: every sanity set stays at chance.
    assert result.exit_code == 0, result.output
    assert "sanity sets at chance: noise, brown, tone" in result.stdout and result.stderr == ""
    assert latest_eval(eval_run) == eval_run / "eval" / "test-n3"
    assert f"in {eval_run / 'eval' / 'test-n3'}" in result.stdout
    report = json.loads((latest_eval(eval_run) / "eval.json").read_text())
    datasets = report["datasets"]
    assert list(datasets) == ["test", "noise", "brown", "tone"]
    assert report["n_tests"] == 4 and report["alpha"] == 0.01 and report["verdict_decoding"] == "hungarian"
    for name, entry in datasets.items():
        assert entry["n_puzzles"] == 200 and entry["n_chunks"] == 3
        assert entry["chance"]["position_accuracy"] == pytest.approx(1 / 3)
        assert entry["chance"]["exact_accuracy"] == pytest.approx(1 / 6)
        assert entry["sanity"] == (name != "test")
        for decoding in ("argmax", "hungarian"):
            scores = entry[decoding]
            exact = scores["exact_accuracy"]
            assert (exact["low"], exact["high"]) == metrics.wilson_interval(scores["exact_correct_count"], 200)
            assert scores["p_value"] == min(1.0, 2 * min(scores["tau_p_value"], scores["exact_p_value"]))
            expected = metrics.verdict(scores["p_value"], alpha=0.01, n_tests=4)
            assert scores["verdict"] == expected
        assert entry["p_value"] == entry["hungarian"]["p_value"] and entry["verdict"] == entry["hungarian"]["verdict"]
        # The neighbours' own test, beside the verdict at the same threshold, on the order decoding.
        assert entry["neighbour_p_value"] == entry["hungarian"]["neighbour_p_value"]
        assert entry["neighbour_verdict"] == metrics.verdict(entry["neighbour_p_value"], alpha=0.01, n_tests=4)
        baseline = entry["baselines"]["continuity"]
        assert baseline["n_puzzles"] == 200 and baseline["chance"] == entry["chance"]
        # The continuity baseline's order is a best path: one decoding, named so.
        assert "path" in baseline and "hungarian" not in baseline and "argmax" not in baseline
        exact = baseline["path"]["exact_accuracy"]
        assert (exact["low"], exact["high"]) == metrics.wilson_interval(baseline["path"]["exact_correct_count"], 200)
        assert baseline["verdict"] == metrics.verdict(baseline["path"]["p_value"], alpha=0.01, n_tests=4)
        compared = min(1.0, 2 * min(baseline["model_better_p_value"], baseline["model_better_tau_p_value"]))
        assert baseline["model_better"] == (compared < 0.01 / 4)
        beats = "beats" if baseline["model_better"] else "does not beat"
        assert f"{name}: the model {beats} the continuity baseline (exact" in result.stdout
        assert f"| {name} (continuity) | path | {exact['value']:.3f} " in result.stdout.replace("**", "")
        png = latest_eval(eval_run) / f"confusion-{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert datasets["test"]["split"] == "test" and datasets["test"]["fixed_set"] is True
    assert datasets["tone"]["kind"] == "tone" and datasets["tone"]["tone_method"] == "tiled"
    # The tiled tone's observer for this run's puzzles (3 chunks of 800 samples, gaps 0-160), enumerated exactly
    # (tests/test_leaks.py checks the enumeration against brute force): 160 samples are not whole periods.
    assert datasets["tone"]["ideal_observer_exact_accuracy"] == pytest.approx(0.19006, abs=1e-5)
    assert datasets["tone"]["ideal_observer_p_value"] is None and datasets["brown"]["ideal_observer_p_value"] < 1e-6
    assert datasets["noise"]["ideal_observer_exact_accuracy"] == pytest.approx(1 / 6)
    # Synthetic music changes smoothly at the edges; white noise does not.
    assert datasets["test"]["baselines"]["continuity"]["verdict"] == "above_chance"
    assert datasets["noise"]["baselines"]["continuity"]["verdict"] == "at_chance"
    assert [name for name, entry in datasets.items() if entry["sanity"] and entry["verdict"] == "above_chance"] == []
    markdown = (latest_eval(eval_run) / "eval.md").read_text()
    assert "| dataset | decoding | exact acc [95% CI] | chance |" in markdown
    assert markdown.count("| tone | hungarian |") == 1 and "| test | argmax |" in result.stdout
    # What eval.json holds is what the run's model scores on the corpus's fixed test set, recomputed here.
    spec = PuzzleSpec.from_config(TINY_PUZZLE, sample_rate=16000)
    puzzles, fixed = Corpus(music_corpus).puzzles_for("test", spec, n_puzzles=200, seed=0)
    recomputed = metrics.score_puzzles(position_scores(load_run_model(eval_run, spec), puzzles.chunks), puzzles.order)
    assert fixed and datasets["test"]["hungarian"] == {**recomputed.to_dict()["hungarian"], "verdict": datasets["test"]["verdict"]}
    continuity = metrics.score_puzzles(baselines.BASELINES["continuity"](puzzles.chunks, sample_rate=16000), puzzles.order)
    assert datasets["test"]["baselines"]["continuity"]["path"]["kendall_tau"] == continuity.order_scores.kendall_tau.to_dict()
    assert not list(eval_run.glob("**/.*partial*"))


def test_eval_exits_0_when_the_model_cannot_sort_noise(eval_run):
    result = run("eval", eval_run, "--sanity", "noise", "--puzzles", 200)
    assert result.exit_code == 0, result.output
    assert "sanity sets at chance: noise" in result.stdout
    assert set(json.loads((latest_eval(eval_run) / "eval.json").read_text())["datasets"]) == {"test", "noise"}


def fake_result(name, *, sanity, sortable, baseline_sortable=None, n_puzzles=300, seed=0):
    """A scored dataset whose model (and, unless baseline_sortable is None, continuity baseline) sorts or guesses."""
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random((n_puzzles, 3)), axis=1)

    def sorted_scores(sorts):
        return np.log(np.eye(3)[order] * 0.9 + 0.05) if sorts else rng.normal(size=(n_puzzles, 3, 3))

    scores = sorted_scores(sortable)
    scored_baselines = {}
    if baseline_sortable is not None:
        baseline_order = decoding.decode(sorted_scores(baseline_sortable), method="hungarian")
        scored_baselines["continuity"] = BaselineResult(
            metrics.score_orders(baseline_order, order),
            metrics.better_p_values(decoding.decode(scores, method="hungarian"), baseline_order, order),
        )
    return DatasetResult(
        name, sanity, {"kind": name}, metrics.score_puzzles(scores, order), np.eye(3, dtype=np.int64),
        baselines=scored_baselines,
    )


def test_sanity_set_sorted_above_chance_gives_exit_1_naming_it():
    report = EvalReport(
        run_dir=Path("runs/x"),
        datasets=[
            fake_result("test", sanity=False, sortable=True),
            fake_result("noise", sanity=True, sortable=False),
            fake_result("tone", sanity=True, sortable=True),
        ],
    )
    assert report.exit_code == 1
    assert len(report.problems()) == 1 and report.problems()[0].startswith("tone sorted above chance (exact order 1.000, p=")
    entries = report.to_dict()["datasets"]
    assert entries["tone"]["verdict"] == entries["tone"]["argmax"]["verdict"] == "above_chance"
    assert entries["noise"]["verdict"] == "at_chance"


def test_held_out_split_above_chance_alone_exits_0():
    report = EvalReport(
        run_dir=Path("runs/x"),
        datasets=[fake_result("test", sanity=False, sortable=True), fake_result("noise", sanity=True, sortable=False)],
    )
    assert report.exit_code == 0 and report.problems() == []
    assert report.to_dict()["datasets"]["test"]["verdict"] == "above_chance"


def test_cli_exit_1_prints_the_table_and_names_the_leaking_set(monkeypatch, tmp_path):
    datasets = [fake_result("test", sanity=False, sortable=True), fake_result("tone", sanity=True, sortable=True)]
    report = EvalReport(run_dir=tmp_path, datasets=datasets)
    monkeypatch.setattr(evaluate_module, "evaluate", lambda *args, **kwargs: report)
    result = run("eval", tmp_path)
    assert result.exit_code == 1
    assert "| tone | hungarian |" in result.stdout
    assert result.stderr.startswith("tone sorted above chance (exact order 1.000, p=")


def test_bonferroni_counts_every_dataset_evaluated():
    # p = 0.004: above chance alone (0.004 < 0.01), at chance among three datasets (0.004 > 0.01 / 3).
    result = fake_result("tone", sanity=True, sortable=False)
    hungarian = dataclasses.replace(result.scores.decodings["hungarian"], p_value=0.004)
    result.scores = dataclasses.replace(result.scores, decodings={**result.scores.decodings, "hungarian": hungarian})
    alone = EvalReport(run_dir=Path("r"), datasets=[result])
    assert alone.exit_code == 1
    others = [fake_result("test", sanity=False, sortable=False), fake_result("noise", sanity=True, sortable=False)]
    three = EvalReport(run_dir=Path("r"), datasets=[*others, result])
    assert three.exit_code == 0


def test_baseline_that_sorts_a_sanity_set_never_changes_the_exit_code():
    report = EvalReport(
        run_dir=Path("runs/x"),
        datasets=[
            fake_result("test", sanity=False, sortable=True, baseline_sortable=False),
            fake_result("brown", sanity=True, sortable=False, baseline_sortable=True),
        ],
    )
    assert report.exit_code == 0 and report.problems() == []
    entries = report.to_dict()["datasets"]
    assert entries["brown"]["verdict"] == "at_chance"
    assert entries["brown"]["baselines"]["continuity"]["verdict"] == "above_chance"
    assert entries["test"]["baselines"]["continuity"]["model_better"] is True
    assert entries["brown"]["baselines"]["continuity"]["model_better"] is False
    lines = report.lines()
    assert any(line.startswith("test: the model beats the continuity baseline (exact 1.000 vs ") for line in lines)
    assert any(line.startswith("brown: the model does not beat the continuity baseline (exact ") for line in lines)
    assert sum(line.replace("**", "").startswith("| brown (continuity) | path | 1.000 ") for line in lines) == 1
    assert sum(line.startswith("| brown | ") for line in lines) == 2


def test_a_model_as_good_as_the_baseline_does_not_beat_it():
    report = EvalReport(
        run_dir=Path("runs/x"), datasets=[fake_result("test", sanity=False, sortable=True, baseline_sortable=True)]
    )
    baseline = report.to_dict()["datasets"]["test"]["baselines"]["continuity"]
    assert baseline["model_better_p_value"] == 1.0 and baseline["model_better"] is False


class PerfectModel:
    """Stands in for a keras model: predicts every puzzle's true order, read from the puzzles' label."""

    def __init__(self, puzzles):
        self.input_shape = (None, *puzzles.chunks.shape[1:])
        self.order = puzzles.order

    def predict(self, chunks, **kwargs):
        return np.log(np.eye(chunks.shape[1])[self.order] * 0.9 + 0.05)


def test_score_dataset_pairs_the_model_with_the_baseline_on_the_same_puzzles():
    spec = PuzzleSpec(n_chunks=3, chunk_samples=800, pad_min_samples=0, pad_max_samples=160)
    tracks = TrackTable.from_arrays(
        [audio.to_int16(synthetic.render("noise", 10.0, sample_rate=16000, rng=np.random.default_rng(k))) for k in range(2)]
    )
    puzzles = make_puzzle_set(tracks, spec, 300, rng=np.random.default_rng(2))
    model = PerfectModel(puzzles)
    scoring = dict(name="noise", sanity=True, source={"kind": "noise"}, batch_size=64)
    result = score_dataset(puzzles, model, **scoring, sample_rate=16000)
    baseline = result.baselines["continuity"]
    right = baseline.scores.decodings["path"].exact_correct_count
    # The model is right on all 300 puzzles, the baseline on `right`: McNemar sees 300 - right discordant pairs.
    assert baseline.model_better["exact_p_value"] == pytest.approx(0.5 ** (300 - right))
    assert 20 <= right <= 80  # white noise: about 300 / 6
    assert score_dataset(puzzles, model, **scoring).baselines == {}


def test_train_split_is_refused_without_allow_train(eval_run):
    assert_one_line_error(run("eval", eval_run, "--split", "train"), "inflates accuracy")
    result = run("eval", eval_run, "--split", "train", "--allow-train", "--sanity", "", "--puzzles", 50)
    assert result.exit_code == 0, result.output
    entry = json.loads((latest_eval(eval_run) / "eval.json").read_text())["datasets"]["train"]
    assert entry["split"] == "train" and entry["fixed_set"] is False and entry["n_puzzles"] == 50


def test_corpus_at_another_sample_rate_is_exit_2(eval_run, corpus_8k):
    assert_one_line_error(run("eval", eval_run, "--corpus", corpus_8k), "8000 Hz")
    assert_one_line_error(run("eval", eval_run, "--sanity", f"noise,{corpus_8k}"), "8000 Hz")


def test_missing_run_folder_or_model_is_exit_2(eval_run, tmp_path):
    assert_one_line_error(run("eval", tmp_path / "nope"), "no run folder")
    assert_one_line_error(run("eval", tmp_path), "no config.yaml")
    (tmp_path / "config.yaml").write_text((eval_run / "config.yaml").read_text())
    assert_one_line_error(run("eval", tmp_path), "no model.keras")


def test_unknown_sanity_name_is_exit_2_listing_the_kinds(eval_run):
    result = run("eval", eval_run, "--sanity", "noise,pink")
    assert_one_line_error(result, "'pink' is neither a sanity kind (noise, brown, tone")


def test_sanity_corpus_folder_is_scored_under_its_name(eval_run, tmp_path):
    folder = tmp_path / "mynoise"
    prepare_synthetic(
        "noise", folder, duration_seconds=30, track_seconds=5, puzzle=TINY_PUZZLE, n_puzzles=50, progress=False
    )
    result = run("eval", eval_run, "--sanity", folder, "--puzzles", 50)
    assert result.exit_code == 0, result.output
    entry = json.loads((latest_eval(eval_run) / "eval.json").read_text())["datasets"]["mynoise"]
    assert entry["sanity"] and entry["kind"] == "corpus" and entry["corpus"] == str(folder)
    assert (latest_eval(eval_run) / "confusion-mynoise.png").exists()


def test_a_planted_partial_leak_at_20_chunks_fails_eval_and_audit_on_kendall_tau():
    # Every puzzle's true order with 3 pairs of slots swapped: no puzzle exact, tau about 0.65.
    rng = np.random.default_rng(0)
    order = np.argsort(rng.random((300, 20)), axis=1)
    pred = order.copy()
    for _ in range(3):
        first, second = rng.integers(0, 20, size=(2, 300))
        pred[np.arange(300), first], pred[np.arange(300), second] = pred[np.arange(300), second], pred[np.arange(300), first]
    scores = metrics.score_puzzles(decoding.certain_scores(pred), order)
    leaky = DatasetResult("noise", True, {"kind": "noise"}, scores, np.eye(20, dtype=np.int64))
    clean = fake_result("test", sanity=False, sortable=False)
    report = EvalReport(run_dir=Path("runs/x"), datasets=[clean, leaky])
    assert scores.decodings["hungarian"].exact_correct_count == 0 and report.exit_code == 1
    (problem,) = report.problems()
    assert problem.startswith("noise sorted above chance (Kendall tau 0.") and "p < 1e-300" in problem
    (row,) = [line for line in report.lines() if line.startswith("| noise | hungarian |")]
    assert f"| **{scores.decodings['hungarian'].kendall_tau.value:.3f}** | < 1e-300 | above chance |" in row
    config = load_config(None, ["puzzle.n_chunks=20"])
    audit_report = AuditReport(config, PuzzleSpec.from_config(config.puzzle, sample_rate=16000), 10, 0, [leaky])
    assert audit_report.exit_code == 1 and audit_report.problems()[0].startswith("noise sorted above chance (Kendall tau")


def test_a_leak_only_the_neighbours_see_stands_beside_the_verdict_in_eval_and_fails_the_audit():
    # Each order of 20 cut in 5 runs of 4, the runs shuffled and each read either way round: 15 of 19 joins right,
    # no puzzle exact, tau about 0 (as brown noise's edges across short gaps link chunks here and there).
    rng = np.random.default_rng(1)
    order = np.argsort(rng.random((20, 20)), axis=1)
    runs, flips = np.stack([rng.permutation(5) for _ in range(20)]), rng.random((20, 5)) < 0.5
    run_of, within = order // 4, order % 4
    within = np.where(np.take_along_axis(flips, run_of, axis=1), 3 - within, within)
    pred = np.take_along_axis(runs, run_of, axis=1) * 4 + within
    scores = metrics.score_puzzles(decoding.certain_scores(pred), order)
    leaky = DatasetResult("brown", True, {"kind": "brown"}, scores, np.eye(20, dtype=np.int64))
    report = EvalReport(run_dir=Path("runs/x"), datasets=[leaky])
    hungarian = scores.decodings["hungarian"]
    assert hungarian.p_value == min(1.0, 2 * min(hungarian.tau_p_value, hungarian.exact_p_value))
    assert report.verdict(leaky) == "at_chance" and report.neighbour_verdict(leaky) == "above_chance"
    # Eval's verdict and exit code are the tau and exact-order test's alone; the neighbours' is reported beside.
    assert report.exit_code == 0 and report.problems() == []
    entry = report.to_dict()["datasets"]["brown"]
    assert (entry["verdict"], entry["neighbour_verdict"]) == ("at_chance", "above_chance")
    (row,) = [line for line in report.lines() if line.startswith("| brown | hungarian |")]
    share = f"{hungarian.neighbour_share.value:.3f}"
    assert row.endswith(f"| at chance | {share} (0.100), {verdicts.format_p_value(hungarian.neighbour_p_value)}: above chance | - |")
    config = load_config(None, ["puzzle.n_chunks=20"])
    audit_report = AuditReport(config, PuzzleSpec.from_config(config.puzzle, sample_rate=16000), 10, 0, [leaky])
    assert audit_report.exit_code == 1
    assert audit_report.problems()[0].startswith(f"brown sorted above chance (true neighbours found {share} (chance 0.100), p")
