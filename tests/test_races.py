"""Issue 29 §1: two commands on one folder at once lose nothing, and clean-up deletes only what its process made.

Real processes hold a run's lock where the race is between processes (a
resume against a second resume or an eval); threads with events where the
interleaving must be forced (two probes merging). Timeouts only stop a hang.
"""

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import keras
import pytest

from audiosort import run as run_folder
from audiosort.config import load_config
from audiosort.data.prepare import prepare_synthetic
from audiosort.errors import InputError
from audiosort.train import train
from conftest import TINY_PUZZLE, TINY_TRAIN, assert_one_line_error, run
from test_outputs import snapshot

REPO = Path(__file__).resolve().parents[1]
HANG = 300  # seconds: only a hang gets this far


class SwapFolder(keras.callbacks.Callback):
    """Put the user's own folder (or a file) where the run folder was, once training has begun."""

    def __init__(self, run_dir: Path, *, as_file: bool = False):
        super().__init__()
        self.run_dir = run_dir
        self.as_file = as_file

    def on_train_begin(self, logs=None):
        shutil.rmtree(self.run_dir)
        if self.as_file:
            self.run_dir.write_text("precious")
            return
        self.run_dir.mkdir()
        (self.run_dir / "thesis.txt").write_text("precious")


def test_a_file_put_where_the_run_folder_was_is_left_to_its_owner(music_corpus, tmp_path):
    config = load_config(None, ["name=race3", f"data.corpus={music_corpus}", *TINY_TRAIN])
    with pytest.raises(InputError, match="removed or replaced while training"):
        train(config, runs_dir=tmp_path, verbose=0, callbacks=[SwapFolder(tmp_path / "race3", as_file=True)])
    assert (tmp_path / "race3").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race3"]


def test_a_run_folder_swapped_during_training_is_left_to_its_owner(music_corpus, tmp_path):
    config = load_config(None, ["name=race2", f"data.corpus={music_corpus}", *TINY_TRAIN])
    run_dir = tmp_path / "race2"
    with pytest.raises(InputError, match="removed or replaced while training"):
        train(config, runs_dir=tmp_path, verbose=0, callbacks=[SwapFolder(run_dir)])
    assert (run_dir / "thesis.txt").read_text() == "precious"
    assert [p.name for p in run_dir.iterdir()] == ["thesis.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race2"]


@pytest.fixture
def interrupted(tiny_run, tmp_path):
    """A copy of the tiny run with its metrics.json removed: 2 epochs done, resumable; returns (runs_dir, config path)."""
    runs = tmp_path / "runs"
    shutil.copytree(tiny_run, runs / "tiny")
    (runs / "tiny" / "metrics.json").unlink()
    config = tmp_path / "tiny.yaml"
    shutil.copy(runs / "tiny" / "config.yaml", config)
    return runs, config


def hold_resume(runs: Path, config: Path) -> subprocess.Popen:
    """A process that has opened the run for resuming (as `train --resume` does before training) and waits."""
    code = (
        "import sys; from pathlib import Path; from audiosort import run; from audiosort.config import load_config\n"
        f"run.open_run(Path({str(runs / 'tiny')!r}), load_config({str(config)!r}), resume=True, overwrite=False)\n"
        "print('held', flush=True); sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_resume_and_an_eval_are_refused_while_a_resume_runs(interrupted):
    runs, config = interrupted
    history = (runs / "tiny" / "history.csv").read_text()
    holder = hold_resume(runs, config)
    try:
        before = snapshot(runs)
        result = run("train", "--config", config, "--runs-dir", runs, "--resume", "--quiet")
        assert_one_line_error(result, "is in use")
        result = run("eval", runs / "tiny", "--puzzles", 20, "--sanity", "noise")
        assert result.exit_code == 2 and "is in use" in result.stderr, result.output
        assert snapshot(runs) == before
    finally:
        holder.communicate(timeout=HANG)
    assert (runs / "tiny" / "history.csv").read_text() == history  # no epoch written twice


def test_eval_names_the_model_it_scored(tiny_run, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(tiny_run, runs / "tiny")
    result = run("eval", runs / "tiny", "--puzzles", 20, "--sanity", "noise")
    assert result.exit_code in (0, 1), result.output
    folder = runs / "tiny" / "eval" / (runs / "tiny" / "eval" / "latest").read_text().strip()
    scored = json.loads((folder / "eval.json").read_text())["model"]
    import hashlib

    assert scored == {"sha256": hashlib.sha256((runs / "tiny" / "model.keras").read_bytes()).hexdigest(), "epochs": 2}


@pytest.mark.parametrize("damage, fragment", [
    ("ahead", "says 2 epochs finished but"),
    ("beyond", "more than train.epochs = 2"),
    ("folder", "is not a regular file"),
])
def test_a_resume_whose_state_does_not_match_its_history_is_refused(interrupted, damage, fragment):
    runs, config = interrupted
    run_dir = runs / "tiny"
    history = run_dir / "history.csv"
    if damage == "ahead":
        history.write_text(history.read_text().splitlines()[0] + "\n" + history.read_text().splitlines()[1] + "\n")
    elif damage == "beyond":
        state = run_dir / "checkpoints" / "state.json"
        state.write_text(json.dumps({**json.loads(state.read_text()), "epochs": 99}))
    else:
        history.unlink()
        history.mkdir()
    before = snapshot(runs)
    assert_one_line_error(run("train", "--config", config, "--runs-dir", runs, "--resume", "--quiet"), fragment)
    assert snapshot(runs) == before


def test_two_probes_merging_at_once_keep_both_tasks(tiny_run, tmp_path):
    run_dir = tmp_path / "tiny"
    shutil.copytree(tiny_run, run_dir)
    first_inside, go, second_inside = threading.Event(), threading.Event(), threading.Event()

    def first_markdown(tasks):
        first_inside.set()
        assert go.wait(HANG)
        return "first\n"

    def second_markdown(tasks):
        second_inside.set()
        return "second\n"

    first = threading.Thread(target=run_folder.merge_probe, args=(run_dir, {"a": {"p_better": {"x": 1}}}, first_markdown))
    second = threading.Thread(target=run_folder.merge_probe, args=(run_dir, {"b": {"p_better": {"x": 1}}}, second_markdown))
    first.start()
    assert first_inside.wait(HANG)
    second.start()
    # The second merge must wait for the first: it cannot reach its markdown while the first holds the lock.
    assert not second_inside.wait(2)
    go.set()
    first.join(HANG)
    second.join(HANG)
    assert set(run_folder.read_probe(run_dir)) == {"a", "b"}


def test_a_corpus_built_inside_one_being_replaced_survives(tmp_path, monkeypatch):
    from audiosort.data import prepare as prepare_module

    outer = tmp_path / "data" / "p2"
    small = dict(duration_seconds=4, track_seconds=1, puzzle=TINY_PUZZLE, n_puzzles=5, progress=False)
    prepare_synthetic("noise", outer, **small)
    # A nested prepare into the existing corpus is refused before it writes.
    with pytest.raises(InputError, match="would lie inside"):
        prepare_synthetic("noise", outer / "sub", **small)
    # One that started before the outer corpus was there writes into it while the outer one is rebuilt.
    write_corpus = prepare_module._write_corpus

    def meanwhile(*args, **kwargs):
        summary = write_corpus(*args, **kwargs)
        (outer / "sub").mkdir()
        (outer / "sub" / "manifest.json").write_text("{}")
        return summary

    monkeypatch.setattr(prepare_module, "_write_corpus", meanwhile)
    before = snapshot(tmp_path)
    with pytest.raises(InputError, match="now holds sub"):
        prepare_synthetic("noise", outer, overwrite=True, **small)
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if "/sub" not in k} == before
    assert (outer / "sub" / "manifest.json").read_text() == "{}"


def test_two_evals_writing_at_once_keep_both_reports(tmp_path):
    run_dir = tmp_path / "tiny"
    run_dir.mkdir()
    first_inside, go, second_inside = threading.Event(), threading.Event(), threading.Event()

    def first_confusion(path):
        first_inside.set()
        assert go.wait(HANG)
        path.write_bytes(b"first")

    def second_confusion(path):
        second_inside.set()
        path.write_bytes(b"second")

    def write(settings, confusion):
        run_folder.write_eval(run_dir, "test-n3", settings, report={"who": settings["puzzles"]},
                              markdown="", confusions={"test": confusion})

    first = threading.Thread(target=write, args=({"puzzles": 20}, first_confusion))
    second = threading.Thread(target=write, args=({"puzzles": 30}, second_confusion))
    first.start()
    assert first_inside.wait(HANG)
    second.start()
    try:
        # The second eval must not choose its folder while the first is still writing: it would pick the same one.
        assert not second_inside.wait(2)
    finally:
        go.set()
    first.join(HANG)
    second.join(HANG)
    reports = {p.name: json.loads((p / "eval.json").read_text()) for p in (run_dir / "eval").iterdir() if p.is_dir()}
    assert {name: report["who"] for name, report in reports.items()} == {"test-n3": 20, "test-n3-2": 30}
    assert (run_dir / "eval" / "test-n3" / "confusion-test.png").read_bytes() == b"first"
    assert (run_dir / "eval" / "test-n3-2" / "confusion-test.png").read_bytes() == b"second"
    assert (run_dir / "eval" / "latest").read_text().strip() == "test-n3-2"
