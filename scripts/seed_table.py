"""Print a markdown table of runs repeated over seeds: mean and range per split, continuity beside, McNemar.

    python scripts/seed_table.py \\
        --row "recipe-small-gaps" runs/recipe-small-gaps/eval/test-n3 runs/recipe-small-gaps-s1/eval/test-n3 \\
        --row "no seam" runs/noseam/eval/test-n3 runs/noseam-s1/eval/test-n3 [--metric tau]

Each report is one seed's ``audiosort eval`` (its folder ``RUN/eval/<label>``,
its ``eval.json``, or the run folder for its newest report). For every split
the reports hold among val, test and ood, a row gives the model's exact-order
accuracy (or mean Kendall tau, ``--metric tau``) on the decoding that gives the
order, as the mean over seeds with the range ``[min, max]`` (the single value
and its 95 % interval with one seed); the continuity baseline's mean on the
same puzzles; and the largest one-sided McNemar p over seeds that the model
gets more puzzles exactly right than continuity (so "every seed below p"). A
last column gives the largest exact accuracy any seed reaches on a sanity set
(noise, brown, tone; chance 1/n!).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from audiosort.cli import as_flags
from audiosort.errors import AudiosortError, InputError
from audiosort.run import read_eval

SPLITS = ("val", "test", "ood")


def row_cells(reports: list, metric: str = "exact") -> dict[str, str]:
    """The cells of one row: per split ``"model (continuity, p)"`` text, and ``"sanity"``.

    Parameters
    ----------
    reports : list of EvalResult
        One per seed, read with :func:`audiosort.run.read_eval`.
    metric : {"exact", "tau"}

    Returns
    -------
    dict of str to str
        Keyed by split (those any report holds) and ``"sanity"``.
    """
    cells = {}
    for split in SPLITS:
        datasets = [report.datasets[split] for report in reports if split in report.datasets]
        if not datasets:
            continue
        model = [_value(d.scores, metric) for d in datasets]
        continuity = [_value(d.baselines["continuity"], metric).value for d in datasets if "continuity" in d.baselines]
        values = [estimate.value for estimate in model]
        if len(values) > 1:
            spread = f"[{min(values):.3f}, {max(values):.3f}] ({len(values)} seeds)"
        else:
            spread = f"[{model[0].low:.3f}, {model[0].high:.3f}] (1 seed)"
        p_values = [d.fields.get("baselines", {}).get("continuity", {}).get("model_better_p_value") for d in datasets]
        p_values = [p for p in p_values if p is not None]
        worst_p = f", p ≤ {max(p_values):.2g}" if p_values else ""
        baseline = f"continuity {np.mean(continuity):.3f}" if continuity else "no continuity"
        cells[split] = f"{np.mean(values):.3f} {spread}; {baseline}{worst_p}"
    sanity = [d.scores.order_scores.exact_accuracy.value
              for report in reports for d in report.datasets.values() if d.sanity]
    cells["sanity"] = f"≤ {max(sanity):.3f}" if sanity else "–"
    return cells


def _value(scores, metric: str):
    return scores.order_scores.exact_accuracy if metric == "exact" else scores.order_scores.kendall_tau


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--row", nargs="+", action="append", required=True, metavar=("LABEL", "EVAL"),
                        help="a row's label and one eval report per seed (repeat)")
    parser.add_argument("--metric", choices=("exact", "tau"), default="exact")
    args = parser.parse_args(argv)
    try:
        rows = {}
        for label, *paths in args.row:
            if not paths:
                raise InputError(f"--row {label!r} names no eval report")
            rows[label] = row_cells([read_eval(path) for path in paths], args.metric)
    except AudiosortError as error:
        print(f"error: {as_flags(str(error))}", file=sys.stderr)
        return 2
    splits = [split for split in SPLITS if any(split in cells for cells in rows.values())]
    print(f"| run | {' | '.join(splits)} | sanity sets, exact |")
    print("|---" * (len(splits) + 2) + "|")
    for label, cells in rows.items():
        print(f"| {label} | {' | '.join(cells.get(split, '–') for split in splits)} | {cells['sanity']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
