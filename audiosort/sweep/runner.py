"""Run each run of a sweep in its own process, skipping the stages already done.

:func:`run_sweep` starts one ``python -m audiosort.sweep JOB.json``
process per run (``--jobs`` at once); :func:`run_job` is that process: train,
evaluate and probe one run, recording a failure in ``logs/<run>.error``.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from audiosort import _files
from audiosort.config import Config, load_config
from audiosort.errors import AudiosortError, InputError, check_positive_int
from audiosort.sweep.grid import Sweep, sweep_dict
from audiosort.run import AUDIOSORT_FOLDERS, config_path, run_in_use, stage_done
from audiosort.sweep.report import SweepReport, collect_row, is_run_of, match_axis, pending_stages, probe_task_name


def run_sweep(
    sweep: Sweep, *, runs_dir: str | Path = "runs", jobs: int = 1, plot: tuple | None = None, echo=print,
    keep: tuple = (),
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
    keep : tuple of str or Path
        More inputs the sweep folder may not overlap (the sweep file); the
        base config, every run's corpus and the probe folders are kept anyway.

    Returns
    -------
    SweepReport
        The rows, also written as ``results.csv`` and ``results.md``.

    Raises
    ------
    InputError
        A sweep folder that is the working folder or above, overlaps an
        input, lies inside a corpus, or exists holding files but is not a
        sweep folder (no ``sweep.lock``); another sweep running in it.
    """
    check_positive_int(jobs, "jobs")
    folder = Path(runs_dir) / sweep.name
    runs = sweep.configs()
    inputs = (*keep, sweep.base, *{config.data.corpus for _, config in runs}, *sweep.probe)
    # The sweep writes sweep.yaml, jobs/, logs/ and results into its folder: never into a folder of the user's.
    _files.check_output(folder, what="sweep folder", overwrite=True, keep=inputs, markers=(SWEEP_MARKER,))
    _files.refuse_inside(folder, what="sweep folder")
    axis_keys = [", ".join(keys) for keys, _ in sweep.axes]
    if plot is not None:
        plot = tuple(match_axis(key, axis_keys) for key in plot)
    folder.mkdir(parents=True, exist_ok=True)
    with _sweep_lock(folder):
        for sub in ("jobs", "logs"):
            (folder / sub).mkdir(exist_ok=True)
        return _run_locked(sweep, folder, runs, axis_keys, jobs=jobs, plot=plot, echo=echo)


# Written into a sweep folder first (see _sweep_lock): a folder without it was not made by a sweep.
(SWEEP_MARKER,) = AUDIOSORT_FOLDERS["sweep folder"]


@contextlib.contextmanager
def _sweep_lock(folder: Path):
    """Hold ``folder/sweep.lock`` for one sweep: a second sweep on the same folder is refused.

    An flock, so the kernel releases it however the holder ends (``kill -9`` included).
    """
    with open(folder / SWEEP_MARKER, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"another sweep is running in {folder}; wait for it to end or stop it") from None
        yield  # closing the file releases the lock


def _run_locked(sweep: Sweep, folder: Path, runs: list, axis_keys: list, *, jobs: int, plot, echo) -> SweepReport:
    _files.write_text(folder / "sweep.yaml", yaml.safe_dump(sweep_dict(sweep), sort_keys=False))

    def execute(index_run):
        index, (run, config) = index_run
        started = time.perf_counter()
        if not pending_stages(folder / run.name, sweep, config):
            return index, run, "skipped", 0.0
        job = {
            "base": str(sweep.base),
            "overrides": list(run.overrides),
            "runs_dir": str(folder),
            "eval": sweep.eval,
            "probe": list(sweep.probe),
            "parent_pid": os.getpid(),
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

    rows = [collect_row(folder, run, sweep) for run, _ in runs]
    report = SweepReport(folder=folder, axis_keys=axis_keys, rows=rows)
    report.write(plot=plot)
    return report


def run_job(job_path: str | Path) -> int:
    """The worker: train, evaluate and probe one run in this process, skipping finished stages.

    Called as ``python -m audiosort.sweep JOB.json`` by :func:`run_sweep`. On
    failure writes ``logs/<run>.error`` (one line) beside the job folder and
    returns 1; returns 0 when every stage is done.
    """
    job = json.loads(Path(job_path).read_text())
    _exit_with_parent(job["parent_pid"])
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


def _exit_with_parent(parent_pid: int) -> None:
    """Have Linux send this run SIGTERM when the sweep that started it dies, so a killed sweep leaves none training.

    A SIGTERM unwinds like an exception (the run's writes are atomic; an
    unfinished run resumes). Elsewhere the run goes on, as before.
    """
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1  # linux/prctl.h
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent_pid:  # it died before prctl took effect
        sys.exit(128 + signal.SIGTERM)


def _run_stages(config: Config, folder: Path, job: dict) -> None:
    from audiosort.evaluate import eval_settings, evaluate
    from audiosort.train import train

    run_dir = folder / config.name
    # Another config's run, finished or not, is never resumed, scored or counted as this one.
    if config_path(run_dir).exists() and not is_run_of(run_dir, config):
        raise InputError(f"{run_dir} holds a run of another config; move it away or rename the sweep")
    if not stage_done(run_dir, "train"):
        resume = config_path(run_dir).exists()
        print(f"train {run_dir}" + (" (resuming)" if resume else ""), flush=True)
        train(config, runs_dir=folder, resume=resume, verbose=2)
    evaluation = job["eval"]
    settings = eval_settings(
        corpus=config.data.corpus, split=evaluation["split"], sanity=tuple(evaluation["sanity"]),
        n_puzzles=evaluation["puzzles"], n_chunks=config.puzzle.n_chunks,
    )
    # Held while reports are written into the run, as `audiosort eval` and `probe` hold it.
    with run_in_use(run_dir):
        if not stage_done(run_dir, "eval", settings):
            print(f"eval {run_dir}", flush=True)
            report = evaluate(
                run_dir, split=evaluation["split"], sanity=tuple(evaluation["sanity"]), n_puzzles=evaluation["puzzles"]
            )
            print("\n".join(report.lines()), flush=True)
        for data in job["probe"]:
            if not stage_done(run_dir, "probe", probe_task_name(data)):
                from audiosort.probe import probe

                print(f"probe {run_dir} on {data}", flush=True)
                # The supervised reference ignores the run's weights: the same for every run of a sweep, so not per run.
                probe(run_dir, data, supervised_steps=0)


def _progress(row: dict, status: str, seconds: float) -> str:
    if row["status"] == "failed":
        return f"failed: {row.get('error', '')}"
    if row.get("exact_accuracy") is None:
        return row["status"]
    text = f"exact {row['exact_accuracy']:.3f} (chance {row['exact_chance']:.3f})"
    if row.get("continuity_exact_accuracy") is not None:
        text += f", continuity {row['continuity_exact_accuracy']:.3f}"
    return text + (" (already done)" if status == "skipped" else f" in {seconds:.0f} s")
