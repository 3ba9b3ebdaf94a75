"""Which gap ranges leak no order at n chunks: the ideal observers of every sanity set, over a list of gap ranges.

The observers of audiosort.leaks need no training, so this measures in minutes what the audit of a config
would judge (docs/leaks-and-audit.md, "Many chunks"). Each row: one gap range (per gap), each sanity set's
ideal observer as Kendall tau, exact-order accuracy and p-value against chance on the audit's held-out
puzzles (audiosort.sanity), and whether it sorts the set as the audit would judge it (verdicts.ideal_sorts, alpha 0.01 over
the sets). Usage:
    python scripts/leak_free_gaps.py --n-chunks 20 --chunk-seconds 0.2 --puzzles 1000 \
        --gaps 0-0.005 0.05-0.1 0.1-0.25 0.2-0.2201875 0.5-1.0
"""

from __future__ import annotations

import argparse
import time

from audiosort.config import PuzzleConfig
from audiosort.data.puzzles import PuzzleSpec
from audiosort.sanity import SANITY_KINDS, sanity_ideal_observer, sanity_puzzles
from audiosort.verdicts import ideal_sorts, p_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-chunks", type=int, default=20)
    parser.add_argument("--chunk-seconds", type=float, default=0.2)
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--puzzles", type=int, default=1000)
    parser.add_argument("--kinds", default="brown,tone,tone-exact")
    parser.add_argument("--gaps", nargs="+", default=["0-0.005", "0.05-0.1", "0.1-0.25", "0.2-0.2201875", "0.5-1.0"])
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    unknown = [kind for kind in kinds if kind not in SANITY_KINDS]
    if unknown:
        parser.error(f"unknown sanity kinds {unknown}; choose from {', '.join(SANITY_KINDS)}")
    print(f"n={args.n_chunks}, {args.chunk_seconds} s chunks, {args.puzzles} puzzles per set, per-gap padding")
    print("| gaps (s) | " + " | ".join(f"{kind}: tau / exact (p)" for kind in kinds) + " | leaks |")
    print("|---" * (len(kinds) + 2) + "|")
    for gaps in args.gaps:
        low, high = (float(value) for value in gaps.split("-"))
        puzzle = PuzzleConfig(n_chunks=args.n_chunks, chunk_seconds=args.chunk_seconds, pad_min_seconds=low,
                              pad_max_seconds=high)
        spec = PuzzleSpec.from_config(puzzle, sample_rate=args.sample_rate)
        cells, leaking, started = [], [], time.perf_counter()
        for kind in kinds:
            puzzles, _ = sanity_puzzles(kind, spec, sample_rate=args.sample_rate, n_puzzles=args.puzzles, seed=0)
            ideal = sanity_ideal_observer(kind, puzzles, spec, args.sample_rate)
            tested = "exact" if ideal.p_value is None else p_text(ideal.p_value)
            cells.append(f"{ideal.kendall_tau:.3f} / {ideal.exact_accuracy:.3f} ({tested})")
            leaking += [kind] if ideal_sorts(ideal, n_tests=len(kinds)) else []
        print(f"| {low:g}-{high:g} | " + " | ".join(cells) + f" | {', '.join(leaking) or 'none'} |"
              f" <!-- {time.perf_counter() - started:.0f} s -->")


if __name__ == "__main__":
    main()
