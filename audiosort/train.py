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
    logs/           TensorBoard (one machine only)

An interrupted run continues from its last finished epoch with ``resume=True``.
One machine trains with ``model.fit``; the workers of a ``TF_CONFIG`` cluster
train with the short loop of :func:`_train_multi_worker` instead, because Keras
3.15's ``fit`` fails under ``MultiWorkerMirroredStrategy``.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from audiosort import _files, metrics
from audiosort.config import Config, dump_config, load_config
from audiosort.data.corpus import Corpus
from audiosort.data.puzzles import Puzzles, PuzzleSpec, TrackTable, puzzle_batches
from audiosort.errors import ConfigError, InputError
from audiosort.models import build_model
from audiosort.models.objectives import exact_order_accuracy, sorting_loss, sorting_metrics


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
        Keras progress output (0 silent, 1 progress bar, 2 one line per epoch);
        a multi-worker run prints one line per epoch unless 0.
    strategy : tf.distribute.Strategy or None
        Replicates the model over devices (TensorFlow backend). None picks
        :func:`default_strategy`. ``train.batch_size`` is the global batch:
        each of R replicas (over all workers) gets batch_size / R puzzles a step.

    Returns
    -------
    Path
        The run folder. On a worker of a ``TF_CONFIG`` cluster other than the
        chief, a complete run folder of the same name in a fresh temporary
        folder instead (see :func:`_train_multi_worker`).

    Raises
    ------
    ConfigError, InputError
        Settings that do not fit the corpus, a run folder in the way, a
        malformed ``TF_CONFIG``, ``resume`` in a multi-worker cluster, or a
        loss that turned NaN/inf (naming the epoch and step).
    """
    worker_index, n_workers = _cluster_role()
    if n_workers > 1 and keras.backend.backend() != "tensorflow":
        raise ConfigError(
            f"TF_CONFIG names {n_workers} workers, but multi-worker training needs the TensorFlow backend, "
            f"not KERAS_BACKEND={keras.backend.backend()}"
        )
    if n_workers > 1 and resume:
        raise ConfigError(
            f"--resume: TF_CONFIG names {n_workers} workers, and a multi-worker run cannot resume "
            "(its optimizer state is not saved); start afresh with --overwrite"
        )
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
    # Before any other TensorFlow op: MultiWorkerMirroredStrategy configures the runtime's collective ops.
    strategy = strategy or default_strategy()
    if strategy is not None and config.train.batch_size % strategy.num_replicas_in_sync:
        raise ConfigError(
            f"train.batch_size = {config.train.batch_size} does not split over {strategy.num_replicas_in_sync} replicas"
        )
    if n_workers > 1:
        # Only the chief writes under runs_dir, which may be shared; the others write the same files to a temp folder.
        parent = Path(runs_dir) if worker_index == 0 else Path(tempfile.mkdtemp(prefix=f"audiosort-worker{worker_index}-"))
        run_dir = _open_run_dir(parent / config.name, config, resume=False, overwrite=overwrite)
        return _train_multi_worker(
            config, strategy, run_dir, spec, train_tracks, val,
            sample_rate=corpus.sample_rate, worker_index=worker_index, n_workers=n_workers, verbose=verbose,
        )
    run_dir = _open_run_dir(Path(runs_dir) / config.name, config, resume=resume, overwrite=overwrite)
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

    _finish_run(
        run_dir, model, encoder, val,
        scores=model.predict(val.chunks, batch_size=config.train.batch_size, verbose=0),
        epochs=_finished_epochs(run_dir),
        train_seconds=train_seconds,
        puzzles_trained=(config.train.epochs - finished_epochs) * config.train.steps_per_epoch * config.train.batch_size,
        replicas=strategy.num_replicas_in_sync if strategy is not None else 1,
    )
    return run_dir


def _train_multi_worker(
    config: Config, strategy, run_dir: Path, spec: PuzzleSpec, train_tracks: TrackTable, val: Puzzles,
    *, sample_rate: int, worker_index: int, n_workers: int, verbose: int | str,
) -> Path:
    """One worker's part of a ``TF_CONFIG`` cluster run: a short custom loop instead of ``model.fit``.

    Keras 3.15's ``fit`` fails under ``MultiWorkerMirroredStrategy``
    (tensorflow/tensorflow#72388). Every worker runs this same loop; each
    collective op (variable creation, gradient all-reduce, the logged means)
    is therefore called by all workers in the same order.

    - Puzzles: each worker draws its own stream, seeded by ``config.seed`` and
      its index. Its generator yields batches of ``train.batch_size`` puzzles;
      ``experimental_distribute_dataset`` (auto-sharding off) splits each into
      one slice per replica of the cluster and feeds this worker's replicas
      one slice each a step, so a step trains on ``train.batch_size`` puzzles
      over the whole cluster, the same global batch as on one machine.
    - Step: the per-puzzle loss (mean row cross-entropy, as ``compile`` uses)
      is divided by the global batch; the optimizer sums the gradients over
      all replicas. The trainable weights stay identical on every worker;
      BatchNormalization's moving statistics are each replica's own estimate,
      as under ``MirroredStrategy``.
    - Validation: every epoch, each replica scores its share of the val
      puzzles and the sums are all-reduced, so every worker logs the same
      history and takes the same early-stopping decision.
    - Files: ``run_dir`` is the real run folder on the chief (task "chief",
      else worker 0) and a temporary one elsewhere; every worker writes the
      same files into its own ``run_dir`` (no TensorBoard logs), so that only
      the chief writes under ``runs_dir``. ``metrics.json`` adds ``workers``.
    - No ``resume``: only weights are checkpointed, not the optimizer state.

    Parameters
    ----------
    run_dir : Path
        This worker's opened run folder.
    train_tracks : TrackTable
        The corpus's train split.
    val : Puzzles
        The val puzzles, the same on every worker.
    worker_index : int >= 0
        0 on the chief; ``n_workers`` counts the chief and the workers.
    """
    import tensorflow as tf

    batch_size, epochs, steps_per_epoch = config.train.batch_size, config.train.epochs, config.train.steps_per_epoch
    model, encoder = compiled_model(
        config, spec, sample_rate=sample_rate, total_steps=epochs * steps_per_epoch, strategy=strategy
    )
    with strategy.scope():
        model.optimizer.build(model.trainable_variables)
    row_loss = sorting_loss()

    def puzzle_stats(chunks, order, training):
        """Per puzzle: loss (nats, mean over rows), exact order (0 or 1), position accuracy: (b, 3) float32."""
        log_probs = tf.cast(model(chunks, training=training), tf.float32)
        return tf.stack(
            [
                tf.reduce_mean(row_loss.call(order, log_probs), axis=-1),
                exact_order_accuracy(order, log_probs),
                tf.reduce_mean(keras.metrics.sparse_categorical_accuracy(order, log_probs), axis=-1),
            ],
            axis=-1,
        )

    # The optimizer's gradient all-reduce stays outside XLA: XLA compiles no collective op on CPU.
    @tf.function(jit_compile=model.jit_compile)
    def stats_and_gradients(chunks, order):
        with tf.GradientTape() as tape:
            stats = puzzle_stats(chunks, order, training=True)
            loss = tf.nn.compute_average_loss(stats[:, 0], global_batch_size=batch_size)
            scaled_loss = model.optimizer.scale_loss(loss)
        return stats, tape.gradient(scaled_loss, model.trainable_variables)

    def replica_step(chunks, order):
        stats, gradients = stats_and_gradients(chunks, order)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return tf.reduce_sum(stats, axis=0) / batch_size

    @tf.function
    def train_step(iterator):
        """Loss, exact and position accuracy of the step's global batch, the same on every worker: (3,)."""
        return strategy.reduce("SUM", strategy.run(replica_step, args=next(iterator)), axis=None)

    def replica_val_sums(chunks, order):
        replica = tf.distribute.get_replica_context()
        mine = tf.range(replica.replica_id_in_sync_group, tf.shape(order)[0], replica.num_replicas_in_sync)
        return tf.reduce_sum(puzzle_stats(tf.gather(chunks, mine), tf.gather(order, mine), training=False), axis=0)

    @tf.function
    def val_sums(chunks, order):
        """Sums of loss, exact and position accuracy over the puzzles of one val batch: (3,)."""
        return strategy.reduce("SUM", strategy.run(replica_val_sums, args=(chunks, order)), axis=None)

    rng = np.random.default_rng([config.seed, worker_index])
    signature = (
        tf.TensorSpec((batch_size, spec.n_chunks, spec.chunk_samples), tf.int16),
        tf.TensorSpec((batch_size, spec.n_chunks), tf.int32),
    )
    batches = tf.data.Dataset.from_generator(
        lambda: puzzle_batches(train_tracks, spec, batch_size, rng=rng), output_signature=signature
    )
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    # repeat() makes the stream's cardinality infinite, so no step all-reduces "has every worker got data?".
    iterator = iter(strategy.experimental_distribute_dataset(batches.repeat().with_options(options)))

    columns = ["epoch", "exact_accuracy", "loss", "position_accuracy", "val_exact_accuracy", "val_loss", "val_position_accuracy"]
    history = [",".join(columns)]
    best_val_loss, best_epoch = math.inf, 0
    started = time.perf_counter()
    for epoch in range(epochs):
        train_means = np.zeros(3)
        for step in range(steps_per_epoch):
            step_means = train_step(iterator).numpy()
            if not np.isfinite(step_means[0]):
                raise InputError(
                    f"training stopped: loss became {step_means[0]} at epoch {epoch + 1}, step {step + 1}; "
                    "lower train.learning_rate"
                )
            train_means += step_means / steps_per_epoch
        val_means = sum((
            val_sums(val.chunks[start : start + batch_size], val.order[start : start + batch_size]).numpy()
            for start in range(0, len(val), batch_size)
        ), np.zeros(3)) / len(val)
        (loss, exact, position), (val_loss, val_exact, val_position) = train_means, val_means
        history.append(",".join(str(value) for value in [epoch, exact, loss, position, val_exact, val_loss, val_position]))
        _files.write_text(run_dir / "history.csv", "\n".join(history) + "\n")
        if verbose:
            print(f"epoch {epoch + 1}/{epochs}: loss {loss:.4f}, val_loss {val_loss:.4f}, val exact {val_exact:.3f}", flush=True)
        model.save_weights(run_dir / "checkpoints" / "last.weights.h5")
        if val_loss < best_val_loss:
            best_val_loss, best_epoch = val_loss, epoch
            model.save_weights(run_dir / "checkpoints" / "best.weights.h5")
        elif config.train.early_stopping_patience and epoch - best_epoch >= config.train.early_stopping_patience:
            model.load_weights(run_dir / "checkpoints" / "best.weights.h5")
            break
    train_seconds = time.perf_counter() - started

    # A plain call reads this worker's copy of the weights: no collective op, unlike model.predict.
    scores = np.concatenate(
        [
            keras.ops.convert_to_numpy(model(val.chunks[start : start + batch_size], training=False)).astype(np.float32)
            for start in range(0, len(val), batch_size)
        ]
    )
    _finish_run(
        run_dir, model, encoder, val,
        scores=scores,
        epochs=len(history) - 1,
        train_seconds=train_seconds,
        puzzles_trained=(len(history) - 1) * steps_per_epoch * batch_size,
        replicas=strategy.num_replicas_in_sync,
        workers=n_workers,
    )
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
    """The strategy ``train`` uses when given none (TensorFlow backend; None on others).

    ``tf.distribute.MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names
    several chief/worker tasks (call this before any other TensorFlow op: it
    configures the runtime, and waits until every worker has started), else
    ``tf.distribute.MirroredStrategy`` over every GPU when TensorFlow sees more
    than one, else None.

    Raises
    ------
    ConfigError
        ``TF_CONFIG`` is malformed (see :func:`_cluster_role`).
    """
    if keras.backend.backend() != "tensorflow":
        return None
    _, n_workers = _cluster_role()
    import tensorflow as tf

    if n_workers > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy([gpu.name for gpu in gpus]) if len(gpus) > 1 else None


def _cluster_role() -> tuple[int, int]:
    """(this process's index, number of workers) in the cluster ``TF_CONFIG`` names; (0, 1) without one.

    Workers are the cluster's "chief" task then its "worker" tasks, indexed in
    that order, so index 0 is the chief (task type "chief", else worker 0).
    A malformed ``TF_CONFIG``, or one whose task is not among them, is a
    :class:`ConfigError`.
    """
    text = os.environ.get("TF_CONFIG") or "{}"
    try:
        tf_config = json.loads(text)
        cluster = tf_config.get("cluster", {})
        tasks = [(kind, index) for kind in ("chief", "worker") for index in range(len(cluster.get(kind, [])))]
        if len(tasks) < 2:
            return 0, 1
        return tasks.index((tf_config["task"]["type"], tf_config["task"]["index"])), len(tasks)
    except (ValueError, TypeError, AttributeError, KeyError):
        raise ConfigError(
            f"TF_CONFIG = {text!r} is not JSON naming a cluster of chief/worker addresses and this process's task in it"
        ) from None


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
    _files.write_text(run_dir / "config.yaml", config_text)
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


def _finish_run(run_dir: Path, model: keras.Model, encoder: keras.Model, val: Puzzles, *, scores: np.ndarray,
                epochs: int, train_seconds: float, puzzles_trained: int, **fields) -> None:
    """Save model.keras and encoder.keras, then write metrics.json: the val scores, then ``fields``.

    ``scores`` are the model's log-probabilities for ``val`` [shape=(B, n, n)];
    ``train_seconds`` (s) the time this session trained ``puzzles_trained`` puzzles in.
    """
    _save_keras(model, run_dir / "model.keras")
    _save_keras(encoder, run_dir / "encoder.keras")
    report = {
        "val": metrics.score_puzzles(metrics.finite_scores(scores, what="val"), val.order),
        "epochs": epochs,
        "train_seconds_this_session": round(train_seconds, 1),
        "puzzles_per_second": round(puzzles_trained / max(train_seconds, 1e-9), 1),
        "backend": keras.backend.backend(),
        "dtype_policy": keras.mixed_precision.dtype_policy().name,
        **fields,
    }
    _files.write_text(run_dir / "metrics.json", json.dumps(report, indent=1) + "\n")



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
