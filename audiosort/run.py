"""The run folder: open, resume and finish it; load its config, model and encoder.

A run folder is what ``audiosort train`` writes under ``--runs-dir``, named
after the config's ``name`` (a single folder name, checked by
:class:`audiosort.config.Config`). docs/run-folder.md is the contract::

    config.yaml       the fully resolved config; written first
    history.csv       one row per finished epoch
    checkpoints/      last.weights.h5 (weights and optimizer state after the last
                      finished epoch), best.weights.h5 (lowest val_loss), state.json
                      ({"epochs": finished epochs}); each replaced atomically
    logs/             TensorBoard
    model.keras       the whole sorter (uncompiled when loaded here)
    encoder.keras     the encoder alone: int16 chunk (L,) -> embedding
    metrics.json      val scores; written last, so its presence means finished

Every file is written through :mod:`audiosort._files`: a reader, or a resumed
run, sees the old file or the whole new one. Everything that reads a run
(evaluate, embed, hear, listen, probe) loads it through this module, and a
damaged file is an :class:`~audiosort.errors.InputError` naming the file and
what is wrong with it.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from audiosort import _files
from audiosort import models as _models  # noqa: F401  (registers the custom layers load_model needs)
from audiosort.config import Config, dump_config, load_config
from audiosort.data.puzzles import PuzzleSpec
from audiosort.errors import ConfigError, InputError

# Frames per encoder call: a 0.5 s chunk at 16 kHz makes a 4 MiB int16 batch.
BATCH_FRAMES = 256


# Files every run folder holds from its start (open_run writes them first): --overwrite replaces
# only a folder that holds them, never a folder audiosort did not write.
RUN_MARKERS = ("config.yaml", "checkpoints")


def open_run(run_dir: Path, config: Config, *, resume: bool, overwrite: bool, keep: tuple = ()) -> int:
    """Create ``run_dir`` for ``config``, or reopen it to resume; return the epochs already finished.

    Parameters
    ----------
    run_dir : Path
        ``runs_dir / config.name``.
    config : Config
        The run's config; a resumed run's ``config.yaml`` must equal it.
    resume : bool, keyword-only
        Continue an interrupted run from its last finished epoch. A finished
        run (one with ``metrics.json``) is not reopened: check
        :func:`is_finished` first.
    overwrite : bool, keyword-only
        Replace an existing ``run_dir`` with a fresh run. Only a run folder
        (one holding :data:`RUN_MARKERS`) or an empty folder is replaced, never
        the working folder, one above it, or a folder overlapping the corpus,
        ``keep`` or the config file; and not while an eval or probe of it runs
        (see :func:`run_in_use`).
    keep : tuple of str or Path, keyword-only
        More inputs ``run_dir`` must not overlap: the config file it came from.

    Returns
    -------
    int
        Epochs finished so far (0 for a fresh run): pass it to
        :func:`restore_checkpoint` once the model is built.

    Raises
    ------
    InputError, ConfigError
        Both ``resume`` and ``overwrite``; a folder in the way; nothing to
        resume; a resumed config that differs; a damaged checkpoint state.
    """
    if resume and overwrite:
        raise InputError("--resume continues a run and --overwrite deletes it: pass one of them")
    _files.check_name(run_dir, "run folder")
    if resume:
        if not (run_dir / "config.yaml").exists():
            raise InputError(f"nothing to resume: {run_dir} has no config.yaml")
        if load_run_config(run_dir) != config:
            raise ConfigError(f"--resume: the config differs from the one {run_dir} was started with")
        return finished_epochs(run_dir)
    if not overwrite and run_dir.is_dir() and not run_dir.is_symlink() and not any(run_dir.iterdir()):
        overwrite = True  # an empty folder is no run to lose: train into it
    elif not overwrite and (run_dir.exists() or run_dir.is_symlink()):
        raise InputError(f"run folder {run_dir} already exists; pass --resume to continue it, --overwrite to replace it")
    _files.check_output(
        run_dir, what="run folder", overwrite=overwrite, keep=(config.data.corpus, *keep), markers=RUN_MARKERS
    )
    if run_dir.exists() or run_dir.is_symlink():
        with run_in_use(run_dir, exclusive=True):
            try:
                _files.remove_folder(run_dir)
            except OSError as e:
                raise InputError(f"cannot remove the old run folder {run_dir}: {e.strerror or e}") from None
    created = [folder for folder in (run_dir, *run_dir.parents) if not folder.exists()]
    try:
        (run_dir / "checkpoints").mkdir(parents=True)
        _files.write_text(run_dir / "config.yaml", dump_config(config))
    except (OSError, InputError) as e:
        for folder in created:  # innermost first: leave nothing that would block the next try
            shutil.rmtree(folder, ignore_errors=True)
        raise InputError(f"cannot create run folder {run_dir}: {getattr(e, 'strerror', None) or e}") from None
    return 0


@contextlib.contextmanager
def run_in_use(run_dir: str | Path, *, exclusive: bool = False) -> Iterator[Path]:
    """Hold ``run_dir`` while reading it and writing reports into it, so that no ``train --overwrite`` replaces it meanwhile.

    An eval or probe holds a shared lock on the folder for its whole length:
    what it writes lands in the run it loaded. ``train --overwrite`` takes the
    lock exclusively (without waiting) before it removes a run, and is refused
    while a reader holds it. A ``flock``, so the kernel releases it however
    its holder ends.

    Raises
    ------
    InputError
        No folder at ``run_dir``; or, ``exclusive``, the run is in use.
    """
    run_dir = Path(run_dir)
    try:
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise InputError(f"no run folder at {run_dir} ({e.strerror or e})") from None
    try:
        if exclusive:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InputError(
                    f"run folder {run_dir} is in use (an eval or probe of it is running); wait for it to end"
                ) from None
        else:
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                now = os.stat(run_dir)
            except OSError:
                now = None
            if now is None or (now.st_dev, now.st_ino) != (os.fstat(fd).st_dev, os.fstat(fd).st_ino):
                raise InputError(f"run folder {run_dir} was replaced while opening it; run the command again")
        yield run_dir
    finally:
        os.close(fd)


def is_finished(run_dir: Path) -> bool:
    """Whether training wrote ``run_dir``'s last file, ``metrics.json``."""
    return (run_dir / "metrics.json").exists()


def discard_unstarted(run_dir: Path) -> None:
    """Remove a run folder in which no epoch finished (a run that failed before training)."""
    if run_dir.is_dir() and finished_epochs(run_dir) == 0:
        _files.remove_folder(run_dir)


def finished_epochs(run_dir: Path) -> int:
    """Epochs whose checkpoint was written, from ``checkpoints/state.json`` (0 without one)."""
    return checkpoint_state(run_dir).get("epochs", 0)


def checkpoint_state(run_dir: Path) -> dict:
    """``checkpoints/state.json``: ``{"epochs": int, "best_val_loss": float}``, or {} before the first epoch.

    Raises
    ------
    InputError
        The file is not such JSON.
    """
    path = run_dir / "checkpoints" / "state.json"
    if not path.exists():
        return {}
    try:
        state = json.loads(path.read_text())
        epochs = state["epochs"]
        float(state["best_val_loss"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path} is damaged ({type(e).__name__}); start afresh with --overwrite") from None
    if not isinstance(epochs, int) or epochs < 0:
        raise InputError(f"{path} is damaged (epochs = {epochs!r}); start afresh with --overwrite")
    return state


def save_checkpoint(model: keras.Model, run_dir: Path, *, epochs: int, best_val_loss: float, best: bool) -> None:
    """Write ``last.weights.h5`` (and ``best.weights.h5`` when ``best``), then ``state.json``.

    Each file is replaced atomically and ``state.json`` goes last, so a write
    that fails (or a kill) leaves the previous checkpoint and its state intact.
    """
    folder = run_dir / "checkpoints"
    with _files.replacing(folder / "last.weights.h5") as tmp:
        model.save_weights(tmp)
    if best:
        with _files.replacing(folder / "best.weights.h5") as tmp:
            model.save_weights(tmp)
    state = {"epochs": epochs, "best_val_loss": best_val_loss}
    _files.write_text(folder / "state.json", json.dumps(state) + "\n")


def restore_checkpoint(model: keras.Model, run_dir: Path, epochs: int) -> None:
    """Resume after ``epochs`` finished epochs: load ``last.weights.h5`` into ``model``, cut ``history.csv`` to match.

    ``model`` is compiled; the checkpoint holds its weights and optimizer
    state. The history keeps its first ``epochs`` rows, so a resumed run
    repeats none (a kill between the history row and the checkpoint leaves one
    row too many). Nothing changes when the checkpoint cannot be loaded.

    Raises
    ------
    InputError
        The checkpoint is missing or cannot be read: the run cannot go on.
    """
    if epochs:
        _load_weights(model, run_dir / "checkpoints" / "last.weights.h5")
    _trim_history(run_dir / "history.csv", epochs)


def _load_weights(model: keras.Model, path: Path) -> None:
    if not path.is_file():
        raise InputError(f"cannot resume: {path} is missing; start afresh with --overwrite")
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(path)
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"cannot resume: {path} is damaged ({_first_line(e)}); start afresh with --overwrite") from None


def save_keras(model: keras.Model, path: Path) -> None:
    """``model.save(path)``, atomically."""
    with _files.replacing(path) as tmp:
        model.save(tmp)


def finish_run(run_dir: Path, model: keras.Model, encoder: keras.Model, report: dict) -> None:
    """Save ``model.keras`` and ``encoder.keras``, then ``metrics.json`` (``report``), the mark of a finished run."""
    save_keras(model, run_dir / "model.keras")
    save_keras(encoder, run_dir / "encoder.keras")
    _files.write_text(run_dir / "metrics.json", json.dumps(report, indent=1) + "\n")


def load_run_config(run_dir: str | Path) -> Config:
    """The resolved config a run was trained with."""
    path = Path(run_dir) / "config.yaml"
    if not Path(run_dir).is_dir():
        raise InputError(f"no run folder at {run_dir}")
    if not path.exists():
        raise InputError(f"{run_dir} is not a run folder: no config.yaml")
    return load_config(path)


def load_keras_file(path: Path) -> keras.Model:
    """An uncompiled model from a ``.keras`` file; a damaged file is an InputError saying what is wrong."""
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path} is damaged: not a .keras zip archive (truncated or overwritten?)")
    try:
        return keras.saving.load_model(path, compile=False)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"{path} is damaged: cannot load it as a Keras model ({_first_line(e)})") from None


def load_run_model(run_dir: str | Path, spec: PuzzleSpec | None = None) -> keras.Model:
    """A run's ``model.keras`` (uncompiled), checked to take puzzles of ``spec`` (default: the run's own)."""
    run_dir = Path(run_dir)
    if spec is None:
        config = load_run_config(run_dir)
        spec = PuzzleSpec.from_config(config.puzzle, sample_rate=config.data.sample_rate)
    path = run_dir / "model.keras"
    if not path.exists():
        raise InputError(f"{run_dir} has no model.keras (training did not finish?)")
    model = load_keras_file(path)
    n_chunks, chunk_samples = model.input_shape[1:]
    # n_chunks None: a model for any n (its run grew n, train.n_chunks_schedule).
    if n_chunks not in (None, spec.n_chunks) or chunk_samples != spec.chunk_samples:
        raise InputError(
            f"{path} takes {model.input_shape[1]} chunks of {model.input_shape[2]} samples but its config.yaml cuts "
            f"{spec.n_chunks} of {spec.chunk_samples}; the run folder is inconsistent"
        )
    return model


@dataclass(frozen=True)
class RunEncoder:
    """A run's encoder with the geometry it was trained on.

    Attributes
    ----------
    encoder : keras.Model
        Input ``[shape=(B, chunk_samples), dtype=int16]``, output ``(B, embedding_dim)``.
    sample_rate : int > 0
        Hz; the rate of the audio the encoder was trained on (``data.sample_rate``).
    chunk_samples : int > 0
        Chunk length L, in samples.
    path : Path
        The ``encoder.keras`` file loaded.
    """

    encoder: keras.Model
    sample_rate: int
    chunk_samples: int
    path: Path

    @property
    def embedding_dim(self) -> int:
        """D, the length of one embedding."""
        return int(self.encoder.output_shape[-1])

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """Embed int16 frames of one chunk length each, ``BATCH_FRAMES`` at a time.

        Parameters
        ----------
        frames : np.ndarray [shape=(..., chunk_samples), dtype=int16]
            Any leading shape; may be a strided view (see :func:`audiosort.embed.frame`),
            which is copied one batch at a time, never whole.

        Returns
        -------
        embeddings : np.ndarray [shape=(..., embedding_dim), dtype=float32]
        """
        if frames.dtype != np.int16 or frames.ndim < 2 or frames.shape[-1] != self.chunk_samples:
            # The encoder's int16 input would silently truncate float audio to zeros.
            raise ValueError(
                f"frames must be int16 of shape (..., {self.chunk_samples}), got {frames.dtype} {frames.shape}"
            )
        leading = frames.shape[:-1]
        count = int(np.prod(leading))
        embeddings = np.empty((count, self.embedding_dim), dtype=np.float32)
        for start in range(0, count, BATCH_FRAMES):
            index = np.unravel_index(np.arange(start, min(start + BATCH_FRAMES, count)), leading)
            batch = np.ascontiguousarray(frames[index])
            embeddings[start : start + len(batch)] = np.asarray(self.encoder.predict_on_batch(batch), dtype=np.float32)
        return embeddings.reshape(*leading, self.embedding_dim)


def load_encoder(path: str | Path) -> RunEncoder:
    """Load a run's encoder and the sample rate and chunk length it was trained with.

    Parameters
    ----------
    path : str or Path
        A run folder of ``audiosort train``, or a file in one: its
        ``encoder.keras``, or its ``model.keras`` (whose encoder is the same
        network, saved alone as ``encoder.keras``).

    Returns
    -------
    RunEncoder

    Raises
    ------
    InputError
        No such run folder or file, another file than those two, no
        ``config.yaml`` or ``encoder.keras``, a damaged ``encoder.keras``, or an
        encoder whose input length differs from the config's chunk length.
    """
    path = Path(path)
    if path.is_dir():
        run_dir = path
    elif path.is_file():
        run_dir = path.parent
        if path.name not in ("encoder.keras", "model.keras"):
            raise InputError(f"{path} is not a run's encoder.keras or model.keras; pass the run folder")
    else:
        raise InputError(f"no run folder or encoder file at {str(path)!r}")
    encoder_path = path if path.name == "encoder.keras" else run_dir / "encoder.keras"
    config = load_run_config(run_dir)
    if not encoder_path.is_file():
        raise InputError(f"{run_dir} has no encoder.keras (training did not finish?)")
    sample_rate = config.data.sample_rate
    chunk_samples = PuzzleSpec.from_config(config.puzzle, sample_rate=sample_rate).chunk_samples
    encoder = load_keras_file(encoder_path)
    if tuple(encoder.input_shape[1:]) != (chunk_samples,):
        raise InputError(
            f"{encoder_path} takes chunks of shape {encoder.input_shape[1:]} but config.yaml cuts {chunk_samples} "
            "samples; the run folder is inconsistent"
        )
    return RunEncoder(encoder, sample_rate, chunk_samples, encoder_path)


def _trim_history(path: Path, epochs: int) -> None:
    """Keep the header and the first ``epochs`` rows of ``history.csv``: the epochs a checkpoint holds."""
    if not path.exists():
        return
    if epochs == 0:
        path.unlink()
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) > epochs + 1:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows[: epochs + 1])
        _files.write_text(path, buffer.getvalue())


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
