"""What train() gives its caller: user callbacks on every epoch, one log line per epoch (issue 21 §5), and the online probe (issue 27)."""

import csv
import json
import re
from pathlib import Path

import keras
import numpy as np
import pytest

from audiosort import audio, probe
from audiosort.callbacks import ONLINE_PROBE_SPLITS
from audiosort.config import load_config
from audiosort.errors import ConfigError
from audiosort.data import synthetic
from audiosort.run import load_encoder
from audiosort.train import train
from conftest import SAMPLE_RATE, TINY_TRAIN, assert_one_line_error, run

TINY = Path(__file__).resolve().parent.parent / "configs" / "tiny.yaml"


class EpochRecorder(keras.callbacks.Callback):
    """A user's logger: keeps every epoch number and its logs."""

    def __init__(self):
        super().__init__()
        self.epochs, self.logs = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)
        self.logs.append(dict(logs or {}))


@pytest.mark.slow
def test_a_user_callback_sees_every_epochs_logs(music_corpus, tmp_path):
    config = load_config(None, ["name=hooks", f"data.corpus={music_corpus}", *TINY_TRAIN, "train.epochs=3"])
    recorder = EpochRecorder()
    run_dir = train(config, runs_dir=tmp_path, verbose=0, callbacks=[recorder])
    assert recorder.epochs == [0, 1, 2]
    with open(run_dir / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert len(history) == 3
    for logs, row in zip(recorder.logs, history):
        assert {"loss", "val_loss", "val_exact_accuracy"} <= logs.keys()
        assert logs["loss"] == pytest.approx(float(row["loss"]), rel=1e-5)
        assert logs["val_loss"] == pytest.approx(float(row["val_loss"]), rel=1e-5)


@pytest.mark.slow
def test_train_off_a_terminal_prints_one_line_per_epoch(music_corpus, tmp_path):
    result = run("train", "--config", TINY, "--set", f"data.corpus={music_corpus}", "--runs-dir", tmp_path)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("training on ")
    # tiny.yaml: 2 epochs, then the run folder and the val score; nothing of Keras's own "Epoch 1/2" lines.
    assert [bool(re.fullmatch(r"epoch [12]/2: loss [0-9.e+-]+, .*val_loss [0-9.e+-]+.* \(\d+\.\d s\)", line))
            for line in lines[1:3]] == [True, True], lines
    assert lines[3].startswith("run: ") and lines[4].startswith("val (hungarian") and len(lines) == 5, lines


def labelled_noises(folder):
    """6 clips of 0.2 s each of white and brown noise, one sub-folder per class."""
    rng = np.random.default_rng(0)
    for label, render in (("white", synthetic.white_noise), ("brown", synthetic.brown_noise)):
        for k in range(6):
            audio.write_wav(folder / label / f"{k}.wav", render(0.2, sample_rate=SAMPLE_RATE, rng=rng), sample_rate=SAMPLE_RATE)
    return folder


@pytest.mark.slow
def test_the_online_probe_logs_the_probe_of_each_epochs_encoder(music_corpus, tmp_path):
    clips = labelled_noises(tmp_path / "val-probe")
    config = load_config(None, ["name=online", f"data.corpus={music_corpus}", *TINY_TRAIN, f"train.online_probe={clips}"])
    run_dir = train(config, runs_dir=tmp_path / "runs", verbose=0)
    with open(run_dir / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert len(history) == 2 and all(0.0 <= float(row["online_probe"]) <= 1.0 for row in history)
    # The last epoch's figure is the encoder row of `audiosort probe`, on the saved encoder, over the same folds.
    encoder = load_encoder(run_dir)
    labelled = probe.read_labelled(clips)
    features = np.stack([
        probe.time_statistics(encoder.embed(probe.clip_frames(encoder, audio.to_int16(y))))
        for y in probe.decode_clips(labelled, encoder)
    ])
    labels, groups = np.array(labelled.labels), np.array(labelled.groups)
    fold = probe.group_folds(labelled, n_splits=ONLINE_PROBE_SPLITS, seed=config.seed)
    accuracies = []
    for k in range(ONLINE_PROBE_SPLITS):
        test = fold == k
        predicted, _ = probe.fit_and_predict(
            features[~test], labels[~test], groups[~test], features[test], seed=config.seed + k, max_dims=probe.DIMENSION_BUDGET
        )
        accuracies.append(np.mean(predicted == labels[test]))
    assert float(history[-1]["online_probe"]) == pytest.approx(np.mean(accuracies))


def test_an_online_probe_folder_that_cannot_serve_exits_2_and_leaves_no_run(music_corpus, tmp_path):
    (tmp_path / "one-class" / "white").mkdir(parents=True)
    audio.write_wav(tmp_path / "one-class" / "white" / "0.wav", np.zeros(3200, dtype=np.float32), sample_rate=SAMPLE_RATE)
    result = run(
        "train", "--config", TINY, "--set", f"data.corpus={music_corpus}", "--set", f"train.online_probe={tmp_path / 'one-class'}",
        "--runs-dir", tmp_path / "runs",
    )
    assert_one_line_error(result, "a probe needs at least 2")
    assert not (tmp_path / "runs" / "tiny").exists()


@pytest.mark.slow
@pytest.mark.parametrize("keep", ["online_probe", "val_loss"])
def test_train_keep_saves_the_best_epoch_by_its_monitor(music_corpus, tmp_path, keep):
    clips = labelled_noises(tmp_path / "val-probe")
    config = load_config(None, [
        "name=keep", f"data.corpus={music_corpus}", *TINY_TRAIN, "train.epochs=3", f"train.online_probe={clips}", f"train.keep={keep}",
    ])
    run_dir = train(config, runs_dir=tmp_path / "runs", verbose=0)
    with open(run_dir / "history.csv") as f:
        values = [float(row[keep]) for row in csv.DictReader(f)]
    # The first epoch with the best value, counted from 1: strict improvement only, as the checkpoints are written.
    expected = 1 + (int(np.argmax(values)) if keep == "online_probe" else int(np.argmin(values)))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["kept"] == {"by": keep, "epoch": expected} and metrics["epochs"] == 3
    state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    assert state["best"][keep]["epoch"] == expected and state["best"][keep]["value"] == pytest.approx(values[expected - 1])
    # model.keras holds that epoch's weights: those of its best checkpoint, and not the last epoch's unless it is the best.
    saved = keras.saving.load_model(run_dir / "model.keras")
    best_file = {"online_probe": "best-online-probe.weights.h5", "val_loss": "best.weights.h5"}[keep]
    for name, should_match in ((best_file, True), ("last.weights.h5", expected == 3)):
        reference = keras.saving.load_model(run_dir / "model.keras")
        reference.load_weights(run_dir / "checkpoints" / name)
        same = all(np.array_equal(a, b) for a, b in zip(saved.get_weights(), reference.get_weights(), strict=True))
        assert same == should_match, name


def test_train_keep_is_checked():
    with pytest.raises(ConfigError, match="train.keep = 'best' must be one of"):
        load_config(None, ["train.keep=best"])
    with pytest.raises(ConfigError, match="needs train.online_probe"):
        load_config(None, ["train.keep=online_probe"])
    assert load_config(None).train.keep == "last"
