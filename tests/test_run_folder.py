"""The run folder's contract through the CLI: safe names, overwrite, resume, failed writes, damaged files."""

import csv
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from audiosort import _files, hear
from audiosort import run as run_module
from audiosort.errors import InputError
from audiosort.metrics import PuzzleScores
from conftest import TINY_TRAIN, assert_one_line_error, default_sigint, run, wait_for, write_music_files

HOSTILE_NAMES = ["", ".", "..", "../x", "/abs", "a/b", "a\\b", "../../etc", ".hidden", "x/.."]


def snapshot(root: Path) -> dict:
    """Every path under ``root`` with the sha256 of each file: what must not change."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        for path in sorted(root.rglob("*"))
    }


def train_args(corpus, runs_dir, *extra):
    sets = [a for s in TINY_TRAIN for a in ("--set", s)]
    return ["train", "--config", "configs/tiny.yaml", "--set", f"data.corpus={corpus}", *sets, "--runs-dir", runs_dir,
            "--quiet", *extra]


def history_epochs(run_dir):
    with open(run_dir / "history.csv") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


@pytest.fixture
def neighbourhood(tmp_path):
    """tmp/outside.txt, tmp/runs/other/keep.txt: what a run under tmp/runs must never touch."""
    (tmp_path / "outside.txt").write_text("not a run")
    (tmp_path / "runs" / "other").mkdir(parents=True)
    (tmp_path / "runs" / "other" / "keep.txt").write_text("another run")
    return tmp_path


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_run_name_that_is_not_one_folder_name_touches_nothing(music_corpus, neighbourhood, name):
    before = snapshot(neighbourhood)
    result = run(*train_args(music_corpus, neighbourhood / "runs", "--set", f"name={name}", "--overwrite"))
    assert_one_line_error(result, "name = ")
    assert snapshot(neighbourhood) == before


def test_overwrite_replaces_only_its_own_run_folder(music_corpus, neighbourhood):
    args = train_args(music_corpus, neighbourhood / "runs", "--set", "train.epochs=1", "--set", "train.steps_per_epoch=1")
    first = run(*args)
    assert first.exit_code == 0, first.output
    device_line = first.stdout.splitlines()[0]
    assert device_line.startswith("training on tensorflow, ") and ", precision " in device_line
    report = json.loads((neighbourhood / "runs" / "tiny" / "metrics.json").read_text())
    assert device_line == f"training on {report['backend']}, {report['device']}, precision {report['dtype_policy']}"
    (neighbourhood / "runs" / "tiny" / "marker").write_text("from the first run")
    others = {path: snapshot(neighbourhood)[path] for path in ("outside.txt", "runs/other/keep.txt")}
    result = run(*args, "--overwrite")
    assert result.exit_code == 0, result.output
    after = snapshot(neighbourhood)
    assert {path: after[path] for path in others} == others
    assert not (neighbourhood / "runs" / "tiny" / "marker").exists()
    assert sorted(p.name for p in (neighbourhood / "runs").iterdir()) == ["other", "tiny"]  # nothing hidden left
    assert sorted(p.name for p in neighbourhood.iterdir()) == ["outside.txt", "runs"]


def test_resuming_a_finished_run_changes_nothing(music_corpus, tmp_path):
    args = train_args(music_corpus, tmp_path, "--set", "train.epochs=1", "--set", "train.steps_per_epoch=2")
    assert run(*args).exit_code == 0
    before = snapshot(tmp_path)
    result = run(*args, "--resume")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines() == [
        f"run {tmp_path / 'tiny'} already finished; nothing to resume (--overwrite trains it afresh)"
    ]
    assert snapshot(tmp_path) == before


def test_a_failed_checkpoint_write_keeps_the_last_one_and_resume_finishes(music_corpus, tmp_path, monkeypatch):
    real_commit = _files._sync_and_rename
    writes, kept = [], {}

    def disk_full_at_the_second_checkpoint(tmp, path):
        if path.name == "last.weights.h5":
            writes.append(path)
            if len(writes) == 2:
                kept["sha"] = hashlib.sha256(path.read_bytes()).hexdigest()
                tmp.write_bytes(tmp.read_bytes()[:96])  # what a full disk leaves
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_commit(tmp, path)

    monkeypatch.setattr(_files, "_sync_and_rename", disk_full_at_the_second_checkpoint)
    args = train_args(music_corpus, tmp_path, "--set", "train.epochs=3")
    run_dir = tmp_path / "tiny"
    assert_one_line_error(run(*args), f"cannot write {run_dir / 'checkpoints' / 'last.weights.h5'}: No space left")
    checkpoint = run_dir / "checkpoints" / "last.weights.h5"
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() == kept["sha"]
    assert json.loads((run_dir / "checkpoints" / "state.json").read_text())["epochs"] == 1
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.weights.h5", "last.weights.h5", "state.json"]
    assert not (run_dir / "metrics.json").exists()
    monkeypatch.setattr(_files, "_sync_and_rename", real_commit)

    # A damaged checkpoint is refused, not "finished" ...
    damaged = tmp_path / "damaged"
    shutil.copytree(tmp_path, damaged / "runs")
    (damaged / "runs" / "tiny" / "checkpoints" / "last.weights.h5").write_bytes(checkpoint.read_bytes()[:96])
    before = snapshot(damaged)
    assert_one_line_error(run(*train_args(music_corpus, damaged / "runs", "--set", "train.epochs=3", "--resume")), "damaged")
    assert snapshot(damaged) == before

    # ... and the intact one resumes after its one finished epoch, repeating no history row.
    result = run(*args, "--resume")
    assert result.exit_code == 0, result.output
    assert history_epochs(run_dir) == [0, 1, 2]
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 3


def test_a_config_error_leaves_no_run_folder(music_corpus, tmp_path):
    assert_one_line_error(run(*train_args(music_corpus, tmp_path / "runs", "--set", "seed=-1")), "seed = -1 must be")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["prepare", "--synthetic", "noise", "--out", "{tmp}/c"],
        ["eval", "{tmp}"],
        ["audit", "--config", "configs/tiny.yaml"],
        ["probe", "{tmp}", "--data", "{tmp}"],
        ["listen", "{tmp}", "{tmp}/a.wav", "--out", "{tmp}/o"],
    ],
)
def test_a_negative_seed_is_one_line_in_every_command(tmp_path, command):
    result = run(*[part.format(tmp=tmp_path) for part in command], "--seed", "-1")
    assert_one_line_error(result, "'-1' must be an integer from 0 to 4294967295")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "text, sets, fragment",
    [
        (b"name: caf\xe9\n", [], "is not UTF-8 text (byte 9 is 0xe9)"),
        (b"seed: 1\nseed: 2\n", [], "key 'seed' appears twice in"),
        (b"data: 5\n", ["--set", "data.val_puzzles=10"], "data in {config} must be a mapping"),
        (b"name: x\n", ["--set", "puzzle.n_chunks=abc"], "puzzle.n_chunks = 'abc' in --set must be int"),
        (b"puzzle: {n_chunks: abc}\n", [], "puzzle.n_chunks = 'abc' in {config} must be int"),
    ],
)
def test_config_mistakes_blame_the_file_or_the_flag_they_come_from(tmp_path, text, sets, fragment):
    config = tmp_path / "c.yaml"
    config.write_bytes(text)
    result = run("train", "--config", config, *sets, "--runs-dir", tmp_path / "runs")
    assert_one_line_error(result, fragment.format(config=config))
    assert not (tmp_path / "runs").exists()


@pytest.fixture
def damaged_run(tiny_run, tmp_path):
    """A copy of the tiny run whose model.keras and encoder.keras are cut to 100 bytes."""
    copy = tmp_path / "damaged"
    shutil.copytree(tiny_run, copy)
    for name in ("model.keras", "encoder.keras"):
        (copy / name).write_bytes((copy / name).read_bytes()[:100])
    return copy


def test_a_damaged_model_or_encoder_is_named_by_every_command(damaged_run, tmp_path):
    song = write_music_files(tmp_path / "songs", 1, seconds=2.0)[0]
    expected = "is damaged: not a .keras zip archive (truncated or overwritten?)"
    assert_one_line_error(run("eval", damaged_run, "--sanity", ""), f"{damaged_run / 'model.keras'} {expected}")
    assert_one_line_error(run("listen", damaged_run, song, "--out", tmp_path / "o"), f"{damaged_run / 'model.keras'} {expected}")
    assert_one_line_error(run("embed", damaged_run, song, "--out", tmp_path / "e.npz"), f"{damaged_run / 'encoder.keras'} {expected}")
    with pytest.raises(InputError, match="encoder.keras is damaged"):
        hear.load_model(str(damaged_run))


def test_hear_takes_the_run_folder_or_either_model_file(tiny_run, tmp_path):
    by_folder = hear.load_model(str(tiny_run))
    for name in ("model.keras", "encoder.keras"):
        assert hear.load_model(str(tiny_run / name)).encoder.path == by_folder.encoder.path
    (tmp_path / "other.keras").write_bytes(b"")
    with pytest.raises(InputError, match="pass the run folder"):
        hear.load_model(str(tmp_path / "other.keras"))


def test_embed_out_naming_a_folder_and_listen_start_nan_are_one_line(tiny_run, tmp_path):
    song = write_music_files(tmp_path / "songs", 1, seconds=2.0)[0]
    assert_one_line_error(run("embed", tiny_run, song, "--out", tmp_path), f"--out {tmp_path} is a folder")
    assert_one_line_error(run("listen", tiny_run, song, "--out", tmp_path / "o", "--start", "nan"), "'--start': 'nan' is not a finite number")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_ctrl_c_exits_130_without_a_traceback(music_corpus, tmp_path):
    command = [sys.executable, "-m", "audiosort.cli", *train_args(music_corpus, tmp_path, "--set", "train.epochs=50")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    try:
        assert process.stdout.readline().startswith("training on ")
        wait_for((tmp_path / "tiny" / "history.csv").exists, what="first epoch", process=process)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == "Error: interrupted"


def test_a_loss_that_diverges_in_the_first_epoch_leaves_no_run_folder(music_corpus, tmp_path):
    result = run(*train_args(music_corpus, tmp_path / "runs", "--set", "train.learning_rate=1e30"))
    assert_one_line_error(result, "training stopped: loss became")
    assert "at epoch 1, step" in result.stderr and "lower train.learning_rate" in result.stderr
    assert list((tmp_path / "runs").iterdir()) == []


# A file of the run folder named as a string literal (a path part) outside run.py.
RUN_FOLDER_FILE = re.compile(
    r"""["'](config\.yaml|history\.csv|metrics\.json|model\.keras|encoder\.keras|state\.json|eval\.json|eval\.md"""
    r"""|probe\.json|probe\.md|latest)["']|["']confusion-|/ ["'](checkpoints|eval)["']"""
)


def test_no_module_but_run_names_a_file_of_the_run_folder():
    root = Path(__file__).resolve().parents[1]
    sources = [*sorted((root / "audiosort").rglob("*.py")), *sorted((root / "scripts").glob("*.py"))]
    assert len(sources) > 40
    named = [
        f"{path.relative_to(root)}:{number}: {line.strip()}"
        for path in sources if path != root / "audiosort" / "run.py"
        for number, line in enumerate(path.read_text().splitlines(), 1) if RUN_FOLDER_FILE.search(line)
    ]
    assert named == []
    # The pattern finds such a line (a test that cannot fail finds nothing anywhere).
    assert RUN_FOLDER_FILE.search((root / "audiosort" / "run.py").read_text())
    assert RUN_FOLDER_FILE.search('report = json.loads((run_dir / "metrics.json").read_text())')


def test_typed_readers_give_the_scores_training_and_eval_wrote(tiny_run, tmp_path):
    metrics = run_module.read_metrics(tiny_run)
    raw = json.loads((tiny_run / "metrics.json").read_text())
    # One set of score types: training's writer and this reader are the same class.
    assert metrics.val == PuzzleScores.from_dict(raw["val"]) and metrics.val.to_dict() == raw["val"]
    assert metrics.val.order_decoding == "hungarian"
    assert metrics.val.order_scores.kendall_tau.low == raw["val"]["hungarian"]["kendall_tau"]["low"]
    assert (metrics.val.n_chunks, metrics.val.chance.exact_accuracy) == (3, pytest.approx(1 / 6))
    assert run_module.stage_done(tiny_run, "train") and not run_module.stage_done(tmp_path, "train")
    with pytest.raises(InputError, match="training did not finish"):
        run_module.read_metrics(tmp_path)
    with pytest.raises(InputError, match="no eval report"):
        run_module.read_eval(tmp_path)
    assert run_module.read_probe(tmp_path) == {} and not run_module.stage_done(tmp_path, "probe", "x")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "metrics.json").write_text(json.dumps({"val": {"hungarian": {}}}))
    with pytest.raises(InputError, match="not in the layout audiosort writes"):
        run_module.read_metrics(damaged)


def test_an_eval_report_cut_short_leaves_no_folder_and_does_not_count_as_done(tiny_run, tmp_path):
    from audiosort import run as run_folder

    run_dir = tmp_path / "tiny"
    shutil.copytree(tiny_run, run_dir)
    shutil.rmtree(run_dir / "eval", ignore_errors=True)
    settings = {"n_puzzles": 7}

    def killed(path):
        raise SystemExit(143)  # what the command line makes of a SIGTERM

    with pytest.raises(SystemExit):
        run_folder.write_eval(run_dir, "test-n3", settings, report={"datasets": {}}, markdown="", confusions={"test": killed})
    assert [p.name for p in (run_dir / "eval").iterdir()] == []
    assert not run_folder.stage_done(run_dir, "eval", settings)
    folder = run_folder.write_eval(run_dir, "test-n3", settings, report={"datasets": {}}, markdown="", confusions={})
    (run_dir / "eval" / "latest").unlink()  # killed between the report and eval/latest
    assert (folder / "eval.json").is_file() and not run_folder.stage_done(run_dir, "eval", settings)


def test_a_checkpoint_state_written_before_the_best_epochs_were_kept_keeps_its_best_val_loss(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    state = tmp_path / "checkpoints" / "state.json"
    state.write_text(json.dumps({"epochs": 4, "best_val_loss": 0.75}))
    assert run_module.checkpoint_state(tmp_path)["best"] == {"val_loss": {"value": 0.75, "epoch": 0}}
    state.write_text(json.dumps({"epochs": 4, "best_val_loss": float("inf")}))
    assert run_module.checkpoint_state(tmp_path)["best"] == {}
    for damaged in ({"val_loss": 0.75}, {"val_los": {"value": 0.75, "epoch": 2}}, {"val_loss": {"value": "low", "epoch": 2}}):
        state.write_text(json.dumps({"epochs": 4, "best_val_loss": 0.75, "best": damaged}))
        with pytest.raises(InputError, match="is damaged"):
            run_module.checkpoint_state(tmp_path)
