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
when its output is already in the run folder (:func:`audiosort.run.stage_done`:
training finished, an eval report with the sweep's ``eval`` settings, each
probe task): re-running a sweep finishes what is left, and an interrupted
training run resumes from its last epoch.

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

Modules: :mod:`~audiosort.sweep.grid` parses a sweep file into runs,
:mod:`~audiosort.sweep.runner` runs each in its own process,
:mod:`~audiosort.sweep.report` collects, tabulates and plots the results.
"""

from audiosort.sweep.grid import Sweep, SweepRun, load_sweep
from audiosort.sweep.report import SweepReport
from audiosort.sweep.runner import run_sweep

__all__ = ["Sweep", "SweepRun", "SweepReport", "load_sweep", "run_sweep"]
