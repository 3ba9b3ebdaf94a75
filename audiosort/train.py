"""``audiosort train``: config -> run folder, top to bottom.

Fresh puzzles every step from the corpus's train split (the endless sampler,
fed by :func:`train_batches`), validation on held-out val tracks, and a run
folder that alone rebuilds or audits the run (:mod:`audiosort.run`,
docs/run-folder.md).

One policy for what a run writes, :func:`run_callbacks`: val scored as eval scores it, the history row,
the checkpoints, TensorBoard, early stopping and the stop at a non-finite
loss are Keras callbacks, given to ``model.fit`` on one machine and to
:func:`audiosort.distributed.fit_multi_worker` on the workers of a
``TF_CONFIG`` cluster. :func:`fit` is the one training call (``audit`` trains
through it too).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import keras
import numpy as np

from audiosort import distributed, features, run
from audiosort.config import AugmentConfig, Config, n_chunks_schedule
from audiosort.data.corpus import Corpus
from audiosort.data.pipeline import prefetched_puzzle_batches
from audiosort.data.puzzles import Puzzles, PuzzleSpec, TrackTable
from audiosort.errors import AudiosortError, ConfigError, InputError
from audiosort.heads import get_head
from audiosort.models import build_feature_model, build_model
from audiosort.predict import score_predictions, to_position_scores


def train(
    config: Config,
    *,
    runs_dir: str | Path = "runs",
    resume: bool = False,
    overwrite: bool = False,
    verbose: int | str = "auto",
    strategy=None,
    echo: Callable[[str], None] | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    keep: tuple = (),
) -> Path:
    """Train ``config`` and write its run folder ``runs_dir / config.name``.

    Parameters
    ----------
    config : Config
        Validated config; ``data.corpus`` must be a corpus folder.
    runs_dir : str or Path
        Parent of the run folder. Nothing else under it is touched.
    resume : bool
        Continue an interrupted run in the existing folder from its last
        finished epoch (its config must equal ``config``); without it, an
        existing run folder is an error. Resuming a finished run does nothing
        and returns its folder.
    overwrite : bool
        Replace an existing run folder of the same name (that folder only) and start afresh.
    verbose : int or "auto"
        Progress output (0 silent, 1 Keras's progress bar, 2 one line per
        epoch, for logs); a multi-worker run prints one line per epoch unless 0.
    strategy : tf.distribute.Strategy or None
        Replicates the model over devices (TensorFlow backend). None picks
        :func:`audiosort.distributed.default_strategy`. ``train.batch_size`` is
        the global batch: each of R replicas (over all workers) gets
        batch_size / R puzzles a step.
    echo : callable or None
        Called with one line before training (backend, device, precision) and
        with notes such as a skipped TensorBoard log; None prints nothing.
    callbacks : sequence of keras.callbacks.Callback
        Yours (a W&B or MLflow logger, a custom one), called after the run's
        own (:func:`run_callbacks`) on every epoch of every training path, a
        resumed run's remaining epochs included; ``on_epoch_end`` gets the
        epoch's logs (``loss``, metrics, ``val_`` columns).
    keep : tuple of str or Path
        Inputs the run folder may not overlap besides the corpus (the config
        file): see :func:`audiosort.run.open_run`.

    Returns
    -------
    Path
        The run folder. On a worker of a ``TF_CONFIG`` cluster other than the
        chief, a complete run folder of the same name in a fresh temporary
        folder instead (only the chief writes under ``runs_dir``).

    Raises
    ------
    ConfigError, InputError
        Settings that do not fit the corpus, a run folder in the way, a
        malformed ``TF_CONFIG``, ``resume`` in a multi-worker cluster, a
        damaged checkpoint to resume from, a file that cannot be written, or a
        loss that turned NaN/inf (naming the epoch and step). A fresh run that
        fails before its first epoch leaves no run folder.
    """
    echo = echo or (lambda line: None)
    worker_index, n_workers = distributed.cluster_role()
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
    run_dir = Path(runs_dir) / config.name
    if resume and run.stage_done(run_dir, "train"):
        return run_dir
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
    cache = None
    if config.data.features == "cached":
        if n_workers > 1:
            raise ConfigError("data.features = 'cached' is not supported by multi-worker training; use raw")
        cache = features.open_feature_cache(corpus, "train", features.FrontEnd.from_config(config), echo=echo)
    # Before any other TensorFlow op: MultiWorkerMirroredStrategy configures the runtime's collective ops.
    strategy = strategy or distributed.default_strategy()
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    if config.train.batch_size % replicas:
        raise ConfigError(f"train.batch_size = {config.train.batch_size} does not split over {replicas} replicas")
    if worker_index > 0:
        # Only the chief writes under runs_dir, which may be shared; the others write the same files to a temp folder.
        run_dir = Path(tempfile.mkdtemp(prefix=f"audiosort-worker{worker_index}-")) / config.name
    epochs_done = run.open_run(run_dir, config, resume=resume, overwrite=overwrite, keep=keep)
    try:
        _train_in(
            run_dir, config, spec, train_tracks, val, strategy,
            sample_rate=corpus.sample_rate, epochs_done=epochs_done, worker_index=worker_index,
            n_workers=n_workers, verbose=verbose, echo=echo, user_callbacks=callbacks, cache=cache,
        )
    except AudiosortError:
        if not resume:
            run.discard_unstarted(run_dir)
        raise
    return run_dir


def _train_in(
    run_dir: Path, config: Config, spec: PuzzleSpec, train_tracks: TrackTable, val: Puzzles, strategy,
    *, sample_rate: int, epochs_done: int, worker_index: int, n_workers: int, verbose: int | str,
    echo: Callable[[str], None], user_callbacks: Sequence[keras.callbacks.Callback], cache: features.FeatureCache | None,
) -> None:
    """Build the model, restore a resumed run's checkpoint, train the remaining epochs, finish the run folder.

    With a feature ``cache``, the model fitted (and checkpointed) is the
    feature twin of the full model (:func:`audiosort.models.build_feature_model`),
    whose layers are the full model's: val is scored by the full model on its
    audio, and Keras's val loss on the twin with val's front end computed by the full model's layers.
    """
    batch_size, steps_per_epoch = config.train.batch_size, config.train.steps_per_epoch
    model, encoder = compiled_model(
        config, spec, sample_rate=sample_rate, total_steps=config.train.epochs * steps_per_epoch, strategy=strategy,
        compile=cache is None,
    )
    fitted, val_inputs = model, None
    if cache is not None:
        fitted = compiled_feature_model(model, encoder, config, total_steps=config.train.epochs * steps_per_epoch)
        val_inputs = front_end_inputs(model, encoder, val.chunks, batch_size=batch_size)
    device = describe_device()
    precision = keras.mixed_precision.dtype_policy().name
    echo(f"training on {keras.backend.backend()}, {device}, precision {precision}")
    state = run.checkpoint_state(run_dir)
    run.restore_checkpoint(fitted, run_dir, epochs_done)
    # Each worker, and a resumed run, draws its own stream (seeded by the epochs already done), not a replay.
    rng = np.random.default_rng([config.seed, epochs_done] if n_workers == 1 else [config.seed, worker_index])
    callbacks = [
        *run_callbacks(
            run_dir, config, val=val, best_val_loss=state.get("best_val_loss", math.inf), echo=echo, scoring_model=model
        ),
        *user_callbacks,
    ]
    started = time.perf_counter()
    for first_epoch, end_epoch, n_chunks in curriculum(config, n_workers):
        if end_epoch <= epochs_done:
            continue
        phase_spec = dataclasses.replace(spec, n_chunks=n_chunks)
        if cache is None:
            batches = train_batches(train_tracks, phase_spec, batch_size, rng=rng, augment=config.augment, sample_rate=sample_rate)
        else:
            batches = features.cached_puzzle_batches(cache, phase_spec, batch_size, rng=rng, edges=config.model.sorter.seam)
        # Closed before the next phase: its background threads must stop drawing from rng first.
        with contextlib.closing(batches):
            fit(
                fitted,
                batches,
                batch_size=batch_size,
                epochs=end_epoch,
                steps_per_epoch=steps_per_epoch,
                initial_epoch=max(first_epoch, epochs_done),
                val=val,
                callbacks=callbacks,
                verbose=verbose,
                strategy=strategy,
                val_inputs=val_inputs,
            )
    train_seconds = time.perf_counter() - started
    epochs = run.finished_epochs(run_dir)
    fields = {"workers": n_workers} if n_workers > 1 else {}
    run.finish_run(run_dir, model, encoder, {
        "val": score_predictions(model, to_position_scores(model, val_scores(model, val, batch_size), what="val"), val.order).to_dict(),
        "epochs": epochs,
        "train_seconds_this_session": round(train_seconds, 1),
        "puzzles_per_second": round((epochs - epochs_done) * steps_per_epoch * batch_size / max(train_seconds, 1e-9), 1),
        "backend": keras.backend.backend(),
        "device": device,
        "dtype_policy": precision,
        "replicas": strategy.num_replicas_in_sync if strategy is not None else 1,
        **fields,
    })


def curriculum(config: Config, n_workers: int = 1) -> list[tuple[int, int, int]]:
    """``(first_epoch, end_epoch, n_chunks)`` per phase of ``train.n_chunks_schedule``; one phase without it.

    Raises
    ------
    ConfigError
        A schedule that does not end at ``puzzle.n_chunks`` (the n of val and
        test), or one in a multi-worker run.
    """
    schedule = n_chunks_schedule(config.train)
    if not schedule:
        return [(0, config.train.epochs, config.puzzle.n_chunks)]
    if schedule[-1][1] != config.puzzle.n_chunks:
        raise ConfigError(
            f"train.n_chunks_schedule = {config.train.n_chunks_schedule!r} must end at puzzle.n_chunks = "
            f"{config.puzzle.n_chunks}, the n of the validation and test puzzles"
        )
    if n_workers > 1:
        raise ConfigError("train.n_chunks_schedule is not supported by multi-worker training; leave it empty")
    ends = [epoch for epoch, _ in schedule[1:]] + [config.train.epochs]
    return [(epoch, end, n_chunks) for (epoch, n_chunks), end in zip(schedule, ends)]


def train_batches(
    tracks: TrackTable,
    spec: PuzzleSpec,
    batch_size: int,
    *,
    rng: np.random.Generator,
    augment: AugmentConfig,
    sample_rate: int,
) -> Iterator:
    """The endless stream of training batches ``(chunks, order)``: fresh puzzles from ``tracks`` every step.

    The one place batches are made for training (``fit``'s input on every
    path, and audit's): the plain sampler's batches, cut ahead on background
    threads (:func:`audiosort.data.pipeline.prefetched_puzzle_batches`), which
    with ``augment.enabled`` also pass each batch's chunks through
    :func:`audiosort.data.augment.augment_batch` (at ``sample_rate`` Hz, each
    batch with its own generator spawned from ``rng``): training batches only,
    never val, test or eval.
    """
    return prefetched_puzzle_batches(tracks, spec, batch_size, rng=rng, augment=augment, sample_rate=sample_rate)


def fit(
    model: keras.Model,
    batches: Iterator,
    *,
    batch_size: int,
    epochs: int,
    steps_per_epoch: int,
    initial_epoch: int = 0,
    val: Puzzles | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = 0,
    strategy=None,
    val_inputs: tuple | None = None,
) -> None:
    """Train a compiled ``model`` on ``batches``; stop, and raise, at the first non-finite loss.

    ``verbose`` as for :func:`train`: 2 prints one line per epoch (:class:`EpochLine`).

    ``model.fit`` on one machine; :func:`audiosort.distributed.fit_multi_worker`
    under a multi-worker ``strategy``, with the same ``callbacks``.

    Parameters
    ----------
    batches : iterator of (chunks, order)
        From :func:`train_batches`.
    batch_size : int > 0
        Puzzles per batch of ``batches`` (the global batch over all replicas).
    val : Puzzles or None
        Scored after every epoch (``val_`` columns); required with more than one worker.
    val_inputs : tuple of np.ndarray or None
        ``model``'s inputs for ``val`` where they are not its chunks (a
        feature model: :func:`front_end_inputs`).

    Raises
    ------
    InputError
        The loss became NaN or inf, naming the epoch and step.
    """
    divergence = StopOnNonFinite()
    callbacks = [*callbacks, divergence]
    if verbose == 2 and not distributed.is_multi_worker(strategy):
        # Keras's verbose=2 writes two lines per epoch ("Epoch 1/20", then the logs); a log wants one.
        callbacks.append(EpochLine(epochs))
        verbose = 0
    if distributed.is_multi_worker(strategy):
        distributed.fit_multi_worker(
            model, strategy, batches, batch_size=batch_size, epochs=epochs,
            steps_per_epoch=steps_per_epoch, val=val, callbacks=callbacks, verbose=verbose,
        )
    else:
        model.fit(
            batches,
            epochs=epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_epoch,
            validation_data=None if val is None else (val.chunks if val_inputs is None else val_inputs, val.order),
            callbacks=callbacks,
            shuffle=False,  # every batch is freshly sampled already
            verbose=verbose,
        )
    if divergence.where:
        raise InputError(f"training stopped: loss became {divergence.where}; lower train.learning_rate")


def run_callbacks(
    run_dir: Path, config: Config, *, val: Puzzles, best_val_loss: float = math.inf, echo: Callable[[str], None],
    scoring_model: keras.Model | None = None,
) -> list[keras.callbacks.Callback]:
    """What a run writes each epoch, on every training path: the policy in one list.

    First the ``val`` puzzles scored as eval scores them (:class:`DecodedValScores`,
    into the epoch's logs), then ``history.csv`` (a row per epoch, appended), then the checkpoints
    (:class:`RunCheckpoints`: written after the history row, so a resumed run
    cuts the history back to its checkpoint), TensorBoard ``logs/``, and
    early stopping on ``val_loss`` when ``train.early_stopping_patience`` is
    set (restoring the best weights). ``scoring_model`` scores val instead of
    the fitted model (the full model of a feature model it shares its layers with).
    """
    callbacks = [
        DecodedValScores(val, config.train.batch_size, model=scoring_model),
        keras.callbacks.CSVLogger(str(run.history_path(run_dir)), append=True),
        RunCheckpoints(run_dir, best_val_loss=best_val_loss),
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
        scores = to_position_scores(model, val_scores(model, self.val, self.batch_size), what="val")
        scored = score_predictions(model, scores, self.val.order)
        best, name = scored.verdict_scores, scored.verdict_decoding
        logs[f"val_{name}_exact_accuracy"] = best.exact_accuracy.value
        logs[f"val_{name}_position_accuracy"] = best.position_accuracy.value
        logs[f"val_{name}_kendall_tau"] = best.kendall_tau.value
        logs["val_exact_chance"] = scored.chance.exact_accuracy


class RunCheckpoints(keras.callbacks.Callback):
    """After every epoch: ``last.weights.h5``, ``best.weights.h5`` when ``val_loss`` improved, then ``state.json``.

    Written through :func:`audiosort.run.save_checkpoint` (atomic, state last),
    so an interrupted or failed write leaves the previous checkpoint intact.
    An epoch that ended on a non-finite loss is not checkpointed.
    """

    def __init__(self, run_dir: Path, *, best_val_loss: float = math.inf):
        super().__init__()
        self.run_dir = run_dir
        self.best_val_loss = best_val_loss

    def on_epoch_end(self, epoch, logs=None):
        if not math.isfinite((logs or {}).get("loss", 0.0)):
            return  # weights a NaN/inf loss left behind are no point to resume from: keep the last good ones
        val_loss = (logs or {}).get("val_loss", math.inf)
        best = val_loss < self.best_val_loss
        if best:
            self.best_val_loss = float(val_loss)
        run.save_checkpoint(self.model, self.run_dir, epochs=epoch + 1, best_val_loss=self.best_val_loss, best=best)


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


def val_scores(model: keras.Model, val: Puzzles, batch_size: int) -> np.ndarray:
    """The model's outputs for ``val``: log-probabilities [shape=(B, n, n), dtype=float32] (a successor head: (B, n + 1, n + 1) logits).

    Plain calls, batch by batch: under a multi-worker strategy they read this
    worker's copy of the weights, with no collective op (unlike ``model.predict``).
    """
    return np.concatenate([
        keras.ops.convert_to_numpy(model(val.chunks[start : start + batch_size], training=False)).astype(np.float32)
        for start in range(0, len(val), batch_size)
    ])


def compiled_model(
    config: Config, spec: PuzzleSpec, *, sample_rate: int, total_steps: int, strategy=None, compile: bool = True
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
    compile : bool
        False: built only (its feature twin is what gets compiled and fitted, :func:`compiled_feature_model`).
    """
    clear_keras_state()
    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_dtype_policy(_precision(config.train.mixed_precision))
    # clear_session resets TensorFlow's default graph, which holds the strategy stack: enter the scope after it.
    with strategy.scope() if strategy else contextlib.nullcontext():
        model, encoder = build_model(
            config.model,
            n_chunks=None if config.train.n_chunks_schedule else spec.n_chunks,  # a growing n needs an any-n model
            chunk_samples=spec.chunk_samples,
            sample_rate=sample_rate,
        )
        if compile:
            _compile(model, config, total_steps=total_steps)
    return model, encoder


def _compile(model: keras.Model, config: Config, *, total_steps: int) -> None:
    """``model.compile`` with the run's optimizer (Adam, ``train.learning_rate`` and its schedule), loss and metrics."""
    learning_rate = config.train.learning_rate
    if config.train.lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=total_steps)
    head = get_head(config.model.sorter.type)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=head.loss(config.model.sorter),
        metrics=head.compile_metrics(),
        jit_compile=config.train.jit_compile,
    )


def compiled_feature_model(model: keras.Model, encoder: keras.Model, config: Config, *, total_steps: int) -> keras.Model:
    """The feature twin of ``model`` (:func:`audiosort.models.build_feature_model`), compiled as ``train`` compiles a model.

    Built from a ``model`` made by :func:`compiled_model` with ``compile=False``:
    the twin owns the optimizer, and training it trains ``model``'s layers.
    """
    twin = build_feature_model(model, encoder)
    _compile(twin, config, total_steps=total_steps)
    return twin


def front_end_inputs(model: keras.Model, encoder: keras.Model, chunks: np.ndarray, *, batch_size: int) -> tuple[np.ndarray, ...]:
    """The inputs of ``model``'s feature twin for ``chunks``, computed by ``model``'s own front-end layers.

    Parameters
    ----------
    model, encoder : keras.Model
        From :func:`audiosort.models.build_model` with a log-mel encoder.
    chunks : np.ndarray [shape=(B, n, L), dtype=int16]
    batch_size : int > 0
        Puzzles per call.

    Returns
    -------
    tuple of np.ndarray
        ``frames [shape=(B, n, T, n_mels), float32]`` and, for a seam head,
        ``edges [shape=(B, n, 2, edge_mels), float32]``: what
        :func:`audiosort.data.features.cached_puzzle_batches` gathers
        (in float32, not rounded to the cache's float16).
    """
    log_mel = keras.Model(encoder.input, encoder.get_layer("log_mel").output)
    seam = model.get_layer("edge_log_mel") if "edge_log_mel" in {layer.name for layer in model.layers} else None
    n_puzzles, n_chunks, chunk_samples = chunks.shape
    flat = chunks.reshape(-1, chunk_samples)
    parts = []
    for start in range(0, len(flat), batch_size * n_chunks):
        block = flat[start : start + batch_size * n_chunks]
        outputs = [log_mel(block, training=False)]
        if seam is not None:
            outputs.append(seam(model.get_layer("seam_int16_to_float")(block)))
        parts.append([keras.ops.convert_to_numpy(output).astype(np.float32) for output in outputs])
    return tuple(np.concatenate(part).reshape(n_puzzles, n_chunks, *part[0].shape[1:]) for part in zip(*parts))


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


def describe_device() -> str:
    """The device training runs on, for the start line and metrics.json: GPU names, or why the CPU."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        names = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus]
    elif backend == "jax":
        import jax

        names = [device.device_kind for device in jax.devices() if device.platform in ("gpu", "tpu")]
    else:
        names = []
    if not names:
        return f"CPU: no GPU visible to {backend}"
    return ", ".join(f"{names.count(name)} x {name}" for name in dict.fromkeys(names))


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
