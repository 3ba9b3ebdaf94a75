"""``audiosort probe``: a linear probe of a run's frozen encoder on labelled clips.

Sorting accuracy shows that a model solved the puzzle; a probe shows whether its
encoder learned something about audio that has nothing to do with order. A
labelled folder DATA holds either

- one sub-folder per class of audio files (searched recursively; the folder's
  name is the label), or
- a ``labels.csv`` with the header ``path,label`` or ``path,label,split``:
  ``path`` relative to DATA, ``split`` ``train`` or ``test``; further columns
  are ignored (``scripts/make_probe_sets.py`` records there where each clip was
  cut). When DATA holds a ``labels.csv``, its sub-folders are not read.

Each file is one clip, decoded at the run's sample rate, and described three ways:

``encoder``
    the run's encoder on frames of the run's chunk length, end to end, averaged
    over the clip (the clip embedding of ``audiosort embed``);
``random_encoder``
    the same, through the same architecture with fresh random weights (seeded):
    what the architecture gives before any training;
``logmel_stats``
    mean and standard deviation over time of each of 64 log-mel bands (32 ms
    window, 10 ms hop): 128 values that know nothing about sorting.

A logistic regression on standardized features (L2, C = 1, no tuning) is fit on
the train clips and scored on the test clips. The split is the csv's ``split``
column when it has one; otherwise, per class, a seeded random share
``test_fraction`` of the files goes to test (a stratified split of files).
Files are the unit of that split, so clips cut from one recording must come
with their split given: neighbouring clips of one recording on both sides
would let the probe recognise the recording instead of the class. No file
(by path or by content) may be listed twice. Chance is the share of the most
common class among the test clips, the accuracy of always answering it.

Output in the run folder (each written atomically)::

    probe.json   {"tasks": {<task>: entry}}; <task> is DATA's folder name.
                 Probing another folder adds a task; the same name replaces it.
    probe.md     one table row per task

An entry holds ``accuracy`` and ``interval`` (Wilson 95 %) and ``correct`` per
feature, ``chance``, ``p_encoder_better`` (one-sided exact McNemar test that the
encoder is right on more test clips than the baseline), ``classes``,
``n_classes``, ``n_train``, ``n_test``, ``split``, ``labels_from``, ``data``,
``feature_dims``, ``seed``.

Example
-------
>>> report = probe("runs/logmel", "data/probe-tracks")  # doctest: +SKIP
>>> report.tasks["probe-tracks"]["accuracy"]  # doctest: +SKIP
{'encoder': 0.61, 'random_encoder': 0.35, 'logmel_stats': 0.52}
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import keras
import librosa
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from audiosort import _files, audio, metrics
from audiosort.data.puzzles import PuzzleSpec
from audiosort.embed import frame
from audiosort.errors import DecodeError, InputError
from audiosort.models.encoders import build_encoder
from audiosort.run import RunEncoder, load_encoder, load_run_config

FEATURES = ("encoder", "random_encoder", "logmel_stats")
FEATURE_TITLES = {"encoder": "encoder", "random_encoder": "random encoder", "logmel_stats": "log-mel stats"}
SPLITS = ("train", "test")
LABELS_FILE = "labels.csv"

LOGMEL_BANDS = 64
LOGMEL_WINDOW_SECONDS = 0.032
LOGMEL_HOP_SECONDS = 0.010
# Power below -100 dB full scale counts as silence, so digital zeros do not send the log to -inf.
LOGMEL_FLOOR = 1e-10
# L-BFGS on a few hundred standardized clips converges in well under this.
MAX_ITERATIONS = 10_000


@dataclass(frozen=True)
class LabelledSet:
    """The clips of a labelled folder.

    Attributes
    ----------
    files : tuple of Path
        One audio file per clip.
    labels : tuple of str
        Class of each file.
    splits : tuple of str or None
        ``"train"`` or ``"test"`` per file when ``labels.csv`` gives them, else None.
    labels_from : str
        ``"labels.csv"`` or ``"sub-folders"``.
    """

    files: tuple
    labels: tuple
    splits: tuple | None
    labels_from: str


def read_labelled(data_dir: str | Path) -> LabelledSet:
    """Read a labelled folder: its ``labels.csv`` if it has one, else one sub-folder per class.

    Parameters
    ----------
    data_dir : str or Path
        The labelled folder (layout: module docstring).

    Returns
    -------
    LabelledSet

    Raises
    ------
    InputError
        No such folder; a ``labels.csv`` without ``path`` and ``label`` columns,
        with a missing file, an empty label, a split other than train/test, or
        a file listed twice; a folder with no class sub-folders, audio files
        outside them, or a class folder without audio; fewer than two classes;
        two files with the same bytes.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(f"no labelled folder at {str(data_dir)!r}")
    if (data_dir / LABELS_FILE).is_file():
        labelled = _read_labels_csv(data_dir / LABELS_FILE)
    else:
        labelled = _read_class_folders(data_dir)
    classes = sorted(set(labelled.labels))
    if len(classes) < 2:
        raise InputError(f"{data_dir} holds {len(classes)} class ({', '.join(classes)}); a probe needs at least 2")
    first_with = {}
    for file in labelled.files:
        # A copy of one clip under two names could land on both sides of the split.
        digest = audio.sha256_file(file)
        if digest in first_with:
            raise InputError(f"{first_with[digest]} and {file} hold the same bytes; keep one of them")
        first_with[digest] = file
    return labelled


def _read_labels_csv(path: Path) -> LabelledSet:
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            columns = [name.strip() for name in reader.fieldnames or []]
            rows = [{key.strip(): (value or "").strip() for key, value in row.items() if key} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    if "path" not in columns or "label" not in columns:
        raise InputError(f"{path} needs the header path,label[,split]; it has {','.join(columns) or 'none'}")
    if not rows:
        raise InputError(f"{path} lists no clips")
    has_split = "split" in columns
    files, labels, splits, line_of = [], [], [], {}
    for line, row in enumerate(rows, start=2):
        file = path.parent / row["path"]
        if not row["path"] or not file.is_file():
            raise InputError(f"{path} line {line}: no such file {row['path']!r}")
        if not row["label"]:
            raise InputError(f"{path} line {line}: empty label for {row['path']!r}")
        if has_split and row["split"] not in SPLITS:
            raise InputError(f"{path} line {line}: split {row['split']!r} is not one of {', '.join(SPLITS)}")
        key = file.resolve()
        if key in line_of:
            first = line_of[key]
            if has_split and splits[first[1]] != row["split"]:
                raise InputError(f"{path}: {row['path']!r} is listed in both train and test (lines {first[0]} and {line})")
            raise InputError(f"{path}: {row['path']!r} is listed twice (lines {first[0]} and {line})")
        line_of[key] = (line, len(files))
        files.append(file)
        labels.append(row["label"])
        splits.append(row["split"] if has_split else None)
    return LabelledSet(tuple(files), tuple(labels), tuple(splits) if has_split else None, LABELS_FILE)


def _read_class_folders(data_dir: Path) -> LabelledSet:
    entries = sorted(entry for entry in data_dir.iterdir() if not entry.name.startswith("."))
    loose = [entry.name for entry in entries if entry.is_file() and entry.suffix.lower() in audio.AUDIO_EXTENSIONS]
    if loose:
        raise InputError(
            f"{data_dir} holds audio files outside class sub-folders ({', '.join(loose[:3])}); "
            f"move each into its class's folder or list them in {LABELS_FILE}"
        )
    class_dirs = [entry for entry in entries if entry.is_dir()]
    if not class_dirs:
        raise InputError(f"{data_dir} has neither {LABELS_FILE} nor class sub-folders of audio files")
    files, labels = [], []
    for class_dir in class_dirs:
        found = [file for _, file in audio.find_audio_files([class_dir])]
        if not found:
            raise InputError(f"class folder {class_dir} holds no audio files")
        files += found
        labels += [class_dir.name] * len(found)
    return LabelledSet(tuple(files), tuple(labels), None, "sub-folders")


def split_labelled(labelled: LabelledSet, *, test_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Which clips are test clips: the given split, else a stratified random one.

    Parameters
    ----------
    labelled : LabelledSet
    test_fraction : float in (0, 1), keyword-only
        Share of each class's files that goes to test when no split is given,
        rounded, with at least one file on each side.
    rng : np.random.Generator, keyword-only
        Draws the stratified split; unused when the split is given.

    Returns
    -------
    is_test : np.ndarray [shape=(len(labelled.files),), dtype=bool]

    Raises
    ------
    InputError
        ``test_fraction`` outside (0, 1); without a given split, a class of
        fewer than 2 files; with one, no test clips or a class with test clips
        but no train clips (the probe could never answer it).
    """
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"--test-fraction {test_fraction!r} must lie strictly between 0 and 1")
    labels = np.array(labelled.labels)
    if labelled.splits is not None:
        is_test = np.array(labelled.splits) == "test"
        if not is_test.any():
            raise InputError(f"{LABELS_FILE} puts no clip in test")
        missing = sorted(set(labels[is_test].tolist()) - set(labels[~is_test].tolist()))
        if missing:
            raise InputError(f"{LABELS_FILE}: class {missing[0]!r} has test clips but no train clips")
        return is_test
    is_test = np.zeros(len(labels), dtype=bool)
    for label in sorted(set(labelled.labels)):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            raise InputError(f"class {label!r} has 1 file; a split needs at least 2 per class")
        n_test = min(max(round(test_fraction * len(members)), 1), len(members) - 1)
        is_test[rng.permutation(members)[:n_test]] = True
    return is_test


def logmel_stats(y: np.ndarray, *, sample_rate: int) -> np.ndarray:
    """Mean and standard deviation over time of each log-mel band: the baseline features.

    Parameters
    ----------
    y : np.ndarray [shape=(n_samples,), dtype=float32]
        Mono audio in [-1, 1].
    sample_rate : int > 0
        Hz. The window is 32 ms and the hop 10 ms (512 and 160 samples at 16 kHz).

    Returns
    -------
    features : np.ndarray [shape=(2 * LOGMEL_BANDS,), dtype=float32]
        The 64 band means, then the 64 band standard deviations, of the
        natural log of the mel power spectrogram.
    """
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=sample_rate,
        n_fft=round(LOGMEL_WINDOW_SECONDS * sample_rate),
        hop_length=round(LOGMEL_HOP_SECONDS * sample_rate),
        n_mels=LOGMEL_BANDS,
    )
    log_mel = np.log(mel + LOGMEL_FLOOR)
    return np.concatenate([log_mel.mean(axis=1), log_mel.std(axis=1)]).astype(np.float32)


def clip_embedding(model: RunEncoder, pcm: np.ndarray) -> np.ndarray:
    """Mean embedding of a clip's frames of one chunk each, end to end (the last partial frame dropped).

    Parameters
    ----------
    model : RunEncoder
    pcm : np.ndarray [shape=(n_samples,), dtype=int16]
        ``n_samples >= model.chunk_samples``, at ``model.sample_rate``.

    Returns
    -------
    embedding : np.ndarray [shape=(model.embedding_dim,), dtype=float32]
    """
    frames = frame(pcm, chunk_samples=model.chunk_samples, hop_samples=model.chunk_samples)
    return model.embed(frames).mean(axis=0)


def random_encoder(run_dir: str | Path, *, seed: int) -> RunEncoder:
    """The architecture of a run's encoder with fresh random weights.

    Parameters
    ----------
    run_dir : str or Path
        A run folder; its ``config.yaml`` gives the encoder, chunk length and rate.
    seed : int, keyword-only
        Seeds the weight initialization (``keras.utils.set_random_seed``).

    Returns
    -------
    RunEncoder
        Untrained; batch normalization in inference mode uses its initial
        statistics (mean 0, variance 1). ``path`` is the run's ``config.yaml``.
    """
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    sample_rate = config.data.sample_rate
    chunk_samples = PuzzleSpec.from_config(config.puzzle, sample_rate=sample_rate).chunk_samples
    keras.utils.set_random_seed(seed)
    encoder = build_encoder(config.model.encoder, chunk_samples=chunk_samples, sample_rate=sample_rate)
    return RunEncoder(encoder, sample_rate, chunk_samples, run_dir / "config.yaml")


def fit_and_predict(
    train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray, *, seed: int
) -> np.ndarray:
    """Fit standardization and a logistic regression on the train clips; predict the test clips.

    Parameters
    ----------
    train_features : np.ndarray [shape=(n_train, D), dtype=float]
    train_labels : np.ndarray [shape=(n_train,), dtype=str]
    test_features : np.ndarray [shape=(n_test, D), dtype=float]
    seed : int, keyword-only
        ``random_state`` of the classifier.

    Returns
    -------
    predicted : np.ndarray [shape=(n_test,), dtype=str]
    """
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=MAX_ITERATIONS, random_state=seed))
    classifier.fit(train_features, train_labels)
    return classifier.predict(test_features)


@dataclass
class ProbeReport:
    """What :func:`probe` wrote.

    Attributes
    ----------
    run_dir : Path
        The run probed; ``probe.json`` and ``probe.md`` are in it.
    task : str
        The task just probed.
    tasks : dict
        Every task now in ``probe.json``: name -> entry (module docstring).
    """

    run_dir: Path
    task: str
    tasks: dict

    def lines(self) -> list[str]:
        """The table of every task and what it means, as ``audiosort probe`` prints it."""
        return markdown_lines(self.run_dir, self.tasks)


def probe(run_dir: str | Path, data_dir: str | Path, *, seed: int = 0, test_fraction: float = 0.3) -> ProbeReport:
    """Probe a run's encoder, a random encoder of the same architecture and log-mel statistics on labelled clips.

    Parameters
    ----------
    run_dir : str or Path
        A run folder of ``audiosort train``; ``probe.json`` and ``probe.md`` are
        written into it, keeping the tasks of other labelled folders.
    data_dir : str or Path
        A labelled folder (layout: module docstring); the task is named after it.
    seed : int, keyword-only
        Seeds the random encoder's weights, the split when none is given, and
        the classifier.
    test_fraction : float in (0, 1), keyword-only
        Share of each class's files held out for test when no split is given.

    Returns
    -------
    ProbeReport

    Raises
    ------
    InputError
        A bad run folder or labelled folder (see :func:`read_labelled` and
        :func:`split_labelled`), a file that cannot be decoded or is shorter
        than one chunk of the run, or an unreadable ``probe.json``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"no run folder at {str(run_dir)!r}")
    labelled = read_labelled(data_dir)
    is_test = split_labelled(labelled, test_fraction=test_fraction, rng=np.random.default_rng(seed))
    tasks = _read_tasks(run_dir / "probe.json")

    trained = load_encoder(run_dir)
    untrained = random_encoder(run_dir, seed=seed)
    sample_rate, chunk_samples = trained.sample_rate, trained.chunk_samples
    columns = {name: [] for name in FEATURES}
    for file in labelled.files:
        try:
            y = audio.load(file, sample_rate=sample_rate)
        except DecodeError as error:
            raise InputError(f"cannot probe with {file}: {error}") from None
        if len(y) < chunk_samples:
            raise InputError(
                f"{file} lasts {len(y) / sample_rate:.3f} s, less than one chunk of the run "
                f"({chunk_samples / sample_rate:.3f} s)"
            )
        pcm = audio.to_int16(y)
        columns["encoder"].append(clip_embedding(trained, pcm))
        columns["random_encoder"].append(clip_embedding(untrained, pcm))
        columns["logmel_stats"].append(logmel_stats(y, sample_rate=sample_rate))

    labels = np.array(labelled.labels)
    test_labels = labels[is_test]
    correct = {}
    for name in FEATURES:
        features = np.stack(columns[name])
        predicted = fit_and_predict(features[~is_test], labels[~is_test], features[is_test], seed=seed)
        correct[name] = predicted == test_labels
    n_test = int(is_test.sum())
    _, test_counts = np.unique(test_labels, return_counts=True)
    data_dir = Path(data_dir).resolve()
    entry = {
        "data": str(data_dir),
        "labels_from": labelled.labels_from,
        "split": "given" if labelled.splits is not None else f"stratified by class, seed {seed}, test fraction {test_fraction}",
        "classes": sorted(set(labelled.labels)),
        "n_classes": len(set(labelled.labels)),
        "n_train": int((~is_test).sum()),
        "n_test": n_test,
        "accuracy": {name: float(correct[name].mean()) for name in FEATURES},
        "interval": {name: list(metrics.wilson_interval(int(correct[name].sum()), n_test)) for name in FEATURES},
        "correct": {name: int(correct[name].sum()) for name in FEATURES},
        "chance": float(test_counts.max() / n_test),
        "p_encoder_better": {
            name: metrics.mcnemar_p_value(correct["encoder"], correct[name]) for name in FEATURES if name != "encoder"
        },
        "feature_dims": {name: int(len(columns[name][0])) for name in FEATURES},
        "seed": seed,
    }
    task = data_dir.name
    tasks[task] = entry
    _files.write_text(run_dir / "probe.json", json.dumps({"tasks": tasks}, indent=1) + "\n")
    lines = markdown_lines(run_dir, tasks)
    _files.write_text(run_dir / "probe.md", "\n".join([f"# {lines[0]}", *lines[1:]]) + "\n")
    return ProbeReport(run_dir, task, tasks)


def markdown_lines(run_dir: Path, tasks: dict) -> list[str]:
    """A title, one table row per task (accuracy with its 95 % interval per feature), and notes."""
    header = ["task", "classes", "train / test clips", *(FEATURE_TITLES[name] for name in FEATURES), "chance"]
    header += [f"p encoder > {FEATURE_TITLES[name]}" for name in FEATURES if name != "encoder"]
    lines = [f"linear probes of {run_dir}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task, entry in tasks.items():
        cells = [task, str(entry["n_classes"]), f"{entry['n_train']} / {entry['n_test']}"]
        for name in FEATURES:
            low, high = entry["interval"][name]
            cells.append(f"{entry['accuracy'][name]:.3f} [{low:.2f}, {high:.2f}]")
        cells.append(f"{entry['chance']:.3f}")
        cells += [f"{entry['p_encoder_better'][name]:.2g}" for name in FEATURES if name != "encoder"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [
        "",
        "Test accuracy of a logistic regression on standardized features fit on the train clips, with its "
        "Wilson 95 % interval. encoder: the run's encoder, averaged over the clip's chunks; random encoder: "
        "the same architecture with random weights; log-mel stats: mean and std of 64 log-mel bands. "
        "Chance: share of the most common class among the test clips. p: one-sided exact McNemar test "
        "that the encoder is right on more test clips.",
    ]


def _read_tasks(path: Path) -> dict:
    """The tasks already in ``probe.json`` (none when it does not exist)."""
    if not path.exists():
        return {}
    try:
        tasks = json.loads(path.read_text())["tasks"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"cannot read the tasks of {path} ({type(error).__name__}); move it away to start afresh") from None
    if not isinstance(tasks, dict):
        raise InputError(f"{path}: 'tasks' is not a mapping; move it away to start afresh")
    return tasks
