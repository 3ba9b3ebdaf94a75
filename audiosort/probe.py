"""``audiosort probe``: linear probes of a run's frozen encoder on labelled clips, beside baselines.

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

Each file is one clip, decoded at the run's sample rate. Every row of the
table reads it under one protocol, so that the rows compare like with like:

- **Pooling.** A *descriptor* per short frame, pooled over the clip's frames
  by its mean, standard deviation and maximum (:data:`POOLING`: order in time
  forgotten, spread and peaks kept), 3 values per descriptor dimension.
- **Budget.** At most ``DIMENSION_BUDGET`` (192, the pooled 64 log-mel bands)
  values per source; a wider source is reduced to it by a principal component
  analysis fit on the train part of each split only. A concatenation of two
  sources has the budget of both (384).
- **Standardisation.** One ``StandardScaler`` per split, fit on the whole
  train part of the split (dataset level: every train clip, never a test
  clip, never per clip), applied to the train and test parts alike; again
  after a projection.
- **Classifier.** A logistic regression whose L2 strength ``C`` is chosen
  among ``C_GRID`` by a 3-fold group cross-validation *within the train part*,
  refit on the whole train part and scored on the test part.

The rows and their widths (D is the run's embedding length, 64 in the shipped
configs; C_l the channels of encoder layer l):

``encoder``
    the run's encoder on frames of one chunk every quarter chunk; its
    embedding is the descriptor: 3 D values (192 for D = 64). The embedding is
    what the sorter reads and what ``audiosort embed`` gives.
``random_encoder``
    the same through the same architecture with fresh random weights (seeded):
    what the architecture gives before any training.
``encoder_layers``, ``random_encoder_layers``
    every layer of the (random) encoder read at once, as Pons & Serra read
    randomly weighted CNNs (ICASSP 2019): the output of each ReLU (one per
    block, two per residual block) and the embedding, each pooled over every
    position of its feature map (time, and frequency in a 2-D map) in every
    chunk frame of the clip, concatenated: 3 (sum of C_l + D) values, reduced
    to the budget by the PCA like any wider source (for ``logmel1d`` with 96
    filters and 3 blocks: 3 x (96 + 96 + 192 + 64) = 1,344 -> 192). The same
    pooling and reduction serve the trained and the random encoder.
``logmel_stats``
    64 log-mel bands (32 ms window, 10 ms hop) as the descriptor: 192 values
    that know nothing about sorting.
``logmel_projection``
    HEAR 2021's naive baseline: each log-mel frame projected by a fixed random
    Gaussian matrix (seeded, ``LOGMEL_PROJECTION_DIMS`` = 128 outputs), then
    pooled: 384 values, reduced to the budget.
``tempogram``
    the autocorrelation of the clip's onset strength (from the same log-mel
    frames) at lags of 1-128 hops (10 ms-1.28 s), divided by its value at
    lag 0: a clip-long tempogram, the no-learning baseline of tempo (and of
    rhythm in general); 128 values, not pooled (it is one clip-long descriptor).
``encoder_stats``, ``random_encoder_stats``
    the encoder's (random encoder's) features beside the log-mel statistics:
    what the encoder adds to the statistics. The second row holds the same
    number of values without any training, so that a gain of the first over
    ``logmel_stats`` is not merely a gain of width.
``supervised``
    a reference, not a probe: the run's encoder architecture, freshly
    initialized, with one dense softmax layer on its embedding, trained end
    to end on the frames of the train part (each frame labelled with its
    clip's class; ``supervised_steps`` Adam steps of ``SUPERVISED_BATCH``
    frames at learning rate ``SUPERVISED_LEARNING_RATE``, one fixed recipe
    never tuned on any test part) and scored on the test part by the mean
    log-probability over each clip's frames. What this architecture learns
    from the labels themselves, within a CPU budget: a loose upper bound.
    Trained on the splits of the first probe seed only (it costs a training
    per split).

Splits and probe seeds. The clips are dealt into ``n_splits`` (default 5)
seeded folds by groups, stratified by class (scikit-learn's
``StratifiedGroupKFold``): the clips of one group are always on the same
side, so a probe cannot answer by recognising a recording it was trained on.
Without a ``group`` column each file is its own group. Each fold is the test
part once, the other folds its train part; every clip is thus predicted
exactly once per probe seed. This is repeated under ``n_probe_seeds`` (default
3) probe seeds ``seed, seed + 1, ...``, each dealing its own folds and
seeding its own inner folds and classifiers; the features are computed once
(one pass of each encoder), only the classifiers are refit.

Reported per task and row: the mean accuracy over probe seeds (each seed's
accuracy is the mean over its splits), each seed's accuracy and their spread
(max - min), the standard deviation over every split of every seed, and the
pooled accuracy over all clips and seeds with a Wilson 95 % interval over the
clips (seeds do not add clips: the interval counts each clip once).

Each pair of ``COMPARISONS`` is tested over groups, the unit that never
straddles a split: a one-sided Wilcoxon signed-rank test that the first
row's per-group accuracy exceeds the second's. With several probe seeds, a
group's accuracy is the mean of its clips' correctness over every seed (each
seed predicts every clip once): seeds are repeated measurements of the same
groups, not new samples, so they are averaged within the group and the test
still has one unit per group, as with one seed; the averaging only removes
the noise of one particular deal of the folds. (With one clip per group and
one seed this is a sign test, McNemar's.) Chance is the share of the most
common class, the accuracy of always answering it.

Output in the run folder (each written atomically)::

    probe.json   {"tasks": {<task>: entry}}; probing another folder adds a task,
                 the same name replaces it; entries of earlier protocols
                 (without ``probe_seeds``) are dropped, as not comparable.
    probe.md     one table row per task

An entry holds ``accuracy`` (mean over seeds per row), ``accuracy_std`` (over
every split of every seed), ``accuracy_per_seed``, ``seed_spread``,
``accuracy_per_split`` (per row, a list per seed), ``pooled`` and
``interval`` (Wilson 95 %), ``chosen_c`` (per linear row, per seed, per
split), ``difference`` and ``p_better`` (per comparison ``"A>B"``: mean and
std over every split of A minus B; the one-sided p-value), ``chance``,
``classes``, ``n_classes``, ``n_clips``, ``n_groups``, ``grouped_by``,
``n_splits``, ``probe_seeds``, ``labels_from``, ``data``, ``feature_dims``
(values per linear row, before any projection), ``dimension_budget``,
``pooling``, ``supervised_steps`` and ``seed``.

Example
-------
>>> report = probe("runs/logmel", ["data/probe-tracks", "data/probe-instruments"])  # doctest: +SKIP
>>> report.tasks["probe-tracks"]["accuracy"]  # doctest: +SKIP
{'encoder': 0.61, 'random_encoder': 0.35, 'logmel_stats': 0.52, ...}
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
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from audiosort import _files, audio, metrics, spectra
from audiosort.data.puzzles import PuzzleSpec
from audiosort.embed import frame
from audiosort.errors import DecodeError, InputError
from audiosort.models.encoders import build_encoder
from audiosort.run import BATCH_FRAMES, RunEncoder, config_path, load_encoder, load_run_config, merge_probe, read_probe

# Linear rows: one feature matrix each; then the supervised reference.
LINEAR = (
    "encoder", "random_encoder", "encoder_layers", "random_encoder_layers", "logmel_stats", "logmel_projection",
    "tempogram", "encoder_stats", "random_encoder_stats",
)
FEATURES = (*LINEAR, "supervised")
# The rows that are two sources side by side.
CONCATENATED = {"encoder_stats": ("encoder", "logmel_stats"), "random_encoder_stats": ("random_encoder", "logmel_stats")}
# (A, B): a one-sided test that A is right more often than B, over groups.
COMPARISONS = (
    ("encoder", "random_encoder"),
    ("encoder_layers", "random_encoder_layers"),
    ("encoder", "logmel_stats"),
    ("encoder_stats", "logmel_stats"),
    ("encoder_stats", "random_encoder_stats"),
)
FEATURE_TITLES = {
    "encoder": "encoder",
    "random_encoder": "random encoder",
    "encoder_layers": "all layers",
    "random_encoder_layers": "random all layers",
    "logmel_stats": "log-mel stats",
    "logmel_projection": "log-mel projection",
    "tempogram": "tempogram",
    "encoder_stats": "encoder + stats",
    "random_encoder_stats": "random + stats",
    "supervised": "supervised",
}
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
# How every frame-wise source is summarized over a clip's frames, in this order.
POOLING = ("mean", "std", "max")
# Values per source: the pooled 64 log-mel bands; a wider source is projected to it.
DIMENSION_BUDGET = len(POOLING) * LOGMEL_BANDS
# HEAR's naive baseline widens its bands by a random projection (256 -> 4096); twice the bands keeps the PCA's work small.
LOGMEL_PROJECTION_DIMS = 2 * LOGMEL_BANDS
# Folds and classifiers dealt again under this many seeds by default; the features are computed once.
PROBE_SEEDS = 3
# Encoder frames start every quarter chunk, so that a 2 s clip of 0.5 s chunks gives 13 frames to take a std over.
FRAMES_PER_CHUNK = 4
# Lags of the tempogram, in log-mel hops: 10 ms to 1.28 s, two beats at 94 BPM.
TEMPOGRAM_LAGS = 128
# The supervised reference's one recipe (never tuned on a test part).
SUPERVISED_STEPS = 300
SUPERVISED_BATCH = 64
SUPERVISED_LEARNING_RATE = 1e-3


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
        _files.check_regular(file, "clip")  # a FIFO would block the hash below forever
        # A copy of one clip under two names could land on both sides of a split.
        digest = audio.sha256_file(file)
        if digest in first_with:
            raise InputError(f"{first_with[digest]} and {file} hold the same bytes; keep one of them")
        first_with[digest] = file
    return labelled


def _read_labels_csv(path: Path) -> LabelledSet:
    try:
        # utf-8-sig: spreadsheet programs start the file with a byte order mark, which would join the first column's name.
        with open(path, newline="", encoding="utf-8-sig") as f:
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
        ``n_splits`` below 2, a class spread over fewer groups than
        ``n_splits`` (some split would test it with none of it to train on,
        or train on none of it), or a split whose train part holds a single
        group of every class (no inner cross-validation can choose C).
    """
    if n_splits < 2:
        raise InputError(f"n_splits = {n_splits!r} must be at least 2")
    labels, groups = np.array(labelled.labels), np.array(labelled.groups)
    for label in sorted(set(labelled.labels)):
        n_groups = len(set(groups[labels == label].tolist()))
        if n_groups < n_splits:
            what = "files" if labelled.grouped_by == "file" else "groups"
            raise InputError(
                f"class {label!r} has {n_groups} {what}; {n_splits} splits need at least {n_splits} "
                "(lower n_splits or add clips)"
            )
    fold = np.empty(len(labels), dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        fold[test] = k
    for k in range(n_splits):
        train = fold != k
        if max(len(set(groups[train & (labels == label)].tolist())) for label in set(labelled.labels)) < 2:
            what = "file" if labelled.grouped_by == "file" else "group"
            raise InputError(
                f"split {k + 1} of {n_splits} trains on one {what} per class, too few to choose the regularization "
                "by cross-validation; add clips to some class"
            )
    return fold


def fit_and_predict(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    train_groups: np.ndarray,
    test_features: np.ndarray,
    *,
    seed: int,
    max_dims: int | None = None,
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
    max_dims : int > 0, optional, keyword-only
        Where D is larger, the standardized features are projected on their
        first ``max_dims`` principal components (fit on the train clips; at
        most ``n_train``) and standardized again before the regression.

    Returns
    -------
    predicted : np.ndarray [shape=(n_test,), dtype=str]
    chosen_c : float
        The C (inverse L2 strength, on standardized features) of the best
        mean inner accuracy; the smallest such C on a tie. The standardization
        is fit on the whole train part (never on the test part).
    """
    # Counted per class: scikit-learn refuses more folds than the largest class has members.
    groups_per_class = [len(set(train_groups[train_labels == label].tolist())) for label in set(train_labels.tolist())]
    n_inner = min(INNER_FOLDS, max(groups_per_class))
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
        steps = [StandardScaler()]
        if max_dims is not None and train_features.shape[1] > max_dims:
            steps += [PCA(min(max_dims, len(train_features)), random_state=seed), StandardScaler()]
        search = make_pipeline(*steps, classifier).fit(train_features, train_labels)
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


def log_mel(y: np.ndarray, *, sample_rate: int) -> np.ndarray:
    """The natural log of the mel power spectrogram the baselines read.

    Frames centered on every hop (zero-padded at the ends), periodic Hann
    window, power, :func:`audiosort.spectra.mel_filterbank`: equal to the log
    of ``librosa.feature.melspectrogram`` with these settings.

    Parameters
    ----------
    y : np.ndarray [shape=(n_samples,), dtype=float32]
        Mono audio in [-1, 1].
    sample_rate : int > 0
        Hz. The window is 32 ms and the hop 10 ms (512 and 160 samples at 16 kHz).

    Returns
    -------
    log_mel : np.ndarray [shape=(LOGMEL_BANDS, n_frames), dtype=float32]
    """
    fft_length = round(LOGMEL_WINDOW_SECONDS * sample_rate)
    power = np.abs(librosa.stft(y, n_fft=fft_length, hop_length=round(LOGMEL_HOP_SECONDS * sample_rate))) ** 2
    mel = spectra.mel_filterbank(sample_rate, fft_length, LOGMEL_BANDS) @ power
    return np.log(mel + LOGMEL_FLOOR).astype(np.float32)


def logmel_stats(mel: np.ndarray) -> np.ndarray:
    """Mean, standard deviation and maximum over time of each log-mel band: the baseline features.

    Parameters
    ----------
    mel : np.ndarray [shape=(LOGMEL_BANDS, n_frames), dtype=float32]
        A clip's :func:`log_mel`.

    Returns
    -------
    features : np.ndarray [shape=(3 * LOGMEL_BANDS,), dtype=float32]
        The 64 band means, then their standard deviations, then their maxima (:func:`time_statistics`).
    """
    return time_statistics(mel.T)


def logmel_projection(mel: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """HEAR 2021's naive baseline: each log-mel frame through a fixed random projection, pooled over time.

    Parameters
    ----------
    mel : np.ndarray [shape=(LOGMEL_BANDS, n_frames), dtype=float32]
        A clip's :func:`log_mel`.
    projection : np.ndarray [shape=(LOGMEL_PROJECTION_DIMS, LOGMEL_BANDS), dtype=float32]
        See :func:`random_projection`.

    Returns
    -------
    features : np.ndarray [shape=(3 * LOGMEL_PROJECTION_DIMS,), dtype=float32]
        Mean, standard deviation and maximum over frames of each projected value.
    """
    return time_statistics(mel.T @ projection.T)


def random_projection(*, seed: int) -> np.ndarray:
    """The fixed projection of :func:`logmel_projection`: i.i.d. normal entries over the square root of the bands.

    Returns
    -------
    projection : np.ndarray [shape=(LOGMEL_PROJECTION_DIMS, LOGMEL_BANDS), dtype=float32]
    """
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((LOGMEL_PROJECTION_DIMS, LOGMEL_BANDS)) / np.sqrt(LOGMEL_BANDS)).astype(np.float32)


def tempogram(mel: np.ndarray, *, sample_rate: int) -> np.ndarray:
    """A clip-long tempogram: the autocorrelation of onset strength, the no-learning baseline of tempo.

    Parameters
    ----------
    mel : np.ndarray [shape=(LOGMEL_BANDS, n_frames), dtype=float32]
        A clip's :func:`log_mel`.
    sample_rate : int > 0
        Hz, the clip's (see :func:`log_mel`).

    Returns
    -------
    features : np.ndarray [shape=(TEMPOGRAM_LAGS,), dtype=float32]
        Autocorrelation of librosa's onset strength (spectral flux of the
        log-mel frames) at lags of 1 .. ``TEMPOGRAM_LAGS`` hops of 10 ms,
        divided by its value at lag 0 (so loudness does not count); zero at
        lags the clip is too short for, and everywhere for a clip without onsets.
    """
    decibels = mel * (10 / np.log(10))
    onsets = librosa.onset.onset_strength(S=decibels, sr=sample_rate, hop_length=round(LOGMEL_HOP_SECONDS * sample_rate))
    correlation = librosa.autocorrelate(onsets, max_size=TEMPOGRAM_LAGS + 1)
    features = np.zeros(TEMPOGRAM_LAGS, dtype=np.float32)
    if correlation[0] > 0:
        features[: len(correlation) - 1] = correlation[1:] / correlation[0]
    return features


def time_statistics(descriptors: np.ndarray) -> np.ndarray:
    """The :data:`POOLING` of frame-wise descriptors: ``(n_frames, D)`` -> ``(3 D,)`` float32, means, stds, maxima."""
    return np.concatenate([descriptors.mean(axis=0), descriptors.std(axis=0), descriptors.max(axis=0)]).astype(np.float32)


def clip_frames(model: RunEncoder, pcm: np.ndarray) -> np.ndarray:
    """A clip's frames of one chunk, one every ``chunk_samples // FRAMES_PER_CHUNK`` samples (the last partial one dropped).

    Parameters
    ----------
    model : RunEncoder
    pcm : np.ndarray [shape=(n_samples,), dtype=int16]
        ``n_samples >= model.chunk_samples``, at ``model.sample_rate``.

    Returns
    -------
    frames : np.ndarray [shape=(n_frames, model.chunk_samples), dtype=int16]
        A strided view of ``pcm``.
    """
    hop = max(1, model.chunk_samples // FRAMES_PER_CHUNK)
    return frame(pcm, chunk_samples=model.chunk_samples, hop_samples=hop)


def feature_map_layers(encoder: keras.Model) -> list[str]:
    """The names of the layers :func:`layer_reader` reads: every ReLU, in order, then the embedding (the output)."""
    return [layer.name for layer in encoder.layers if isinstance(layer, keras.layers.ReLU)] + [encoder.layers[-1].name]


def layer_reader(model: RunEncoder) -> keras.Model:
    """The encoder with one output per :func:`feature_map_layers` layer, pooled over the layer's positions.

    Parameters
    ----------
    model : RunEncoder

    Returns
    -------
    keras.Model
        Input ``[shape=(B, chunk_samples), dtype=int16]``; output ``l`` has
        ``[shape=(B, 3, C_l)]``: the mean, mean square and maximum of each of
        the layer's C_l channels over every position of its map (time, and
        frequency in a 2-D map); an embedding has one position. Mean squares,
        not standard deviations, so that frames of one clip can be pooled
        together exactly (:func:`encoder_layer_statistics`).
    """
    encoder = model.encoder
    outputs = []
    for name in feature_map_layers(encoder):
        x = encoder.get_layer(name).output
        if len(x.shape) == 2:
            x = keras.ops.expand_dims(x, 1)
        positions = tuple(range(1, len(x.shape) - 1))
        pooled = [keras.ops.mean(x, axis=positions), keras.ops.mean(keras.ops.square(x), axis=positions), keras.ops.max(x, axis=positions)]
        outputs.append(keras.ops.stack(pooled, axis=1))
    return keras.Model(encoder.inputs, outputs, name="layer_reader")


def encoder_layer_statistics(reader: keras.Model, model: RunEncoder, pcm: np.ndarray) -> np.ndarray:
    """Every layer's channels pooled over all positions of all of a clip's frames; the last layer is the embedding.

    Parameters
    ----------
    reader : keras.Model
        :func:`layer_reader` of ``model``.
    model : RunEncoder
    pcm : np.ndarray [shape=(n_samples,), dtype=int16]
        ``n_samples >= model.chunk_samples``, at ``model.sample_rate``.

    Returns
    -------
    features : np.ndarray [shape=(3 * (sum of C_l),), dtype=float32]
        Per layer in order: the C_l means, standard deviations and maxima of
        its channels over every position of every frame (:func:`clip_frames`).
        The embedding's part is the ``encoder`` row: :func:`time_statistics` of the embeddings.
    """
    frames = np.ascontiguousarray(clip_frames(model, pcm))
    batches = [reader.predict_on_batch(frames[start : start + BATCH_FRAMES]) for start in range(0, len(frames), BATCH_FRAMES)]
    features = []
    for layer in range(len(batches[0])):
        pooled = np.concatenate([np.asarray(batch[layer], dtype=np.float64) for batch in batches])
        # Every frame has the same number of positions, so the mean over frames of each frame's mean is the clip's mean.
        mean, mean_square, maximum = pooled[:, 0].mean(axis=0), pooled[:, 1].mean(axis=0), pooled[:, 2].max(axis=0)
        # float32 mean squares can fall a rounding error below the squared mean.
        features += [mean, np.sqrt(np.maximum(mean_square - mean**2, 0.0)), maximum]
    return np.concatenate(features).astype(np.float32)


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


def supervised_predict(
    architecture: RunEncoder,
    train_clips: Sequence,
    train_labels: np.ndarray,
    test_clips: Sequence,
    *,
    steps: int,
    seed: int,
) -> np.ndarray:
    """Train the architecture end to end on the train clips' frames; predict each test clip.

    Parameters
    ----------
    architecture : RunEncoder
        Gives the architecture (a copy with fresh weights is trained; this one
        is not touched), chunk length and rate.
    train_clips, test_clips : sequence of np.ndarray [shape=(n_samples,), dtype=int16]
        Clips of at least one chunk.
    train_labels : np.ndarray [shape=(len(train_clips),), dtype=str]
    steps : int > 0, keyword-only
        Adam steps of ``SUPERVISED_BATCH`` frames drawn with replacement from
        every frame (:func:`clip_frames`) of the train clips, each labelled
        with its clip's class; learning rate ``SUPERVISED_LEARNING_RATE``.
    seed : int, keyword-only
        Seeds the weights and the batches.

    Returns
    -------
    predicted : np.ndarray [shape=(len(test_clips),), dtype=str]
        The class of the highest mean log-probability over each clip's frames.
    """
    classes, targets = np.unique(train_labels, return_inverse=True)
    keras.utils.set_random_seed(seed)
    encoder = keras.models.clone_model(architecture.encoder)
    chunks = keras.Input((architecture.chunk_samples,), dtype="int16", name="chunk")
    logits = keras.layers.Dense(len(classes), name="classes")(encoder(chunks))
    model = keras.Model(chunks, logits, name="supervised")
    model.compile(
        optimizer=keras.optimizers.Adam(SUPERVISED_LEARNING_RATE),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    frames = [clip_frames(architecture, pcm) for pcm in train_clips]
    # (clip, frame) of every train frame: batches are cut on demand, never all frames at once.
    where = np.array([(clip, k) for clip, per_clip in enumerate(frames) for k in range(len(per_clip))])
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        picked = where[rng.integers(len(where), size=SUPERVISED_BATCH)]
        batch = np.stack([frames[clip][k] for clip, k in picked])
        model.train_on_batch(batch, targets[picked[:, 0]])
    predicted = []
    for pcm in test_clips:
        scores = np.asarray(model.predict_on_batch(np.ascontiguousarray(clip_frames(architecture, pcm))), dtype=np.float64)
        log_probabilities = scores - np.logaddexp.reduce(scores, axis=1, keepdims=True)
        predicted.append(classes[int(log_probabilities.mean(axis=0).argmax())])
    return np.array(predicted)


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


def probe(
    run_dir: str | Path,
    data_dirs: str | Path | Sequence,
    *,
    seed: int = 0,
    n_splits: int = 5,
    n_probe_seeds: int = PROBE_SEEDS,
    supervised_steps: int = SUPERVISED_STEPS,
) -> ProbeReport:
    """Probe a run's encoder and all its layers beside a random twin, log-mel baselines, a tempogram and a supervised reference.

    Parameters
    ----------
    run_dir : str or Path
        A run folder of ``audiosort train``; ``probe.json`` and ``probe.md`` are
        written into it, keeping the tasks of other labelled folders.
    data_dirs : str, Path or sequence of them
        Labelled folders (layout: module docstring), one task each, named after the folder.
    seed : int, keyword-only
        Seeds the random encoder's weights, the log-mel projection and the
        supervised reference; the first probe seed.
    n_splits : int >= 2, keyword-only
        Train/test splits (group folds) per task and probe seed.
    n_probe_seeds : int >= 1, keyword-only
        Probe seeds ``seed .. seed + n_probe_seeds - 1``: each deals the folds
        and seeds the classifiers anew; the features are computed once.
    supervised_steps : int >= 0, keyword-only
        Training steps of the supervised reference per split (of the first
        probe seed); 0 leaves that row out.

    Returns
    -------
    ProbeReport

    Raises
    ------
    InputError
        A bad run folder or labelled folder (see :func:`read_labelled` and
        :func:`group_folds`, under every probe seed), two folders of one name,
        a file that cannot be decoded or is shorter than one chunk of the run,
        or an unreadable ``probe.json``. Every folder is checked before any is probed.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"no run folder at {str(run_dir)!r}")
    if supervised_steps < 0:
        raise InputError(f"supervised_steps = {supervised_steps!r} must be at least 0")
    if n_probe_seeds < 1:
        raise InputError(f"n_probe_seeds = {n_probe_seeds!r} must be at least 1")
    data_dirs = [Path(data_dirs)] if isinstance(data_dirs, (str, Path)) else [Path(d) for d in data_dirs]
    names = [_resolved(d).name for d in data_dirs]
    if len(set(names)) < len(names):
        raise InputError(f"two labelled folders are both named {max(names, key=names.count)!r}; a task is named after its folder")
    labelled_sets = [read_labelled(d) for d in data_dirs]
    probe_seeds = [seed + k for k in range(n_probe_seeds)]
    folds = [[group_folds(labelled, n_splits=n_splits, seed=s) for s in probe_seeds] for labelled in labelled_sets]
    read_probe(run_dir)  # a damaged probe.json fails now, not after the work
    tasks = {}
    trained = load_encoder(run_dir)
    untrained = random_encoder(run_dir, seed=seed)
    readers = {"encoder": (trained, layer_reader(trained)), "random_encoder": (untrained, layer_reader(untrained))}
    projection = random_projection(seed=seed)
    for data_dir, name, labelled, task_folds in zip(data_dirs, names, labelled_sets, folds):
        clips = decode_clips(labelled, trained)
        columns = _features(clips, readers, projection, sample_rate=trained.sample_rate)
        supervised = None
        if supervised_steps:
            supervised = _supervised_column(clips, labelled, task_folds[0], untrained, steps=supervised_steps, seed=seed)
        tasks[name] = _score_task(
            columns, supervised, labelled, task_folds, probe_seeds,
            data_dir=_resolved(data_dir), seed=seed, supervised_steps=supervised_steps,
        )
    def markdown(merged: dict) -> str:
        lines = markdown_lines(run_dir, merged)
        return "\n".join([f"# {lines[0]}", *lines[1:]]) + "\n"

    # Entries of earlier protocols (other pooling, one probe seed) are not comparable with these; they are dropped.
    tasks = merge_probe(run_dir, tasks, markdown, keep=lambda task: "probe_seeds" in task.entry)
    return ProbeReport(run_dir, names, tasks)


def _resolved(data_dir: Path) -> Path:
    """``data_dir`` with its links followed; a link that leads back to itself is an InputError."""
    try:
        return data_dir.resolve(strict=True)
    except (OSError, RuntimeError) as error:  # Python 3.11 and 3.12 raise RuntimeError on a loop, later ones OSError
        raise InputError(f"no labelled folder at {str(data_dir)!r}: {getattr(error, 'strerror', None) or error}") from None


def decode_clips(labelled: LabelledSet, model: RunEncoder) -> list:
    """Every clip of a labelled set, decoded at the encoder's rate.

    Parameters
    ----------
    labelled : LabelledSet
    model : RunEncoder
        Gives the rate and the chunk length every clip must reach.

    Returns
    -------
    clips : list of np.ndarray [shape=(n_samples,), dtype=float32]
        One per file, ``n_samples >= model.chunk_samples``.

    Raises
    ------
    InputError
        A file that cannot be decoded or is shorter than one chunk.
    """
    clips = []
    for file in labelled.files:
        try:
            y = audio.load(file, sample_rate=model.sample_rate)
        except DecodeError as error:
            raise InputError(f"cannot probe with {file}: {error}") from None
        if len(y) < model.chunk_samples:
            raise InputError(
                f"{file} lasts {len(y) / model.sample_rate:.3f} s, less than one chunk of the run "
                f"({model.chunk_samples / model.sample_rate:.3f} s)"
            )
        clips.append(y)
    return clips


def _features(clips: list, readers: dict, projection: np.ndarray, *, sample_rate: int) -> dict:
    """Each linear row's features of every clip: name -> (n_clips, width) float32; one pass of each encoder."""
    columns = {name: [] for name in ("encoder_layers", "random_encoder_layers", "logmel_stats", "logmel_projection", "tempogram")}
    for y in clips:
        pcm = audio.to_int16(y)
        for row, (model, reader) in readers.items():
            columns[f"{row}_layers"].append(encoder_layer_statistics(reader, model, pcm))
        mel = log_mel(y, sample_rate=sample_rate)  # once: the three baselines read the same frames
        columns["logmel_stats"].append(logmel_stats(mel))
        columns["logmel_projection"].append(logmel_projection(mel, projection))
        columns["tempogram"].append(tempogram(mel, sample_rate=sample_rate))
    columns = {name: np.stack(values) for name, values in columns.items()}
    for row, (model, _) in readers.items():
        # The embedding is the last layer read: its pooled values are the row's own features.
        columns[row] = columns[f"{row}_layers"][:, -len(POOLING) * model.embedding_dim :]
    for name, (first, second) in CONCATENATED.items():
        columns[name] = np.concatenate([columns[first], columns[second]], axis=1)
    return columns


def _supervised_column(clips: list, labelled: LabelledSet, fold: np.ndarray, architecture: RunEncoder, *, steps: int, seed: int) -> np.ndarray:
    """The supervised reference's prediction of every clip, each from the split that tests it."""
    labels = np.array(labelled.labels)
    pcm = [audio.to_int16(y) for y in clips]
    predicted = np.empty(len(labels), dtype=labels.dtype)
    for k in range(int(fold.max()) + 1):
        train, test = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        predicted[test] = supervised_predict(
            architecture, [pcm[i] for i in train], labels[train], [pcm[i] for i in test], steps=steps, seed=seed + k
        )
    return predicted


def _score_task(
    columns: dict, supervised: np.ndarray | None, labelled: LabelledSet, folds: list, probe_seeds: list, *,
    data_dir: Path, seed: int, supervised_steps: int,
) -> dict:
    """Fit and score every linear row on every split of every probe seed; the task's probe.json entry.

    ``folds`` holds one fold array per probe seed; ``supervised`` (when given)
    predicts every clip on the splits of the first.
    """
    labels, groups = np.array(labelled.labels), np.array(labelled.groups)
    n_splits = int(folds[0].max()) + 1
    rows = [*LINEAR, *(("supervised",) if supervised is not None else ())]
    # correct[name][s, clip]: the clip's prediction under probe seed s (the supervised row has the first seed only).
    correct = {name: np.zeros((len(probe_seeds) if name in LINEAR else 1, len(labels)), dtype=bool) for name in rows}
    per_split = {name: [] for name in rows}
    chosen_c = {name: [] for name in LINEAR}
    for s, (probe_seed, fold) in enumerate(zip(probe_seeds, folds)):
        for name in rows:
            per_split[name].append([])
        for name in LINEAR:
            chosen_c[name].append([])
        for k in range(n_splits):
            test = fold == k
            for name in LINEAR:
                features = columns[name]
                budget = DIMENSION_BUDGET * (2 if name in CONCATENATED else 1)
                predicted, c = fit_and_predict(
                    features[~test], labels[~test], groups[~test], features[test],
                    seed=n_splits * probe_seed + k, max_dims=budget,
                )
                correct[name][s, test] = predicted == labels[test]
                chosen_c[name][s].append(c)
                per_split[name][s].append(float(correct[name][s, test].mean()))
            if supervised is not None and s == 0:
                correct["supervised"][0, test] = supervised[test] == labels[test]
                per_split["supervised"][0].append(float(correct["supervised"][0, test].mean()))
    per_split = {name: [split for split in seeds if split] for name, seeds in per_split.items()}
    per_seed = {name: [float(np.mean(splits)) for splits in per_split[name]] for name in rows}
    _, class_counts = np.unique(labels, return_counts=True)
    n_clips = len(labels)
    pooled = {name: float(correct[name].mean()) for name in rows}
    differences = {f"{a}>{b}": np.ravel(per_split[a]) - np.ravel(per_split[b]) for a, b in COMPARISONS}
    # Each seed predicts every clip once: a group's accuracy is the mean over its clips and all seeds (module docstring).
    seed_groups = np.tile(groups, len(probe_seeds))
    return {
        "data": str(data_dir),
        "labels_from": labelled.labels_from,
        "grouped_by": labelled.grouped_by,
        "classes": sorted(set(labelled.labels)),
        "n_classes": len(class_counts),
        "n_clips": n_clips,
        "n_groups": len(set(labelled.groups)),
        "n_splits": n_splits,
        "probe_seeds": list(probe_seeds),
        "accuracy": {name: float(np.mean(per_seed[name])) for name in rows},
        "accuracy_std": {name: float(np.std(np.ravel(per_split[name]), ddof=1)) for name in rows},
        "accuracy_per_seed": per_seed,
        "seed_spread": {name: float(max(per_seed[name]) - min(per_seed[name])) for name in rows},
        "accuracy_per_split": per_split,
        "pooled": pooled,
        "interval": {name: list(metrics.wilson_interval(round(pooled[name] * n_clips), n_clips)) for name in rows},
        "chosen_c": chosen_c,
        "difference": {key: {"mean": float(d.mean()), "std": float(d.std(ddof=1))} for key, d in differences.items()},
        "p_better": {
            f"{a}>{b}": paired_group_p_value(np.ravel(correct[a]), np.ravel(correct[b]), seed_groups) for a, b in COMPARISONS
        },
        "chance": float(class_counts.max() / n_clips),
        "feature_dims": {name: int(columns[name].shape[1]) for name in LINEAR},
        "dimension_budget": DIMENSION_BUDGET,
        "pooling": list(POOLING),
        "supervised_steps": supervised_steps,
        "seed": seed,
    }


def markdown_lines(run_dir: Path, tasks: dict) -> list[str]:
    """A title, one table row per task (per row: mean accuracy over probe seeds ± std over splits, (seed spread)), and notes."""
    header = ["task", "classes", "clips / groups", "splits x seeds", "chance", *(FEATURE_TITLES[name] for name in FEATURES)]
    header += [f"p {FEATURE_TITLES[a]} > {FEATURE_TITLES[b]}" for a, b in COMPARISONS]
    lines = [f"linear probes of {run_dir}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task, entry in tasks.items():
        cells = [task, str(entry["n_classes"]), f"{entry['n_clips']} / {entry['n_groups']}"]
        cells += [f"{entry['n_splits']} x {len(entry['probe_seeds'])}", f"{entry['chance']:.3f}"]
        cells += [
            f"{entry['accuracy'][name]:.3f} ± {entry['accuracy_std'][name]:.3f} ({entry['seed_spread'][name]:.3f})"
            if name in entry["accuracy"] else "-"
            for name in FEATURES
        ]
        cells += [f"{entry['p_better'][f'{a}>{b}']:.2g}" for a, b in COMPARISONS]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [
        "",
        "Test accuracy, mean over the probe seeds (each deals its own group folds: the clips of one group never on "
        "both sides) ± std over every split of every seed, (max - min of the seeds' accuracies). Linear rows: one "
        "protocol for all: a per-frame descriptor pooled over the clip's frames by mean, std and max; at most "
        f"{DIMENSION_BUDGET} values per source (a wider one reduced by PCA fit on the train part); a scaler fit on "
        "the whole train part; a logistic regression whose L2 strength is chosen by group cross-validation on "
        "the train part. encoder: the run's embedding of chunk frames every quarter chunk; random encoder: the "
        "same architecture with random weights; all layers: every ReLU map and the embedding, pooled and "
        "concatenated (Pons & Serra); log-mel stats: 64 log-mel bands; log-mel projection: HEAR's naive baseline, "
        f"the bands through a fixed random projection to {LOGMEL_PROJECTION_DIMS}; tempogram: onset-strength "
        "autocorrelation at lags 10 ms-1.28 s; + stats: beside the log-mel stats. supervised: the encoder's "
        "architecture trained end to end on each train part of the first seed (a reference, not a probe; '-' when "
        "not run). Chance: share of the most common class. p: one-sided Wilcoxon signed-rank test over groups "
        "(each group's accuracy averaged over its clips and the seeds) that the first is right more often than "
        "the second.",
    ]
