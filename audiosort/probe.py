"""``audiosort probe``: linear probes of a run's frozen encoder on labelled clips, beside two baselines.

Sorting accuracy shows that a model solved the puzzle; a probe shows whether its
encoder learned something about audio that has nothing to do with order. A
labelled folder DATA (one task, named after the folder) holds either

- one sub-folder per class of audio files (searched recursively; the folder's
  name is the label), or
- a ``labels.csv`` with the header ``path,label`` or ``path,label,group``:
  ``path`` relative to DATA; ``group`` names the recording (or the instrument,
  or the stretch of a track) a clip comes from. Further columns are ignored
  (``scripts/make_probe_sets.py`` records there where each clip was cut). When
  DATA holds a ``labels.csv``, its sub-folders are not read.

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

Splits. The clips are dealt into ``n_splits`` (default 5) seeded folds by
groups, stratified by class (scikit-learn's ``StratifiedGroupKFold``): the
clips of one group are always on the same side, so a probe cannot answer by
recognising a recording it was trained on. Without a ``group`` column each
file is its own group. Each fold is the test part once, the other folds its
train part; every clip is thus predicted exactly once.

On each train part, for each feature, a logistic regression on standardized
features is fit with its L2 strength ``C`` chosen among ``C_GRID`` by a
3-fold group cross-validation *within the train part* (the test part is never
seen), then refit on the whole train part and scored on the test part.

Reported per task and feature: the accuracy of each split, their mean and
standard deviation, and the pooled accuracy over all clips with its Wilson 95 %
interval. The encoder is compared with each baseline by a paired test over
groups, the unit that never straddles a split: a one-sided Wilcoxon
signed-rank test that the encoder's per-group accuracy exceeds the baseline's
(with one clip per group this is a sign test, McNemar's). Chance is the share
of the most common class, the accuracy of always answering it.

Output in the run folder (each written atomically)::

    probe.json   {"tasks": {<task>: entry}}; probing another folder adds a task,
                 the same name replaces it.
    probe.md     one table row per task

An entry holds ``accuracy`` (mean over splits per feature), ``accuracy_std``,
``accuracy_per_split``, ``pooled`` and ``interval`` (Wilson 95 %),
``chosen_c`` (per feature, per split), ``difference`` (per baseline: mean and
std over splits of encoder minus baseline), ``p_encoder_better``, ``chance``,
``classes``, ``n_classes``, ``n_clips``, ``n_groups``, ``grouped_by``,
``n_splits``, ``labels_from``, ``data``, ``feature_dims``, ``seed``.

Example
-------
>>> report = probe("runs/logmel", ["data/probe-tracks", "data/probe-instruments"])  # doctest: +SKIP
>>> report.tasks["probe-tracks"]["accuracy"]  # doctest: +SKIP
{'encoder': 0.61, 'random_encoder': 0.35, 'logmel_stats': 0.52}
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import librosa
import numpy as np
from scipy import stats
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from audiosort import audio, metrics
from audiosort.data.puzzles import PuzzleSpec
from audiosort.embed import frame
from audiosort.errors import DecodeError, InputError
from audiosort.models.encoders import build_encoder
from audiosort.run import RunEncoder, config_path, load_encoder, load_run_config, read_probe, write_probe

FEATURES = ("encoder", "random_encoder", "logmel_stats")
BASELINES = ("random_encoder", "logmel_stats")
FEATURE_TITLES = {"encoder": "encoder", "random_encoder": "random encoder", "logmel_stats": "log-mel stats"}
LABELS_FILE = "labels.csv"

LOGMEL_BANDS = 64
LOGMEL_WINDOW_SECONDS = 0.032
LOGMEL_HOP_SECONDS = 0.010
# Power below -100 dB full scale counts as silence, so digital zeros do not send the log to -inf.
LOGMEL_FLOOR = 1e-10
# L-BFGS on a few hundred standardized clips converges in well under this.
MAX_ITERATIONS = 10_000
# Inverse L2 strengths tried by the inner cross-validation, from heavy regularization to almost none.
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
INNER_FOLDS = 3


@dataclass(frozen=True)
class LabelledSet:
    """The clips of a labelled folder.

    Attributes
    ----------
    files : tuple of Path
        One audio file per clip.
    labels : tuple of str
        Class of each file.
    groups : tuple of str
        The group of each file: the ``group`` column, else the file's own path.
    grouped_by : str
        ``"group column"`` or ``"file"``.
    labels_from : str
        ``"labels.csv"`` or ``"sub-folders"``.
    """

    files: tuple
    labels: tuple
    groups: tuple
    grouped_by: str
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
        with a ``split`` column (splits are drawn by the probe; give groups),
        a missing file, an empty label or group, or a file listed twice; a
        folder with no class sub-folders, audio files outside them, or a class
        folder without audio; fewer than two classes; two files with the same bytes.
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
        # A copy of one clip under two names could land on both sides of a split.
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
        raise InputError(f"{path} needs the header path,label[,group]; it has {','.join(columns) or 'none'}")
    if "split" in columns:
        raise InputError(
            f"{path} has a split column; the probe draws its own splits: give a group column instead "
            "(clips of one group never straddle a split)"
        )
    if not rows:
        raise InputError(f"{path} lists no clips")
    has_group = "group" in columns
    files, labels, groups, line_of = [], [], [], {}
    for line, row in enumerate(rows, start=2):
        file = path.parent / row["path"]
        if not row["path"] or not file.is_file():
            raise InputError(f"{path} line {line}: no such file {row['path']!r}")
        if not row["label"]:
            raise InputError(f"{path} line {line}: empty label for {row['path']!r}")
        if has_group and not row["group"]:
            raise InputError(f"{path} line {line}: empty group for {row['path']!r}")
        key = file.resolve()
        if key in line_of:
            raise InputError(f"{path}: {row['path']!r} is listed twice (lines {line_of[key]} and {line})")
        line_of[key] = line
        files.append(file)
        labels.append(row["label"])
        groups.append(row["group"] if has_group else str(file))
    grouped_by = "group column" if has_group else "file"
    return LabelledSet(tuple(files), tuple(labels), tuple(groups), grouped_by, LABELS_FILE)


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
    return LabelledSet(tuple(files), tuple(labels), tuple(str(file) for file in files), "file", "sub-folders")


def group_folds(labelled: LabelledSet, *, n_splits: int, seed: int) -> np.ndarray:
    """Deal the clips into ``n_splits`` folds by group, stratified by class.

    Parameters
    ----------
    labelled : LabelledSet
    n_splits : int >= 2, keyword-only
        Folds, hence train/test splits.
    seed : int, keyword-only
        Seeds the shuffle of the groups.

    Returns
    -------
    fold : np.ndarray [shape=(len(labelled.files),), dtype=int64]
        The fold, 0 .. n_splits - 1, whose test part holds each clip. All
        clips of a group share a fold.

    Raises
    ------
    InputError
        ``n_splits`` below 2, or a class spread over fewer groups than
        ``n_splits`` (some split would test it with none of it to train on,
        or train on none of it).
    """
    if n_splits < 2:
        raise InputError(f"--splits {n_splits!r} must be at least 2")
    labels, groups = np.array(labelled.labels), np.array(labelled.groups)
    for label in sorted(set(labelled.labels)):
        n_groups = len(set(groups[labels == label].tolist()))
        if n_groups < n_splits:
            what = "files" if labelled.grouped_by == "file" else "groups"
            raise InputError(
                f"class {label!r} has {n_groups} {what}; {n_splits} splits need at least {n_splits} "
                "(lower --splits or add clips)"
            )
    fold = np.empty(len(labels), dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        fold[test] = k
    return fold


def fit_and_predict(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    train_groups: np.ndarray,
    test_features: np.ndarray,
    *,
    seed: int,
) -> tuple[np.ndarray, float]:
    """Choose C by group cross-validation on the train clips, refit on them all, predict the test clips.

    Parameters
    ----------
    train_features : np.ndarray [shape=(n_train, D), dtype=float]
    train_labels : np.ndarray [shape=(n_train,), dtype=str]
    train_groups : np.ndarray [shape=(n_train,), dtype=str]
        The inner folds keep each group on one side, as the outer ones do.
    test_features : np.ndarray [shape=(n_test, D), dtype=float]
    seed : int, keyword-only
        Seeds the inner folds and the classifier.

    Returns
    -------
    predicted : np.ndarray [shape=(n_test,), dtype=str]
    chosen_c : float
        The C (inverse L2 strength, on standardized features) of the best
        mean inner accuracy; the smallest such C on a tie. The standardization
        is fit on the whole train part (never on the test part).
    """
    n_inner = min(INNER_FOLDS, len(set(train_groups.tolist())))
    inner = StratifiedGroupKFold(n_splits=n_inner, shuffle=True, random_state=seed)
    # One BLAS thread: on a few hundred clips, threads cost 10-100 times more than they save.
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        # Small classes leave some inner fold without them; its accuracy is still a fair vote for C.
        warnings.simplefilter("ignore", UserWarning)
        # scikit-learn 1.9 announces new defaults; scoring is set here, and C_ is read in either layout.
        warnings.simplefilter("ignore", FutureWarning)
        folds = list(inner.split(train_features, train_labels, train_groups))
        classifier = LogisticRegressionCV(
            Cs=list(C_GRID), cv=folds, scoring="accuracy", max_iter=MAX_ITERATIONS, random_state=seed
        )
        search = make_pipeline(StandardScaler(), classifier).fit(train_features, train_labels)
    return search.predict(test_features), float(np.ravel(classifier.C_)[0])


def paired_group_p_value(correct_a: np.ndarray, correct_b: np.ndarray, groups: np.ndarray) -> float:
    """One-sided Wilcoxon signed-rank p-value that scorer A is right more often than B, over groups.

    Parameters
    ----------
    correct_a, correct_b : np.ndarray [shape=(N,), dtype=bool]
        Whether each clip was classified correctly by A and by B.
    groups : np.ndarray [shape=(N,)]
        The group of each clip; the test's units are the groups' accuracy differences.

    Returns
    -------
    float
        1.0 when A and B agree on every group (no evidence either way).
    """
    _, index = np.unique(groups, return_inverse=True)
    counts = np.bincount(index)
    difference = (np.bincount(index, correct_a) - np.bincount(index, correct_b)) / counts
    if not np.any(difference):
        return 1.0
    return float(stats.wilcoxon(difference, zero_method="wilcox", alternative="greater").pvalue)


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
    return RunEncoder(encoder, sample_rate, chunk_samples, config_path(run_dir))


@dataclass
class ProbeReport:
    """What :func:`probe` wrote.

    Attributes
    ----------
    run_dir : Path
        The run probed; ``probe.json`` and ``probe.md`` are in it.
    probed : list of str
        The tasks just probed, in the order given.
    tasks : dict
        Every task now in ``probe.json``: name -> entry (module docstring).
    """

    run_dir: Path
    probed: list
    tasks: dict

    def lines(self) -> list[str]:
        """The table of every task and what it means, as ``audiosort probe`` prints it."""
        return markdown_lines(self.run_dir, self.tasks)


def probe(run_dir: str | Path, data_dirs: str | Path | Sequence, *, seed: int = 0, n_splits: int = 5) -> ProbeReport:
    """Probe a run's encoder, a random encoder of the same architecture and log-mel statistics on labelled folders.

    Parameters
    ----------
    run_dir : str or Path
        A run folder of ``audiosort train``; ``probe.json`` and ``probe.md`` are
        written into it, keeping the tasks of other labelled folders.
    data_dirs : str, Path or sequence of them
        Labelled folders (layout: module docstring), one task each, named after the folder.
    seed : int, keyword-only
        Seeds the random encoder's weights, the folds and the classifiers.
    n_splits : int >= 2, keyword-only
        Train/test splits (group folds) per task.

    Returns
    -------
    ProbeReport

    Raises
    ------
    InputError
        A bad run folder or labelled folder (see :func:`read_labelled` and
        :func:`group_folds`), two folders of one name, a file that cannot be
        decoded or is shorter than one chunk of the run, or an unreadable
        ``probe.json``. Every folder is checked before any is probed.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"no run folder at {str(run_dir)!r}")
    data_dirs = [Path(data_dirs)] if isinstance(data_dirs, (str, Path)) else [Path(d) for d in data_dirs]
    names = [d.resolve().name for d in data_dirs]
    if len(set(names)) < len(names):
        raise InputError(f"two labelled folders are both named {max(names, key=names.count)!r}; a task is named after its folder")
    labelled_sets = [read_labelled(d) for d in data_dirs]
    folds = [group_folds(labelled, n_splits=n_splits, seed=seed) for labelled in labelled_sets]
    # Entries of the earlier one-split probe (no n_splits) are not comparable with these; they are dropped.
    tasks = {name: dict(task.entry) for name, task in read_probe(run_dir).items() if "n_splits" in task.entry}
    trained = load_encoder(run_dir)
    untrained = random_encoder(run_dir, seed=seed)
    for data_dir, name, labelled, fold in zip(data_dirs, names, labelled_sets, folds):
        columns = _features(labelled, trained, untrained)
        tasks[name] = _score_task(columns, labelled, fold, data_dir=data_dir.resolve(), seed=seed)
    lines = markdown_lines(run_dir, tasks)
    write_probe(run_dir, tasks, "\n".join([f"# {lines[0]}", *lines[1:]]) + "\n")
    return ProbeReport(run_dir, names, tasks)


def _features(labelled: LabelledSet, trained: RunEncoder, untrained: RunEncoder) -> dict:
    """Each feature of every clip: name -> (n_clips, D) float32."""
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
    return {name: np.stack(values) for name, values in columns.items()}


def _score_task(columns: dict, labelled: LabelledSet, fold: np.ndarray, *, data_dir: Path, seed: int) -> dict:
    """Fit and score every feature on every split; the task's probe.json entry."""
    labels, groups = np.array(labelled.labels), np.array(labelled.groups)
    n_splits = int(fold.max()) + 1
    correct = {name: np.zeros(len(labels), dtype=bool) for name in FEATURES}
    per_split = {name: [] for name in FEATURES}
    chosen_c = {name: [] for name in FEATURES}
    for k in range(n_splits):
        test = fold == k
        for name in FEATURES:
            features = columns[name]
            predicted, c = fit_and_predict(features[~test], labels[~test], groups[~test], features[test], seed=seed + k)
            correct[name][test] = predicted == labels[test]
            per_split[name].append(float(correct[name][test].mean()))
            chosen_c[name].append(c)
    _, class_counts = np.unique(labels, return_counts=True)
    n_clips = len(labels)
    differences = {base: np.array(per_split["encoder"]) - np.array(per_split[base]) for base in BASELINES}
    return {
        "data": str(data_dir),
        "labels_from": labelled.labels_from,
        "grouped_by": labelled.grouped_by,
        "classes": sorted(set(labelled.labels)),
        "n_classes": len(class_counts),
        "n_clips": n_clips,
        "n_groups": len(set(labelled.groups)),
        "n_splits": n_splits,
        "accuracy": {name: float(np.mean(per_split[name])) for name in FEATURES},
        "accuracy_std": {name: float(np.std(per_split[name], ddof=1)) for name in FEATURES},
        "accuracy_per_split": per_split,
        "pooled": {name: float(correct[name].mean()) for name in FEATURES},
        "interval": {name: list(metrics.wilson_interval(int(correct[name].sum()), n_clips)) for name in FEATURES},
        "chosen_c": chosen_c,
        "difference": {base: {"mean": float(d.mean()), "std": float(d.std(ddof=1))} for base, d in differences.items()},
        "p_encoder_better": {base: paired_group_p_value(correct["encoder"], correct[base], groups) for base in BASELINES},
        "chance": float(class_counts.max() / n_clips),
        "feature_dims": {name: int(columns[name].shape[1]) for name in FEATURES},
        "seed": seed,
    }


def markdown_lines(run_dir: Path, tasks: dict) -> list[str]:
    """A title, one table row per task (mean accuracy ± std over splits per feature), and notes."""
    header = ["task", "classes", "clips / groups", "splits", *(FEATURE_TITLES[name] for name in FEATURES), "chance"]
    header += [f"p encoder > {FEATURE_TITLES[name]}" for name in BASELINES]
    lines = [f"linear probes of {run_dir}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task, entry in tasks.items():
        cells = [task, str(entry["n_classes"]), f"{entry['n_clips']} / {entry['n_groups']}", str(entry["n_splits"])]
        cells += [f"{entry['accuracy'][name]:.3f} ± {entry['accuracy_std'][name]:.3f}" for name in FEATURES]
        cells.append(f"{entry['chance']:.3f}")
        cells += [f"{entry['p_encoder_better'][name]:.2g}" for name in BASELINES]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [
        "",
        "Test accuracy of a logistic regression on standardized features, mean ± std over the splits (group "
        "folds: the clips of one group never on both sides), its L2 strength chosen by cross-validation on "
        "each train part. encoder: the run's encoder, averaged over the clip's chunks; random encoder: the "
        "same architecture with random weights; log-mel stats: mean and std of 64 log-mel bands. Chance: "
        "share of the most common class. p: one-sided Wilcoxon signed-rank test over groups that the "
        "encoder is right more often.",
    ]
