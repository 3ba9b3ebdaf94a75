"""audiosort sweep: grid expansion, strict sweep files, runs in subprocesses, resumable results."""

import csv
import json
import re
import shutil
import subprocess
import sys

import psutil
import pytest
import yaml

from audiosort.cli import as_flags
from audiosort.config import dump_config
from audiosort.errors import ConfigError, InputError
from audiosort.sweep import load_sweep, run_sweep
from audiosort.run import read_eval, write_eval
from audiosort.sweep.report import collect_row, sweep_eval_settings
from conftest import TINY_TRAIN, assert_one_line_error, run, wait_for


def _write_sweep(folder, corpus, grid, **extra):
    """A sweep over configs/tiny.yaml-like settings in `folder`; returns the sweep file's path."""
    base = folder / "base.yaml"
    base.write_text(yaml.safe_dump({"name": "base", "data": {"corpus": str(corpus)}}))
    sweep = {
        "base": "base.yaml",
        "set": dict(item.split("=", 1) for item in TINY_TRAIN),
        "grid": grid,
        "eval": {"puzzles": 100, "sanity": []},
        **extra,
    }
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


def test_grid_expands_to_named_runs_with_joint_axes(tmp_path, music_corpus):
    path = _write_sweep(
        tmp_path,
        music_corpus,
        {
            "model.encoder.embedding_dim": [8, 16],
            "puzzle.pad_min_seconds, puzzle.pad_max_seconds": [[0.0, 0.005], [0.01, 0.02]],
        },
    )
    sweep = load_sweep(path)
    runs = sweep.runs()
    assert [r.name for r in runs] == [
        "embedding_dim=8_pad_min_seconds=0.0_pad_max_seconds=0.005",
        "embedding_dim=8_pad_min_seconds=0.01_pad_max_seconds=0.02",
        "embedding_dim=16_pad_min_seconds=0.0_pad_max_seconds=0.005",
        "embedding_dim=16_pad_min_seconds=0.01_pad_max_seconds=0.02",
    ]
    configs = dict((r.name, c) for r, c in sweep.configs())
    config = configs["embedding_dim=16_pad_min_seconds=0.01_pad_max_seconds=0.02"]
    assert config.model.encoder.embedding_dim == 16
    assert (config.puzzle.pad_min_seconds, config.puzzle.pad_max_seconds) == (0.01, 0.02)
    assert config.train.steps_per_epoch == 5  # from set:
    assert config.name == "embedding_dim=16_pad_min_seconds=0.01_pad_max_seconds=0.02"


def test_two_keys_with_the_same_leaf_get_longer_names(tmp_path, music_corpus):
    path = _write_sweep(
        tmp_path, music_corpus, {"model.encoder.hidden_units": [16], "model.sorter.hidden_units": [8, 32]}
    )
    names = [r.name for r in load_sweep(path).runs()]
    assert names == ["encoder.hidden_units=16_sorter.hidden_units=8", "encoder.hidden_units=16_sorter.hidden_units=32"]


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"gird": {"puzzle.n_chunks": [3]}}, "unknown key 'gird' in sweep"),
        ({"eval": {"puzles": 10}}, "did you mean 'eval.puzzles'?"),
        ({"grid": {"puzzle.n_chunk": [3]}}, "unknown key 'puzzle.n_chunk' in overrides; did you mean 'n_chunks'?"),
        ({"grid": {"puzzle.n_chunks": [3, 1]}}, "sweep run n_chunks=1: puzzle.n_chunks"),
        ({"grid": {"puzzle.n_chunks": []}}, "must be a non-empty list"),
        ({"grid": {"puzzle.pad_min_seconds, puzzle.pad_max_seconds": [[0.0]]}}, "every value must be a list of 2"),
        ({"base": "missing.yaml"}, "missing.yaml"),
    ],
)
def test_bad_sweep_files_fail_before_anything_runs(tmp_path, music_corpus, change, fragment):
    path = _write_sweep(tmp_path, music_corpus, {"puzzle.n_chunks": [3]})
    raw = yaml.safe_load(path.read_text())
    raw.update(change)
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_sweep(path)
    result = run("sweep", "--config", path, "--runs-dir", tmp_path / "runs")
    assert_one_line_error(result, as_flags(fragment))  # the command line says --set where the library says overrides
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("metrics.json"))


def test_set_of_a_varied_key_is_refused(tmp_path, music_corpus):
    path = _write_sweep(tmp_path, music_corpus, {"puzzle.n_chunks": [3, 4]})
    with pytest.raises(ConfigError, match="grid varies"):
        load_sweep(path, ("puzzle.n_chunks=5",))


def test_plot_axis_must_be_a_grid_key(tmp_path, music_corpus):
    path = _write_sweep(tmp_path, music_corpus, {"puzzle.n_chunks": [3]})
    with pytest.raises(InputError, match="not a grid axis"):
        run_sweep(load_sweep(path), runs_dir=tmp_path / "runs", plot=("n_chunks", "embedding_dim"))


def _eval_entry(*, sanity, verdict, exact):
    estimates = {"value": exact, "low": exact, "high": exact}
    scores = {"exact_accuracy": estimates, "position_accuracy": estimates, "kendall_tau": {"value": 0.0, "low": 0.0, "high": 0.0},
              "exact_correct_count": round(100 * exact), "p_value": 0.5}
    chance = {"exact_accuracy": 1 / 6, "position_accuracy": 1 / 3}
    return {"sanity": sanity, "verdict": verdict, "hungarian": scores, "chance": chance, "n_puzzles": 100, "n_chunks": 3}


def test_results_row_names_the_sanity_sets_eval_found_above_chance(tmp_path, music_corpus):
    sweep = load_sweep(_write_sweep(tmp_path, music_corpus, {"puzzle.n_chunks": [3]}))
    ((only, config),) = sweep.configs()
    run_dir = tmp_path / "runs" / only.name
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(dump_config(config))
    datasets = {
        "test": _eval_entry(sanity=False, verdict="above_chance", exact=0.9),
        "noise": _eval_entry(sanity=True, verdict="at_chance", exact=0.17),
        "brown": _eval_entry(sanity=True, verdict="above_chance", exact=0.4),
        "tone": _eval_entry(sanity=True, verdict="above_chance", exact=0.5),
    }
    report = {"verdict_decoding": "hungarian", "datasets": datasets}
    settings = sweep_eval_settings(config, sweep)
    write_eval(run_dir, "test-n3", {**settings, "n_puzzles": 7}, report=report, markdown="", confusions={})
    # An evaluation the sweep did not ask for is not its result.
    assert "exact_accuracy" not in collect_row(tmp_path / "runs", only, sweep)
    write_eval(run_dir, "test-n3", settings, report=report, markdown="", confusions={})
    row = collect_row(tmp_path / "runs", only, sweep)
    assert row["sanity_above_chance"] == "brown+tone"
    assert row["exact_accuracy"] == 0.9 and row["exact_chance"] == pytest.approx(1 / 6)
    assert row["status"] == "pending"  # no metrics.json: training has not finished
    assert sorted(path.name for path in (run_dir / "eval").iterdir()) == ["latest", "test-n3", "test-n3-2"]


@pytest.mark.slow
def test_sweep_of_six_configs_in_subprocesses_keeps_memory_bounded_and_resumes(tmp_path, music_corpus):
    path = _write_sweep(
        tmp_path,
        music_corpus,
        {"model.encoder.embedding_dim": [8, 16, 32], "puzzle.chunk_seconds": [0.05, 0.04]},
        eval={"puzzles": 100, "sanity": ["noise"]},
    )
    process = psutil.Process()
    resident = []

    def record(line):
        resident.append(process.memory_info().rss)

    report = run_sweep(load_sweep(path), runs_dir=tmp_path / "runs", echo=record)
    assert len(resident) == 6
    # Each run trains in its own process: this one does not grow run over run.
    assert max(resident) - resident[0] < 30 * 2**20, [r / 2**20 for r in resident]

    folder = tmp_path / "runs" / "sweep"
    assert [row["status"] for row in report.rows] == ["done"] * 6
    with open(folder / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["model.encoder.embedding_dim"] for row in rows] == ["8", "8", "16", "16", "32", "32"]
    for row in rows:
        # The csv carries what each run's eval measured on its held-out tracks (hungarian), not another number.
        test = json.loads((read_eval(folder / row["run"]).folder / "eval.json").read_text())["datasets"]["test"]["hungarian"]
        assert float(row["exact_accuracy"]) == pytest.approx(test["exact_accuracy"]["value"])
        assert float(row["kendall_tau"]) == pytest.approx(test["kendall_tau"]["value"])
        assert float(row["exact_chance"]) == pytest.approx(1 / 6)
        assert float(row["train_seconds"]) > 0
        # White noise carries no order: eval scored it in every run and found it at chance.
        assert row["sanity_above_chance"] == "none"
    markdown = (folder / "results.md").read_text()
    assert markdown.count("| done |") == 6 and "(0.167)" in markdown
    assert (folder / "heatmap-embedding_dim-chunk_seconds.png").read_bytes()[:4] == b"\x89PNG"
    for row in report.rows:
        run_dir = folder / row["run"]
        assert (run_dir / "model.keras").exists()
        assert list(read_eval(run_dir).datasets) == ["test", "noise"]

    # Re-running finds every stage done and starts no process.
    lines = []
    again = run_sweep(load_sweep(path), runs_dir=tmp_path / "runs", echo=lines.append)
    assert all("already done" in line for line in lines), lines
    assert [row["exact_accuracy"] for row in again.rows] == [row["exact_accuracy"] for row in report.rows]

    # A run whose eval is missing gets only that stage redone.
    first = folder / report.rows[0]["run"]
    shutil.rmtree(first / "eval")
    mtime = (first / "model.keras").stat().st_mtime
    run_sweep(load_sweep(path), runs_dir=tmp_path / "runs", echo=lambda line: None)
    assert list(read_eval(first).datasets) == ["test", "noise"]
    assert (first / "model.keras").stat().st_mtime == mtime


@pytest.mark.slow
def test_a_failed_run_is_recorded_and_the_others_go_on(tmp_path, music_corpus):
    # 3 chunks of 6 s span more than the corpus's 15 s tracks: train refuses, after validation.
    path = _write_sweep(tmp_path, music_corpus, {"puzzle.chunk_seconds": [6.0, 0.05]})
    result = run("sweep", "--config", path, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 1, result.output
    assert "run chunk_seconds=6.0 failed: a chunk set of these puzzle settings spans" in result.stderr
    assert "Traceback" not in result.stdout
    folder = tmp_path / "runs" / "sweep"
    with open(folder / "results.csv") as f:
        rows = {row["run"]: row for row in csv.DictReader(f)}
    assert rows["chunk_seconds=6.0"]["status"] == "failed"
    assert "longer than every train track" in rows["chunk_seconds=6.0"]["error"]
    assert rows["chunk_seconds=0.05"]["status"] == "done"
    assert read_eval(folder / "chunk_seconds=0.05").datasets["test"]
    assert (folder / "accuracy-chunk_seconds.png").exists()
    assert "Traceback" in (folder / "logs" / "chunk_seconds=6.0.log").read_text()


def test_a_second_sweep_on_the_same_folder_is_refused_while_one_runs(tmp_path, music_corpus):
    import fcntl

    path = _write_sweep(tmp_path, music_corpus, {"model.encoder.embedding_dim": [8]})
    folder = tmp_path / "runs" / "sweep"
    folder.mkdir(parents=True)
    with open(folder / "sweep.lock", "w") as lock:  # what a running sweep holds
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = run("sweep", "--config", path, "--runs-dir", tmp_path / "runs")
        assert_one_line_error(result, "another sweep is running in")
    assert not (folder / "embedding_dim=8").exists()


def test_killing_a_sweep_stops_the_run_it_started(tmp_path, music_corpus):
    # Long enough to be still training when the sweep is killed.
    path = _write_sweep(tmp_path, music_corpus, {"train.steps_per_epoch": [2000]})
    sweep = subprocess.Popen([sys.executable, "-m", "audiosort.cli", "sweep", "--config", str(path),
                              "--runs-dir", str(tmp_path / "runs")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: psutil.Process(sweep.pid).children(), what="run started by the sweep", process=sweep)
    children = psutil.Process(sweep.pid).children()
    # Past its start: the run has opened its folder (config.yaml is written first).
    wait_for(lambda: list((tmp_path / "runs").glob("*/*/config.yaml")), what="run folder", process=sweep)
    sweep.kill()
    sweep.wait()
    gone, alive = psutil.wait_procs(children, timeout=300)  # only a hang gets this far
    assert not alive, "the run kept going after its sweep was killed"
