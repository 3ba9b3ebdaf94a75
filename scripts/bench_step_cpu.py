"""CPU time of one train step for several models, measured side by side in one process.

    python scripts/bench_step_cpu.py configs/recipe-small-gaps.yaml \
        "configs/recipe-small-gaps.yaml model.sorter.seam=false" configs/logmel.yaml [--steps 10] [--rounds 3]

Each argument is a config path followed by optional ``section.key=value``
overrides, in one quoted string. Every model is built and compiled as
``audiosort train`` does (:func:`audiosort.train.compiled_model`) and trained
with ``train_on_batch`` on one fixed batch of its config's puzzle shape
(random int16 audio: the step's cost does not depend on the audio), so input
work is excluded. Printed per model: CPU seconds per step of the whole
process (all threads, ``time.process_time``), which on a shared machine
depends far less on other jobs than wall time does, and wall seconds per
step beside it; the fastest of ``--rounds`` rounds, the models alternating
within each round, and each model's CPU time over the first one's.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from audiosort import AudiosortError  # noqa: F401  first: importing audiosort silences TensorFlow's start-up notes
from audiosort.config import load_config
from audiosort.data.puzzles import PuzzleSpec
from audiosort.train import compiled_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help='"CONFIG [section.key=value ...]", one per model')
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, models alternating (default 3)")
    args = parser.parse_args()
    runs = []
    for model_arg in args.models:
        path, *overrides = model_arg.split()
        config = load_config(path, overrides)
        spec = PuzzleSpec.from_config(config.puzzle, sample_rate=config.data.sample_rate)
        model, _ = compiled_model(config, spec, sample_rate=config.data.sample_rate, total_steps=1000)
        rng = np.random.default_rng(0)
        chunks = rng.integers(-3000, 3000, size=(config.train.batch_size, spec.n_chunks, spec.chunk_samples), dtype=np.int16)
        order = np.stack([rng.permutation(spec.n_chunks) for _ in range(config.train.batch_size)])
        model.train_on_batch(chunks, order)  # compile and warm up
        runs.append({"label": model_arg, "model": model, "batch": (chunks, order), "cpu": [], "wall": []})
    for _ in range(args.rounds):
        for run in runs:
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(args.steps):
                run["model"].train_on_batch(*run["batch"])
            run["cpu"].append((time.process_time() - cpu) / args.steps)
            run["wall"].append((time.perf_counter() - wall) / args.steps)
    first = min(runs[0]["cpu"])
    print("| model | CPU s / step | wall s / step | CPU vs first |")
    print("|---|---|---|---|")
    for run in runs:
        print(f"| {run['label']} | {min(run['cpu']):.3f} | {min(run['wall']):.3f} | {min(run['cpu']) / first:.2f} |")


if __name__ == "__main__":
    main()
