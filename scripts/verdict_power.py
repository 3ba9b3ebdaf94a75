"""False-positive rates and power of the verdicts' tests (docs/evaluation.md, "False positives and power").

    python scripts/verdict_power.py null     # neighbours, tau, the verdict and the audit's rule on 2000 models that know nothing
    python scripts/verdict_power.py paired   # model against baseline: McNemar, Wilcoxon on tau, both
    python scripts/verdict_power.py brown    # the brown ideal observer at n = 20, gaps 0-5 ms, by puzzles
"""

import sys

import numpy as np

from audiosort import leaks, metrics
from audiosort.data.puzzles import PuzzleSpec
from audiosort.sanity import sanity_puzzles


def random_orders(rng, n_puzzles, n_chunks):
    return np.argsort(rng.random((n_puzzles, n_chunks)), axis=1)


def swapped(order, n_swaps, rng):
    """Each puzzle's true positions with ``n_swaps`` random pairs of slots exchanged."""
    pred, rows = order.copy(), np.arange(len(order))
    for _ in range(n_swaps):
        first, second = (rng.integers(0, order.shape[1], size=len(order)) for _ in range(2))
        pred[rows, first], pred[rows, second] = pred[rows, second], pred[rows, first].copy()
    return pred


def null():
    for n_chunks in (3, 20):
        rng, below = np.random.default_rng(100 + n_chunks), np.zeros((4, 2))
        for _ in range(2000):
            order, pred = random_orders(rng, 200, n_chunks), random_orders(rng, 200, n_chunks)
            p = metrics.chance_p_values(pred, order)
            # The audit's rule: the verdict or the neighbours' own test, each at the threshold.
            either = min(p["p_value"], p["neighbour_p_value"])
            tested = np.array([p["neighbour_p_value"], p["tau_p_value"], p["p_value"], either])[:, None]
            below += tested < np.array([0.05, 0.01])
        print(f"n={n_chunks}: share below 0.05 / 0.01, neighbours {below[0] / 2000}, tau {below[1] / 2000}, "
              f"verdict {below[2] / 2000}, verdict or neighbours {below[3] / 2000}")


def paired():
    repeats = 400
    for n_chunks, null_swaps, better, worse in ((3, 1, 1, 2), (5, 2, 2, 3), (20, 10, 10, 14)):
        rng, false, power = np.random.default_rng(7 + n_chunks), np.zeros(3), np.zeros(3)
        for _ in range(repeats):
            order = random_orders(rng, 200, n_chunks)
            for counts, a, b in ((false, swapped(order, null_swaps, rng), swapped(order, null_swaps, rng)),
                                 (power, swapped(order, better, rng), swapped(order, worse, rng))):
                p = metrics.better_p_values(a, b, order)
                counts += [p["exact_p_value"] < 0.01, p["tau_p_value"] < 0.01, p["p_value"] < 0.01]
        print(f"n={n_chunks}: McNemar / Wilcoxon / both: false positives {false / repeats}, power {power / repeats}")
    rng, hits = np.random.default_rng(1), np.zeros(3)
    for _ in range(repeats):
        order = random_orders(rng, 200, 3)
        either = np.where((rng.random(200) < 0.5)[:, None], 2 - order, order)
        p = metrics.better_p_values(either, random_orders(rng, 200, 3), order)
        hits += [p["exact_p_value"] < 0.01, p["tau_p_value"] < 0.01, p["p_value"] < 0.01]
    print(f"n=3, the order or its reverse against chance: McNemar / Wilcoxon / both {hits / repeats}")


def brown():
    spec = PuzzleSpec(n_chunks=20, chunk_samples=3200, pad_min_samples=0, pad_max_samples=80)
    puzzles, _ = sanity_puzzles("brown", spec, sample_rate=16000, n_puzzles=1000, seed=0)
    guessed = []
    observed = leaks._observed
    leaks._observed = lambda guess, order, how: guessed.append(guess) or observed(guess, order, how)
    print(leaks.ideal_brown_accuracy(puzzles.chunks, puzzles.order, spec, sample_rate=16000))
    guess, order, rng = guessed[0], np.asarray(puzzles.order), np.random.default_rng(0)
    for n_puzzles in (1, 2, 3, 5, 10, 50, 100, 200):
        flagged = np.zeros(3)
        for _ in range(400):
            rows = rng.choice(len(order), n_puzzles, replace=False)
            p = metrics.chance_p_values(guess[rows], order[rows])
            verdict, neighbours = p["p_value"] < 0.01 / 3, p["neighbour_p_value"] < 0.01 / 3
            flagged += [verdict, neighbours, verdict or neighbours]
        print(f"{n_puzzles} puzzles: flagged at 0.01/3 by the verdict / the neighbours / either: {flagged / 400}")


if __name__ == "__main__":
    {"null": null, "paired": paired, "brown": brown}[sys.argv[1]]()
