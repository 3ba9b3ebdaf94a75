"""What a run writes each epoch, as Keras callbacks: one policy, :func:`run_callbacks`, for every training path.

``model.fit`` on one machine and :func:`audiosort.distributed.fit_multi_worker`
on the workers of a ``TF_CONFIG`` cluster get the same list, so val scored as
eval scores it, the history row, the checkpoints, TensorBoard, early stopping
and the stop at a non-finite loss are defined once, here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from audiosort import run
from audiosort.config import Config
from audiosort.data.puzzles import Puzzles
from audiosort.metrics import PuzzleScores
from audiosort.pcm import to_int16
from audiosort.predict import score_predictions, to_position_scores

# Group folds of the online probe: fewer than the 5 of `audiosort probe`, as it runs every epoch.
ONLINE_PROBE_SPLITS = 3


def run_callbacks(
    run_dir: Path, config: Config, *, val: Puzzles, best: dict | None = None, echo: Callable[[str], None],
    scoring_model: keras.Model | None = None, encoder: keras.Model | None = None,
) -> list[keras.callbacks.Callback]:
    """What a run writes each epoch, on every training path: the policy in one list.

    First the check that the run folder is still the one training opened
    (:class:`RunFolderGuard`), then the ``val`` puzzles scored as eval scores them (:class:`DecodedValScores`,
    into the epoch's logs), then, when ``train.online_probe`` names a labelled folder, the linear probe of
    ``encoder`` on its clips (:class:`OnlineProbe`, into the logs; ``encoder`` is then required),
    then ``history.csv`` (a row per epoch, appended), then the checkpoints
    (:class:`RunCheckpoints`: written after the history row, so a resumed run
    cuts the history back to its checkpoint), TensorBoard ``logs/``, and
    early stopping on ``val_loss`` when ``train.early_stopping_patience`` is
    set (restoring the best weights). ``scoring_model`` scores val instead of
    the fitted model (the full model of a feature model it shares its layers with).
    """
    callbacks = [
        RunFolderGuard(run_dir),
        DecodedValScores(val, config.train.batch_size, model=scoring_model),
        *([OnlineProbe(config.train.online_probe, encoder, sample_rate=config.data.sample_rate, seed=config.seed)]
          if config.train.online_probe else []),
        keras.callbacks.CSVLogger(str(run.history_path(run_dir)), append=True),
        RunCheckpoints(run_dir, best=best),
    ]
    tensorboard = tensorboard_callback(run.logs_folder(run_dir), echo=echo)
    if tensorboard is not None:
        callbacks.append(tensorboard)
    if config.train.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.train.early_stopping_patience, restore_best_weights=True
            )
        )
    return callbacks


class DecodedValScores(keras.callbacks.Callback):
    """After every epoch, the val puzzles scored as eval scores them, added to the epoch's logs.

    The compiled metrics decode each row by argmax, which may give a position
    twice and so sits below chance at exact order; eval decodes by the model's
    order decoding (hungarian, or path for a successor head). This adds
    ``val_<decoding>_exact_accuracy``, ``val_<decoding>_position_accuracy``,
    ``val_<decoding>_kendall_tau`` and ``val_exact_chance`` (1/n!) to the
    logs, so that ``history.csv``, the epoch line and TensorBoard (run
    "validation") show them: it must come before the callbacks that write logs.
    Skipped after a non-finite loss (the run stops there). Under a multi-worker
    strategy each worker scores its own copy of the model, not all-reduced
    like the compiled metrics, and the workers' figures can differ slightly
    (measured: 0.17 and 0.18 exact on 100 val puzzles of a tiny model); the
    chief's, which writes the run folder, are the run's, as ``metrics.json`` is.
    """

    def __init__(self, val: Puzzles, batch_size: int, *, model: keras.Model | None = None):
        super().__init__()
        self.val = val
        self.batch_size = batch_size
        self.scoring_model = model  # None: the model being fitted

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not math.isfinite(float(logs.get("loss", 0.0))):
            return
        model = self.scoring_model or self.model
        scored = scored_val(model, self.val, self.batch_size)
        best, name = scored.order_scores, scored.order_decoding
        logs[f"val_{name}_exact_accuracy"] = best.exact_accuracy.value
        logs[f"val_{name}_position_accuracy"] = best.position_accuracy.value
        logs[f"val_{name}_kendall_tau"] = best.kendall_tau.value
        logs["val_exact_chance"] = scored.chance.exact_accuracy


class OnlineProbe(keras.callbacks.Callback):
    """After every epoch, a linear probe of the encoder being trained on a labelled folder: ``online_probe`` in the logs.

    The folder has the layout ``audiosort probe`` reads (:mod:`audiosort.probe`);
    point it at clips kept for validation, never at test material: it is read
    every epoch, so whatever it scores is seen while the run is shaped. Its
    clips are decoded once, at the run's rate, and cut into frames of one
    chunk every quarter chunk; each epoch the encoder embeds every frame in
    inference mode (plain calls: no gradient, no batch-norm update, and no
    collective op under a multi-worker strategy), each clip becomes the mean,
    std and max of its embeddings, and the ``encoder`` row of ``audiosort
    probe`` is fit: a train-part scaler and a logistic regression whose C is
    chosen by group cross-validation inside the train part, on
    ``ONLINE_PROBE_SPLITS`` group folds seeded by ``seed`` (the same folds
    every epoch). ``online_probe`` is the mean test accuracy over the folds.
    Skipped after a non-finite loss, as :class:`DecodedValScores` is.
    """

    def __init__(self, data_dir: str | Path, encoder: keras.Model, *, sample_rate: int, seed: int):
        # Deferred: the probe's scikit-learn and librosa are needed only when a run asks for this.
        from audiosort import probe

        super().__init__()
        self.probe = probe
        self.encoder = encoder
        self.chunk_samples = int(encoder.input_shape[-1])
        self.seed = seed
        labelled = probe.read_labelled(data_dir)
        self.labels, self.groups = np.array(labelled.labels), np.array(labelled.groups)
        self.folds = probe.group_folds(labelled, n_splits=ONLINE_PROBE_SPLITS, seed=seed)
        geometry = run.RunEncoder(encoder, sample_rate, self.chunk_samples, Path(data_dir))
        clips = probe.decode_clips(labelled, geometry)
        self.frames = [np.ascontiguousarray(probe.clip_frames(geometry, to_int16(y))) for y in clips]

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not math.isfinite(float(logs.get("loss", 0.0))):
            return
        features = np.stack([self.probe.time_statistics(self._embed(frames)) for frames in self.frames])
        accuracies = []
        for k in range(ONLINE_PROBE_SPLITS):
            test = self.folds == k
            predicted, _ = self.probe.fit_and_predict(
                features[~test], self.labels[~test], self.groups[~test], features[test],
                seed=self.seed + k, max_dims=self.probe.DIMENSION_BUDGET,
            )
            accuracies.append(float(np.mean(predicted == self.labels[test])))
        logs["online_probe"] = float(np.mean(accuracies))

    def _embed(self, frames: np.ndarray) -> np.ndarray:
        return np.concatenate([
            keras.ops.convert_to_numpy(self.encoder(frames[start : start + run.BATCH_FRAMES], training=False)).astype(np.float32)
            for start in range(0, len(frames), run.BATCH_FRAMES)
        ])


class RunFolderGuard(keras.callbacks.Callback):
    """Stop training, before anything else writes, once the run folder was removed or replaced under it.

    Issue 29: a user who swaps the folder mid-run must find their own files
    untouched, so the check comes first at every point where a later callback
    writes into the folder (TensorBoard opens ``logs/validation`` when
    validation begins; the history row and checkpoints come at the epoch's end).
    """

    def __init__(self, run_dir: Path):
        super().__init__()
        self.run_dir = run_dir

    def on_epoch_begin(self, epoch, logs=None):
        run.check_still_ours(self.run_dir)

    def on_test_begin(self, logs=None):
        run.check_still_ours(self.run_dir)

    def on_epoch_end(self, epoch, logs=None):
        run.check_still_ours(self.run_dir)


class RunCheckpoints(keras.callbacks.Callback):
    """After every epoch: ``last.weights.h5``, the best checkpoint of each monitor that improved, then ``state.json``.

    The monitors are :data:`audiosort.run.BEST_CHECKPOINTS`: ``val_loss``
    (``best.weights.h5``, lowest) and, with ``train.online_probe``,
    ``online_probe`` (highest); an epoch whose logs lack one, or hold a
    non-finite value, leaves its best alone. Written through
    :func:`audiosort.run.save_checkpoint` (atomic, state last), so an
    interrupted or failed write leaves the previous checkpoint intact. An
    epoch that ended on a non-finite loss is not checkpointed.
    """

    def __init__(self, run_dir: Path, *, best: dict | None = None):
        super().__init__()
        self.run_dir = run_dir
        self.best = dict(best or {})  # a resumed run's, from its state.json

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not math.isfinite(logs.get("loss", 0.0)):
            return  # weights a NaN/inf loss left behind are no point to resume from: keep the last good ones
        improved = []
        for monitor, (_, sign) in run.BEST_CHECKPOINTS.items():
            value = logs.get(monitor)
            if value is None or not math.isfinite(float(value)):
                continue
            if monitor not in self.best or sign * float(value) > sign * self.best[monitor]["value"]:
                self.best[monitor] = {"value": float(value), "epoch": epoch + 1}
                improved.append(monitor)
        run.save_checkpoint(self.model, self.run_dir, epochs=epoch + 1, best=self.best, improved=tuple(improved))


class EpochLine(keras.callbacks.Callback):
    """One line on stdout per epoch, for logs: ``epoch 3/20: loss 1.0986, ..., val_loss 1.0412, ... (4.2 s)``."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs
        self.started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        # loss, then the metrics; then val_loss, then the val_ metrics.
        names = sorted(logs, key=lambda name: (name.startswith("val_"), name.removeprefix("val_") != "loss"))
        values = ", ".join(f"{name} {float(logs[name]):.4g}" for name in names)
        seconds = time.perf_counter() - self.started
        print(f"epoch {epoch + 1}/{self.epochs}: {values} ({seconds:.1f} s)", flush=True)


class StopOnNonFinite(keras.callbacks.Callback):
    """Stop at the first NaN/inf loss and remember where ("nan at epoch 3, step 120")."""

    def __init__(self):
        super().__init__()
        self.where = ""
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.where = f"{float(loss)} at epoch {self.epoch + 1}, step {batch + 1}"
            self.model.stop_training = True


def tensorboard_callback(log_dir: Path, *, echo: Callable[[str], None]) -> keras.callbacks.Callback | None:
    """TensorBoard logs: Keras's writer on TensorFlow; elsewhere tensorboardX's, or none (said in one line).

    Keras's ``TensorBoard`` callback needs TensorFlow, which a JAX machine
    need not have, so on other backends the epoch's logs are written with
    tensorboardX (``pip install 'audiosort[jax]'``) when it is installed.
    """
    if keras.backend.backend() == "tensorflow":
        return keras.callbacks.TensorBoard(str(log_dir), write_graph=False)
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        echo("no TensorBoard logs: keras.callbacks.TensorBoard needs TensorFlow, and tensorboardX is not installed")
        return None
    return _ScalarLog(log_dir, SummaryWriter)


class _ScalarLog(keras.callbacks.Callback):
    """Each epoch's logs as TensorBoard scalars (train/ and validation/ runs, as Keras's callback lays them out)."""

    def __init__(self, log_dir: Path, writer_class):
        super().__init__()
        self.log_dir = log_dir
        self.writer_class = writer_class
        self.writers = {}

    def on_train_begin(self, logs=None):
        self.writers = {run_name: self.writer_class(str(self.log_dir / run_name)) for run_name in ("train", "validation")}

    def on_epoch_end(self, epoch, logs=None):
        for name, value in (logs or {}).items():
            run_name, tag = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
            self.writers[run_name].add_scalar(f"epoch_{tag}", float(value), epoch)
        for writer in self.writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self.writers.values():
            writer.close()


def scored_val(model: keras.Model, val: Puzzles, batch_size: int) -> PuzzleScores:
    """``val`` scored as eval scores it (each decoding, chance), from :func:`val_scores`."""
    return score_predictions(model, to_position_scores(model, val_scores(model, val, batch_size), what="val"), val.order)


def val_scores(model: keras.Model, val: Puzzles, batch_size: int) -> np.ndarray:
    """The model's outputs for ``val``: log-probabilities [shape=(B, n, n), dtype=float32] (a successor head: (B, n + 1, n + 1) logits).

    Plain calls, batch by batch: under a multi-worker strategy they read this
    worker's copy of the weights, with no collective op (unlike ``model.predict``).
    """
    return np.concatenate([
        keras.ops.convert_to_numpy(model(val.chunks[start : start + batch_size], training=False)).astype(np.float32)
        for start in range(0, len(val), batch_size)
    ])

