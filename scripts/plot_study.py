"""Draw issue 11's study figure from the runs' eval reports and probe.json files.

    python scripts/plot_study.py \\
        --run "logmel, aug on" runs/logmel-aug-true/eval/test-n5 \\
        --run "logmel, aug off" runs/logmel-aug-false/eval/test-n5 \\
        --probe "logmel, aug on" runs/logmel-aug-true \\
        --out docs/transfer-study.png

Left panel: exact-order accuracy (Hungarian decoding, 95 % interval) of each
``--run`` on the in-domain ``test`` split and the out-of-domain ``ood`` split,
with the continuity baseline on the same puzzles as a black bar over each and
chance (1/n!) as a dashed line. ``EVAL`` is a report of ``audiosort eval RUN``
(test, ood and sanity sets): its folder ``RUN/eval/<label>``, its
``eval.json``, or the run folder for its newest report
(:func:`audiosort.run.read_eval`). Right panel: for each ``--probe`` (a run
folder or its ``probe.json``), each task's linear-probe accuracy (mean and
standard deviation over splits) of the encoder, with the same architecture's
random weights as a cross; log-mel statistics as a black line and chance as a
dotted line per task (both the same for every run on the same clips).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from audiosort import _files
from audiosort.errors import AudiosortError, InputError
from audiosort.run import read_eval, read_probe

SPLITS = ("test", "ood")


@dataclass(frozen=True)
class SortingScore:
    """One split of one run: exact-order accuracy with its 95 % interval, the continuity baseline, chance."""

    exact: float
    low: float
    high: float
    continuity: float
    chance: float


@dataclass(frozen=True)
class ProbeScore:
    """One probe task of one run: mean and std over splits of encoder and random weights, log-mel stats, chance."""

    encoder: float
    encoder_std: float
    random_encoder: float
    logmel_stats: float
    chance: float


def sorting_scores(path: str | Path) -> dict[str, SortingScore]:
    """The ``test`` and ``ood`` scores of one eval report.

    Parameters
    ----------
    path : str or Path
        A report of ``audiosort eval RUN`` with at least one of the splits ``test``, ``ood``: its
        folder, its ``eval.json``, or the run folder (its newest report).

    Returns
    -------
    dict of str to SortingScore
        Keyed by split, in the order of :data:`SPLITS`; a split the report lacks is left out.

    Raises
    ------
    InputError
        The report cannot be read, holds neither split, or a split lacks the continuity baseline
        or the decoding that gives the order (hungarian, or path).
    """
    report = read_eval(path)
    scores = {}
    for split in SPLITS:
        if split not in report.datasets:
            continue
        dataset = report.datasets[split]
        if "continuity" not in dataset.baselines:
            raise InputError(f"eval report {path}: split {split!r} lacks its continuity baseline")
        exact = dataset.scores.decoded(dataset.scores.order_decoding).exact_accuracy
        continuity = dataset.baselines["continuity"]
        continuity_exact = continuity.decoded(continuity.order_decoding).exact_accuracy.value
        scores[split] = SortingScore(exact.value, exact.low, exact.high, continuity_exact, dataset.scores.chance_exact)
    if not scores:
        raise InputError(
            f"eval report {path} has neither a test nor an ood split (it holds {sorted(report.datasets)}); "
            "give the report of `audiosort eval RUN` (RUN/eval/test-n<chunks>)"
        )
    return scores


def probe_scores(path: str | Path) -> dict[str, ProbeScore]:
    """Each task's scores in a run's ``probe.json`` (or the run folder), keyed by task name without ``probe-``.

    Raises
    ------
    InputError
        The file cannot be read, is not JSON, holds no task, or a task lacks a feature's accuracy.
    """
    if not Path(path).exists():
        raise InputError(f"cannot read probe.json {path}: no such file or folder")
    tasks = read_probe(path)
    if not tasks:
        raise InputError(f"probe.json {path} holds no task")
    scores = {}
    for name, task in tasks.items():
        try:
            accuracy, spread = task.accuracy, task.accuracy_std
            score = ProbeScore(
                accuracy["encoder"], spread["encoder"], accuracy["random_encoder"], accuracy["logmel_stats"],
                task.chance,
            )
        except KeyError:
            raise InputError(f"probe.json {path}: task {name!r} lacks the accuracy of a feature") from None
        if task.chance is None:
            raise InputError(f"probe.json {path}: task {name!r} lacks its chance")
        scores[name.removeprefix("probe-")] = score
    return scores


def _first_time(seen: set[str], label: str) -> str | None:
    """``label`` the first time it is asked for, then ``None``, so that each legend entry appears once."""
    if label in seen:
        return None
    seen.add(label)
    return label


def draw(runs: dict[str, dict[str, SortingScore]], probes: dict[str, dict[str, ProbeScore]], out: str | Path) -> None:
    """Save the two-panel study figure (module docstring) as a PNG.

    Parameters
    ----------
    runs : dict of str to dict of str to SortingScore
        Run label to its :func:`sorting_scores`, in the order to draw.
    probes : dict of str to dict of str to ProbeScore
        Run label to its :func:`probe_scores`; may be empty (the right panel then says so).
    out : str or Path
        The PNG to write (atomically).
    """
    figure = Figure(figsize=(11, 4.2), dpi=80, layout="constrained")
    FigureCanvasAgg(figure)
    sorting, probing = figure.subplots(1, 2, width_ratios=(1, 1.15))
    seen: set[str] = set()
    width = 0.8 / len(SPLITS)
    for i, (label, scores) in enumerate(runs.items()):
        for j, split in enumerate(SPLITS):
            if split not in scores:
                continue
            score = scores[split]
            x = i + (j - (len(SPLITS) - 1) / 2) * width
            sorting.bar(
                x, score.exact, width * 0.9, color=f"C{j}", label=_first_time(seen, split),
                yerr=[[score.exact - score.low], [score.high - score.exact]], capsize=2,
            )
            sorting.hlines(score.continuity, x - width * 0.45, x + width * 0.45, color="black", linewidth=2.5,
                           label=_first_time(seen, "continuity baseline"))
            sorting.hlines(score.chance, x - width / 2, x + width / 2, color="grey", linestyle="--",
                           label=_first_time(seen, "chance"))
    sorting.set_xticks(range(len(runs)), list(runs), fontsize=8, rotation=15, ha="right")
    sorting.set_ylabel("exact-order accuracy (Hungarian)")
    sorting.set_title("sorting: in domain (test) and out of domain (ood)", fontsize=10)
    sorting.legend(fontsize=8, loc="upper center", ncol=2)

    seen.clear()
    tasks = list(dict.fromkeys(task for scores in probes.values() for task in scores))
    width = 0.8 / max(len(probes), 1)
    for k, task in enumerate(tasks):
        reference = next(scores[task] for scores in probes.values() if task in scores)
        probing.hlines(reference.logmel_stats, k - 0.42, k + 0.42, color="black", linewidth=2.5,
                       label=_first_time(seen, "log-mel statistics"))
        probing.hlines(reference.chance, k - 0.42, k + 0.42, color="grey", linestyle=":",
                       label=_first_time(seen, "chance"))
        for i, (label, scores) in enumerate(probes.items()):
            if task not in scores:
                continue
            score = scores[task]
            x = k + (i - (len(probes) - 1) / 2) * width
            color = f"C{(len(SPLITS) + i) % 10}"  # after the sorting panel's split colours; matplotlib has 10
            probing.bar(x, score.encoder, width * 0.9, yerr=score.encoder_std, capsize=2, color=color,
                        label=_first_time(seen, f"encoder: {label}"))
            probing.plot(x, score.random_encoder, marker="x", color="black", linestyle="none",
                         label=_first_time(seen, "random weights (same architecture)"))
    probing.set_xticks(range(len(tasks)), tasks)
    probing.set_ylabel("linear-probe accuracy (mean ± std over splits)")
    probing.set_title("probe suite: encoder vs the two baselines", fontsize=10)
    if tasks:
        probing.legend(fontsize=7, loc="upper center", ncol=2)
    else:
        probing.text(0.5, 0.5, "no probe.json given", ha="center", transform=probing.transAxes)
    for axes in (sorting, probing):
        axes.set_ylim(0, 1.3)  # room for the legend above the bars
        axes.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    _files.save_figure(figure, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", nargs=2, action="append", metavar=("LABEL", "EVAL"), required=True,
                        help="a run's label and a report of `audiosort eval RUN`: RUN/eval/<label>, its eval.json, or RUN (repeat)")
    parser.add_argument("--probe", nargs=2, action="append", metavar=("LABEL", "PROBE"), default=[],
                        help="a run's label and its folder or probe.json of `audiosort probe` (repeat)")
    parser.add_argument("--out", required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    try:
        runs = {label: sorting_scores(path) for label, path in args.run}
        probes = {label: probe_scores(path) for label, path in args.probe}
        draw(runs, probes, args.out)
    except AudiosortError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
