"""Continuity baseline on many chunks: Kendall tau, position and exact accuracy on a corpus's test tracks.

Decoded by the path search a successor head uses (decoding.best_paths: Held-Karp up to 12 chunks, beam
search above). Prints one markdown row per (gaps, n). Usage:
    python scripts/continuity_many_chunks.py CORPUS [--puzzles 500]
"""

from __future__ import annotations

import argparse
import time

from audiosort import metrics
from audiosort.baselines import continuity_scores
from audiosort.config import PuzzleConfig
from audiosort.data.corpus import Corpus
from audiosort.data.puzzles import PuzzleSpec

GAPS_SECONDS = ((0.0, 0.005), (0.1, 0.25))
N_CHUNKS = (3, 5, 10, 20, 50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus")
    parser.add_argument("--puzzles", type=int, default=500)
    args = parser.parse_args()
    corpus = Corpus(args.corpus)
    print("| gaps (s) | n | tau | position | exact | chance position | seconds |")
    print("|---|---|---|---|---|---|---|")
    for pad_min, pad_max in GAPS_SECONDS:
        for n_chunks in N_CHUNKS:
            puzzle = PuzzleConfig(n_chunks=n_chunks, chunk_seconds=0.2, pad_min_seconds=pad_min, pad_max_seconds=pad_max)
            spec = PuzzleSpec.from_config(puzzle, sample_rate=corpus.sample_rate)
            puzzles, _ = corpus.puzzles_for("test", spec, n_puzzles=args.puzzles, seed=0)
            started = time.perf_counter()
            scores = continuity_scores(puzzles.chunks, sample_rate=corpus.sample_rate)
            seconds = time.perf_counter() - started
            report = metrics.score_puzzles(scores, puzzles.order, decodings=("hungarian",)).order_scores
            print(
                f"| {pad_min}-{pad_max} | {n_chunks} | {report.kendall_tau.value:.3f} | "
                f"{report.position_accuracy.value:.3f} | {report.exact_accuracy.value:.3f} | "
                f"{1 / n_chunks:.3f} | {seconds:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
