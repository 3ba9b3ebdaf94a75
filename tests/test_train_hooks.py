"""What train() gives its caller: user callbacks on every epoch, and one log line per epoch (issue 21 §5)."""

import csv
import re
from pathlib import Path

import keras
import pytest

from audiosort.config import load_config
from audiosort.train import train
from conftest import TINY_TRAIN, run

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
