"""``audiosort train``: config -> run folder, top to bottom.

:func:`train` reads as the run goes: config checks, data (the corpus's train
tracks, fed fresh puzzles every step by :func:`train_batches`; the fixed val
puzzles), model (:func:`compiled_model`, compiled by
:func:`compile_for_training`), callbacks (what a run writes each epoch,
:func:`audiosort.callbacks.run_callbacks`), fit (:func:`fit`, the one training
call, which ``audit`` uses too; on the workers of a ``TF_CONFIG`` cluster it
hands the same callbacks to :func:`audiosort.distributed.fit_multi_worker`),
save (:func:`audiosort.run.finish_run`). The run folder alone rebuilds or
audits the run (:mod:`audiosort.run`, docs/run-folder.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import keras
import numpy as np

from audiosort import distributed, features, run
from audiosort.callbacks import EpochLine, StopOnNonFinite, run_callbacks, scored_val
from audiosort.config import AugmentConfig, Config, n_chunks_schedule
from audiosort.data import beats
from audiosort.data.corpus import Corpus
from audiosort.data.pipeline import prefetched_puzzle_batches
from audiosort.data.puzzles import Puzzles, PuzzleSpec, TrackTable, relative_starts
from audiosort.device import clear_keras_state, describe_device, precision_policy
from audiosort.errors import AudiosortError, ConfigError, InputError
from audiosort.heads import get_head
from audiosort.models import build_feature_model, build_model, build_training_twin
from audiosort.models.front_end import front_end_inputs


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
    worker_index, n_workers = distributed.checked_cluster_role(resume=resume)
    run_dir = Path(runs_dir) / config.name
    if resume and run.stage_done(run_dir, "train"):
        return run_dir
    # Data: train tracks to cut fresh puzzles from, the fixed val puzzles, the cached front end if asked for.
    corpus = Corpus(config.data.corpus)
    spec, train_tracks = _puzzle_spec(config, corpus)
    if config.puzzle.align == "beats":
        # Training puzzles only: val (next) and every scored set stay unaligned, so a gain must transfer to them.
        train_tracks = dataclasses.replace(train_tracks, beats=beats.open_beats(corpus, "train", train_tracks, echo=echo))
    val, _ = corpus.puzzles_for("val", spec, n_puzzles=config.data.val_puzzles, seed=config.seed)
    cache = None
    if config.data.features == "cached":
        if n_workers > 1:
            raise ConfigError("data.features = 'cached' is not supported by multi-worker training; use raw")
        cache = features.open_feature_cache(corpus, "train", features.FrontEnd.from_config(config), echo=echo)
    if n_workers > 1 and config.model.training_twin:
        raise ConfigError(
            "model.gap_regression and model.embeddings_only are not supported by multi-worker training; set their weights to 0"
        )
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


def _puzzle_spec(config: Config, corpus: Corpus) -> tuple[PuzzleSpec, TrackTable]:
    """The puzzle settings at the corpus's rate, and its train tracks, which they must fit."""
    if corpus.sample_rate != config.data.sample_rate:
        raise ConfigError(
            f"data.sample_rate = {config.data.sample_rate} Hz but corpus {corpus.path} is {corpus.sample_rate} Hz"
        )
    spec = PuzzleSpec.from_config(config.puzzle, sample_rate=corpus.sample_rate)
    train_tracks = corpus.tracks("train")
    longest = train_tracks.frames.max()
    if longest < spec.max_span_samples:
        raise ConfigError(
            f"a chunk set of these puzzle settings spans {spec.max_span_samples / corpus.sample_rate:.3f} s, "
            f"longer than every train track (longest {longest / corpus.sample_rate:.3f} s)"
        )
    holding = np.count_nonzero(train_tracks.frames >= spec.max_span_samples)
    if config.model.contrastive.distinct_tracks and holding < config.train.batch_size:
        raise ConfigError(
            f"model.contrastive.distinct_tracks needs train.batch_size = {config.train.batch_size} train tracks that "
            f"hold a chunk set; {corpus.path} has {holding}: lower train.batch_size or turn distinct_tracks off"
        )
    return spec, train_tracks


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
    With ``model.gap_regression`` or ``model.embeddings_only``, it is the
    training twin (:func:`compiled_training_twin`), fed the chunks' offsets
    beside them; its val loss is the full model's.
    """
    batch_size, steps_per_epoch = config.train.batch_size, config.train.steps_per_epoch
    total_steps = config.train.epochs * steps_per_epoch
    # Model, compiled for training.
    twin = config.model.training_twin
    model, encoder = compiled_model(
        config, spec, sample_rate=sample_rate, total_steps=total_steps, strategy=strategy, compile=cache is None and not twin
    )
    fitted, val_inputs = model, None
    if cache is not None:
        fitted = compiled_feature_model(model, encoder, config, total_steps=total_steps)
        val_inputs = front_end_inputs(model, encoder, val.chunks, batch_size=batch_size)
    elif twin:
        fitted = compiled_training_twin(model, config, spec, total_steps=total_steps, strategy=strategy)
        val_inputs = (val.chunks, relative_starts(val.starts))
    device, precision = describe_device(), keras.mixed_precision.dtype_policy().name
    echo(f"training on {keras.backend.backend()}, {device}, precision {precision}")
    best = run.checkpoint_state(run_dir).get("best", {})
    run.restore_checkpoint(fitted, run_dir, epochs_done)
    # Callbacks: what the run writes each epoch, then the caller's.
    callbacks = [
        *run_callbacks(
            run_dir, config, val=val, best=best, echo=echo, scoring_model=model, encoder=encoder
        ),
        *user_callbacks,
    ]
    # Fit, phase by phase of the n_chunks curriculum. Each worker, and a resumed run, draws its own stream
    # (seeded by the epochs already done), not a replay.
    rng = np.random.default_rng([config.seed, epochs_done] if n_workers == 1 else [config.seed, worker_index])
    started = time.perf_counter()
    for first_epoch, end_epoch, n_chunks in curriculum(config, n_workers):
        if end_epoch <= epochs_done:
            continue
        phase_spec = dataclasses.replace(spec, n_chunks=n_chunks)
        distinct_tracks = config.model.contrastive.distinct_tracks
        if cache is None:
            batches = train_batches(
                train_tracks, phase_spec, batch_size, rng=rng, augment=config.augment, sample_rate=sample_rate,
                distinct_tracks=distinct_tracks, offsets=twin,
            )
        else:
            batches = features.cached_puzzle_batches(
                cache, phase_spec, batch_size, rng=rng, edges=config.model.sorter.seam, distinct_tracks=distinct_tracks
            )
        # Closed before the next phase: its background threads must stop drawing from rng first.
        with contextlib.closing(batches):
            fit(
                fitted, batches, batch_size=batch_size, epochs=end_epoch, steps_per_epoch=steps_per_epoch,
                initial_epoch=max(first_epoch, epochs_done), val=val, callbacks=callbacks, verbose=verbose,
                strategy=strategy, val_inputs=val_inputs,
            )
    train_seconds = time.perf_counter() - started
    # Save: the model, its encoder and metrics.json, from the epoch train.keep chooses.
    epochs = run.finished_epochs(run_dir)
    kept_epoch = run.restore_kept(fitted, run_dir, config.train.keep)
    run.finish_run(run_dir, model, encoder, {
        "val": scored_val(model, val, batch_size).to_dict(),
        "epochs": epochs,
        "kept": {"by": config.train.keep, "epoch": kept_epoch},
        "train_seconds_this_session": round(train_seconds, 1),
        "puzzles_per_second": round((epochs - epochs_done) * steps_per_epoch * batch_size / max(train_seconds, 1e-9), 1),
        "backend": keras.backend.backend(),
        "device": device,
        "dtype_policy": precision,
        "replicas": strategy.num_replicas_in_sync if strategy is not None else 1,
        **({"workers": n_workers} if n_workers > 1 else {}),
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
    distinct_tracks: bool = False,
    offsets: bool = False,
) -> Iterator:
    """The endless stream of training batches ``(chunks, order)``: fresh puzzles from ``tracks`` every step.

    The one place batches are made for training (``fit``'s input on every
    path, and audit's): the plain sampler's batches, cut ahead on background
    threads (:func:`audiosort.data.pipeline.prefetched_puzzle_batches`), which
    with ``augment.enabled`` also pass each batch's chunks through
    :func:`audiosort.data.augment.augment_batch` (at ``sample_rate`` Hz, each
    batch with its own generator spawned from ``rng``): training batches only,
    never val, test or eval. ``distinct_tracks``
    (``model.contrastive.distinct_tracks``): no two puzzles of a batch from
    one track. ``offsets`` (``model.gap_regression``, ``model.embeddings_only``): batches
    ``((chunks, offsets), order)`` for the training twin (:func:`compiled_training_twin`).
    """
    return prefetched_puzzle_batches(
        tracks, spec, batch_size, rng=rng, augment=augment, sample_rate=sample_rate,
        distinct_tracks=distinct_tracks, offsets=offsets,
    )


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
    batches : iterator of (inputs, order)
        From :func:`train_batches`: ``inputs`` the chunks, or the tuple ``model`` takes.
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
    keras.mixed_precision.set_dtype_policy(precision_policy(config.train.mixed_precision))
    # clear_session resets TensorFlow's default graph, which holds the strategy stack: enter the scope after it.
    with strategy.scope() if strategy else contextlib.nullcontext():
        model, encoder = build_model(
            config.model,
            n_chunks=None if config.train.n_chunks_schedule else spec.n_chunks,  # a growing n needs an any-n model
            chunk_samples=spec.chunk_samples,
            sample_rate=sample_rate,
        )
        if compile:
            compile_for_training(model, config, total_steps=total_steps)
    return model, encoder


def compile_for_training(model: keras.Model, config: Config, *, total_steps: int) -> None:
    """``model.compile`` for training: the run's optimizer, loss and metrics, the one place every training path sets them.

    Adam at ``train.learning_rate`` (cosine-decayed over ``total_steps``
    optimizer steps with ``train.lr_schedule = 'cosine'``); the loss and
    metrics of the head ``model.sorter.type`` (:func:`audiosort.heads.get_head`);
    ``train.jit_compile``. Used for the sorter (:func:`compiled_model`) and
    for its feature twin (:func:`compiled_feature_model`).
    """
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
    compile_for_training(twin, config, total_steps=total_steps)
    return twin


def compiled_training_twin(model: keras.Model, config: Config, spec: PuzzleSpec, *, total_steps: int, strategy=None) -> keras.Model:
    """The training twin of ``model`` (:func:`audiosort.models.build_training_twin`), compiled as ``train`` compiles a model.

    Built from a ``model`` made by :func:`compiled_model` with ``compile=False``:
    the twin owns the optimizer, and training it trains ``model``'s layers and
    the gap head, which only the twin (and its checkpoints) holds. The gap
    target's scale is ``spec``'s gap range.
    """
    with strategy.scope() if strategy else contextlib.nullcontext():
        twin = build_training_twin(
            model, config.model, pad_min_samples=spec.pad_min_samples, pad_max_samples=spec.pad_max_samples
        )
        compile_for_training(twin, config, total_steps=total_steps)
    return twin
