"""The run folder: open, resume and finish it; load its config, model and encoder.

A run folder is what ``audiosort train`` writes under ``--runs-dir``, named
after the config's ``name`` (a single folder name, checked by
:class:`audiosort.config.Config`). docs/run-folder.md is the contract::

    config.yaml       the fully resolved config; written first
    history.csv       one row per finished epoch
    checkpoints/      last.weights.h5 (weights and optimizer state after the last
                      finished epoch), best.weights.h5 (lowest val_loss),
                      best-online-probe.weights.h5 (highest online_probe, with
                      train.online_probe), state.json ({"epochs": finished
                      epochs, the best values and their epochs}); each replaced atomically
    logs/             TensorBoard
    model.keras       the whole sorter (uncompiled when loaded here)
    encoder.keras     the encoder alone: int16 chunk (L,) -> embedding
    metrics.json      val scores; written last, so its presence means finished
    eval/<label>/     one report per evaluation (eval.json, eval.md, confusion-<set>.png)
    eval/latest       the name of the newest eval/<label>
    probe.json        linear-probe tasks, probe.md their table

Every file is written through :mod:`audiosort._files`: a reader, or a resumed
run, sees the old file or the whole new one. This is the only module that
names a file of the run folder: everything that reads a run (the CLI,
evaluate, embed, hear, listen, probe, the sweep, scripts/) goes through it,
:func:`read_metrics`, :func:`read_eval` and :func:`read_probe` return typed
results, and :func:`stage_done` says what a run has done. A damaged file is an
:class:`~audiosort.errors.InputError` naming the file and what is wrong with it.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import math
import os
import re
import shutil
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from audiosort import _files
from audiosort import models as _models  # noqa: F401  (registers the custom layers load_model needs)
from audiosort.config import Config, dump_config, load_config
from audiosort.data.puzzles import PuzzleSpec
from audiosort.errors import ConfigError, InputError
from audiosort.metrics import PuzzleScores

# Frames per encoder call: a 0.5 s chunk at 16 kHz makes a 4 MiB int16 batch.
BATCH_FRAMES = 256
# What audiosort does to a run, in order; see stage_done.
STAGES = ("train", "eval", "probe")


# Files every run folder holds from its start (open_run writes them first): --overwrite replaces
# only a folder that holds them, never a folder audiosort did not write.
RUN_MARKERS = ("config.yaml", "checkpoints")
# The folders audiosort keeps to its own files, by what marks them: no command's --out goes into one.
AUDIOSORT_FOLDERS = {"corpus": ("manifest.json",), "run folder": RUN_MARKERS, "sweep folder": ("sweep.lock",)}


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
        ``stage_done(run_dir, "train")`` first.
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
        raise InputError("resume=True continues a run and overwrite=True deletes it: pass one of them")
    _files.check_name(run_dir, "run folder")
    if resume:
        if not (run_dir / "config.yaml").exists():
            raise InputError(f"nothing to resume: {run_dir} has no config.yaml")
        _hold(run_dir)
        try:
            if load_run_config(run_dir) != config:
                raise ConfigError(f"resume=True: the config differs from the one {run_dir} was started with")
            return _resumable_epochs(run_dir, config)
        except BaseException:
            _release(run_dir)
            raise
    if not overwrite and run_dir.is_dir() and not run_dir.is_symlink() and not any(run_dir.iterdir()):
        overwrite = True  # an empty folder is no run to lose: train into it
    elif not overwrite and (run_dir.exists() or run_dir.is_symlink()):
        raise InputError(f"run folder {run_dir} already exists; pass resume=True to continue it, overwrite=True to replace it")
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
    _hold(run_dir)
    return 0


# The run folders this process is training, by absolute path: an open descriptor of the folder, holding
# an exclusive flock on it. While the descriptor is open the folder's inode cannot be reused, so
# (st_dev, st_ino) of the descriptor tells this folder from one put under the same name meanwhile.
_HELD: dict[str, int] = {}


def _hold(run_dir: Path) -> None:
    """Lock ``run_dir`` exclusively (without waiting) for the training about to run in it, and remember which folder it is."""
    key = os.path.abspath(run_dir)
    _release(run_dir)  # left by a training of this process that ended in an exception
    try:
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise InputError(f"no run folder at {run_dir} ({e.strerror or e})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise InputError(
            f"run folder {run_dir} is in use (a resumed training, an eval or a probe of it is running); wait for it to end"
        ) from None
    _HELD[key] = fd


def _release(run_dir: Path) -> None:
    fd = _HELD.pop(os.path.abspath(run_dir), None)
    if fd is not None:
        os.close(fd)


def _is_held_folder(run_dir: Path) -> bool | None:
    """Whether ``run_dir`` is still the folder this process opened for training (None: it opened none there)."""
    fd = _HELD.get(os.path.abspath(run_dir))
    if fd is None:
        return None
    held = os.fstat(fd)
    try:
        now = os.lstat(run_dir)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def check_still_ours(run_dir: Path) -> None:
    """Refuse to write into ``run_dir`` when the folder training opened was replaced or removed under it."""
    if _is_held_folder(run_dir) is False:
        raise InputError(
            f"run folder {run_dir} was removed or replaced while training; stopped without writing into what is there now"
        )


def _resumable_epochs(run_dir: Path, config: Config) -> int:
    """The epochs a resumed run continues after, checked against ``history.csv`` and ``train.epochs``."""
    epochs = finished_epochs(run_dir)
    state = run_dir / "checkpoints" / "state.json"
    if epochs > config.train.epochs:
        raise InputError(
            f"cannot resume: {state} says {epochs} epochs finished, more than train.epochs = {config.train.epochs}; "
            "start afresh with overwrite=True"
        )
    path = history_path(run_dir)
    _files.check_regular(path, "history")
    rows = 0
    if path.exists():
        try:
            with open(path, newline="") as f:
                rows = max(0, sum(1 for row in csv.reader(f) if row) - 1)
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise InputError(f"cannot resume: {path} cannot be read ({_first_line(e)}); start afresh with overwrite=True") from None
    # history.csv gets each epoch's row before its checkpoint: a checkpoint ahead of the history is not this run's.
    if epochs > rows:
        raise InputError(
            f"cannot resume: {state} says {epochs} epochs finished but {path} holds {rows}; start afresh with overwrite=True"
        )
    return epochs


@contextlib.contextmanager
def run_in_use(run_dir: str | Path, *, exclusive: bool = False) -> Iterator[Path]:
    """Hold ``run_dir`` while reading it and writing reports into it, so that no ``train --overwrite`` replaces it meanwhile.

    An eval or probe holds a shared lock on the folder for its whole length:
    what it writes lands in the run it loaded. ``train --overwrite`` takes the
    lock exclusively (without waiting) before it removes a run, and is refused
    while a reader holds it; a training holds it exclusively from
    :func:`open_run` to :func:`finish_run`, and a reader is refused meanwhile
    (it would score a model about to be replaced). A ``flock``, so the kernel releases it however
    its holder ends.

    Raises
    ------
    InputError
        No folder at ``run_dir``; the run is in use (by a reader, when
        ``exclusive``; by a training, either way).
    """
    run_dir = Path(run_dir)
    _release(run_dir)  # a training of this process on it has ended, in an exception
    try:
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise InputError(f"no run folder at {run_dir} ({e.strerror or e})") from None
    try:
        mode, holder = (fcntl.LOCK_EX, "an eval or probe of it is running") if exclusive else (
            fcntl.LOCK_SH, "it is being trained or replaced"
        )
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"run folder {run_dir} is in use ({holder}); wait for it to end") from None
        if not exclusive:
            try:
                now = os.stat(run_dir)
            except OSError:
                now = None
            if now is None or (now.st_dev, now.st_ino) != (os.fstat(fd).st_dev, os.fstat(fd).st_ino):
                raise InputError(f"run folder {run_dir} was replaced while opening it; run the command again")
        yield run_dir
    finally:
        os.close(fd)


def stage_done(run_dir: str | Path, stage: str, detail: Mapping | str | None = None) -> bool:
    """Whether a run has done ``stage``, by the files its folder holds.

    Parameters
    ----------
    run_dir : str or Path
        A run folder (it need not exist: then nothing is done).
    stage : {"train", "eval", "probe"}
        ``"train"``: training wrote its last file, ``metrics.json``.
        ``"eval"``: an eval report with the settings ``detail`` exists (any
        report when ``detail`` is None); see :func:`write_eval`.
        ``"probe"``: ``probe.json`` holds the task named ``detail`` (any task
        when None).
    detail : mapping or str, optional
        As said for each stage.

    Returns
    -------
    bool
        False also where the file that would say so cannot be read.
    """
    run_dir = Path(run_dir)
    if stage == "train":
        return (run_dir / "metrics.json").exists()
    if stage == "eval":
        # eval/latest is written after the report's folder: a report it does not follow may have been cut short.
        if not (run_dir / "eval" / "latest").is_file():
            return False
        return any(detail is None or _settings_of(folder) == _as_json(detail) for folder in _eval_folders(run_dir))
    if stage == "probe":
        try:
            tasks = read_probe(run_dir)
        except InputError:
            return False
        return bool(tasks) if detail is None else detail in tasks
    raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")


def discard_unstarted(run_dir: Path) -> None:
    """Remove the run folder :func:`open_run` created, if no epoch finished in it (a run that failed before training).

    Only that folder is removed, known by the descriptor this process holds
    on it, not by its name: a folder or file put under the name meanwhile is
    left alone, as is a run this process did not open.
    """
    held = _is_held_folder(run_dir)
    try:
        if held and finished_epochs(run_dir) == 0:
            trash = run_dir.parent / _files._hidden_name(run_dir.name, f"old-{os.getpid()}")
            os.replace(run_dir, trash)
            moved, ours = os.lstat(trash), os.fstat(_HELD[os.path.abspath(run_dir)])
            if (moved.st_dev, moved.st_ino) != (ours.st_dev, ours.st_ino) and not os.path.lexists(run_dir):
                os.replace(trash, run_dir)  # swapped between the check and the rename: put it back
            else:
                _files._delete(trash)
    finally:
        _release(run_dir)


def finished_epochs(run_dir: Path) -> int:
    """Epochs whose checkpoint was written, from ``checkpoints/state.json`` (0 without one)."""
    return checkpoint_state(run_dir).get("epochs", 0)


# The best checkpoints a run keeps, each by one value of the epoch's logs: monitor -> (file, +1 higher is better or -1 lower).
BEST_CHECKPOINTS = {"val_loss": ("best.weights.h5", -1), "online_probe": ("best-online-probe.weights.h5", +1)}


def checkpoint_state(run_dir: Path) -> dict:
    """``checkpoints/state.json``, or {} before the first epoch.

    ``{"epochs": int, "best": {monitor: {"value": float, "epoch": int}}}``:
    ``best`` names, for each monitor of :data:`BEST_CHECKPOINTS` the epochs'
    logs had, its best value and the epoch (counted from 1) whose weights its
    checkpoint holds. A state written before ``best`` was kept held only
    ``"best_val_loss"``; it is read into ``best``, at epoch 0 (unknown), so
    that a resumed run's ``best.weights.h5`` is only replaced by a better one.

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
        if "best" not in state:
            best_val_loss = float(state.pop("best_val_loss"))
            state["best"] = {"val_loss": {"value": best_val_loss, "epoch": 0}} if math.isfinite(best_val_loss) else {}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path} is damaged ({type(e).__name__}); start afresh with overwrite=True") from None
    if not isinstance(epochs, int) or epochs < 0:
        raise InputError(f"{path} is damaged (epochs = {epochs!r}); start afresh with overwrite=True")
    best = state["best"]
    if not isinstance(best, dict) or not all(
        monitor in BEST_CHECKPOINTS and isinstance(entry, dict) and isinstance(entry.get("epoch"), int)
        and isinstance(entry.get("value"), (int, float)) for monitor, entry in best.items()
    ):
        raise InputError(f"{path} is damaged (best = {best!r:.80}); start afresh with overwrite=True")
    return state


def save_checkpoint(model: keras.Model, run_dir: Path, *, epochs: int, best: dict, improved: tuple[str, ...] = ()) -> None:
    """Write ``last.weights.h5``, the best checkpoint of each monitor in ``improved``, then ``state.json``.

    ``best`` is the state's ``{monitor: {"value", "epoch"}}`` (:func:`checkpoint_state`)
    after this epoch; ``improved`` the monitors of :data:`BEST_CHECKPOINTS`
    whose best this epoch is. Each file is replaced atomically and
    ``state.json`` goes last, so a write that fails (or a kill) leaves the
    previous checkpoint and its state intact.
    """
    check_still_ours(run_dir)
    folder = run_dir / "checkpoints"
    with _files.replacing(folder / "last.weights.h5") as tmp:
        model.save_weights(tmp)
    for monitor in improved:
        with _files.replacing(folder / BEST_CHECKPOINTS[monitor][0]) as tmp:
            model.save_weights(tmp)
    state = {"epochs": epochs, "best": best}
    _files.write_text(folder / "state.json", json.dumps(state) + "\n")


def restore_kept(model: keras.Model, run_dir: Path, keep: str) -> int:
    """Load the weights ``train.keep`` chooses into ``model``, at the end of training; the epoch they are from (from 1).

    ``keep`` is ``last`` (nothing is loaded: the weights are the last
    epoch's) or a monitor of :data:`BEST_CHECKPOINTS` (its best checkpoint).

    Raises
    ------
    InputError
        No epoch logged that monitor with a finite value, or its checkpoint cannot be read.
    """
    state = checkpoint_state(run_dir)
    if keep == "last":
        return state.get("epochs", 0)
    entry = state.get("best", {}).get(keep)
    if entry is None:
        raise InputError(f"train.keep = {keep!r}: no epoch of {run_dir} logged a finite {keep}, so there is no checkpoint to keep")
    _load_weights(model, run_dir / "checkpoints" / BEST_CHECKPOINTS[keep][0], doing=f"keep the best {keep}")
    return entry["epoch"]


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
    check_still_ours(run_dir)
    if epochs:
        _load_weights(model, run_dir / "checkpoints" / "last.weights.h5")
    _trim_history(run_dir / "history.csv", epochs)


def _load_weights(model: keras.Model, path: Path, doing: str = "resume") -> None:
    if not path.is_file():
        raise InputError(f"cannot {doing}: {path} is missing; start afresh with overwrite=True")
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(path)
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"cannot {doing}: {path} is damaged ({_first_line(e)}); start afresh with overwrite=True") from None


def save_keras(model: keras.Model, path: Path) -> None:
    """``model.save(path)``, atomically."""
    with _files.replacing(path) as tmp:
        model.save(tmp)


def model_path(run_dir: str | Path) -> Path:
    """The run's whole model, ``model.keras`` (raw int16 chunks in, the head's scores out)."""
    return Path(run_dir) / "model.keras"


def eval_report_folder(run_dir: str | Path, label: str) -> Path:
    """The folder of the eval report named ``label`` (``test-n3``, ``val-n3``, ``recipe-test-n3``; see :func:`write_eval`)."""
    return Path(run_dir) / "eval" / label


def history_path(run_dir: Path) -> Path:
    """``history.csv``, one row per finished epoch (written by Keras's ``CSVLogger``)."""
    return run_dir / "history.csv"


def logs_folder(run_dir: Path) -> Path:
    """``logs/``, the run's TensorBoard folder."""
    return run_dir / "logs"


def config_path(run_dir: str | Path) -> Path:
    """``config.yaml``, the resolved config a run was trained with."""
    return Path(run_dir) / "config.yaml"


def finish_run(run_dir: Path, model: keras.Model, encoder: keras.Model, report: dict) -> None:
    """Save ``model.keras`` and ``encoder.keras``, then ``metrics.json`` (``report``), the mark of a finished run.

    Then the lock :func:`open_run` took is released: evals and probes may read the run.
    """
    check_still_ours(run_dir)
    try:
        save_keras(model, run_dir / "model.keras")
        save_keras(encoder, run_dir / "encoder.keras")
        _files.write_text(run_dir / "metrics.json", json.dumps(report, indent=1) + "\n")
    finally:
        _release(run_dir)


def model_identity(run_dir: str | Path) -> dict:
    """Which model a run's ``model.keras`` is: ``{"sha256": hex digest of the file, "epochs": finished epochs}``.

    An eval report stores it, so that a report names the model it scored even
    after the run was trained further.
    """
    run_dir = Path(run_dir)
    path = run_dir / "model.keras"
    if not path.exists():
        raise InputError(f"{run_dir} has no model.keras (training did not finish?)")
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    return {"sha256": digest.hexdigest(), "epochs": finished_epochs(run_dir)}


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


@dataclass(frozen=True)
class RunMetrics:
    """``metrics.json``: what training measured.

    Attributes
    ----------
    val : PuzzleScores
        The model on the fixed val puzzles after training.
    train_seconds : float or None
        Seconds training took in the session that finished the run.
    fields : mapping
        Every field of the file (``epochs``, ``backend``, ``device``, ...).
    """

    val: PuzzleScores
    train_seconds: float | None
    fields: Mapping


@dataclass(frozen=True)
class EvalDataset:
    """One dataset of an eval report.

    Attributes
    ----------
    name : str
        ``test``, ``ood``, a sanity set, or the folder an ``eval --audio`` scored.
    sanity : bool
        A set whose order is unknowable (it must stay at chance).
    fields : mapping
        The dataset's whole entry: where its puzzles came from (``kind``,
        ``corpus`` or ``audio``, ``split``, ``fixed_set``), ideal observer, ...
    scores : PuzzleScores
        The model's.
    baselines : mapping of str to PuzzleScores
        The no-learning baselines on the same puzzles (``continuity``).
    verdict : str
        ``"above_chance"`` or ``"at_chance"``: the model's on this set.
    """

    name: str
    sanity: bool
    fields: Mapping
    scores: PuzzleScores
    baselines: Mapping[str, PuzzleScores]
    verdict: str


@dataclass(frozen=True)
class EvalResult:
    """One report of ``audiosort eval``, read back from ``eval/<label>/eval.json``.

    Attributes
    ----------
    folder : Path
        The report's folder.
    decoding : str
        The decoding the verdicts were made on.
    settings : mapping
        What was asked for (see :func:`audiosort.evaluate.eval_settings`).
    datasets : mapping of str to EvalDataset
        In evaluation order (the scored split or folder first).
    """

    folder: Path
    decoding: str
    settings: Mapping
    datasets: Mapping[str, EvalDataset]

    def main_dataset(self, name: str | None = None) -> EvalDataset:
        """The dataset ``name``, or when it is None or absent the first one that is not a sanity set."""
        if name in self.datasets:
            return self.datasets[name]
        return next((d for d in self.datasets.values() if not d.sanity), next(iter(self.datasets.values())))

    @property
    def sanity_above_chance(self) -> list[str]:
        """The sanity sets the model sorts above chance."""
        return [d.name for d in self.datasets.values() if d.sanity and d.verdict == "above_chance"]


@dataclass(frozen=True)
class ProbeTask:
    """One task of ``probe.json`` (see :mod:`audiosort.probe` for every field of ``entry``).

    Attributes
    ----------
    accuracy, accuracy_std : mapping of str to float
        Mean (over probe seeds) and standard deviation over splits, per row
        (:data:`audiosort.probe.FEATURES`; an older probe has fewer rows).
    p_better : mapping of str to float
        ``"A>B"`` -> one-sided p-value over groups that row A is right more
        often than row B ({} in an entry of a probe before the comparisons).
    chance : float or None
        Share of the most common class (None in an entry of an older probe).
    entry : mapping
        The task's whole entry.
    """

    accuracy: Mapping[str, float]
    accuracy_std: Mapping[str, float]
    p_better: Mapping[str, float]
    chance: float | None
    entry: Mapping


def read_metrics(run_dir: str | Path) -> RunMetrics:
    """``metrics.json`` of a finished run.

    Raises
    ------
    InputError
        No such file (training did not finish), or not the layout training writes.
    """
    path = Path(run_dir) / "metrics.json"
    fields = _read_json(path, "training did not finish?")
    with _layout_of(path):
        return RunMetrics(val=PuzzleScores.from_dict(fields["val"]), train_seconds=fields.get("train_seconds_this_session"), fields=fields)


def write_eval(run_dir: str | Path, label: str, settings: Mapping, *, report: dict, markdown: str,
               confusions: Mapping[str, Callable[[Path], None]]) -> Path:
    """Write one evaluation's report into ``eval/<label>/`` and name it in ``eval/latest``; return its folder.

    An earlier report with the same ``settings`` is replaced (the same
    evaluation asked again); one with other settings is kept, and this one
    goes to ``<label>-2``, ``<label>-3``, ...

    Parameters
    ----------
    run_dir : str or Path
        The run evaluated.
    label : str
        What was scored and at what n, e.g. ``test-n5``; one folder name.
    settings : mapping
        JSON-ready: what was asked for; stored in ``eval.json`` under ``settings``.
    report : dict
        The rest of ``eval.json``.
    markdown : str
        ``eval.md``.
    confusions : mapping of str to callable
        Dataset name -> a function that saves its confusion PNG to the path given.
    """
    run_dir = Path(run_dir)
    if not re.fullmatch(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]*", label):
        raise ValueError(f"eval label {label!r} is not a plain folder name")
    settings = _as_json(settings)
    root = run_dir / "eval"
    try:
        root.mkdir(exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create {root}: {e.strerror or e}") from None
    # Two evals of one run take turns choosing the folder and writing it, so that neither writes into the other's.
    with _files.exclusive(root, what="eval folder"):
        folder, k = root / label, 1
        while (folder / "eval.json").exists() and _settings_of(folder) != settings:
            k += 1
            folder = root / f"{label}-{k}"
        # Built aside and renamed into place whole, then named in eval/latest: a kill leaves the old report or the new one.
        with _files.new_folder(folder, overwrite=True, what="eval report") as tmp:
            for name, save in confusions.items():
                save(tmp / f"confusion-{name}.png")
            (tmp / "eval.md").write_text(markdown, encoding="utf-8")
            (tmp / "eval.json").write_text(json.dumps({"settings": settings, **report}, indent=1) + "\n", encoding="utf-8")
        _files.write_text(root / "latest", folder.name + "\n")
    return folder


def read_eval(path: str | Path, *, settings: Mapping | None = None) -> EvalResult:
    """An eval report: the newest of a run, the one with ``settings``, or one named by its folder or file.

    Parameters
    ----------
    path : str or Path
        A run folder, one of its ``eval/<label>`` folders, or an ``eval.json``.
    settings : mapping, optional
        With a run folder: the report of the evaluation asked with these
        settings (see :func:`stage_done`) instead of the newest one.

    Raises
    ------
    InputError
        No report there (``audiosort eval`` not run, or not with these
        settings), or a file not in the layout ``eval`` writes.
    """
    path = Path(path)
    if path.is_file():
        return _read_eval_file(path)
    if (path / "eval.json").is_file():
        return _read_eval_file(path / "eval.json")
    if settings is not None:
        wanted = _as_json(settings)
        folder = next((f for f in _eval_folders(path) if _settings_of(f) == wanted), None)
        if folder is None:
            raise InputError(f"{path} has no eval report with the settings {wanted}; run audiosort eval")
        return _read_eval_file(folder / "eval.json")
    latest = path / "eval" / "latest"
    if not latest.is_file():
        raise InputError(f"{path} has no eval report (no eval/latest); run `audiosort eval {path}` first")
    name = latest.read_text().strip()
    return _read_eval_file(latest.parent / name / "eval.json")


def read_probe(path: str | Path) -> dict[str, ProbeTask]:
    """The tasks of a run's ``probe.json`` by name, in file order ({} when the run was never probed).

    Parameters
    ----------
    path : str or Path
        A run folder, or a ``probe.json`` (which must exist).

    Raises
    ------
    InputError
        The file cannot be read or is not ``{"tasks": {name: entry}}``.
    """
    path = Path(path)
    if path.suffix != ".json":
        path = path / "probe.json"
        if not path.exists():
            return {}
    content = _read_json(path, "")
    tasks = content.get("tasks") if isinstance(content, dict) else None
    if not isinstance(tasks, dict):
        raise InputError(f"{path}: 'tasks' is not a mapping; move it away to start afresh")
    out = {}
    for name, entry in tasks.items():
        if not isinstance(entry, dict):
            raise InputError(f"{path}: task {name!r} is not an object; move it away to start afresh")
        with _layout_of(path):
            out[name] = ProbeTask(
                accuracy=dict(entry.get("accuracy", {})), accuracy_std=dict(entry.get("accuracy_std", {})),
                p_better=dict(entry.get("p_better", {})), chance=entry.get("chance"), entry=entry,
            )
    return out


# Locked by each probe while it merges probe.json (see merge_probe); an empty file, kept.
PROBE_LOCK = ".probe.lock"


def merge_probe(
    run_dir: str | Path, tasks: Mapping[str, Mapping], markdown: Callable[[dict], str], *,
    keep: Callable[[ProbeTask], bool] = lambda task: True,
) -> dict:
    """Add ``tasks`` to ``probe.json`` (replacing tasks of the same name) and rewrite ``probe.md``; return every task.

    The read, merge and write happen under an exclusive lock on
    :data:`PROBE_LOCK` in the run folder, so two probes of one run at once
    keep both tasks: the second merges into what the first wrote.

    Parameters
    ----------
    tasks : mapping of str to mapping
        New task entries by name.
    markdown : callable
        All tasks (by name) -> the text of ``probe.md``.
    keep : callable, keyword-only
        Which tasks already in the file to keep.
    """
    run_dir = Path(run_dir)
    with _files.exclusive(run_dir / PROBE_LOCK, what="run folder"):
        merged = {name: dict(task.entry) for name, task in read_probe(run_dir).items() if keep(task)}
        merged.update(tasks)
        _files.write_text(run_dir / "probe.json", json.dumps({"tasks": merged}, indent=1) + "\n")
        _files.write_text(run_dir / "probe.md", markdown(merged))
    return merged


def _eval_folders(run_dir: Path) -> list[Path]:
    root = run_dir / "eval"
    # A hidden folder is a report being written (see write_eval).
    return [f for f in sorted(root.iterdir()) if not f.name.startswith(".") and (f / "eval.json").is_file()] if root.is_dir() else []


def _settings_of(folder: Path) -> dict | None:
    """The settings an eval report was asked with; None where its ``eval.json`` cannot be read."""
    try:
        settings = json.loads((folder / "eval.json").read_text()).get("settings")
    except (OSError, ValueError, AttributeError):
        return None
    return settings


def _as_json(value: Mapping) -> dict:
    """``value`` as it reads back from JSON (tuples as lists, keys as str), so settings compare equal."""
    return json.loads(json.dumps(value))


def _read_json(path: Path, hint: str):
    if not path.exists():
        raise InputError(f"no {path}" + (f" ({hint})" if hint else ""))
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read {path} ({_first_line(e)})") from None


@contextlib.contextmanager
def _layout_of(path: Path):
    """Turn a missing key or a wrong type while reading ``path`` into an InputError naming it."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise InputError(f"{path} is not in the layout audiosort writes ({type(error).__name__}: {error})") from None


def _read_eval_file(path: Path) -> EvalResult:
    content = _read_json(path, "")
    with _layout_of(path):
        datasets = {
            name: EvalDataset(
                name=name, sanity=bool(entry.get("sanity")),
                fields=entry,
                scores=PuzzleScores.from_dict(entry),
                baselines={b: PuzzleScores.from_dict(scored) for b, scored in entry.get("baselines", {}).items()},
                verdict=entry["verdict"],
            )
            for name, entry in content["datasets"].items()
        }
        if not datasets:
            raise InputError(f"{path} holds no dataset")
        return EvalResult(
            folder=path.parent, decoding=content["verdict_decoding"], settings=content.get("settings", {}),
            datasets=datasets,
        )


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
