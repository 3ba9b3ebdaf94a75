"""How often the path search above 12 chunks finds the best order: beam search against Held-Karp on random scores.

`decoding.best_paths` is exact (Held-Karp) up to 12 chunks and a search above, where it decides the
headline numbers at n = 20 and 50 (the continuity baseline and the successor head are decoded by it).
This script forces the search at every n and compares it with the exact optimum where Held-Karp
still runs (its table is (2**n, n) floats per puzzle: 8 MiB at n = 16), on random scores: successor,
first and last all standard normal, which have no planted chain to follow and are harder than a
trained model's. Above 16 chunks the reference is the best order found by any width tried and a
width of 1024, so "optimal" there means "as good as the best found". One markdown row per n and width:
the fraction of puzzles whose order scores as well as the reference, the mean score gap (reference
minus found, in the scores' units), the mean score found (comparable between decoders on the same
puzzles, where the references differ) and the search's time per puzzle on this machine. Usage:
    python scripts/beam_eval.py --n-chunks 8 10 12 14 16 20 50 --widths 64 128
Run it against another checkout (PYTHONPATH=/path/to/it) to compare decoders on the same puzzles.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from audiosort import decoding

# Beyond this many chunks Held-Karp's table outgrows the machine: the reference is the best order found.
_EXACT_MAX_CHUNKS = 16
_REFERENCE_WIDTH = 1024


def searched(successor, first, last, width):
    """The search's orders at any n (Held-Karp switched off) and the seconds it took."""
    started = time.perf_counter()
    sequence = decoding.best_paths(successor, first=first, last=last, beam_width=width, exact_max_chunks=0)
    return sequence, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-chunks", type=int, nargs="+", default=[8, 10, 12, 14, 16, 20, 50])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--puzzles", type=int, default=200, help="per n (half that at n > 12, where Held-Karp is slow)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print("| n | width | puzzles | optimal | mean gap | mean score | ms per puzzle | reference |")
    print("|---|---|---|---|---|---|---|---|")
    for n_chunks in args.n_chunks:
        n_puzzles = args.puzzles if n_chunks <= 12 else max(1, args.puzzles // 2)
        rng = np.random.default_rng([args.seed, n_chunks])
        successor = rng.normal(size=(n_puzzles, n_chunks, n_chunks))
        first, last = rng.normal(size=(n_puzzles, n_chunks)), rng.normal(size=(n_puzzles, n_chunks))
        found = {width: searched(successor, first, last, width) for width in args.widths}
        if n_chunks <= _EXACT_MAX_CHUNKS:
            reference_name = "Held-Karp"
            optimum = decoding.best_paths(successor, first=first, last=last, exact_max_chunks=n_chunks)
            reference = decoding.path_scores(successor, first, last, optimum)
        else:
            reference_name = f"best found (widths {', '.join(map(str, args.widths))}, {_REFERENCE_WIDTH})"
            wide, _ = searched(successor, first, last, _REFERENCE_WIDTH)
            candidates = [wide, *(sequence for sequence, _ in found.values())]
            reference = np.max([decoding.path_scores(successor, first, last, s) for s in candidates], axis=0)
        for width, (sequence, seconds) in found.items():
            assert np.array_equal(np.sort(sequence, axis=1), np.broadcast_to(np.arange(n_chunks), sequence.shape))
            totals = decoding.path_scores(successor, first, last, sequence)
            gap = reference - totals
            optimal = np.mean(gap <= 1e-9 * np.maximum(1.0, np.abs(reference)))
            print(
                f"| {n_chunks} | {width} | {n_puzzles} | {optimal:.3f} | {gap.mean():.4f} | {totals.mean():.3f} | "
                f"{1e3 * seconds / n_puzzles:.1f} | {reference_name} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
