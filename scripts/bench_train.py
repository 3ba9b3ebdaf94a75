"""Benchmark a training step beside its yardsticks, all measured in one run, over several batch sizes.

    python scripts/bench_train.py [--batch 256,1024,4096] [--steps 30] [--config configs/seed.yaml] [--jit on|off|auto]
                                  [--augment] [--cached]

Trains ``configs/seed.yaml`` (or ``--config``) on a synthetic music corpus
rendered into a temporary folder, with the model and ``compile`` of
:func:`audiosort.train.compiled_model`, and prints for each batch size:

- seconds per train step and puzzles/s under ``model.fit`` for three feeds
  (``FEEDS``): the plain sampler on the step's path (before), the prefetching
  pipeline that ``audiosort train`` uses (after), and one pre-made batch
  repeated (the step with no input work). A feed's input share of step time
  is ``1 - t_repeated / t_feed`` (goal < 10 %); ``sample_puzzles`` alone is
  timed too;
- the user / system split of the process's CPU time per train step and its
  minor page faults per step (``getrusage``; goal: system < 10 % on CPU);
- achieved FLOP/s of the train step (FLOPs counted analytically, see
  :func:`train_step_flops`) over the FLOP/s of a large float32 matmul timed
  in the same process, and, where a GPU or TPU is present, over a bfloat16
  matmul too (the model computes in bfloat16 there): the utilisation;
- with ``--augment`` (the config's ``augment`` section, switched on), two more
  feeds: the pipeline's batches augmented on the consuming thread, as
  ``train_batches`` did before (``augment-consumer``), and augmented on the
  pipeline's worker threads, as it does now (``augment-pipeline``), with the
  ratio of their puzzles/s; and the augmented streams alone (no train step):
  consumer-side, the pipeline with one worker and with ``--workers``, in
  batches/s and in CPU time per batch on the consuming thread (what a train
  step on that thread waits for; unlike wall time, hardly changed by other
  jobs on the machine) and in all threads;
- with ``--cached`` (a ``logmel*`` config), two more feeds for the feature
  cache (``data.features: cached``, :mod:`audiosort.features`), built
  for the temporary corpus first (its build time is printed): the cached
  stream fitted by the model's feature twin, which shares every trainable
  layer with the raw-audio model (``cached``), and one cached batch repeated
  (``cached-repeated``); then the ratio of the cached feed's puzzles/s over
  the raw pipeline's, at equal model, per round.

Everything is measured ``--rounds`` times, in alternation. Times are the
fastest round, since other processes can only add time; a ratio is taken
within each round (both sides under the same load) and the median printed,
with every round's value beside it to show how noisy the machine was.
Ratios, not absolute times, are the result (DESIGN.md, "Performance
yardsticks"). The last lines are a markdown table of the sweep.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from audiosort import AudiosortError  # first: importing audiosort silences TensorFlow's start-up notes

import keras
from audiosort import features
from audiosort.cli import as_flags
from audiosort.config import AugmentConfig, Config, load_config
from audiosort.data.augment import augment_batch
from audiosort.data.corpus import Corpus
from audiosort.data.prepare import prepare_synthetic
from audiosort.data.pipeline import keep_freed_memory, prefetched_puzzle_batches
from audiosort.data.puzzles import PuzzleSpec, TrackTable, puzzle_batches, sample_puzzles
from audiosort.train import compiled_feature_model, compiled_model

SEED_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "seed.yaml"
JIT_SETTINGS = {"on": True, "off": False, "auto": "auto"}
CORPUS_SECONDS = 600.0  # synthetic music: 10 tracks of 60 s, ~7 of them in the train split
# Layers whose FLOPs are 2 x (kernel size) x (output positions): one multiply-add
# per kernel weight per output position, for Dense (positions = all but the
# feature axis) and for convolutions (positions = the spatial output).
COUNTED_LAYERS = (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D)
# build_model folds the slots into the batch: its encoder runs once per chunk, n
# times per puzzle; every other part runs once per puzzle.
ENCODER_NAME = "encoder"
MATMUL_REPS = 10  # timed products per round, fastest kept


def bench_config(path: Path | None, *, batch_size: int, jit: str | None, augment: bool) -> tuple[Config, str]:
    """The config to benchmark, with the batch size, jit and augmentation settings of the command line.

    Parameters
    ----------
    path : Path, optional
        A config file; None means ``configs/seed.yaml``, or the defaults of
        :mod:`audiosort.config` (the seed's setup) while that file is missing.
    batch_size : int > 0
        Puzzles per train step.
    jit : {"on", "off", "auto"}, optional
        Overrides ``train.jit_compile``; None keeps the config's.
    augment : bool
        ``augment.enabled`` (the config's magnitudes, else the defaults); off without ``--augment``.

    Returns
    -------
    config : Config
    source : str
        Where the config came from, for the report.
    """
    if path is None and not SEED_CONFIG.exists():
        config, source = load_config(None), f"audiosort.config defaults ({SEED_CONFIG.name} not found)"
    else:
        path = path or SEED_CONFIG
        config, source = load_config(path), str(path)
    train = dataclasses.replace(config.train, batch_size=batch_size)
    if jit is not None:
        train = dataclasses.replace(train, jit_compile=JIT_SETTINGS[jit])
    # Augmentation only with --augment, whatever the config says: the feeds compare like with like.
    config = dataclasses.replace(config, augment=dataclasses.replace(config.augment, enabled=augment))
    return dataclasses.replace(config, train=train), source


def synthetic_train_tracks(folder: Path, config: Config) -> TrackTable:
    """Render ``CORPUS_SECONDS`` of synthetic music into a corpus at ``folder``; its train split."""
    prepare_synthetic(
        "music",
        folder,
        duration_seconds=CORPUS_SECONDS,
        puzzle=config.puzzle,
        sample_rate=config.data.sample_rate,
        seed=config.seed,
        n_puzzles=0,
        progress=False,
    )
    return Corpus(folder).tracks("train")


@dataclasses.dataclass(frozen=True)
class StepCost:
    """What one train step cost, averaged over the steps of a fit: wall seconds and the process's CPU."""

    seconds: float
    user_seconds: float  # CPU time in user space, all threads
    system_seconds: float  # CPU time in the kernel (page faults, mmap/munmap, ...)
    minor_faults: float  # page faults served without I/O: fresh zeroed pages, mostly

    @property
    def system_share(self) -> float:
        """System time over the step's CPU time (user + system)."""
        return self.system_seconds / max(self.user_seconds + self.system_seconds, 1e-12)


class StepClock(keras.callbacks.Callback):
    """Wall clock and ``getrusage`` of the whole process at the end of every train step of one ``fit``."""

    def __init__(self):
        super().__init__()
        self.ends: list[tuple[float, resource.struct_rusage]] = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append((time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)))

    def per_step(self) -> StepCost:
        """Mean cost of a step, from the end of the first step to the end of the last.

        The first step also starts the data iterator and its threads, so it is
        left out.
        """
        (first_time, first), (last_time, last) = self.ends[0], self.ends[-1]
        steps = len(self.ends) - 1
        return StepCost(
            seconds=(last_time - first_time) / steps,
            user_seconds=(last.ru_utime - first.ru_utime) / steps,
            system_seconds=(last.ru_stime - first.ru_stime) / steps,
            minor_faults=(last.ru_minflt - first.ru_minflt) / steps,
        )


def fit_step_cost(model: keras.Model, batches, steps: int) -> StepCost:
    """Train ``steps`` steps on the generator ``batches`` with ``model.fit``; the mean cost of a step."""
    clock = StepClock()
    model.fit(batches, epochs=1, steps_per_epoch=steps, callbacks=[clock], shuffle=False, verbose=0)
    batches.close()
    return clock.per_step()


def repeat_batch(chunks: np.ndarray, order: np.ndarray):
    """Endless generator of one fixed batch, with the pipeline's allocator setting: a step with no input work."""
    while True:
        keep_freed_memory()
        yield chunks, order


def consumer_side_augmented(batches, rng: np.random.Generator, augment: AugmentConfig, *, sample_rate: int):
    """``train_batches`` with augmentation as it was before it moved into the pipeline (main at 494e93c).

    The pipeline's batches, each augmented on the consuming thread (the train
    step's) with draws from ``rng``: kept here only as the "before" of
    ``--augment``.
    """
    with contextlib.closing(batches):
        for chunks, order in batches:
            yield augment_batch(chunks, rng, augment, sample_rate=sample_rate), order


# How each fit is fed; the pipeline's input share and system time are issue 12's "after",
# the sampler's its "before" (main's feed: sampling on the step's path, TensorFlow's malloc setting).
FEEDS = {
    "sampler": "puzzle_batches: sample_puzzles on the step's path (before)",
    "pipeline": "prefetched_puzzle_batches, as audiosort train feeds fit (after)",
    "repeated": "one batch repeated: the step without input work",
}
# With --augment: augmentation on the step's thread (before) and on the pipeline's threads (after).
AUGMENT_FEEDS = {
    "augment-consumer": "pipeline batches augmented on the consuming thread (before)",
    "augment-pipeline": "prefetched_puzzle_batches(augment=...), augmented on its worker threads (after)",
}


# With --cached: the feature cache's stream and its step without input work, both fitted by the feature twin.
CACHED_FEEDS = {
    "cached": "cached_puzzle_batches: frames and edges gathered from the feature cache, fitting the feature twin",
    "cached-repeated": "one cached batch repeated: the feature twin's step without input work",
}


def active_feeds(config: Config, *, cached: bool = False) -> dict[str, str]:
    """The feeds measured for ``config``: FEEDS, AUGMENT_FEEDS where augmentation is on, CACHED_FEEDS with ``cached``."""
    feeds = {**FEEDS, **AUGMENT_FEEDS} if config.augment.enabled else dict(FEEDS)
    return {**feeds, **CACHED_FEEDS} if cached else feeds


def make_feeds(tracks: TrackTable, config: Config, spec: PuzzleSpec, batch_size: int, *, rng: np.random.Generator,
               fixed, workers: int | None) -> dict:
    """One fresh generator per active feed, all drawing from ``rng``."""
    feeds = {
        "sampler": puzzle_batches(tracks, spec, batch_size, rng=rng),
        "pipeline": prefetched_puzzle_batches(tracks, spec, batch_size, rng=rng, workers=workers),
        "repeated": repeat_batch(fixed.chunks, fixed.order),
    }
    if config.augment.enabled:
        sample_rate = config.data.sample_rate
        feeds["augment-consumer"] = consumer_side_augmented(
            prefetched_puzzle_batches(tracks, spec, batch_size, rng=rng, workers=workers), rng, config.augment,
            sample_rate=sample_rate,
        )
        feeds["augment-pipeline"] = prefetched_puzzle_batches(
            tracks, spec, batch_size, rng=rng, augment=config.augment, sample_rate=sample_rate, workers=workers
        )
    return feeds


def augmented_streams(tracks: TrackTable, config: Config, spec: PuzzleSpec, batch_size: int, *,
                      rng: np.random.Generator, workers: int | None) -> dict[str, object]:
    """The augmented streams timed alone: consumer-side, and the pipeline with one worker and with ``workers``."""
    sample_rate = config.data.sample_rate
    many = workers or max(1, min(4, len(os.sched_getaffinity(0))))
    return {
        "consumer-side": consumer_side_augmented(
            prefetched_puzzle_batches(tracks, spec, batch_size, rng=rng, workers=workers), rng, config.augment,
            sample_rate=sample_rate,
        ),
        "pipeline, 1 worker": prefetched_puzzle_batches(
            tracks, spec, batch_size, rng=rng, augment=config.augment, sample_rate=sample_rate, workers=1
        ),
        f"pipeline, {many} workers": prefetched_puzzle_batches(
            tracks, spec, batch_size, rng=rng, augment=config.augment, sample_rate=sample_rate, workers=many
        ),
    }


@dataclasses.dataclass(frozen=True)
class StreamCost:
    """A stream consumed alone, as fast as it comes: its rate and whose CPU time it took."""

    batches_per_second: float
    consumer_cpu_seconds: float  # per batch, on the consuming thread: what a train step on that thread waits for
    process_cpu_seconds: float  # per batch, all threads


def stream_cost(batches, *, calls: int) -> StreamCost:
    """Rate and CPU time per batch of ``batches``, after two warm-up batches (threads started)."""
    with contextlib.closing(batches):
        next(batches), next(batches)
        start, thread_start, process_start = time.perf_counter(), time.thread_time(), time.process_time()
        for _ in range(calls):
            next(batches)
        return StreamCost(
            batches_per_second=calls / (time.perf_counter() - start),
            consumer_cpu_seconds=(time.thread_time() - thread_start) / calls,
            process_cpu_seconds=(time.process_time() - process_start) / calls,
        )


def sampler_seconds(tracks: TrackTable, spec: PuzzleSpec, batch_size: int, *, rng: np.random.Generator, calls: int) -> float:
    """Mean seconds of one ``sample_puzzles`` call of ``batch_size`` puzzles, after one warm-up call."""
    sample_puzzles(tracks, spec, batch_size, rng=rng)
    start = time.perf_counter()
    for _ in range(calls):
        sample_puzzles(tracks, spec, batch_size, rng=rng)
    return (time.perf_counter() - start) / calls


def matmul_flops_per_second(size: int, *, reps: int, dtype: str = "float32") -> float:
    """FLOP/s of the fastest of ``reps`` ``(size, size) @ (size, size)`` products in ``dtype`` (2 size^3 FLOPs each).

    Run with ``keras.ops.matmul`` on the backend's default device, after one
    warm-up product; each product is waited for by reading one element back.
    """
    rng = np.random.default_rng(0)
    a = keras.ops.cast(keras.ops.convert_to_tensor(rng.standard_normal((size, size), dtype=np.float32)), dtype)
    b = keras.ops.cast(keras.ops.convert_to_tensor(rng.standard_normal((size, size), dtype=np.float32)), dtype)
    keras.ops.convert_to_numpy(keras.ops.matmul(a, b)[0, 0])
    fastest = math.inf
    for _ in range(reps):
        start = time.perf_counter()
        keras.ops.convert_to_numpy(keras.ops.matmul(a, b)[0, 0])
        fastest = min(fastest, time.perf_counter() - start)
    return 2 * size**3 / fastest


def accelerator_present() -> bool:
    """Whether the backend's default devices include a GPU or TPU."""
    return any(not device.lower().startswith("cpu") for device in keras.distribution.list_devices())


def train_step_flops(model: keras.Model, *, n_chunks: int) -> tuple[float, float, list[str]]:
    """FLOPs per puzzle of the forward pass and of a train step, counted from layer shapes.

    Each Dense or Conv layer costs ``2 * kernel.size * output_positions``
    forward FLOPs per example (one multiply-add per weight per output
    position); the encoder's layers count ``n_chunks`` times per puzzle. The
    backward pass costs the forward once more for the weight gradients and once
    more for the input gradients, except where no trainable layer lies
    upstream (the encoder's first Dense reads the audio, so its input gradient
    is never computed). Batch norm, activations, loss and the Adam update are
    elementwise and not counted (under 1 % for the mlp seed model).

    For the mlp seed model at batch 256 this gives 28.4 MFLOP/puzzle forward
    and 65.9 MFLOP/puzzle per train step (2.32 x forward), the same as the sum
    over the MatMul ops of the train step traced by TensorFlow, whose gradient
    tape leaves out the first Dense's input gradient.

    Parameters
    ----------
    model : keras.Model
        The built sorting model of :func:`audiosort.models.build_model`.
    n_chunks : int >= 2
        Chunks per puzzle, n.

    Returns
    -------
    forward : float
        Forward FLOPs per puzzle.
    train_step : float
        Forward plus backward FLOPs per puzzle.
    uncounted : list of str
        Names of layers with weights that are neither Dense nor Conv (their
        FLOPs are missing from both totals).
    """
    forward = train_step = 0.0
    uncounted: list[str] = []
    upstream_trainable = False

    def visit(layer: keras.layers.Layer, per_puzzle: int) -> None:
        nonlocal forward, train_step, upstream_trainable
        if isinstance(layer, keras.Model):
            for inner in layer.layers:
                visit(inner, n_chunks if layer.name == ENCODER_NAME else per_puzzle)
            return
        if isinstance(layer, COUNTED_LAYERS):
            positions = math.prod(layer.output.shape[1:-1])
            flops = 2 * math.prod(layer.kernel.shape) * positions * per_puzzle
            forward += flops
            train_step += flops * (3 if upstream_trainable else 2)
        elif layer.weights and not isinstance(layer, keras.layers.BatchNormalization):
            uncounted.append(layer.name)
        upstream_trainable = upstream_trainable or bool(layer.trainable_weights)

    visit(model, 1)
    return forward, train_step, uncounted


def describe_model(config: Config, spec: PuzzleSpec, model: keras.Model) -> str:
    """One line naming the network, the puzzle geometry and the parameter count."""
    encoder, sorter = config.model.encoder, config.model.sorter
    return (
        f"{encoder.type} encoder (hidden {encoder.hidden_units}, embedding {encoder.embedding_dim}), "
        f"{sorter.type} sorter (hidden {sorter.hidden_units}), {sorter.normalization}; "
        f"n={spec.n_chunks}, {config.puzzle.chunk_seconds} s chunks at {config.data.sample_rate} Hz "
        f"(L={spec.chunk_samples} samples); {model.count_params() / 1e6:.2f} M parameters"
    )


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run, every option spelled out."""
    options = [
        f"--batch {','.join(map(str, args.batch))}",
        f"--steps {args.steps}",
        f"--warmup {args.warmup}",
        f"--rounds {args.rounds}",
        f"--matmul-size {args.matmul_size}",
    ]
    if args.workers is not None:
        options.append(f"--workers {args.workers}")
    if args.config is not None:
        options.append(f"--config {args.config}")
    if args.jit is not None:
        options.append(f"--jit {args.jit}")
    if args.augment:
        options.append("--augment")
    if args.cached:
        options.append("--cached")
    return "python scripts/bench_train.py " + " ".join(options)


@dataclasses.dataclass
class Measurements:
    """What one batch size measured, one entry per round."""

    steps: dict[str, list[StepCost]]  # per feed (see FEEDS)
    sampler_call: list[float]  # sample_puzzles alone, one batch, seconds
    matmul: dict[str, list[float]]  # FLOP/s per dtype
    augment_call: list[float]  # augment_batch alone, one batch, seconds (with --augment)
    streams: dict[str, list[StreamCost]]  # augmented streams alone (with --augment)


def measure(model: keras.Model, tracks: TrackTable, config: Config, spec: PuzzleSpec, batch_size: int,
            args: argparse.Namespace, *, twin: keras.Model | None = None, cache: features.FeatureCache | None = None) -> Measurements:
    """Warm up, then per round: a fit on each feed, the sampler alone, the matmul yardsticks.

    With a feature ``cache``, its feeds fit ``twin`` (the model's feature
    twin: same layers), in the same rounds as the raw feeds.
    """
    rng = np.random.default_rng(config.seed)
    model.fit(puzzle_batches(tracks, spec, batch_size, rng=rng), epochs=1, steps_per_epoch=args.warmup, shuffle=False,
              verbose=0)
    fixed = sample_puzzles(tracks, spec, batch_size, rng=rng)
    cached_feeds = {}
    if cache is not None:
        edges = config.model.sorter.seam
        twin.fit(features.cached_puzzle_batches(cache, spec, batch_size, rng=rng, edges=edges), epochs=1,
                 steps_per_epoch=args.warmup, shuffle=False, verbose=0)
        with contextlib.closing(features.cached_puzzle_batches(cache, spec, batch_size, rng=rng, edges=edges)) as stream:
            fixed_inputs, fixed_order = next(stream)
        cached_feeds = {
            "cached": lambda: features.cached_puzzle_batches(cache, spec, batch_size, rng=rng, edges=edges, workers=args.workers),
            "cached-repeated": lambda: repeat_batch(fixed_inputs, fixed_order),
        }
    dtypes = ["float32", "bfloat16"] if accelerator_present() else ["float32"]
    m = Measurements({feed: [] for feed in active_feeds(config, cached=cache is not None)}, [], {dtype: [] for dtype in dtypes}, [], {})
    for _ in range(args.rounds):
        feeds = make_feeds(tracks, config, spec, batch_size, rng=rng, fixed=fixed, workers=args.workers)
        for feed, batches in feeds.items():
            m.steps[feed].append(fit_step_cost(model, batches, args.steps))
        for feed, make in cached_feeds.items():
            m.steps[feed].append(fit_step_cost(twin, make(), args.steps))
        m.sampler_call.append(sampler_seconds(tracks, spec, batch_size, rng=rng, calls=min(args.steps, 10)))
        for dtype in dtypes:
            m.matmul[dtype].append(matmul_flops_per_second(args.matmul_size, reps=MATMUL_REPS, dtype=dtype))
        if config.augment.enabled:
            m.augment_call.append(augment_seconds(fixed.chunks, config, calls=min(args.steps, 10)))
            for name, batches in augmented_streams(tracks, config, spec, batch_size, rng=rng, workers=args.workers).items():
                m.streams.setdefault(name, []).append(stream_cost(batches, calls=args.steps))
    return m


def augment_seconds(chunks: np.ndarray, config: Config, *, calls: int) -> float:
    """Mean seconds of one ``augment_batch`` call on ``chunks``, on this thread, after one warm-up call."""
    rng = np.random.default_rng(0)
    augment_batch(chunks, rng, config.augment, sample_rate=config.data.sample_rate)
    start = time.perf_counter()
    for _ in range(calls):
        augment_batch(chunks, rng, config.augment, sample_rate=config.data.sample_rate)
    return (time.perf_counter() - start) / calls


def per_round(values, number_format: str) -> str:
    """``"rounds 0.71 0.70 0.72"``: each round's value, to show how noisy the machine was."""
    return "rounds " + " ".join(format(v, number_format) for v in values)


def print_header(model: keras.Model, config: Config, source: str, spec: PuzzleSpec, args: argparse.Namespace,
                 train_tracks: int, cache_line: str = "") -> None:
    """What ran, where, and how FLOPs were counted."""
    forward, train_step, uncounted = train_step_flops(model, n_chunks=spec.n_chunks)
    policy = keras.mixed_precision.dtype_policy()
    print(f"command: {command_line(args)}")
    print(f"config:  {source}")
    print(f"model:   {describe_model(config, spec, model)}")
    print(
        f"runtime: keras {keras.__version__} ({keras.backend.backend()}), {policy.name}, "
        f"jit_compile={config.train.jit_compile!r} -> {model.jit_compile}, "
        f"devices {', '.join(keras.distribution.list_devices())}, {len(os.sched_getaffinity(0))} CPU cores ({cpu_model()}), "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    print(f"data:    synthetic music, {CORPUS_SECONDS / 60:.0f} min rendered to a temp corpus ({train_tracks} train tracks)")
    print(
        f"FLOPs:   analytic, Dense/Conv only: forward {forward / 1e6:.1f} MFLOP/puzzle; train step "
        f"{train_step / 1e6:.1f} MFLOP/puzzle ({train_step / forward:.2f} x forward: weight + input gradients, "
        f"no input gradient below the first trainable layer); "
        f"uncounted layers with weights: {', '.join(uncounted) or 'none'}"
    )
    print(
        f"timing:  per batch size, {args.rounds} rounds, each: fit {args.steps} steps on each feed, "
        f"sample_puzzles alone, matmul x {MATMUL_REPS}; {args.warmup} warm-up steps first; "
        "times = fastest round, ratios and CPU splits = median over rounds"
    )
    print("feeds:   " + "; ".join(f"{feed} = {what}" for feed, what in active_feeds(config, cached=args.cached).items()))
    if cache_line:
        print(f"cache:   {cache_line}")
    if config.augment.enabled:
        print(f"augment: {config.augment}")
    print("CPU:     user / system seconds and minor page faults of the whole process (getrusage) per train step")


def cpu_model() -> str:
    """The CPU's model name and its widest vector extensions, from /proc/cpuinfo (Linux)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "CPU model unknown"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    vectors = [name for name, flag in (("AVX2", "avx2"), ("AVX-512", "avx512f"), ("AMX", "amx_tile")) if flag in flags]
    return f"{model}, {'/'.join(vectors) or 'no AVX2'}"


def print_batch(model: keras.Model, spec: PuzzleSpec, batch_size: int, m: Measurements) -> list[str]:
    """The table of one batch size; returns its summary row for the closing table."""
    _, train_step, _ = train_step_flops(model, n_chunks=spec.n_chunks)
    step_flops = train_step * batch_size
    repeated = np.array([cost.seconds for cost in m.steps["repeated"]])
    sampler = np.array(m.sampler_call)
    print(f"\nbatch {batch_size}")
    print(f"  {'feed':<15} {'ms/step':>9} {'puzzles/s':>10} {'input share':>12} {'user ms':>8} {'sys ms':>7} "
          f"{'sys share':>9} {'minflt/step':>11}  per round: ms/step")
    summary = [str(batch_size)]
    for feed, costs in m.steps.items():
        seconds = np.array([cost.seconds for cost in costs])
        # A feed's input share is against the repeated batch of its own model (the feature twin's for the cache).
        without_input = np.array([cost.seconds for cost in m.steps["cached-repeated"]]) if feed == "cached" else repeated
        share = np.median(1 - without_input / seconds) if "repeated" not in feed else float("nan")
        user = np.median([cost.user_seconds for cost in costs])
        system = np.median([cost.system_seconds for cost in costs])
        faults = np.median([cost.minor_faults for cost in costs])
        system_share = np.median([cost.system_share for cost in costs])
        print(f"  {feed:<15} {seconds.min() * 1e3:9.1f} {batch_size / seconds.min():10,.0f} "
              f"{'' if 'repeated' in feed else format(share, '.1%'):>12} {user * 1e3:8.1f} {system * 1e3:7.1f} "
              f"{system_share:9.1%} {faults:11,.0f}  {per_round(seconds * 1e3, '.1f')}")
        summary += [f"{batch_size / seconds.min():,.0f}", "" if "repeated" in feed else f"{share:.0%}", f"{system_share:.1%}",
                    f"{faults:,.0f}"]
    print(f"  sample_puzzles alone: {sampler.min() * 1e3:.1f} ms/batch, "
          f"{np.median(sampler / np.array([c.seconds for c in m.steps['sampler']])):.1%} of a sampler-fed step")
    if m.augment_call:
        print_augmentation(batch_size, m)
    if "cached" in m.steps:
        print_cached(batch_size, m)
    pipeline = np.array([cost.seconds for cost in m.steps["pipeline"]])
    for dtype, flops in m.matmul.items():
        flops = np.array(flops)
        utilisation = step_flops / pipeline / flops
        print(f"  {dtype} matmul: {flops.max() / 1e9:.1f} GFLOP/s; achieved {step_flops / pipeline.min() / 1e9:.1f} GFLOP/s "
              f"(pipeline feed); utilisation {np.median(utilisation):.2f} ({per_round(utilisation, '.2f')})")
        summary.append(f"{np.median(utilisation):.2f}")
    return summary


def print_cached(batch_size: int, m: Measurements) -> None:
    """With --cached: the cached feed's step beside the raw pipeline's, at equal model, as ratios per round."""
    seconds = {feed: np.array([cost.seconds for cost in m.steps[feed]]) for feed in ("pipeline", "cached", "repeated", "cached-repeated")}
    for ours, theirs, what in (
        ("cached", "pipeline", "cached feed over the raw pipeline (as audiosort train feeds each)"),
        ("cached-repeated", "repeated", "step without input work, feature twin over raw model"),
    ):
        ratio = seconds[theirs] / seconds[ours]
        # CPU time per step moves less with the other jobs on a shared machine than wall time does.
        cpu = {feed: np.array([cost.user_seconds + cost.system_seconds for cost in m.steps[feed]]) for feed in (ours, theirs)}
        print(f"  {what}: {np.median(ratio):.2f} x the puzzles/s ({batch_size / seconds[ours].min():,.0f} vs "
              f"{batch_size / seconds[theirs].min():,.0f}; {per_round(ratio, '.2f')}); CPU per step "
              f"{np.median(cpu[ours]) * 1e3:.1f} vs {np.median(cpu[theirs]) * 1e3:.1f} ms, "
              f"{np.median(cpu[theirs] / cpu[ours]):.2f} x less")


def print_augmentation(batch_size: int, m: Measurements) -> None:
    """With --augment: augment_batch alone, the two augmented feeds' ratio, and the augmented streams alone."""
    consumer = np.array([cost.seconds for cost in m.steps["augment-consumer"]])
    pipeline = np.array([cost.seconds for cost in m.steps["augment-pipeline"]])
    call = np.array(m.augment_call)
    print(f"  augment_batch alone: {call.min() * 1e3:.1f} ms/batch, "
          f"{np.median(call / consumer):.1%} of an augment-consumer step ({per_round(call * 1e3, '.1f')} ms)")
    ratio = consumer / pipeline
    print(f"  augmented train step, in-pipeline over consumer-side: {np.median(ratio):.2f} x the puzzles/s "
          f"({batch_size / pipeline.min():,.0f} vs {batch_size / consumer.min():,.0f}; {per_round(ratio, '.2f')})")
    baseline = np.array([cost.batches_per_second for cost in m.streams["consumer-side"]])
    print("  augmented stream alone (no train step): batches/s; CPU ms per batch on the consuming thread and in all threads:")
    for name, costs in m.streams.items():
        rates = np.array([cost.batches_per_second for cost in costs])
        consumer = np.median([cost.consumer_cpu_seconds for cost in costs])
        process = np.median([cost.process_cpu_seconds for cost in costs])
        print(f"    {name:<22} {rates.max():8.1f} batches/s  {np.median(rates / baseline):5.2f} x consumer-side  "
              f"consuming thread {consumer * 1e3:6.1f} ms  all threads {process * 1e3:6.1f} ms  ({per_round(rates, '.1f')})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=lambda text: [int(b) for b in text.split(",")], default=[256],
                        help="puzzles per train step; a comma-separated list sweeps them in one run (default 256)")
    parser.add_argument("--steps", type=int, default=30, help="timed train steps per fit (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first, to trace and compile (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all measurements, alternated (default 3)")
    parser.add_argument("--config", type=Path, default=None, help="config file (default configs/seed.yaml)")
    parser.add_argument("--jit", choices=sorted(JIT_SETTINGS), default=None, help="override train.jit_compile")
    parser.add_argument("--matmul-size", type=int, default=2048, help="side of the square matmul yardsticks")
    parser.add_argument("--workers", type=int, default=None, help="pipeline threads (default: as audiosort train)")
    parser.add_argument("--augment", action="store_true",
                        help="augmentation on: time it on the consuming thread (before) and in the pipeline (after)")
    parser.add_argument("--cached", action="store_true",
                        help="also time the feature cache's feed (data.features=cached) with the same model's feature twin")
    args = parser.parse_args()
    if args.steps < 2 or args.warmup < 1 or args.rounds < 1 or min(args.batch) < 1 or args.matmul_size < 1:
        parser.error("need --steps >= 2 and --warmup, --rounds, --batch, --matmul-size >= 1")

    try:
        config, source = bench_config(args.config, batch_size=args.batch[0], jit=args.jit, augment=args.augment)
    except AudiosortError as e:
        parser.error(as_flags(str(e)))
    spec = PuzzleSpec.from_config(config.puzzle, sample_rate=config.data.sample_rate)
    try:
        front = features.FrontEnd.from_config(config) if args.cached else None
    except AudiosortError as e:
        parser.error(f"--cached: {as_flags(str(e))}")
    model, encoder = compiled_model(config, spec, sample_rate=config.data.sample_rate, total_steps=args.steps)
    twin = compiled_feature_model(model, encoder, config, total_steps=args.steps) if args.cached else None
    summaries = []
    with tempfile.TemporaryDirectory(prefix="bench_train-") as tmp:
        tracks = synthetic_train_tracks(Path(tmp) / "music", config)
        cache, cache_line = None, ""
        if args.cached:
            started = time.perf_counter()
            cache = features.open_feature_cache(Corpus(Path(tmp) / "music"), "train", front)
            cache_line = (f"built in {time.perf_counter() - started:.1f} s for {len(cache.frames):,} rows of {front.grid_samples} samples "
                          f"({(cache.frames.nbytes + cache.edges.nbytes) / 2**20:.1f} MiB float16), front end {front}")
        print_header(model, config, source, spec, args, len(tracks), cache_line)
        for batch_size in args.batch:
            m = measure(model, tracks, config, spec, batch_size, args, twin=twin, cache=cache)
            summaries.append(print_batch(model, spec, batch_size, m))
    dtypes = ["float32", "bfloat16"] if accelerator_present() else ["float32"]
    columns = ["batch"] + [
        f"{feed} {what}" for feed in active_feeds(config, cached=args.cached)
        for what in ("puzzles/s", "input share", "sys share", "minflt/step")
    ]
    columns += [f"utilisation vs {dtype} matmul" for dtype in dtypes]
    print(f"\nsummary (load average {os.getloadavg()[0]:.1f} at the end)\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in summaries:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
