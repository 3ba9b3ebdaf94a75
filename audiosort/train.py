"""``audiosort train``: config -> run folder, top to bottom.

Fresh puzzles every step from the corpus's train split (the endless sampler),
validation on held-out val tracks, and a run folder that alone rebuilds or
audits the run (DESIGN.md, "Run folder")::

    config.yaml     the fully resolved config
    model.keras     the whole sorter (reload after ``import audiosort``)
    encoder.keras   the encoder alone: int16 chunk (L,) -> embedding
    history.csv     one row per epoch
    metrics.json    val position / exact-order accuracy, Kendall tau, chance
    checkpoints/    best.weights.h5, last.weights.h5, backup/ while running
    logs/           TensorBoard

An interrupted run continues from its last finished epoch with ``resume=True``.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import json
import math
import os
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from audiosort import metrics
from audiosort.config import Config, dump_config, load_config
from audiosort.data.corpus import Corpus
from audiosort.data.puzzles import PuzzleSpec, puzzle_batches
from audiosort.errors import ConfigError, InputError
from audiosort.models import build_model
from audiosort.models.objectives import sorting_loss, sorting_metrics


def train(
    config: Config,
    *,
    runs_dir: str | Path = "runs",
    resume: bool = False,
    overwrite: bool = False,
    verbose: int | str = "auto",
    strategy=None,
) -> Path:
    """Train ``config`` and write its run folder ``runs_dir / config.name``.

    Parameters
    ----------
    config : Config
        Validated config; ``data.corpus`` must be a corpus folder.
    runs_dir : str or Path
        Parent of the run folder.
    resume : bool
        Continue an interrupted run in the existing folder (its config must
        equal ``config``); without it, an existing run folder is an error.
    overwrite : bool
        Delete an existing run folder of the same name and start afresh.
    verbose : int or "auto"
        Keras progress output (0 silent, 1 progress bar, 2 one line per epoch).
    strategy : tf.distribute.Strategy or None
        Replicates the model over devices (TensorFlow backend). None picks
        ``tf.distribute.MirroredStrategy`` over every GPU when TensorFlow sees
        more than one, else no strategy. ``train.batch_size`` is the global
        batch: each of R replicas gets batch_size / R puzzles a step.

    Returns
    -------
    Path
        The run folder.

    Raises
    ------
    ConfigError, InputError
        Settings that do not fit the corpus, a run folder in the way, a
        ``TF_CONFIG`` naming several workers (see :func:`default_strategy`), or
        a loss that turned NaN/inf (naming the epoch and step).
    """
    corpus = Corpus(config.data.corpus)
    if corpus.sample_rate != config.data.sample_rate:
        raise ConfigError(
            f"data.sample_rate = {config.data.sample_rate} Hz but corpus {corpus.path} is {corpus.sample_rate} Hz"
        )
    spec = PuzzleSpec.from_config(config.puzzle, sample_rate=corpus.sample_rate)
    train_tracks = corpus.tracks("train")
    if train_tracks.frames.max() < spec.max_span_samples:
        raise ConfigError(
            f"a chunk set of these puzzle settings spans {spec.max_span_samples / corpus.sample_rate:.3f} s, "
            f"longer than every train track (longest {train_tracks.frames.max() / corpus.sample_rate:.3f} s)"
        )
    val, _ = corpus.puzzles_for("val", spec, n_puzzles=config.data.val_puzzles, seed=config.seed)
    run_dir = _open_run_dir(Path(runs_dir) / config.name, config, resume=resume, overwrite=overwrite)

    strategy = strategy or default_strategy()
    if strategy is not None and config.train.batch_size % strategy.num_replicas_in_sync:
        raise ConfigError(
            f"train.batch_size = {config.train.batch_size} does not split over {strategy.num_replicas_in_sync} replicas"
        )
    model, encoder = compiled_model(
        config,
        spec,
        sample_rate=corpus.sample_rate,
        total_steps=config.train.epochs * config.train.steps_per_epoch,
        strategy=strategy,
    )
    finished_epochs = _finished_epochs(run_dir)
    # A resumed run draws a new stream (seeded by the epochs already done), not a replay of epoch 0.
    rng = np.random.default_rng([config.seed, finished_epochs])
    batches = puzzle_batches(train_tracks, spec, config.train.batch_size, rng=rng)
    divergence = _StopOnNonFinite()
    callbacks = [
        keras.callbacks.BackupAndRestore(str(run_dir / "checkpoints" / "backup")),
        keras.callbacks.ModelCheckpoint(str(run_dir / "checkpoints" / "last.weights.h5"), save_weights_only=True),
        keras.callbacks.ModelCheckpoint(
            str(run_dir / "checkpoints" / "best.weights.h5"), save_weights_only=True, monitor="val_loss", save_best_only=True
        ),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        keras.callbacks.TensorBoard(str(run_dir / "logs")),
        divergence,
    ]
    if config.train.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.train.early_stopping_patience, restore_best_weights=True
            )
        )
    started = time.perf_counter()
    model.fit(
        batches,
        epochs=config.train.epochs,
        steps_per_epoch=config.train.steps_per_epoch,
        validation_data=(val.chunks, val.order),
        callbacks=callbacks,
        shuffle=False,  # every batch is freshly sampled already
        verbose=verbose,
    )
    train_seconds = time.perf_counter() - started
    if divergence.where:
        raise InputError(f"training stopped: loss became {divergence.where}; lower train.learning_rate")

    _save_keras(model, run_dir / "model.keras")
    _save_keras(encoder, run_dir / "encoder.keras")
    scores = metrics.finite_scores(model.predict(val.chunks, batch_size=config.train.batch_size, verbose=0), what="val")
    report = {
        "val": metrics.score_puzzles(scores, val.order),
        "epochs": _finished_epochs(run_dir),
        "train_seconds_this_session": round(train_seconds, 1),
        "puzzles_per_second": round((config.train.epochs - finished_epochs) * config.train.steps_per_epoch
                                    * config.train.batch_size / max(train_seconds, 1e-9), 1),
        "backend": keras.backend.backend(),
        "dtype_policy": keras.mixed_precision.dtype_policy().name,
        "replicas": strategy.num_replicas_in_sync if strategy is not None else 1,
    }
    _write_atomic(run_dir / "metrics.json", json.dumps(report, indent=1) + "\n")
    return run_dir


def compiled_model(
    config: Config, spec: PuzzleSpec, *, sample_rate: int, total_steps: int, strategy=None
) -> tuple[keras.Model, keras.Model]:
    """A fresh, compiled sorter and its encoder, in a cleared Keras session seeded by ``config.seed``.

    Parameters
    ----------
    config : Config
        ``model`` picks the network, ``train`` the optimizer, precision and jit.
    spec : PuzzleSpec
        Gives n and the chunk length L (samples) of the model's input.
    sample_rate : int
        Hz, for front ends that work in seconds (log-mel).
    total_steps : int
        Optimizer steps planned, for the cosine schedule.
    strategy : tf.distribute.Strategy or None
        Builds and compiles the model in its scope (replicated variables).
    """
    clear_keras_state()
    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_dtype_policy(_precision(config.train.mixed_precision))
    # clear_session resets TensorFlow's default graph, which holds the strategy stack: enter the scope after it.
    with strategy.scope() if strategy else contextlib.nullcontext():
        model, encoder = build_model(
            config.model, n_chunks=spec.n_chunks, chunk_samples=spec.chunk_samples, sample_rate=sample_rate
        )
        learning_rate = config.train.learning_rate
        if config.train.lr_schedule == "cosine":
            learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=total_steps)
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss=sorting_loss(),
            metrics=sorting_metrics(),
            jit_compile=config.train.jit_compile,
        )
    return model, encoder


def default_strategy():
    """``tf.distribute.MirroredStrategy`` over every GPU when TensorFlow sees more than one, else None.

    Raises
    ------
    ConfigError
        ``TF_CONFIG`` describes a cluster of several tasks. Multi-worker
        training needs ``tf.distribute.MultiWorkerMirroredStrategy``, and Keras
        3's ``model.fit`` does not run under it: it reduces the step's scalar
        logs along axis 0 (tensorflow/tensorflow#72388, still so in Keras 3.15).
        Refusing is better than each worker silently training its own copy.
    """
    if keras.backend.backend() != "tensorflow":
        return None
    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    n_tasks = sum(len(tasks) for tasks in cluster.values())
    if n_tasks > 1:
        raise ConfigError(
            f"TF_CONFIG describes {n_tasks} workers, but multi-worker training is not supported: Keras 3's fit fails "
            "under MultiWorkerMirroredStrategy (tensorflow/tensorflow#72388); train on one machine (all its GPUs are used)"
        )
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy([gpu.name for gpu in gpus]) if len(gpus) > 1 else None


def clear_keras_state() -> None:
    """Free what earlier models left behind, so runs in one process do not grow memory.

    ``keras.backend.clear_session`` alone is not enough on TensorFlow: every
    ``tf.custom_gradient`` traced in graph mode registers its gradient function
    in TensorFlow's global gradient registry under a unique
    ``CustomGradient-<uid>`` name and never removes it
    (tensorflow/python/ops/custom_gradient.py, ``_graph_mode_decorator``). That
    closure holds the whole traced train step, about 18 MiB per run here. Those
    names belong to graphs traced earlier, so dropping them between runs is safe
    as long as no other thread is tracing at the same time.
    """
    keras.backend.clear_session(free_memory=True)
    if keras.backend.backend() == "tensorflow":
        from tensorflow.python.framework import ops

        # A private registry: if a TensorFlow release renames it, skip (the memory test will say so).
        registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", {})
        for name in [name for name in registry if name.startswith("CustomGradient-")]:
            del registry[name]
        gc.collect()


def load_run_config(run_dir: str | Path) -> Config:
    """The resolved config a run was trained with."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise InputError(f"{run_dir} is not a run folder: no config.yaml")
    return load_config(path)


def _open_run_dir(run_dir: Path, config: Config, *, resume: bool, overwrite: bool) -> Path:
    config_text = dump_config(config)
    if resume and overwrite:
        raise InputError("--resume continues a run and --overwrite deletes it: pass one of them")
    if overwrite and run_dir.exists():
        shutil.rmtree(run_dir)
    if resume:
        if not (run_dir / "config.yaml").exists():
            raise InputError(f"nothing to resume: {run_dir} has no config.yaml")
        if load_run_config(run_dir) != config:
            raise ConfigError(f"--resume: the config differs from the one {run_dir} was started with")
        return run_dir
    if run_dir.exists() and any(run_dir.iterdir()):
        raise InputError(f"run folder {run_dir} already exists; pass --resume to continue it, --overwrite to replace it")
    try:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create run folder {run_dir}: {e.strerror or e}") from None
    _write_atomic(run_dir / "config.yaml", config_text)
    return run_dir


def _finished_epochs(run_dir: Path) -> int:
    history = run_dir / "history.csv"
    if not history.exists():
        return 0
    with open(history, newline="") as f:
        return sum(1 for _ in csv.DictReader(f))


def _precision(setting: str) -> str:
    if setting != "auto":
        return setting
    return "mixed_bfloat16" if _accelerator_available() else "float32"


def _accelerator_available() -> bool:
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() in ("gpu", "tpu")
    return False


def _save_keras(model: keras.Model, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.partial.keras")
    model.save(tmp)
    os.replace(tmp, path)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text)
    os.replace(tmp, path)


class _StopOnNonFinite(keras.callbacks.Callback):
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
