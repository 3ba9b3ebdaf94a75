"""Where in the music does the demo model sort well? Exact-order accuracy by section (docs/demo.md).

    python scripts/demo_sections.py runs/demo --split val

Each puzzle of the corpus's fixed set is placed by the sections of its first
and last sample ("within one build", "across build -> drop", ...), which are
re-drawn from the track's seed exactly as :func:`audiosort.data.synthetic.music`
draws them. Only for corpora made by ``audiosort prepare --synthetic music``
with the default 60 s tracks. Prints the model's and the continuity baseline's
exact-order accuracy (Hungarian decoding) per group.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np

from audiosort import decoding, metrics
from audiosort.baselines import continuity_scores
from audiosort.data import synthetic
from audiosort.data.puzzles import PuzzleSpec, load_puzzle_set
from audiosort.predict import position_scores
from audiosort.run import load_run_config, load_run_model


def track_sections(track: dict, *, seed: int, sample_rate: int) -> tuple[list, float]:
    """The (section kind, bar in section, section bars) of each bar of one synthetic track, and bar length in samples."""
    index = int(track["source"].rsplit("/", 1)[1])
    rng = np.random.default_rng([seed, index])  # as audiosort.data.prepare.prepare_synthetic seeds track k
    return synthetic.music_sections(track["frames"] / sample_rate, sample_rate=sample_rate, rng=rng)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--split", choices=("val", "test"), default="val")
    args = parser.parse_args()
    config = load_run_config(args.run_dir)
    corpus = Path(config.data.corpus)
    manifest = json.loads((corpus / "manifest.json").read_text())
    sample_rate = manifest["sample_rate"]
    spec = PuzzleSpec.from_config(config.puzzle, sample_rate=sample_rate)
    puzzles = load_puzzle_set(corpus / "puzzles" / f"{args.split}.npz")
    model = load_run_model(args.run_dir, spec)
    scores = position_scores(model, puzzles.chunks, batch_size=256)
    model_right = metrics.exact_correct(decoding.decode(scores, method="hungarian"), puzzles.order)
    baseline = continuity_scores(puzzles.chunks, sample_rate=sample_rate)
    baseline_right = metrics.exact_correct(decoding.decode(baseline, method="hungarian"), puzzles.order)

    sections = {}
    groups = collections.defaultdict(list)
    for b, track_index in enumerate(puzzles.track):
        track_index = int(track_index)
        if track_index not in sections:
            sections[track_index] = track_sections(manifest["tracks"][track_index], seed=config.seed, sample_rate=sample_rate)
        bars, bar_samples = sections[track_index]
        first_bar = int(puzzles.starts[b].min() // bar_samples)
        last_bar = int((puzzles.starts[b].max() + spec.chunk_samples - 1) // bar_samples)
        first, last = bars[first_bar], bars[last_bar]
        same_section = first[0] == last[0] and last_bar - first_bar == last[1] - first[1]
        groups[f"within one {first[0]}" if same_section else f"across {first[0]} -> {last[0]}"].append(b)

    print(f"| where the puzzle lies ({args.split}) | puzzles | model exact | continuity baseline |")
    print("|---|---|---|---|")
    for name, members in sorted(groups.items(), key=lambda item: -len(item[1])):
        print(f"| {name} | {len(members)} | {model_right[members].mean():.3f} | {baseline_right[members].mean():.3f} |")
    print(f"| all | {len(model_right)} | {model_right.mean():.3f} | {baseline_right.mean():.3f} |")


if __name__ == "__main__":
    main()
