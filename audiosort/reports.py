"""Write verdicts as JSON, markdown tables and figures.

What ``eval.json``/``audit.json`` hold per dataset (:func:`entries`), the
table eval and audit print (:func:`table`), the notes under it that say what
the table means (:func:`notes`), and the confusion-matrix PNG
(:func:`save_confusion`). Every function reads a :class:`~audiosort.verdicts.Verdicts`
report; none computes a statistic of its own.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from audiosort import _files
from audiosort.verdicts import BaselineResult, DatasetResult, Verdicts, deciding_statistic, format_p_value, p_text


def entries(report: Verdicts) -> dict:
    """One JSON-ready entry per dataset (DESIGN.md, "Eval report"), with a verdict per decoding.

    The model's part of an entry is :meth:`audiosort.metrics.PuzzleScores.to_dict`
    (one key per decoding it has: ``argmax`` and ``hungarian``, or ``path``
    for a successor head) with a ``verdict`` in each decoding, then the order
    decoding's ``p_value`` and ``verdict``, and beside them its
    ``neighbour_p_value`` and ``neighbour_verdict``, the true neighbours'
    own test at the same threshold (:meth:`~audiosort.verdicts.Verdicts.neighbour_verdict`). Where baselines were scored,
    ``entry["baselines"][name]`` is laid out alike (the continuity baseline:
    ``path``), plus the paired comparison with the model, each in its order
    decoding (:func:`audiosort.metrics.better_p_values`):
    ``model_better_p_value`` (one-sided McNemar, exact orders),
    ``model_better_tau_p_value`` (one-sided Wilcoxon signed-rank, per-puzzle
    Kendall tau), ``model_better_decided_by`` (the test with the smaller p)
    and ``model_better`` (that p doubled below alpha over the datasets).
    Where an ideal observer is known, ``ideal_observer_*`` give its
    exact-order accuracy, Kendall tau, p-value against chance (None where it
    is computed exactly), the n it was computed for, how, whether it sorts
    the set above chance (``ideal_observer_sorts``: by the verdict's test or
    the neighbours'), its share of true neighbours found
    (``ideal_observer_neighbour_share``) and their p-value
    (``ideal_observer_neighbour_p_value``, None where exact).
    """
    out = {}
    for result in report.datasets:
        entry = {**result.source, "sanity": result.sanity, **_scored(report, result)}
        if result.ideal is not None:
            entry["ideal_observer_exact_accuracy"] = result.ideal.exact_accuracy
            entry["ideal_observer_kendall_tau"] = result.ideal.kendall_tau
            entry["ideal_observer_p_value"] = result.ideal.p_value
            entry["ideal_observer_n_chunks"] = result.ideal.n_chunks
            entry["ideal_observer_method"] = result.ideal.method
            entry["ideal_observer_sorts"] = report.ideal_sorts(result)
            entry["ideal_observer_neighbour_share"] = result.ideal.neighbour_share
            entry["ideal_observer_neighbour_p_value"] = result.ideal.neighbour_p_value
        if result.baselines:
            entry["baselines"] = {
                name: {
                    **_scored(report, baseline),
                    "model_better_p_value": baseline.model_better["exact_p_value"],
                    "model_better": report.model_beats(baseline),
                    "model_better_tau_p_value": baseline.model_better["tau_p_value"],
                    "model_better_decided_by": baseline.deciding_test,
                }
                for name, baseline in result.baselines.items()
            }
        out[result.name] = entry
    return out


def _scored(report: Verdicts, result: DatasetResult | BaselineResult) -> dict:
    """Its scores with a verdict per decoding, then the dataset's p-value and verdict and the neighbours' (its order decoding's)."""
    scored = result.scores.to_dict()
    for name in result.scores.decodings:
        scored[name]["verdict"] = report.verdict(result, name)
    scored["p_value"] = result.scores.order_scores.p_value
    scored["verdict"] = report.verdict(result)
    scored["neighbour_p_value"] = result.scores.order_scores.neighbour_p_value
    scored["neighbour_verdict"] = report.neighbour_verdict(result)
    return scored


def table(report: Verdicts) -> list[str]:
    """The markdown table: one row per dataset and decoding, then one per baseline (``test (continuity)``).

    Each row names the decoding it was scored by: ``argmax`` and ``hungarian``
    for position scores, ``path`` for a successor head's best path and for the
    continuity baseline, which have one order and so one row. The
    ``neighbours`` column, after the verdict and outside it, holds the share
    of true neighbours found, its chance 2/n, and its own test's p and verdict.
    """
    rows = [
        "| dataset | decoding | exact acc [95% CI] | chance | position acc (chance) | Kendall tau | p | verdict "
        "| neighbours (chance), p: verdict | ideal observer |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in report.datasets:
        for method in result.scores.decodings:
            rows.append(_row(report, result.name, method, result, _ideal_cell(result)))
        for name, baseline in result.baselines.items():
            rows.append(_row(report, f"{result.name} ({name})", baseline.scores.order_decoding, baseline, "-"))
    return rows


def _row(report: Verdicts, label: str, decoding: str, result: DatasetResult | BaselineResult, ideal_cell: str) -> str:
    chance = result.scores.chance
    scores = result.scores.decodings[decoding]
    exact = scores.exact_accuracy
    # The statistic whose test gave the verdict is in bold (verdicts.deciding_statistic).
    exact_cell = f"{exact.value:.3f} [{exact.low:.3f}, {exact.high:.3f}]"
    tau_cell = f"{scores.kendall_tau.value:.3f}"
    if deciding_statistic(scores) == "kendall_tau":
        tau_cell = f"**{tau_cell}**"
    else:
        exact_cell = f"**{exact_cell}**"
    neighbour_cell = (
        f"{scores.neighbour_share.value:.3f} ({chance.neighbour_share:.3f}), {format_p_value(scores.neighbour_p_value)}: "
        f"{report.neighbour_verdict(result, decoding).replace('_', ' ')}"
    )
    return (
        f"| {label} | {decoding} | {exact_cell} "
        f"| {chance.exact_accuracy:.3f} "
        f"| {scores.position_accuracy.value:.3f} ({chance.position_accuracy:.3f}) "
        f"| {tau_cell} | {format_p_value(scores.p_value)} "
        f"| {report.verdict(result, decoding).replace('_', ' ')} | {neighbour_cell} | {ideal_cell} |"
    )


def _ideal_cell(result: DatasetResult) -> str:
    """The ideal observer's Kendall tau and exact-order accuracy, with its p-value where it is estimated."""
    ideal = result.ideal
    if ideal is None:
        return "-"
    how = "exact" if ideal.p_value is None else p_text(ideal.p_value)
    return f"tau {ideal.kendall_tau:.3f}, exact {ideal.exact_accuracy:.3f} ({how})"


def notes(report: Verdicts) -> list[str]:
    """What the table means: the test behind the verdicts, the baselines, and where an ideal observer says more."""
    order_decodings = ", ".join(dict.fromkeys(r.scores.order_decoding for r in report.datasets))
    out = [
        "verdict: one-sided tests of Kendall tau (chance 0; the continuity-corrected normal tail of its null) and of the exact-order count (chance "
        f"1/n!), the smaller p doubled; alpha {report.alpha} Bonferroni-corrected over {report.n_tests} dataset(s), on "
        f"the {order_decodings} decoding. In bold: the statistic whose test decided.",
        "neighbours: the share of chunks placed beside a true neighbour, either way round (chance 2/n), with its own "
        "one-sided exact test at the same threshold, outside the verdict",
    ]
    for result in report.datasets:
        model = result.scores.order_scores
        for name, baseline in result.baselines.items():
            beats = "beats" if report.model_beats(baseline) else "does not beat"
            other = baseline.scores.order_scores
            out.append(
                f"{result.name}: the model {beats} the {name} baseline (exact {model.exact_accuracy.value:.3f} vs "
                f"{other.exact_accuracy.value:.3f}, one-sided McNemar {p_text(baseline.model_better['exact_p_value'])}; "
                f"Kendall tau {model.kendall_tau.value:.3f} vs {other.kendall_tau.value:.3f}, one-sided Wilcoxon "
                f"{p_text(baseline.model_better['tau_p_value'])}; decided by {baseline.deciding_test}, the smaller p doubled)"
            )
    scored = list(dict.fromkeys(name for r in report.datasets for name in r.baselines))
    if scored:
        out.append(
            f"baseline rows ({', '.join(scored)}): no training (audiosort.baselines), the same puzzles and tests; "
            "they never change the exit code"
        )
    at_chance = [
        r for r in report.datasets
        if r.sanity and report.verdict(r) == "at_chance" and report.neighbour_verdict(r) == "at_chance"
    ]
    if at_chance:
        out.append(f"sanity sets at chance: {', '.join(r.name for r in at_chance)}")
    # A set at chance proves the pipeline clean only where an ideal observer is at chance too.
    sortable = [
        f"{r.name} at tau {r.ideal.kendall_tau:.3f}, exact {r.ideal.exact_accuracy:.3f}, neighbours {r.ideal.neighbour_share:.3f}"
        for r in at_chance if report.ideal_sorts(r)
    ]
    if sortable:
        out.append(
            f"  yet an ideal observer sorts {', '.join(sortable)}: "
            "there at chance means this model did not exploit the leak, not that there is none"
        )
    return out


def save_confusion(path: str | Path, result: DatasetResult) -> None:
    """Row-normalized confusion matrix of ``result`` (its order decoding) as a PNG at ``path``, written atomically."""
    confusion = result.confusion
    n_chunks = len(confusion)
    fractions = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    figure = Figure(figsize=(1.2 + 0.6 * n_chunks, 1.0 + 0.6 * n_chunks), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.imshow(fractions, vmin=0.0, vmax=1.0, cmap="viridis")
    for true_position, predicted_position in np.ndindex(confusion.shape):
        value = fractions[true_position, predicted_position]
        axes.text(predicted_position, true_position, f"{value:.2f}", ha="center", va="center",
                  color="black" if value > 0.5 else "white", fontsize=8)
    axes.set_xticks(range(n_chunks))
    axes.set_yticks(range(n_chunks))
    axes.set_xlabel("predicted position")
    axes.set_ylabel("true position")
    exact = result.scores.order_scores.exact_accuracy.value
    axes.set_title(
        f"{result.name}: exact {exact:.3f}\n(chance {1 / math.factorial(n_chunks):.3f}, {result.scores.order_decoding})",
        fontsize=9,
    )
    _files.save_figure(figure, path)
