"""Collect each run's results from its folder; tabulate them and plot them.

``results.csv`` and ``results.md`` (one row per run) and the figures
``heatmap-<x>-<y>.png`` and ``accuracy-<axis>.png``; see :mod:`audiosort.sweep`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from pathlib import Path

import numpy as np

from audiosort import _files
from audiosort.config import Config, closest_key, dump_config, load_config
from audiosort.errors import InputError
from audiosort.evaluate import eval_settings
from audiosort.run import config_path, read_eval, read_metrics, read_probe, stage_done
from audiosort.sweep.grid import Sweep, SweepRun, yaml_scalar


@dataclasses.dataclass
class SweepReport:
    """The rows of a sweep and where they are written.

    Attributes
    ----------
    folder : Path
        The sweep folder.
    axis_keys : list of str
        Grid keys in file order (keys varied together joined by ", ").
    rows : list of dict
        One per run, in grid order; see :func:`collect_row`.
    """

    folder: Path
    axis_keys: list
    rows: list

    @property
    def failed(self) -> list[dict]:
        return [row for row in self.rows if row["status"] == "failed"]

    @property
    def exit_code(self) -> int:
        """1 when any run failed, else 0."""
        return 1 if self.failed else 0

    def columns(self) -> list[str]:
        """Columns of results.csv: varied values first, then every score any row has."""
        fixed_front = ["run", *self.axis_keys]
        rest = []
        for row in self.rows:
            rest += [key for key in row if key not in fixed_front and key not in rest and key != "values"]
        tail = [key for key in ("status", "error") if key in rest]
        return fixed_front + [key for key in rest if key not in tail] + tail

    def write(self, *, plot: tuple | None = None) -> list[Path]:
        """Write results.csv, results.md and the figures; return the paths written."""
        columns = self.columns()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({**{key: _cell(row["values"].get(key)) for key in self.axis_keys}, **_flat(row)})
        written = [self.folder / "results.csv", self.folder / "results.md"]
        _files.write_text(written[0], buffer.getvalue())
        _files.write_text(written[1], "\n".join(self.markdown()) + "\n")
        if plot is None and len(self.axis_keys) >= 2:
            plot = tuple(self.axis_keys[:2])
        if plot is not None:
            written.append(save_heatmap(self, *plot))
        if len(self.axis_keys) == 1:
            written.append(save_axis_plot(self, self.axis_keys[0]))
        return written

    def markdown(self) -> list[str]:
        """The results table as markdown lines, chance beside every accuracy."""
        probe_columns = [key for key in self.columns() if key.startswith("probe:")]
        header = [
            *self.axis_keys, "exact (chance)", "position (chance)", "Kendall tau", "continuity exact",
            "sanity above chance", *probe_columns, "train s", "status",
        ]
        lines = [f"# sweep {self.folder.name}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in self.rows:
            cells = [_cell(row["values"].get(key)) for key in self.axis_keys]
            cells += [
                _with_chance(row.get("exact_accuracy"), row.get("exact_chance")),
                _with_chance(row.get("position_accuracy"), row.get("position_chance")),
                _number(row.get("kendall_tau")),
                _number(row.get("continuity_exact_accuracy")),
                row.get("sanity_above_chance", ""),
                *[_number(row.get(key)) for key in probe_columns],
                _number(row.get("train_seconds"), digits=0),
                row["status"] + (f": {row['error']}" if row.get("error") else ""),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [
            "", "Scores on held-out tracks, each run's order decoding (hungarian; path for a successor head). "
            "probe:<task>:<features> is linear-probe accuracy.",
        ]
        return lines


def collect_row(folder: Path, run: SweepRun, sweep: Sweep) -> dict:
    """One results row from what a run's folder holds (so rows survive restarts).

    Returns
    -------
    dict
        ``run``, ``values``, and where present: ``exact_accuracy``,
        ``exact_chance``, ``position_accuracy``, ``position_chance``,
        ``kendall_tau`` (order decoding, eval split), ``continuity_exact_accuracy``,
        ``sanity_above_chance`` (names joined by "+", or "none"),
        ``probe:<task>:<features>``, ``val_exact_accuracy``,
        ``train_seconds``; ``status`` ("done", "failed", "pending") and ``error``.
        Nothing is read from a run folder of another config than ``config``,
        and a damaged report counts as missing.
    """
    run_dir = folder / run.name
    row = {"run": run.name, "values": run.values}
    config = load_config(sweep.base, run.overrides)
    same_config = is_run_of(run_dir, config)
    metrics = _readable(read_metrics, run_dir) if same_config else None
    if metrics:
        row["val_exact_accuracy"] = metrics.val.order_scores.exact_accuracy.value
        row["train_seconds"] = metrics.train_seconds
    report = _readable(read_eval, run_dir, settings=sweep_eval_settings(config, sweep)) if same_config else None
    if report:
        scored = report.main_dataset(sweep.eval["split"])
        best = scored.scores.order_scores
        row["exact_accuracy"] = best.exact_accuracy.value
        row["exact_chance"] = scored.scores.chance.exact_accuracy
        row["position_accuracy"] = best.position_accuracy.value
        row["position_chance"] = scored.scores.chance.position_accuracy
        row["kendall_tau"] = best.kendall_tau.value
        baseline = scored.baselines.get("continuity")
        if baseline:
            row["continuity_exact_accuracy"] = baseline.order_scores.exact_accuracy.value
        row["sanity_above_chance"] = "+".join(report.sanity_above_chance) or "none"
    for task, entry in ((_readable(read_probe, run_dir) if same_config else None) or {}).items():
        for features, accuracy in entry.accuracy.items():
            row[f"probe:{task}:{features}"] = accuracy
        row[f"probe:{task}:chance"] = entry.chance
    error_path = folder / "logs" / f"{run.name}.error"
    if error_path.exists():
        row["status"] = "failed"
        row["error"] = error_path.read_text().strip().splitlines()[0] if error_path.read_text().strip() else "failed"
    else:
        row["status"] = "pending" if pending_stages(run_dir, sweep, config) else "done"
    return row


def save_heatmap(report: SweepReport, x_key: str, y_key: str) -> Path:
    """Exact-order accuracy over two grid axes (mean over any other axes) as a PNG; return its path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x_values = _distinct(row["values"][x_key] for row in report.rows)
    y_values = _distinct(row["values"][y_key] for row in report.rows)
    grid = np.full((len(y_values), len(x_values)), np.nan)
    for i, y in enumerate(y_values):
        for j, x in enumerate(x_values):
            cell = [
                row["exact_accuracy"] for row in report.rows
                if row["values"][x_key] == x and row["values"][y_key] == y and row.get("exact_accuracy") is not None
            ]
            if cell:
                grid[i, j] = float(np.mean(cell))
    # At least 5 in wide, so the two-line title fits over a small grid.
    figure = Figure(figsize=(max(5.0, 1.6 + 1.1 * len(x_values)), 1.6 + 0.6 * len(y_values)), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    for i, j in np.ndindex(grid.shape):
        text = "-" if np.isnan(grid[i, j]) else f"{grid[i, j]:.2f}"
        axes.text(j, i, text, ha="center", va="center", color="black" if grid[i, j] > 0.5 else "white", fontsize=8)
    axes.set_xticks(range(len(x_values)), [_cell(v) for v in x_values])
    axes.set_yticks(range(len(y_values)), [_cell(v) for v in y_values])
    axes.set_xlabel(x_key)
    axes.set_ylabel(y_key)
    others = [key for key in report.axis_keys if key not in (x_key, y_key)]
    title = f"{report.folder.name}: exact-order accuracy (held-out, hungarian)"
    leaves = [key.rsplit(".", 1)[-1] for key in others]
    axes.set_title(title + (f"\nmean over {', '.join(leaves)}" if others else ""), fontsize=9)
    figure.colorbar(image, ax=axes)
    path = report.folder / f"heatmap-{_slug(x_key)}-{_slug(y_key)}.png"
    _files.save_figure(figure, path)
    return path


def save_axis_plot(report: SweepReport, key: str) -> Path:
    """Model, continuity-baseline and probe accuracies along one grid axis, as a PNG; return its path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = [_cell(row["values"][key]) for row in report.rows]
    positions = np.arange(len(labels))
    figure = Figure(figsize=(5.5 + 1.2 * len(labels), 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    series = [("exact_accuracy", "sorting: model exact", "-o"), ("continuity_exact_accuracy", "sorting: continuity baseline", "--o")]
    series += [(column, column.removeprefix("probe:").replace(":", " probe: "), ":s")
               for column in report.columns() if column.startswith("probe:") and not column.endswith(":chance")]
    for column, label, style in series:
        values = [row.get(column) for row in report.rows]
        if any(v is not None for v in values):
            axes.plot(positions, [np.nan if v is None else v for v in values], style, label=label)
    chance = next((row["exact_chance"] for row in report.rows if row.get("exact_chance")), None)
    if chance:
        axes.axhline(chance, color="gray", linewidth=0.8, label=f"sorting chance {chance:.3f}")
    axes.set_xticks(positions, labels)
    axes.set_xlabel(key)
    axes.set_ylabel("accuracy")
    axes.set_ylim(0, 1)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes, off the data
    axes.set_title(f"{report.folder.name}: held-out accuracy along {key}", fontsize=9)
    path = report.folder / f"accuracy-{_slug(key)}.png"
    _files.save_figure(figure, path)
    return path


def pending_stages(run_dir: Path, sweep: Sweep, config: Config) -> list[str]:
    """The stages of the run of ``config`` not yet done: ``"train"``, ``"eval"``, ``"probe <folder>"``.

    Decided by :func:`audiosort.run.stage_done` from what the run folder holds,
    and only in a run folder of ``config`` (:func:`is_run_of`).
    """
    if not is_run_of(run_dir, config):
        return ["train", "eval", *(f"probe {data}" for data in sweep.probe)]
    pending = [] if stage_done(run_dir, "train") else ["train"]
    if not stage_done(run_dir, "eval", sweep_eval_settings(config, sweep)):
        pending.append("eval")
    return pending + [f"probe {data}" for data in sweep.probe if not stage_done(run_dir, "probe", probe_task_name(data))]


def sweep_eval_settings(config: Config, sweep: Sweep) -> dict:
    """The settings of the evaluation the sweep asks of the run of ``config`` (its ``eval`` section, the run's n)."""
    return eval_settings(
        corpus=config.data.corpus, split=sweep.eval["split"], sanity=tuple(sweep.eval["sanity"]),
        n_puzzles=sweep.eval["puzzles"], n_chunks=config.puzzle.n_chunks,
    )


def is_run_of(run_dir: Path, config: Config) -> bool:
    """Whether ``run_dir`` holds a run of ``config``: its ``config.yaml`` is the one ``config`` resolves to.

    A sweep counts a stage done only in such a folder: the reports of an older
    config (``set:`` changed since) are no results of this one.
    """
    try:
        return config_path(run_dir).read_text(encoding="utf-8") == dump_config(config)
    except (OSError, ValueError):
        return False


def probe_task_name(data: str) -> str:
    """The task name ``audiosort probe`` files a labelled folder under: the folder's name."""
    return Path(data).resolve().name


def match_axis(key: str, axis_keys: list[str]) -> str:
    """The grid axis ``key`` names (in full, or by the last part of one of its keys), for ``--plot``."""
    if key in axis_keys:
        return key
    matches = [axis for axis in axis_keys if key in [part.strip().rsplit(".", 1)[-1] for part in axis.split(",")]]
    if len(matches) == 1:
        return matches[0]
    close = closest_key(key, axis_keys)
    hint = f"; did you mean '{close}'?" if close else ""
    raise InputError(f"plot={key!r} is not a grid axis of this sweep{hint} (axes: {'; '.join(axis_keys)})")


def _distinct(values) -> list:
    out = []
    for value in values:
        if value not in out:
            out.append(value)
    return out


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "–".join(yaml_scalar(v) for v in value)
    return yaml_scalar(value)


def _flat(row: dict) -> dict:
    return {key: value for key, value in row.items() if key != "values"}


def _number(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{digits}f}"


def _with_chance(value, chance) -> str:
    return "" if value is None else f"{value:.3f} ({chance:.3f})"


def _slug(key: str) -> str:
    return "+".join(part.strip().rsplit(".", 1)[-1] for part in key.split(","))


def _readable(read, *args, **kwargs):
    """``read(*args, **kwargs)``, or None where the file is missing or unreadable: a row shows what there is."""
    try:
        return read(*args, **kwargs)
    except InputError:
        return None
