"""audiosort train: the run folder, config errors, resume after kill -9, bounded memory, several devices and workers."""

import csv
import gc
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import psutil
import pytest
from click.testing import CliRunner

import audiosort.models  # noqa: F401  (registers the custom layers for load_model)
from audiosort import decoding, metrics
from audiosort.cli import main
from audiosort.config import load_config
from audiosort.data.corpus import Corpus
from audiosort.metrics import PuzzleScores
from audiosort.callbacks import StopOnNonFinite
from audiosort.train import train
from conftest import HANG_SECONDS, TINY_TRAIN, assert_one_line_error, run, wait_for



def tiny_config(corpus, name="tiny", *extra):
    return load_config(None, [f"name={name}", f"data.corpus={corpus}", *TINY_TRAIN, *extra])


def test_train_writes_a_complete_run_folder(music_corpus, tmp_path):
    config = tiny_config(music_corpus)
    run_dir = train(config, runs_dir=tmp_path, verbose=0)
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "model.keras", "encoder.keras", "history.csv", "metrics.json", "checkpoints", "logs"} <= names
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {"best.weights.h5", "last.weights.h5", "state.json"}
    assert json.loads((run_dir / "checkpoints" / "state.json").read_text())["epochs"] == 2
    assert load_config(run_dir / "config.yaml") == config
    with open(run_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and {"loss", "val_loss", "exact_accuracy", "val_position_accuracy"} <= set(rows[0])
    report = json.loads((run_dir / "metrics.json").read_text())
    val = report["val"]
    assert val["n_puzzles"] == 200 and val["chance"]["exact_accuracy"] == pytest.approx(1 / 6)
    # The reported val score is the saved model's, decoded and counted again here from its raw scores.
    val_set = Corpus(music_corpus).puzzle_set("val")
    saved = keras.saving.load_model(run_dir / "model.keras")
    correct = metrics.exact_correct(decoding.decode(saved.predict(val_set.chunks, verbose=0), method="hungarian"), val_set.order)
    assert val["hungarian"]["exact_correct_count"] == int(np.sum(correct))
    # Each epoch logs val decoded as eval decodes it (hungarian), with chance, not only argmax's exact order:
    # after the last epoch it is the saved model's score.
    assert float(rows[-1]["val_hungarian_exact_accuracy"]) == pytest.approx(val["hungarian"]["exact_accuracy"]["value"])
    assert float(rows[-1]["val_hungarian_kendall_tau"]) == pytest.approx(val["hungarian"]["kendall_tau"]["value"])
    assert float(rows[0]["val_exact_chance"]) == pytest.approx(1 / 6)


def test_saved_model_and_encoder_reload_with_identical_outputs(music_corpus, tmp_path):
    run_dir = train(tiny_config(music_corpus, "reload"), runs_dir=tmp_path, verbose=0)
    val = Corpus(music_corpus).puzzle_set("val")
    model = keras.saving.load_model(run_dir / "model.keras")
    encoder = keras.saving.load_model(run_dir / "encoder.keras")
    assert encoder.input_shape == (None, 800) and encoder.output_shape == (None, 16)
    embedded = encoder.predict(val.chunks[:8, 0], verbose=0)
    np.testing.assert_allclose(embedded, model.get_layer("encoder").predict(val.chunks[:8, 0], verbose=0), atol=1e-6)
    scores = model.predict(val.chunks[:8], verbose=0)
    np.testing.assert_allclose(np.exp(scores).sum(axis=-1), 1.0, atol=1e-5)


def test_existing_run_folder_is_not_overwritten(music_corpus, tmp_path):
    config = tiny_config(music_corpus, "twice", "train.epochs=1", "train.steps_per_epoch=1")
    train(config, runs_dir=tmp_path, verbose=0)
    # A copy: --overwrite refuses to delete the config it trains from (tests/test_outputs.py).
    (tmp_path / "twice.yaml").write_text((tmp_path / "twice" / "config.yaml").read_text())
    args = ["train", "--config", str(tmp_path / "twice.yaml"), "--runs-dir", str(tmp_path), "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "already exists" in result.stderr
    (tmp_path / "twice" / "marker").write_text("from the first run")
    assert CliRunner().invoke(main, args + ["--overwrite"]).exit_code == 0
    assert not (tmp_path / "twice" / "marker").exists() and (tmp_path / "twice" / "metrics.json").exists()


def write_config(tmp_path, corpus, text=""):
    path = tmp_path / "c.yaml"
    path.write_text(f"name: cli\ndata: {{corpus: {corpus}}}\n{text}")
    return path


@pytest.mark.parametrize(
    "text, sets, fragment",
    [
        ("puzzle: {pad_lengths: 0.01}\n", [], "unknown key 'puzzle.pad_lengths'"),
        ("", ["puzzle.n_chunks=1"], "puzzle.n_chunks = 1 must be >= 2"),
        ("", ["puzzle.pad_min_seconds=0.2", "puzzle.pad_max_seconds=0.1"], "must be >= pad_min_seconds"),
        ("", ["data.sample_rate=22050"], "corpus"),
        ("", ["puzzle.chunk_seconds=20"], "longer than every train track"),
        ("", ["model.encoder.typ=mlp"], "did you mean 'type'"),
    ],
)
def test_config_errors_exit_2_with_one_line(music_corpus, tmp_path, text, sets, fragment):
    args = ["train", "--config", str(write_config(tmp_path, music_corpus, text)), "--runs-dir", str(tmp_path / "runs")]
    for s in sets:
        args += ["--set", s]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert not (tmp_path / "runs" / "cli").exists()


def test_missing_corpus_is_exit_2(tmp_path):
    result = CliRunner().invoke(main, ["train", "--config", str(write_config(tmp_path, tmp_path / "nope"))])
    assert result.exit_code == 2 and "no corpus at" in result.stderr


def test_non_finite_loss_stops_training_naming_the_step():
    callback = StopOnNonFinite()
    callback.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    callback.on_epoch_begin(2)
    callback.on_train_batch_end(6, {"loss": 1.0})
    assert callback.where == "" and not getattr(callback.model, "stop_training", False)
    callback.on_train_batch_end(7, {"loss": float("nan")})
    assert callback.where == "nan at epoch 3, step 8" and callback.model.stop_training


def history_rows(run_dir):
    path = run_dir / "history.csv"
    if not path.exists():
        return 0
    return max(0, len(path.read_text().strip().splitlines()) - 1)


@pytest.mark.slow
def test_resume_after_kill_finishes_the_planned_epochs(music_corpus, tmp_path):
    config = tmp_path / "resume.yaml"
    config.write_text(f"name: resume\ndata: {{corpus: {music_corpus}}}\n")
    sets = [a for s in TINY_TRAIN if not s.startswith("train.epochs") for a in ("--set", s)]
    command = [sys.executable, "-m", "audiosort.cli", "train", "--config", str(config), "--runs-dir", str(tmp_path), "--quiet"]
    command += sets + ["--set", "train.epochs=6", "--set", "train.steps_per_epoch=20"]
    run_dir = tmp_path / "resume"
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_for(lambda: history_rows(run_dir) >= 2, what="second epoch", process=process)
    assert process.poll() is None, process.stdout.read().decode()[-2000:]
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = history_rows(run_dir)
    assert 2 <= killed_at < 6 and not (run_dir / "metrics.json").exists()

    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    with open(run_dir / "history.csv") as f:
        epochs = [int(row["epoch"]) for row in csv.DictReader(f)]
    assert epochs == list(range(6))
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 6
    assert not (run_dir / "checkpoints" / "backup").exists()
    keras.saving.load_model(run_dir / "model.keras")


@pytest.mark.slow
def test_memory_stays_bounded_across_runs_in_one_process(music_corpus, tmp_path):
    process = psutil.Process()
    resident = []
    variants = [
        ["model.encoder.type=mlp"],
        ["model.encoder.type=conv1d", "model.encoder.filters=4", "model.encoder.blocks=2"],
        ["model.sorter.type=attention", "model.sorter.attention_layers=1"],
        ["model.sorter.normalization=sinkhorn"],
        ["model.encoder.type=logmel", "model.encoder.filters=4", "model.encoder.blocks=2"],
        ["model.encoder.type=mlp", "puzzle.n_chunks=4"],
    ]
    for k, extra in enumerate(variants * 2):
        train(tiny_config(music_corpus, f"m{k}", "train.epochs=1", *extra), runs_dir=tmp_path, verbose=0)
        gc.collect()
        resident.append(process.memory_info().rss / 2**20)
    # The first round warms up TensorFlow's caches; the second must not keep growing (it grew ~110 MiB
    # before clear_keras_state dropped the custom-gradient registry entries).
    growth = resident[-1] - resident[len(variants) - 1]
    assert growth < 75, f"resident memory grew {growth:.0f} MiB over {len(variants)} runs: {resident}"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_training_runs_under_the_jax_backend_too(music_corpus, tmp_path):
    script = (
        "import json, keras, audiosort\n"
        "from audiosort.config import load_config\n"
        "from audiosort.train import train\n"
        f"cfg = load_config(None, {['name=jax', f'data.corpus={music_corpus}', *TINY_TRAIN, 'model.sorter.type=attention']!r})\n"
        f"run = train(cfg, runs_dir={str(tmp_path)!r}, verbose=0)\n"
        "keras.saving.load_model(run / 'model.keras')\n"
        "print(json.loads((run / 'metrics.json').read_text())['backend'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env={**os.environ, "KERAS_BACKEND": "jax"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "jax"


@pytest.mark.slow
def test_training_replicates_over_two_devices_with_mirrored_strategy(music_corpus, tmp_path):
    # Two logical CPU devices stand in for two GPUs: the same MirroredStrategy code path.
    script = (
        "import json, keras, tensorflow as tf\n"
        "cpu = tf.config.list_physical_devices('CPU')[0]\n"
        "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
        "import audiosort\n"
        "from audiosort.config import load_config\n"
        "from audiosort.train import train\n"
        f"cfg = load_config(None, {['name=mirrored', f'data.corpus={music_corpus}', *TINY_TRAIN]!r})\n"
        "strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])\n"
        f"run = train(cfg, runs_dir={str(tmp_path)!r}, verbose=0, strategy=strategy)\n"
        "from audiosort import decoding, metrics\n"
        "from audiosort.data.corpus import Corpus\n"
        "model = keras.saving.load_model(run / 'model.keras')\n"
        f"val = Corpus({str(music_corpus)!r}).puzzle_set('val')\n"
        "pred = decoding.decode(model.predict(val.chunks, verbose=0), method='hungarian')\n"
        "report = json.loads((run / 'metrics.json').read_text())\n"
        "report['recounted'] = int(metrics.exact_correct(pred, val.order).sum())\n"
        "print(json.dumps(report))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2 and report["epochs"] == 2
    assert report["val"]["hungarian"]["exact_correct_count"] == report["recounted"]


@pytest.mark.parametrize(
    "tf_config",
    ['{"cluster": {"worker": ["127.0.0.1:23456", "127.0.0.1:23457"]', '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {}}'],
)
def test_a_malformed_tf_config_is_one_line(music_corpus, tmp_path, monkeypatch, tf_config):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    result = run("train", "--config", "configs/tiny.yaml", "--set", f"data.corpus={music_corpus}", "--runs-dir", tmp_path)
    assert_one_line_error(result, "TF_CONFIG =")


def test_resuming_a_multi_worker_run_is_refused_with_one_line(music_corpus, tmp_path, monkeypatch):
    cluster = {"cluster": {"worker": ["127.0.0.1:23456", "127.0.0.1:23457"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    args = ["--config", "configs/tiny.yaml", "--set", f"data.corpus={music_corpus}", "--runs-dir", tmp_path, "--resume"]
    assert_one_line_error(run("train", *args), "TF_CONFIG names 2 workers, and a multi-worker run cannot resume")


def layout(run_dir):
    """The run folder's files and folders, two levels deep (TensorBoard's event file names hold a time stamp)."""
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.glob("*")) + sorted(
        str(p.relative_to(run_dir)) for p in run_dir.glob("*/*") if not p.name.startswith("events.")
    )


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
@pytest.mark.parametrize("sorter, metric", [("mlp", "position_accuracy"), ("successor", "successor_accuracy")])
def test_two_workers_train_one_model_and_only_the_chief_writes_the_run_folder(music_corpus, tmp_path, sorter, metric):
    addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
    head = f"model.sorter.type={sorter}"
    script = (
        "import json, sys, keras, numpy as np, audiosort\n"
        "from audiosort.config import load_config\n"
        "from audiosort.train import train\n"
        f"cfg = load_config(None, {['name=multi', f'data.corpus={music_corpus}', *TINY_TRAIN, head]!r})\n"
        "run = train(cfg, runs_dir=sys.argv[1], verbose=0)\n"
        "model = keras.saving.load_model(run / 'model.keras')\n"
        "checksum = sum(float(np.sum(keras.ops.convert_to_numpy(w), dtype=np.float64)) for w in model.trainable_weights)\n"
        "print(json.dumps({'run': str(run), 'checksum': checksum}))\n"
    )
    processes = []
    for index in range(2):
        (tmp_path / f"tmp{index}").mkdir()
        tf_config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TMPDIR": str(tmp_path / f"tmp{index}")}
        command = [sys.executable, "-c", script, str(tmp_path / f"runs{index}")]
        # Files, not pipes: a worker blocked on a full pipe would stall the other at its next collective op.
        with open(tmp_path / f"out{index}.txt", "w") as stdout, open(tmp_path / f"err{index}.txt", "w") as stderr:
            processes.append(subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env))
    try:
        for process in processes:
            process.wait(timeout=HANG_SECONDS)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    outputs = [(tmp_path / f"out{index}.txt").read_text() for index in range(2)]
    errors = [(tmp_path / f"err{index}.txt").read_text()[-3000:] for index in range(2)]
    assert [process.returncode for process in processes] == [0, 0], errors
    chief, other = (json.loads(out.strip().splitlines()[-1]) for out in outputs)

    run_dir = tmp_path / "runs0" / "multi"
    assert chief["run"] == str(run_dir)
    assert {"config.yaml", "model.keras", "encoder.keras", "history.csv", "metrics.json", "checkpoints"} <= {
        p.name for p in run_dir.iterdir()
    }
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {"best.weights.h5", "last.weights.h5", "state.json"}
    keras.saving.load_model(run_dir / "model.keras")
    report = json.loads((run_dir / "metrics.json").read_text())
    assert report["workers"] == 2 and report["replicas"] == 2 and report["epochs"] == 2
    with open(run_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in rows] == [0, 1]
    # Each head's own metrics (its registry entry), on every worker.
    assert {"loss", "exact_accuracy", metric, "val_loss", "val_exact_accuracy", f"val_{metric}"} <= set(rows[0])

    # One policy for both training paths: fit on one machine writes the same files and history columns.
    single = train(tiny_config(music_corpus, "multi", head), runs_dir=tmp_path / "single", verbose=0)
    assert layout(single) == layout(run_dir)
    with open(single / "history.csv") as f:
        assert next(csv.reader(f)) == list(rows[0])

    # The other worker wrote nothing under its runs_dir, only its own copy in its temp folder, ...
    assert not (tmp_path / "runs1").exists() and other["run"].startswith(str(tmp_path / "tmp1"))
    # ... and it trained the same model: all-reduced gradients and val sums keep the workers in step.
    assert other["checksum"] == chief["checksum"]
    # The decoded val columns (hungarian or path) score each worker's own copy, not all-reduced, and may
    # differ slightly; the chief's are the run's (metrics.json is the chief's too). The rest is all-reduced.
    def all_reduced(history):
        with open(history) as f:
            return [{k: v for k, v in row.items() if not k.startswith(("val_hungarian_", "val_path_"))} for row in csv.DictReader(f)]

    assert all_reduced(Path(other["run"]) / "history.csv") == all_reduced(run_dir / "history.csv")
    decoded = "val_path_exact_accuracy" if sorter == "successor" else "val_hungarian_exact_accuracy"
    chief_val = PuzzleScores.from_dict(report["val"]).order_scores.exact_accuracy.value
    assert float(rows[-1][decoded]) == pytest.approx(chief_val)
