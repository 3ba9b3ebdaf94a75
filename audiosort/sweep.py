"""``audiosort sweep``: train, evaluate and probe a grid of configs, each run in its own process.

A sweep file is plain YAML::

    name: sweep-seed              # default: the file's stem; runs go to RUNS_DIR/<name>/
    base: demo.yaml               # a config file, relative to the sweep file
    set:                          # optional: fixed overrides for every run
      train.epochs: 4
    grid:                         # one run per combination of these values
      puzzle.chunk_seconds: [0.2, 0.5]
      puzzle.n_chunks: [3, 4]
      # keys joined by commas vary together: one value is a list of one value per key
      puzzle.pad_min_seconds, puzzle.pad_max_seconds: [[0.0, 0.005], [0.1, 0.25]]
    eval:                         # optional: how each run is scored on held-out tracks
      split: test
      puzzles: 2000
      sanity: [noise, brown, tone]
    probe: [data/probe-tracks]    # optional: labelled folders (relative to where sweep runs)

Every run's config is built and validated before anything trains, so a typo in
the sweep fails at once, naming the run. A run is named by the values it varies
(``chunk_seconds=0.2_n_chunks=3``) and goes through three stages, each skipped
when its output is already in the run folder (``metrics.json``, ``eval.json``,
each probe task in ``probe.json``): re-running a sweep finishes what is left,
and an interrupted training run resumes from its last epoch.

Isolation: each run's stages execute in a fresh Python process
(``python -m audiosort.sweep JOB``), so memory that TensorFlow keeps per traced
model (see the train issue) is returned to the system when the run ends, and a
crash of one run (an error, running out of memory) is recorded in its row and
``logs/<run>.log`` and does not stop the others. ``--jobs N`` runs N processes
at once.

Output in the sweep folder: ``results.csv`` and ``results.md`` (one row per run:
varied values, exact-order and position accuracy on held-out tracks with chance,
Kendall tau, the continuity baseline, sanity sets sorted above chance, probe
accuracies, train time, status and error), ``heatmap-<x>-<y>.png`` of exact-order
accuracy over two grid axes, and for a one-axis sweep ``accuracy-<axis>.png``
(model, continuity baseline and probe accuracies along the axis).
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import io
import itertools
import json
import math
import os
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml

from audiosort import _files
from audiosort.config import Config, dump_config, load_config
from audiosort.errors import AudiosortError, ConfigError, InputError

SWEEP_KEYS = ("name", "base", "set", "grid", "eval", "probe")
EVAL_KEYS = ("split", "puzzles", "sanity")
EVAL_DEFAULTS = {"split": "test", "puzzles": 2000, "sanity": ["noise", "brown", "tone"]}


@dataclasses.dataclass(frozen=True)
class SweepRun:
    """One run of a sweep.

    Attributes
    ----------
    name : str
        Run folder name, from the varied values: ``chunk_seconds=0.2_n_chunks=3``.
    values : dict
        Grid key (as written in the sweep file) -> this run's value.
    overrides : tuple of str
        ``section.key=value`` strings applied to the base config, name last.
    """

    name: str
    values: dict
    overrides: tuple


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A parsed sweep file (see the module docstring).

    Attributes
    ----------
    name : str
        The sweep's folder name under the runs folder.
    base : Path
        The base config file.
    fixed : tuple of str
        ``section.key=value`` overrides for every run (the file's ``set:``, then ``--set``).
    axes : tuple of (tuple of str, list)
        Grid axes in file order: the keys varied together, and their values
        (one value per key when several keys share an axis).
    eval : dict
        ``split``, ``puzzles`` and ``sanity`` for ``audiosort eval``.
    probe : tuple of str
        Labelled folders each run's encoder is probed on.
    """

    name: str
    base: Path
    fixed: tuple
    axes: tuple
    eval: dict
    probe: tuple

    def runs(self) -> list[SweepRun]:
        """Every combination of the axes' values, in grid order (the last axis varies fastest)."""
        labels = _axis_labels(self.axes)
        runs = []
        for combo in itertools.product(*(values for _, values in self.axes)):
            values, overrides, parts = {}, list(self.fixed), []
            for (keys, _), value, label in zip(self.axes, combo, labels):
                values[", ".join(keys)] = value
                per_key = value if len(keys) > 1 else [value]
                for key, key_label, item in zip(keys, label, per_key):
                    overrides.append(f"{key}={_yaml_scalar(item)}")
                    parts.append(f"{key_label}={_yaml_scalar(item)}")
            name = "_".join(parts) or "base"
            runs.append(SweepRun(name=name, values=values, overrides=(*overrides, f"name={name}")))
        return runs

    def configs(self) -> list[tuple[SweepRun, Config]]:
        """Each run with its validated config; a bad value fails here, naming the run."""
        out = []
        for run in self.runs():
            try:
                out.append((run, load_config(self.base, run.overrides)))
            except ConfigError as e:
                raise ConfigError(f"sweep run {run.name}: {e}") from None
        return out


def load_sweep(path: str | Path, overrides: tuple = ()) -> Sweep:
    """Read and validate a sweep file.

    Parameters
    ----------
    path : str or Path
        The sweep YAML.
    overrides : sequence of str
        ``section.key=value`` applied to every run after the file's ``set:``;
        a key the grid varies is refused.

    Returns
    -------
    Sweep

    Raises
    ------
    ConfigError
        An unreadable file, an unknown key (naming the closest valid one), a
        grid axis without values, keys and values of different lengths, or a
        run whose config does not validate.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as e:
        raise ConfigError(f"cannot read sweep {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping with base: and grid:")
    _check_keys(raw, SWEEP_KEYS, "", path)
    if "base" not in raw:
        raise ConfigError(f"{path} has no base: (the config file every run starts from)")
    base = path.parent / str(raw["base"])
    if not base.is_file():
        raise ConfigError(f"base config {base} (from {path}) does not exist")

    fixed = [f"{key}={_yaml_scalar(value)}" for key, value in _mapping(raw, "set", path).items()]
    axes = []
    for joined, values in _mapping(raw, "grid", path).items():
        keys = tuple(key.strip() for key in str(joined).split(","))
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid.{joined} in {path} must be a non-empty list of values")
        if len(keys) > 1 and any(not isinstance(v, list) or len(v) != len(keys) for v in values):
            raise ConfigError(f"grid.{joined} in {path}: every value must be a list of {len(keys)} ({', '.join(keys)})")
        axes.append((keys, values))
    varied = {key for keys, _ in axes for key in keys}
    for override in overrides:
        key = override.partition("=")[0].strip()
        if key in varied:
            raise ConfigError(f"--set {key}: the sweep's grid varies this key; change the grid instead")
    fixed += list(overrides)

    evaluation = dict(EVAL_DEFAULTS)
    given = _mapping(raw, "eval", path)
    _check_keys(given, EVAL_KEYS, "eval.", path)
    evaluation.update(given)
    if isinstance(evaluation["sanity"], str):
        evaluation["sanity"] = [s.strip() for s in evaluation["sanity"].split(",") if s.strip()]
    probe = raw.get("probe") or []
    if not isinstance(probe, list):
        raise ConfigError(f"probe in {path} must be a list of labelled folders")

    sweep = Sweep(
        name=str(raw.get("name") or path.stem),
        base=base,
        fixed=tuple(fixed),
        axes=tuple(axes),
        eval=evaluation,
        probe=tuple(str(p) for p in probe),
    )
    names = [run.name for run, _ in sweep.configs()]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: two runs of the grid get the same name; give each axis distinct values")
    return sweep


def run_sweep(
    sweep: Sweep, *, runs_dir: str | Path = "runs", jobs: int = 1, plot: tuple | None = None, echo=print
) -> SweepReport:
    """Run every unfinished stage of every run of ``sweep``, then write the results.

    Parameters
    ----------
    sweep : Sweep
        From :func:`load_sweep`.
    runs_dir : str or Path
        The sweep folder is ``runs_dir / sweep.name``; each run's folder is in it.
    jobs : int >= 1
        Runs executed at once, each in its own process.
    plot : (str, str), optional
        Two grid keys for the heatmap; default the first two axes.
    echo : callable
        Receives one progress line per finished run.

    Returns
    -------
    SweepReport
        The rows, also written as ``results.csv`` and ``results.md``.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InputError(f"--jobs {jobs!r} must be an int >= 1")
    folder = Path(runs_dir) / sweep.name
    runs = sweep.configs()
    axis_keys = [", ".join(keys) for keys, _ in sweep.axes]
    if plot is not None:
        plot = tuple(_match_axis(key, axis_keys) for key in plot)
    for sub in ("jobs", "logs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    _files.write_text(folder / "sweep.yaml", yaml.safe_dump(_sweep_dict(sweep), sort_keys=False))

    def execute(index_run):
        index, (run, config) = index_run
        started = time.perf_counter()
        if not _pending_stages(folder / run.name, sweep):
            return index, run, "skipped", 0.0
        job = {
            "base": str(sweep.base),
            "overrides": list(run.overrides),
            "runs_dir": str(folder),
            "eval": sweep.eval,
            "probe": list(sweep.probe),
        }
        job_path = folder / "jobs" / f"{run.name}.json"
        _files.write_text(job_path, json.dumps(job, indent=1) + "\n")
        log_path = folder / "logs" / f"{run.name}.log"
        with open(log_path, "w") as log:
            code = subprocess.call([sys.executable, "-m", "audiosort.sweep", str(job_path)], stdout=log, stderr=log)
        error_path = folder / "logs" / f"{run.name}.error"
        if code == 0:
            error_path.unlink(missing_ok=True)
        elif not error_path.exists():
            # The process died without writing its error (killed, out of memory): keep what it printed.
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or [""]
            _files.write_text(error_path, f"process exited with code {code}: {tail[0]}\n")
        return index, run, "ok" if code == 0 else "failed", time.perf_counter() - started

    total = len(runs)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for index, run, status, seconds in pool.map(execute, enumerate(runs)):
            row = collect_row(folder, run, sweep)
            echo(f"[{index + 1}/{total}] {run.name}: {_progress(row, status, seconds)}")

    report = SweepReport(folder=folder, axis_keys=axis_keys, rows=[collect_row(folder, run, sweep) for run, _ in runs])
    report.write(plot=plot)
    return report


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
        lines += ["", "Scores on held-out tracks, hungarian decoding. probe:<task>:<features> is linear-probe accuracy."]
        return lines


def collect_row(folder: Path, run: SweepRun, sweep: Sweep) -> dict:
    """One results row from what a run's folder holds (so rows survive restarts).

    Returns
    -------
    dict
        ``run``, ``values``, and where present: ``exact_accuracy``,
        ``exact_chance``, ``position_accuracy``, ``position_chance``,
        ``kendall_tau`` (hungarian, eval split), ``continuity_exact_accuracy``,
        ``sanity_above_chance`` (names joined by "+", or "none"),
        ``probe:<task>:<features>``, ``val_exact_accuracy``,
        ``train_seconds``; ``status`` ("done", "failed", "pending") and ``error``.
    """
    run_dir = folder / run.name
    row = {"run": run.name, "values": run.values}
    metrics = _read_json(run_dir / "metrics.json")
    if metrics:
        row["val_exact_accuracy"] = metrics["val"]["hungarian"]["exact_accuracy"]["value"]
        row["train_seconds"] = metrics.get("train_seconds_this_session")
    report = _read_json(run_dir / "eval.json")
    if report:
        datasets = report["datasets"]
        scored = datasets.get(sweep.eval["split"]) or next(iter(datasets.values()))
        best = scored["hungarian"]
        row["exact_accuracy"] = best["exact_accuracy"]["value"]
        row["exact_chance"] = scored["chance"]["exact_accuracy"]
        row["position_accuracy"] = best["position_accuracy"]["value"]
        row["position_chance"] = scored["chance"]["position_accuracy"]
        row["kendall_tau"] = best["kendall_tau"]["value"]
        baseline = scored.get("baselines", {}).get("continuity")
        if baseline:
            row["continuity_exact_accuracy"] = baseline["hungarian"]["exact_accuracy"]["value"]
        leaking = [name for name, entry in datasets.items() if entry.get("sanity") and entry["verdict"] == "above_chance"]
        row["sanity_above_chance"] = "+".join(leaking) or "none"
    probes = (_read_json(run_dir / "probe.json") or {}).get("tasks", {})
    for task, entry in probes.items():
        for features, accuracy in entry["accuracy"].items():
            row[f"probe:{task}:{features}"] = accuracy
        row[f"probe:{task}:chance"] = entry.get("chance")
    error_path = folder / "logs" / f"{run.name}.error"
    if error_path.exists():
        row["status"] = "failed"
        row["error"] = error_path.read_text().strip().splitlines()[0] if error_path.read_text().strip() else "failed"
    else:
        row["status"] = "pending" if _pending_stages(run_dir, sweep) else "done"
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
    _save_figure(figure, path)
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
    _save_figure(figure, path)
    return path


def run_job(job_path: str | Path) -> int:
    """The worker: train, evaluate and probe one run in this process, skipping finished stages.

    Called as ``python -m audiosort.sweep JOB.json`` by :func:`run_sweep`. On
    failure writes ``logs/<run>.error`` (one line) beside the job folder and
    returns 1; returns 0 when every stage is done.
    """
    job = json.loads(Path(job_path).read_text())
    folder = Path(job["runs_dir"])
    config = load_config(job["base"], job["overrides"])
    error_path = folder / "logs" / f"{config.name}.error"
    try:
        _run_stages(config, folder, job)
    except Exception as e:  # noqa: BLE001 - any failure is this run's, recorded, and must not stop the sweep
        traceback.print_exc()
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        if not isinstance(e, AudiosortError):
            message = f"{type(e).__name__}: {message}"
        _files.write_text(error_path, message + "\n")
        return 1
    error_path.unlink(missing_ok=True)
    return 0


def _run_stages(config: Config, folder: Path, job: dict) -> None:
    from audiosort.evaluate import evaluate
    from audiosort.train import train

    run_dir = folder / config.name
    if not (run_dir / "metrics.json").exists():
        resume = (run_dir / "config.yaml").exists()
        print(f"train {run_dir}" + (" (resuming)" if resume else ""), flush=True)
        train(config, runs_dir=folder, resume=resume, verbose=2)
    elif (run_dir / "config.yaml").read_text() != dump_config(config):
        raise InputError(f"{run_dir} holds a run of another config; move it away or rename the sweep")
    evaluation = job["eval"]
    if not (run_dir / "eval.json").exists():
        print(f"eval {run_dir}", flush=True)
        report = evaluate(
            run_dir, split=evaluation["split"], sanity=tuple(evaluation["sanity"]), n_puzzles=evaluation["puzzles"]
        )
        print("\n".join(report.lines()), flush=True)
    for data in job["probe"]:
        if _probe_task_name(data) not in (_read_json(run_dir / "probe.json") or {}).get("tasks", {}):
            from audiosort.probe import probe

            print(f"probe {run_dir} on {data}", flush=True)
            probe(run_dir, data)


def _pending_stages(run_dir: Path, sweep: Sweep) -> list[str]:
    pending = [name for name, file in (("train", "metrics.json"), ("eval", "eval.json")) if not (run_dir / file).exists()]
    tasks = (_read_json(run_dir / "probe.json") or {}).get("tasks", {})
    return pending + [f"probe {data}" for data in sweep.probe if _probe_task_name(data) not in tasks]


def _probe_task_name(data: str) -> str:
    """The task name ``audiosort probe`` files a labelled folder under: the folder's name."""
    return Path(data).resolve().name


def _progress(row: dict, status: str, seconds: float) -> str:
    if row["status"] == "failed":
        return f"failed: {row.get('error', '')}"
    if row.get("exact_accuracy") is None:
        return row["status"]
    text = f"exact {row['exact_accuracy']:.3f} (chance {row['exact_chance']:.3f})"
    if row.get("continuity_exact_accuracy") is not None:
        text += f", continuity {row['continuity_exact_accuracy']:.3f}"
    return text + (" (already done)" if status == "skipped" else f" in {seconds:.0f} s")


def _axis_labels(axes) -> list[list[str]]:
    """Short names for each grid key: the last part, or more parts where two keys would clash."""
    keys = [key for key_group, _ in axes for key in key_group]

    def short(key):
        parts = key.split(".")
        for k in range(1, len(parts) + 1):
            label = ".".join(parts[-k:])
            if sum(other.split(".")[-k:] == parts[-k:] for other in keys) == 1:
                return label
        return key

    return [[short(key) for key in key_group] for key_group, _ in axes]


def _match_axis(key: str, axis_keys: list[str]) -> str:
    if key in axis_keys:
        return key
    matches = [axis for axis in axis_keys if key in [part.strip().rsplit(".", 1)[-1] for part in axis.split(",")]]
    if len(matches) == 1:
        return matches[0]
    close = difflib.get_close_matches(key, axis_keys, n=1, cutoff=0.0)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise InputError(f"--plot {key!r} is not a grid axis of this sweep{hint} (axes: {'; '.join(axis_keys)})")


def _check_keys(raw: dict, valid: tuple, prefix: str, path: Path) -> None:
    for key in raw:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.0)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
            raise ConfigError(f"unknown key '{prefix}{key}' in sweep {path}{hint}")


def _mapping(raw: dict, key: str, path: Path) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key} in {path} must be a mapping of section.key: value")
    return value


def _sweep_dict(sweep: Sweep) -> dict:
    return {
        "name": sweep.name,
        "base": str(sweep.base),
        "set": list(sweep.fixed),
        "grid": {", ".join(keys): values for keys, values in sweep.axes},
        "eval": sweep.eval,
        "probe": list(sweep.probe),
    }


def _yaml_scalar(value) -> str:
    """A value as --set reads it back (YAML flow style, no trailing newline)."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()


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
        return "–".join(_yaml_scalar(v) for v in value)
    return _yaml_scalar(value)


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


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _save_figure(figure, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    figure.savefig(tmp, format="png")
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(run_job(sys.argv[1]))
