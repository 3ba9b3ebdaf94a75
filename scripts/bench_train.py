"""Benchmark a training step of the seed model beside its yardsticks, all measured in one run.

    python scripts/bench_train.py [--batch 256] [--steps 30] [--config configs/seed.yaml] [--jit on|off|auto]

Trains ``configs/seed.yaml`` (or, while that file does not exist, the
defaults of :mod:`audiosort.config`, which are the seed's setup) on a
synthetic music corpus rendered into a temporary folder, with the model and
``compile`` of :func:`audiosort.train.compiled_model`, and prints:

- seconds per train step and puzzles/s, fed by ``model.fit`` from the endless
  :func:`~audiosort.data.puzzles.puzzle_batches` sampler (as ``audiosort
  train`` does);
- the same steps fed one pre-made batch over and over through the same
  generator path, so the two differ only by the sampling; the input
  pipeline's share of step time is ``1 - t_repeated / t_sampled`` (goal
  < 10 %), and ``sample_puzzles`` alone is timed as a fraction of the step;
- achieved FLOP/s of the train step (FLOPs counted analytically, see
  :func:`train_step_flops`) over the FLOP/s of a large float32 matmul timed
  in the same process: the utilisation (goal >= 0.5 on CPU).

Everything is measured ``--rounds`` times, in alternation. Times are the
fastest round, since other processes can only add time; a ratio is taken
within each round (both sides under the same load) and the median printed,
with every round's value beside it to show how noisy the machine was.
Ratios, not absolute times, are the result (DESIGN.md, "Performance
yardsticks").
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from audiosort import AudiosortError  # first: importing audiosort silences TensorFlow's start-up notes

import keras
from audiosort.config import Config, load_config
from audiosort.data.corpus import Corpus, prepare_synthetic
from audiosort.data.puzzles import PuzzleSpec, TrackTable, puzzle_batches, sample_puzzles
from audiosort.train import compiled_model

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


def bench_config(path: Path | None, *, batch_size: int, jit: str | None) -> tuple[Config, str]:
    """The config to benchmark, with the batch size and jit setting of the command line.

    Parameters
    ----------
    path : Path, optional
        A config file; None means ``configs/seed.yaml``, or the defaults of
        :mod:`audiosort.config` (the seed's setup) while that file is missing.
    batch_size : int > 0
        Puzzles per train step.
    jit : {"on", "off", "auto"}, optional
        Overrides ``train.jit_compile``; None keeps the config's.

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


class StepClock(keras.callbacks.Callback):
    """Wall-clock time at the end of every train step of one ``fit``."""

    def __init__(self):
        super().__init__()
        self.ends: list[float] = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())

    def seconds_per_step(self) -> float:
        """Mean step time in seconds, from the end of the first step to the end of the last.

        The first step also starts the data iterator and its prefetch thread,
        so it is left out.
        """
        return (self.ends[-1] - self.ends[0]) / (len(self.ends) - 1)


def fit_seconds_per_step(model: keras.Model, batches, steps: int) -> float:
    """Train ``steps`` steps on the generator ``batches`` with ``model.fit``; seconds per step."""
    clock = StepClock()
    model.fit(batches, epochs=1, steps_per_epoch=steps, callbacks=[clock], shuffle=False, verbose=0)
    return clock.seconds_per_step()


def repeat_batch(chunks: np.ndarray, order: np.ndarray):
    """Endless generator of one fixed batch: :func:`puzzle_batches` without the sampling."""
    while True:
        yield chunks, order


def sampler_seconds(tracks: TrackTable, spec: PuzzleSpec, batch_size: int, *, rng: np.random.Generator, calls: int) -> float:
    """Mean seconds of one ``sample_puzzles`` call of ``batch_size`` puzzles, after one warm-up call."""
    sample_puzzles(tracks, spec, batch_size, rng=rng)
    start = time.perf_counter()
    for _ in range(calls):
        sample_puzzles(tracks, spec, batch_size, rng=rng)
    return (time.perf_counter() - start) / calls


def matmul_flops_per_second(size: int, *, reps: int) -> float:
    """FLOP/s of the fastest of ``reps`` float32 ``(size, size) @ (size, size)`` products (2 size^3 FLOPs each).

    Run with ``keras.ops.matmul`` on the backend's default device, after one
    warm-up product; each product is waited for by reading one element back.
    """
    rng = np.random.default_rng(0)
    a = keras.ops.convert_to_tensor(rng.standard_normal((size, size), dtype=np.float32))
    b = keras.ops.convert_to_tensor(rng.standard_normal((size, size), dtype=np.float32))
    keras.ops.convert_to_numpy(keras.ops.matmul(a, b)[0, 0])
    fastest = math.inf
    for _ in range(reps):
        start = time.perf_counter()
        keras.ops.convert_to_numpy(keras.ops.matmul(a, b)[0, 0])
        fastest = min(fastest, time.perf_counter() - start)
    return 2 * size**3 / fastest


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
        f"--batch {args.batch}",
        f"--steps {args.steps}",
        f"--warmup {args.warmup}",
        f"--rounds {args.rounds}",
        f"--matmul-size {args.matmul_size}",
    ]
    if args.config is not None:
        options.append(f"--config {args.config}")
    if args.jit is not None:
        options.append(f"--jit {args.jit}")
    return "python scripts/bench_train.py " + " ".join(options)


@dataclasses.dataclass
class Measurements:
    """What one benchmark run measured, one entry per round (seconds, FLOP/s)."""

    sampled_step: list[float]  # train step fed by the sampler
    repeated_step: list[float]  # train step fed one fixed batch
    sampler_call: list[float]  # sample_puzzles alone, one batch
    matmul_flops_per_second: list[float]
    train_tracks: int
    load_before: float  # 1-minute load average
    load_after: float


def measure(model: keras.Model, config: Config, spec: PuzzleSpec, args: argparse.Namespace) -> Measurements:
    """Render the corpus, warm up, then per round: the sampled fit, the repeated fit, the sampler, the matmul."""
    load_before = os.getloadavg()[0]
    rounds = Measurements([], [], [], [], 0, load_before, load_before)
    with tempfile.TemporaryDirectory(prefix="bench_train-") as tmp:
        tracks = synthetic_train_tracks(Path(tmp) / "music", config)
        rng = np.random.default_rng(config.seed)
        warmup = puzzle_batches(tracks, spec, args.batch, rng=rng)
        model.fit(warmup, epochs=1, steps_per_epoch=args.warmup, shuffle=False, verbose=0)
        fixed = sample_puzzles(tracks, spec, args.batch, rng=rng)
        for _ in range(args.rounds):
            fresh = puzzle_batches(tracks, spec, args.batch, rng=rng)
            rounds.sampled_step.append(fit_seconds_per_step(model, fresh, args.steps))
            same = repeat_batch(fixed.chunks, fixed.order)
            rounds.repeated_step.append(fit_seconds_per_step(model, same, args.steps))
            rounds.sampler_call.append(sampler_seconds(tracks, spec, args.batch, rng=rng, calls=args.steps))
            rounds.matmul_flops_per_second.append(matmul_flops_per_second(args.matmul_size, reps=MATMUL_REPS))
    rounds.train_tracks = len(tracks)
    rounds.load_after = os.getloadavg()[0]
    return rounds


def per_round(values: np.ndarray, number_format: str) -> str:
    """``"rounds 0.71 0.70 0.72"``: each round's value, to show how noisy the machine was."""
    return "rounds " + " ".join(format(v, number_format) for v in values)


def print_report(
    model: keras.Model, config: Config, source: str, spec: PuzzleSpec, args: argparse.Namespace, m: Measurements
) -> None:
    """The header lines (what ran, where, how FLOPs were counted) and the table of results.

    Times and rates are each the fastest round; the ratios (pipeline share,
    utilisation) are the median of ratios taken within one round, so that both
    sides of a ratio saw the same load.
    """
    forward, train_step, uncounted = train_step_flops(model, n_chunks=spec.n_chunks)
    step_flops = train_step * args.batch
    sampled, repeated = np.array(m.sampled_step), np.array(m.repeated_step)
    sampler, matmul = np.array(m.sampler_call), np.array(m.matmul_flops_per_second)
    share = 1 - repeated / sampled
    utilisation = step_flops / sampled / matmul
    policy = keras.mixed_precision.dtype_policy()
    precision_note = "" if policy.compute_dtype == "float32" else f" (the model computes in {policy.compute_dtype})"
    print(f"command: {command_line(args)}")
    print(f"config:  {source}")
    print(f"model:   {describe_model(config, spec, model)}")
    print(
        f"runtime: keras {keras.__version__} ({keras.backend.backend()}), {policy.name}, "
        f"jit_compile={config.train.jit_compile!r} -> {model.jit_compile}, "
        f"devices {', '.join(keras.distribution.list_devices())}, {len(os.sched_getaffinity(0))} CPU cores, "
        f"load average {m.load_before:.1f} before / {m.load_after:.1f} after"
    )
    print(
        f"data:    synthetic music, {CORPUS_SECONDS / 60:.0f} min rendered to a temp corpus "
        f"({m.train_tracks} train tracks), batch {args.batch}"
    )
    print(
        f"FLOPs:   analytic, Dense/Conv only: forward {forward / 1e6:.1f} MFLOP/puzzle; train step "
        f"{train_step / 1e6:.1f} MFLOP/puzzle ({train_step / forward:.2f} x forward: weight + input gradients, "
        f"no input gradient below the first trainable layer); "
        f"uncounted layers with weights: {', '.join(uncounted) or 'none'}"
    )
    print(
        f"timing:  {args.rounds} rounds, each: fit {args.steps} steps on puzzle_batches, fit {args.steps} steps "
        f"on one repeated batch (same generator path), sample_puzzles x {args.steps}, matmul x {MATMUL_REPS}; "
        f"{args.warmup} warm-up steps first; times = fastest round, ratios = median of per-round ratios"
    )
    rows = [
        ("train step, real sampling", f"{sampled.min() * 1e3:8.1f} ms/step", per_round(sampled * 1e3, ".1f")),
        ("  throughput", f"{args.batch / sampled.min():8,.0f} puzzles/s", ""),
        ("train step, one batch repeated", f"{repeated.min() * 1e3:8.1f} ms/step", per_round(repeated * 1e3, ".1f")),
        ("  throughput", f"{args.batch / repeated.min():8,.0f} puzzles/s", ""),
        (
            "input pipeline share of step",
            f"{np.median(share):8.1%}",
            f"1 - repeated / sampled, goal < 10 %; {per_round(share, '.1%')}",
        ),
        (
            "sample_puzzles alone",
            f"{sampler.min() * 1e3:8.1f} ms/batch",
            f"{np.median(sampler / sampled):.1%} of a sampled step; {per_round(sampler * 1e3, '.1f')}",
        ),
        ("achieved, train step", f"{step_flops / sampled.min() / 1e9:8.1f} GFLOP/s", "train-step FLOPs x batch / step time"),
        (
            f"float32 matmul {args.matmul_size}^3",
            f"{matmul.max() / 1e9:8.1f} GFLOP/s",
            f"keras.ops.matmul, same process; {per_round(matmul / 1e9, '.0f')}",
        ),
        (
            "utilisation",
            f"{np.median(utilisation):8.2f}",
            f"achieved / matmul, goal >= 0.5 on CPU{precision_note}; {per_round(utilisation, '.2f')}",
        ),
    ]
    width = max(len(name) for name, _, _ in rows)
    print()
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:<20}  {note}".rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256, help="puzzles per train step (default 256)")
    parser.add_argument("--steps", type=int, default=30, help="timed train steps per fit (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first, to trace and compile (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all measurements, alternated (default 3)")
    parser.add_argument("--config", type=Path, default=None, help="config file (default configs/seed.yaml)")
    parser.add_argument("--jit", choices=sorted(JIT_SETTINGS), default=None, help="override train.jit_compile")
    parser.add_argument("--matmul-size", type=int, default=2048, help="side of the square float32 matmul yardstick")
    args = parser.parse_args()
    if args.steps < 2 or args.warmup < 1 or args.rounds < 1 or args.batch < 1 or args.matmul_size < 1:
        parser.error("need --steps >= 2 and --warmup, --rounds, --batch, --matmul-size >= 1")

    try:
        config, source = bench_config(args.config, batch_size=args.batch, jit=args.jit)
    except AudiosortError as e:
        parser.error(str(e))
    spec = PuzzleSpec.from_config(config.puzzle, sample_rate=config.data.sample_rate)
    model, _ = compiled_model(config, spec, sample_rate=config.data.sample_rate, total_steps=args.steps)
    print_report(model, config, source, spec, args, measure(model, config, spec, args))


if __name__ == "__main__":
    main()
