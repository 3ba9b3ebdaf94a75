"""Score a pairwise-head run on puzzles of any n: its successor scores decoded as the best path, beside continuity.

The pairwise head scores "chunk j right after chunk i" (and "starts", "ends") with weights shared by
every pair, so those scores exist for any n although its position output enumerates n! orders
(n <= 7). This script takes them for n chunks, decodes them with decoding.best_paths (Held-Karp up
to 12 chunks, beam search above) and scores the order on the corpus's test tracks, beside the
continuity baseline decoded by the same search on the same puzzles. One markdown row. Usage:
    python scripts/path_eval.py RUN CORPUS --n-chunks 20 --pad-min-seconds 0 --pad-max-seconds 0.005
"""

from __future__ import annotations

import argparse
import time

import keras

from audiosort import decoding, metrics
from audiosort.baselines import continuity_scores
from audiosort.config import PuzzleConfig
from audiosort.data.corpus import Corpus
from audiosort.data.puzzles import PuzzleSpec
from audiosort.heads import head_of
from audiosort.run import load_run_model


def successor_scores(model, chunks, *, batch_size=512):
    """A join-scoring head's (successor (B, n, n), first (B, n), last (B, n)) scores of puzzles (B, n, L) int16."""
    n_puzzles, n_chunks, chunk_samples = chunks.shape
    embeddings = model.get_layer("encoder").predict(chunks.reshape(-1, chunk_samples), batch_size=batch_size, verbose=0)
    scores = head_of(model).join_scores(model.get_layer("sorter"), embeddings.reshape(n_puzzles, n_chunks, -1))
    return tuple(keras.ops.convert_to_numpy(each)[..., 0] for each in scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("corpus")
    parser.add_argument("--n-chunks", type=int, required=True)
    parser.add_argument("--chunk-seconds", type=float, default=0.2)
    parser.add_argument("--pad-min-seconds", type=float, required=True)
    parser.add_argument("--pad-max-seconds", type=float, required=True)
    parser.add_argument("--puzzles", type=int, default=300)
    args = parser.parse_args()
    corpus = Corpus(args.corpus)
    puzzle = PuzzleConfig(
        n_chunks=args.n_chunks, chunk_seconds=args.chunk_seconds,
        pad_min_seconds=args.pad_min_seconds, pad_max_seconds=args.pad_max_seconds,
    )
    puzzles, _ = corpus.puzzles_for("test", PuzzleSpec.from_config(puzzle, sample_rate=corpus.sample_rate), n_puzzles=args.puzzles, seed=0)
    model = load_run_model(args.run)
    started = time.perf_counter()
    successor, first, last = successor_scores(model, puzzles.chunks)
    sequence = decoding.best_paths(successor, first=first, last=last)
    seconds = time.perf_counter() - started
    learned = metrics.score_orders(decoding.positions_of(sequence), puzzles.order)
    continuity = continuity_scores(puzzles.chunks, sample_rate=corpus.sample_rate)
    baseline = metrics.score_orders(decoding.decode(continuity, method="hungarian"), puzzles.order)

    def cells(report):
        scored = report.order_scores
        tau = scored.kendall_tau
        return f"{tau.value:.3f} [{tau.low:.3f}, {tau.high:.3f}] | {scored.position_accuracy.value:.3f} | {scored.exact_accuracy.value:.3f}"

    print("| gaps (s) | n | puzzles | model tau [95%] | position | exact | continuity tau [95%] | position | exact | decode s |")
    print(
        f"| {args.pad_min_seconds}-{args.pad_max_seconds} | {args.n_chunks} | {len(puzzles.order)} | {cells(learned)} | "
        f"{cells(baseline)} | {seconds:.1f} |"
    )


if __name__ == "__main__":
    main()
