"""Draw the real-music study figure from the runs' eval reports and probe.json, one panel per question.

    python scripts/plot_study.py docs/transfer-study.yaml --runs-dir runs --out docs/transfer-study.png

The figure is described by a small YAML file (``docs/transfer-study.yaml`` is
the one in docs/transfer.md)::

    headline: the sentence the figure says, drawn above the panels
    panels:
      - title: "0-50 ms gaps, n = 3: does learning add to the seam?"
        metric: exact               # exact (decoded exact order) or tau (mean Kendall tau)
        runs:                       # a bar group per label: every report is one seed
          seam model: [recipe-small-gaps/eval/test-n3, recipe-small-gaps-s1/eval/test-n3]
      - title: "Probes: are the features worth reusing?"
        probe: recipe-small-gaps    # a run folder or its probe.json

Paths are relative to ``--runs-dir``. A sorting panel draws, for each label,
the ``test`` and ``ood`` splits: the mean over its reports as a bar, every
report as a dot, the range over reports as an error bar (the 95 % interval
when there is one report), and the continuity baseline on the same puzzles
(its mean) as a black line over the bar. Chance is a dashed line. A probe
panel draws each task's linear-probe accuracy for every row that
``probe.json`` holds (:data:`PROBE_ROWS`), mean ± std over splits, chance dotted.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from audiosort import _files
from audiosort.cli import as_flags
from audiosort.errors import AudiosortError, InputError
from audiosort.run import read_eval, read_probe

SPLITS = ("test", "ood")
METRICS = {"exact": "exact-order accuracy", "tau": "mean Kendall tau"}
# The probe rows in drawing order, with their legend names; a row a probe.json lacks is skipped.
PROBE_ROWS = {
    "encoder": "trained encoder",
    "random_encoder": "random encoder (same size)",
    "encoder_layers": "trained, all layers",
    "random_encoder_layers": "random, all layers",
    "logmel_stats": "log-mel statistics",
    "logmel_projection": "log-mel projection (HEAR)",
    "tempogram": "tempogram",
    "encoder_stats": "encoder + statistics",
    "random_encoder_stats": "random encoder + statistics",
    "supervised": "supervised reference",
}
DPI = 160  # twice the old figure's: readable when the PNG is shown at its natural size


@dataclass(frozen=True)
class SortingScore:
    """One split of one eval report: the metric with its 95 % interval, the continuity baseline, chance."""

    value: float
    low: float
    high: float
    continuity: float
    chance: float


def sorting_scores(path: str | Path, metric: str = "exact") -> dict[str, SortingScore]:
    """The ``test`` and ``ood`` scores of one eval report, on the decoding that gives the order.

    Parameters
    ----------
    path : str or Path
        A report of ``audiosort eval RUN``: its folder ``RUN/eval/<label>``, its
        ``eval.json``, or the run folder (its newest report).
    metric : {"exact", "tau"}
        Exact-order accuracy (chance 1/n!) or mean Kendall tau (chance 0).

    Returns
    -------
    dict of str to SortingScore
        Keyed by split, in the order of :data:`SPLITS`; a split the report lacks is left out.

    Raises
    ------
    InputError
        The report cannot be read, holds neither split, or a split lacks the continuity baseline.
    """
    report = read_eval(path)
    scores = {}
    for split in SPLITS:
        if split not in report.datasets:
            continue
        dataset = report.datasets[split]
        if "continuity" not in dataset.baselines:
            raise InputError(f"eval report {path}: split {split!r} lacks its continuity baseline")
        continuity = dataset.baselines["continuity"]
        model = _metric(dataset.scores.order_scores, metric)
        chance = dataset.scores.chance.exact_accuracy if metric == "exact" else 0.0
        scores[split] = SortingScore(model.value, model.low, model.high, _metric(continuity.order_scores, metric).value, chance)
    if not scores:
        raise InputError(
            f"eval report {path} has neither a test nor an ood split (it holds {sorted(report.datasets)}); "
            "give the report of `audiosort eval RUN` (RUN/eval/test-n<chunks>)"
        )
    return scores


def _metric(decoded, metric: str):
    return decoded.exact_accuracy if metric == "exact" else decoded.kendall_tau


def probe_scores(path: str | Path) -> dict[str, dict[str, tuple[float, float]]]:
    """Each task's ``{row: (mean, std)}`` in a run's ``probe.json`` (or the run folder), and ``"chance"``.

    Tasks are keyed by name without ``probe-``; rows are the :data:`PROBE_ROWS` the file holds.

    Raises
    ------
    InputError
        The file cannot be read, holds no task, or a task lacks the encoder's accuracy or its chance.
    """
    if not Path(path).exists():
        raise InputError(f"cannot read probe.json {path}: no such file or folder")
    tasks = read_probe(path)
    if not tasks:
        raise InputError(f"probe.json {path} holds no task")
    scores = {}
    for name, task in tasks.items():
        if "encoder" not in task.accuracy or task.chance is None:
            raise InputError(f"probe.json {path}: task {name!r} lacks the encoder's accuracy or its chance")
        rows = {row: (task.accuracy[row], task.accuracy_std.get(row, 0.0)) for row in PROBE_ROWS if row in task.accuracy}
        scores[name.removeprefix("probe-")] = {**rows, "chance": (task.chance, 0.0)}
    return scores


def read_spec(path: str | Path, runs_dir: str | Path) -> tuple[str, list[dict]]:
    """The figure's headline and panels, with every report read (see the module docstring).

    Returns
    -------
    headline : str
    panels : list of dict
        ``{"title", "metric", "runs": {label: [dict of split to SortingScore, one per report]}}`` or
        ``{"title", "probe": probe_scores(...)}``.

    Raises
    ------
    InputError
        The file cannot be read, is not the layout above, or a report cannot be read.
    """
    try:
        spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise InputError(f"cannot read the figure spec {path}: {error}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("panels"), list) or not spec["panels"]:
        raise InputError(f"figure spec {path}: needs 'headline' and a non-empty list 'panels'")
    runs_dir = Path(runs_dir)
    panels = []
    for k, panel in enumerate(spec["panels"]):
        if not isinstance(panel, dict) or ("runs" in panel) == ("probe" in panel):
            raise InputError(f"figure spec {path}: panel {k + 1} needs a 'title' and one of 'runs', 'probe'")
        title = str(panel.get("title", ""))
        if "probe" in panel:
            panels.append({"title": title, "probe": probe_scores(runs_dir / panel["probe"])})
            continue
        metric = panel.get("metric", "exact")
        if metric not in METRICS or not isinstance(panel["runs"], dict):
            raise InputError(f"figure spec {path}: panel {k + 1}: metric one of {sorted(METRICS)}, runs a mapping")
        runs = {}
        for label, reports in panel["runs"].items():
            reports = [reports] if isinstance(reports, str) else reports
            runs[str(label)] = [sorting_scores(runs_dir / report, metric) for report in reports]
        panels.append({"title": title, "metric": metric, "runs": runs})
    return str(spec.get("headline", "")), panels


def draw(headline: str, panels: list[dict], out: str | Path) -> None:
    """Save the figure: the headline above, one panel per question side by side, as a PNG (atomically)."""
    columns = min(2, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(5.6 * columns, 4.0 * rows + 0.4), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes_list = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    for unused in axes_list[len(panels):]:
        unused.set_visible(False)
    for axes, panel in zip(axes_list, panels):
        if "probe" in panel:
            _draw_probe(axes, panel["probe"])
        else:
            _draw_sorting(axes, panel["runs"], panel["metric"])
        axes.set_title(panel["title"], fontsize=9, wrap=True)
    figure.suptitle(headline, fontsize=11, fontweight="bold", wrap=True)
    _files.save_figure(figure, out)


def _draw_sorting(axes, runs: dict[str, list[dict[str, SortingScore]]], metric: str) -> None:
    seen: set[str] = set()
    width = 0.8 / len(SPLITS)
    for i, (label, reports) in enumerate(runs.items()):
        for j, split in enumerate(SPLITS):
            scores = [report[split] for report in reports if split in report]
            if not scores:
                continue
            x = i + (j - (len(SPLITS) - 1) / 2) * width
            values = [score.value for score in scores]
            mean = float(np.mean(values))
            if len(scores) > 1:
                low, high = min(values), max(values)
            else:
                low, high = scores[0].low, scores[0].high
            axes.bar(x, mean, width * 0.9, color=f"C{j}", yerr=[[mean - low], [high - mean]], capsize=2,
                     label=_first_time(seen, split))
            axes.plot([x] * len(values), values, "o", color="black", markersize=2.5)
            continuity = float(np.mean([score.continuity for score in scores]))
            axes.hlines(continuity, x - width * 0.45, x + width * 0.45, color="black", linewidth=2.5,
                        label=_first_time(seen, "continuity baseline"))
            axes.hlines(scores[0].chance, x - width / 2, x + width / 2, color="grey", linestyle="--",
                        label=_first_time(seen, "chance"))
            axes.annotate(f"{mean:.2f}", (x, max(high, continuity)), textcoords="offset points", xytext=(0, 3),
                          ha="center", fontsize=6.5)
    axes.set_xticks(range(len(runs)), list(runs), fontsize=7.5)
    axes.set_ylabel(METRICS[metric])
    axes.set_xlabel("bar: mean; whiskers: range over seeds (one seed: 95 % interval); dots: seeds", fontsize=6.5)
    top = max(max(max(s.value, s.continuity) for r in reports for s in r.values()) for reports in runs.values())
    # Exact accuracy on one 0-1 scale, comparable across panels; a tau panel zooms on its values.
    axes.set_ylim(0, 1.15 if metric == "exact" else max(0.2, math.ceil(top * 10) / 10 * 1.6))
    axes.legend(fontsize=6.5, loc="upper right", ncol=2)


def _draw_probe(axes, tasks: dict[str, dict[str, tuple[float, float]]]) -> None:
    seen: set[str] = set()
    rows = [row for row in PROBE_ROWS if any(row in scores for scores in tasks.values())]
    width = 0.8 / max(len(rows), 1)
    for k, (task, scores) in enumerate(tasks.items()):
        axes.hlines(scores["chance"][0], k - 0.42, k + 0.42, color="grey", linestyle=":",
                    label=_first_time(seen, "chance"))
        for i, row in enumerate(rows):
            if row not in scores:
                continue
            mean, std = scores[row]
            x = k + (i - (len(rows) - 1) / 2) * width
            axes.bar(x, mean, width * 0.9, yerr=std, capsize=1.5, color=f"C{i + 2}",
                     label=_first_time(seen, PROBE_ROWS[row]))
    axes.set_xticks(range(len(tasks)), list(tasks), fontsize=8)
    axes.set_ylabel("linear-probe accuracy (mean ± std over splits)")
    axes.set_ylim(0, 1.25)
    axes.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    axes.legend(fontsize=6.5, loc="upper center", ncol=2)


def _first_time(seen: set[str], label: str) -> str | None:
    """``label`` the first time it is asked for, then ``None``, so that each legend entry appears once."""
    if label in seen:
        return None
    seen.add(label)
    return label


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="the figure's YAML description (headline and panels)")
    parser.add_argument("--runs-dir", default="runs", help="the folder the spec's paths are relative to (default: runs)")
    parser.add_argument("--out", required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    try:
        headline, panels = read_spec(args.spec, args.runs_dir)
        draw(headline, panels, args.out)
    except AudiosortError as error:
        print(f"error: {as_flags(str(error))}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
