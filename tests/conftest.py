"""Shared fixtures: tiny corpora made by the synthetic generators, and a tiny trained run, in tmp folders."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from audiosort.cli import main
from audiosort.config import PuzzleConfig, load_config
from audiosort.data import synthetic
from audiosort.data.prepare import prepare_synthetic
from audiosort.train import train

SAMPLE_RATE = 16000
# Small puzzles keep the corpora tiny: 3 chunks of 0.05 s with gaps up to 0.01 s.
TINY_PUZZLE = PuzzleConfig(n_chunks=3, chunk_seconds=0.05, pad_min_seconds=0.0, pad_max_seconds=0.01)
# A run that trains in seconds: TINY_PUZZLE's puzzles, small layers, 2 epochs of 5 steps.
TINY_TRAIN = [
    "puzzle.chunk_seconds=0.05",
    "puzzle.pad_min_seconds=0.0",
    "puzzle.pad_max_seconds=0.01",
    "model.encoder.hidden_units=32",
    "model.encoder.embedding_dim=16",
    "model.sorter.hidden_units=32",
    "train.batch_size=16",
    "train.epochs=2",
    "train.steps_per_epoch=5",
    "data.val_puzzles=100",
]


@pytest.fixture(scope="session")
def music_corpus(tmp_path_factory):
    """3 minutes of synthetic music in 12 tracks of 15 s, with 200-puzzle val/test sets."""
    out = tmp_path_factory.mktemp("corpora") / "music"
    prepare_synthetic(
        "music", out, duration_seconds=180, track_seconds=15, puzzle=TINY_PUZZLE, n_puzzles=200, progress=False
    )
    return out


@pytest.fixture(scope="session")
def tiny_run(music_corpus, tmp_path_factory):
    """A run folder trained once per session with TINY_TRAIN on `music_corpus`; treat it as read-only."""
    config = load_config(None, ["name=tiny", f"data.corpus={music_corpus}", *TINY_TRAIN])
    return train(config, runs_dir=tmp_path_factory.mktemp("runs"), verbose=0)


def write_music_files(folder, count, *, seconds=3.0, sample_rate=22050, seed=0, prefix="song"):
    """Write `count` stereo FLAC files of synthetic music; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(count):
        y = synthetic.music(seconds, sample_rate=sample_rate, rng=rng)
        path = folder / f"{prefix}{k:02d}.flac"
        sf.write(path, np.stack([y, 0.5 * y], axis=1), sample_rate)
        paths.append(path)
    return paths


def run(*args):
    """Invoke the audiosort CLI in-process with str() of each argument; return click's Result."""
    return CliRunner().invoke(main, [str(a) for a in args])


def latest_eval(run_dir):
    """The folder of a run's newest eval report, as ``eval/latest`` names it."""
    return Path(run_dir) / "eval" / (Path(run_dir) / "eval" / "latest").read_text().strip()


def assert_one_line_error(result, fragment):
    """Exit code 2, no traceback, and exactly one non-empty line on stderr containing `fragment`."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], result.stderr


def run_under_jax(code, *, timeout=300):
    """Run Python ``code`` in a fresh process under KERAS_BACKEND=jax; return its stdout, failing with its stderr.

    The repository and tests/ are on its path, so ``code`` may import a test module as pytest does.
    """
    repo_root = Path(__file__).resolve().parent.parent
    path = os.pathsep.join([str(repo_root), str(repo_root / "tests")])
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": path}
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=repo_root, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def numbers_under_jax(module, expression):
    """``expression`` evaluated among test module ``module``'s names in a fresh JAX process (checked to be JAX):
    the numbers it returns, a tuple of floats."""
    out = run_under_jax(
        f"import keras, {module}\n"
        "assert keras.backend.backend() == 'jax'\n"
        f"print(*eval({expression!r}, vars({module})))\n"
    )
    return tuple(float(x) for x in out.strip().splitlines()[-1].split())


# Long enough that only a hang reaches it, never a slow run on a loaded machine: no test asserts a duration.
HANG_SECONDS = 900


def default_sigint():
    """``preexec_fn`` for a child that must take Ctrl-C: a shell's background job (``cmd &``) inherits SIGINT
    ignored, and Python then leaves it ignored, so the child would never see the signal a test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(event, *, what, process=None):
    """Poll ``event()`` until it is true; fail if ``process`` exits first, or after HANG_SECONDS (a hang)."""
    deadline = time.monotonic() + HANG_SECONDS
    while not event():
        if process is not None and process.poll() is not None:
            pytest.fail(f"the process exited with {process.returncode} before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {HANG_SECONDS} s: a hang")
        time.sleep(0.05)
