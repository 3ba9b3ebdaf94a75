"""``audiosort eval``: score a run against chance on held-out tracks and on sanity sets.

A sorting accuracy means something only next to chance and next to proof that
the same pipeline cannot sort audio whose order is unknowable (DESIGN.md,
"Leaks to know"). :func:`evaluate` scores a run's model on

- a split of a corpus (``test`` by default: held-out tracks; ``train`` only
  on request, since the model has heard those tracks), and
- sanity sets cut with the run's own puzzle settings from white noise, brown
  noise and a tone rendered on the fly (or from a sanity corpus folder),

and, on the same puzzles of every dataset, the no-learning baselines of
:mod:`audiosort.baselines` (the ``continuity`` sorter: the order whose log-mel
edges join most smoothly), and writes into the run folder::

    eval.json               one entry per dataset (DESIGN.md, "Eval report"), each with
                            ``baselines: {"continuity": ...}`` (see EvalReport.to_dict)
    eval.md                 the same as a table
    confusion-<name>.png    true x predicted position (hungarian), per dataset

Statistics: for each dataset and decoding, :func:`audiosort.metrics.score_puzzles`
(accuracies with 95% intervals, chance, the one-sided binomial p-value of the
exact-order count against 1/n!), plus a verdict at alpha 0.01, Bonferroni
corrected over the datasets evaluated. A dataset's verdict is its hungarian
decoding's: whenever argmax decodes a puzzle to a permutation, that
permutation maximizes the summed scores, so argmax's exact-order count never
exceeds hungarian's (up to ties) and its p-value is never smaller. The two
decodings are one test, not two, and correcting over both would only cost
power. Every decoding still carries its own verdict at the same threshold.

Beside each synthetic sanity set stands the exact-order accuracy of an ideal
observer that knows how it was made (:mod:`audiosort.leaks`), so that a model
at chance can be told from a pipeline that leaks nothing.

Beside the model on every dataset stands each baseline, scored with the same
statistics and verdicts against chance, and a one-sided exact McNemar test
(:func:`audiosort.metrics.mcnemar_p_value`) that the model gets the exact
order right more often than the baseline on the same puzzles (hungarian
decoding); the model "beats" the baseline where that p-value is below the
verdicts' threshold (alpha over the datasets). A baseline decides nothing:
the exit code comes from the model's sanity-set verdicts alone, since a
baseline that sorts a sanity set says the audio has an order to find, not
that the model found it.

Example
-------
>>> report = evaluate("runs/demo", sanity=("noise", "brown", "tone"))  # doctest: +SKIP
>>> print("\\n".join(report.lines())); report.exit_code  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from audiosort import _files, audio, baselines, leaks, metrics
from audiosort.data import synthetic
from audiosort.data.corpus import SPLITS, Corpus
from audiosort.data.puzzles import PuzzleSpec, Puzzles, TrackTable, make_puzzle_set
from audiosort.errors import InputError
from audiosort.run import load_run_config, load_run_model

# Names --sanity accepts besides a corpus folder: kind -> (synthetic kind, tone method).
SANITY_KINDS = {
    "noise": ("noise", None),
    "brown": ("brown", None),
    "tone": ("tone", "tiled"),
    "tone-exact": ("tone", "exact"),
}
DEFAULT_SANITY = ("noise", "brown", "tone")
# 8 tracks of 60 s: 2000 puzzles of 0.6 s (n=3, 0.2 s chunks) overlap little.
SANITY_TRACKS = 8
SANITY_TRACK_SECONDS = 60.0
SANITY_TONE_HZ = 440.0
ALPHA = 0.01
VERDICT_DECODING = "hungarian"
# A log-probability of exactly 0 in float32 becomes -inf; decoding needs finite scores.
# An ideal observer this far above chance (exact order) gets a note that a set at chance proves little.
_IDEAL_MARGIN = 0.01


@dataclass(frozen=True)
class BaselineResult:
    """A no-learning baseline scored on a dataset's puzzles, and how the model compares.

    Attributes
    ----------
    scores : dict
        :func:`audiosort.metrics.score_puzzles` of the baseline's scores.
    model_better_p_value : float in [0, 1]
        One-sided exact McNemar test that the model's hungarian decoding gets
        the exact order right on more of the same puzzles than the baseline's.
    """

    scores: dict
    model_better_p_value: float


@dataclass
class DatasetResult:
    """One scored dataset.

    Attributes
    ----------
    name : str
        Key in ``eval.json`` and file name part: the split, the sanity kind, or
        the sanity corpus folder's name.
    sanity : bool
        True for sets that must stay at chance.
    source : dict
        JSON-ready description: ``kind`` ("corpus" or a key of
        :data:`SANITY_KINDS`), and the corpus, split and whether its fixed
        set was used, or the synthetic tracks rendered.
    scores : dict
        :func:`audiosort.metrics.score_puzzles` of the model's scores.
    confusion : np.ndarray [shape=(n, n), dtype=int64]
        ``confusion[t, p]``: slots of true position t predicted at p (hungarian).
    ideal : leaks.IdealObserver or None
        The ideal observer of a synthetic sanity set; None where unknown.
    baselines : dict of str to BaselineResult
        Keyed by the names of :data:`audiosort.baselines.BASELINES`; empty
        where none was scored (``audiosort audit``).
    """

    name: str
    sanity: bool
    source: dict
    scores: dict
    confusion: np.ndarray
    ideal: leaks.IdealObserver | None = None
    baselines: dict[str, BaselineResult] = field(default_factory=dict)


class Verdicts:
    """Verdicts against chance over a family of scored datasets, shared by eval and audit.

    A mixin for reports that have ``datasets`` (list of :class:`DatasetResult`)
    and ``alpha`` (family-wise false-positive rate, split over the datasets by
    Bonferroni).
    """

    datasets: list[DatasetResult]
    alpha: float

    @property
    def n_tests(self) -> int:
        """Tests in the Bonferroni family: one per dataset (see module docstring for why not per decoding)."""
        return len(self.datasets)

    def verdict(self, result: DatasetResult | BaselineResult, decoding: str = VERDICT_DECODING) -> str:
        """``"above_chance"`` or ``"at_chance"`` for one dataset's model (or a baseline on it) and decoding."""
        return metrics.verdict(result.scores[decoding]["p_value"], alpha=self.alpha, n_tests=self.n_tests)

    def model_beats(self, baseline: BaselineResult) -> bool:
        """Whether the model sorts more puzzles exactly than ``baseline`` (McNemar, same threshold as the verdicts)."""
        return baseline.model_better_p_value < self.alpha / self.n_tests

    def leaking(self) -> list[DatasetResult]:
        """The sanity sets sorted above chance."""
        return [r for r in self.datasets if r.sanity and self.verdict(r) == "above_chance"]

    def problems(self) -> list[str]:
        """One line per sanity set sorted above chance, e.g. ``"tone sorted above chance (p=3.1e-12)"``."""
        return [f"{r.name} sorted above chance (p={r.scores[VERDICT_DECODING]['p_value']:.2g})" for r in self.leaking()]

    @property
    def exit_code(self) -> int:
        """1 if any sanity set is sorted above chance, else 0."""
        return 1 if self.leaking() else 0

    def entries(self) -> dict:
        """One JSON-ready entry per dataset (DESIGN.md, "Eval report"), with a verdict per decoding.

        Where baselines were scored, ``entry["baselines"][name]`` has the same
        keys as the model's part of the entry (per decoding: accuracies,
        ``p_value``, ``verdict``; ``n_puzzles``, ``chance``, ``p_value``,
        ``verdict``), plus ``model_better_p_value`` (one-sided McNemar, exact
        order, hungarian) and ``model_better`` (that p-value below alpha over
        the datasets).
        """
        entries = {}
        for result in self.datasets:
            entry = {**result.source, "sanity": result.sanity, **self._scored(result)}
            if result.ideal is not None:
                entry["ideal_observer_exact_accuracy"] = result.ideal.exact_accuracy
                entry["ideal_observer_n_chunks"] = result.ideal.n_chunks
                entry["ideal_observer_method"] = result.ideal.method
            if result.baselines:
                entry["baselines"] = {
                    name: {
                        **self._scored(baseline),
                        "model_better_p_value": baseline.model_better_p_value,
                        "model_better": self.model_beats(baseline),
                    }
                    for name, baseline in result.baselines.items()
                }
            entries[result.name] = entry
        return entries

    def _scored(self, result: DatasetResult | BaselineResult) -> dict:
        """Its scores with a verdict per decoding, then the dataset's p-value and verdict (hungarian)."""
        scored = {}
        for key, value in result.scores.items():
            if key in metrics.DECODINGS:
                value = {**value, "verdict": self.verdict(result, key)}
            scored[key] = value
        scored["p_value"] = result.scores[VERDICT_DECODING]["p_value"]
        scored["verdict"] = self.verdict(result)
        return scored

    def table(self) -> list[str]:
        """The markdown table: one row per dataset and decoding, then one per baseline (``test (continuity)``)."""
        rows = [
            "| dataset | decoding | exact acc [95% CI] | chance | position acc (chance) | Kendall tau | p | verdict "
            "| ideal observer |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for result in self.datasets:
            for decoding in metrics.DECODINGS:
                rows.append(self._row(result.name, decoding, result, _ideal_cell(result)))
            # A baseline's scores are certain (0 or log 0), so both decodings give its one order.
            for name, baseline in result.baselines.items():
                rows.append(self._row(f"{result.name} ({name})", VERDICT_DECODING, baseline, "-"))
        return rows

    def _row(self, label: str, decoding: str, result: DatasetResult | BaselineResult, ideal_cell: str) -> str:
        chance = result.scores["chance"]
        scores = result.scores[decoding]
        exact = scores["exact_accuracy"]
        return (
            f"| {label} | {decoding} | {exact['value']:.3f} [{exact['low']:.3f}, {exact['high']:.3f}] "
            f"| {chance['exact_accuracy']:.3f} "
            f"| {scores['position_accuracy']['value']:.3f} ({chance['position_accuracy']:.3f}) "
            f"| {scores['kendall_tau']['value']:.3f} | {scores['p_value']:.2g} "
            f"| {self.verdict(result, decoding).replace('_', ' ')} | {ideal_cell} |"
        )

    def ideal_sorts(self, result: DatasetResult) -> bool:
        """Whether the set's ideal observer sorts it above chance (exact order).

        By more than a margin, and for the brown-noise observer, a Monte Carlo
        estimate on the set's own puzzles, also by the binomial test of the
        verdicts: otherwise its sampling noise alone (about 0.012 for 1000
        puzzles of 3) would flag clean sets.
        """
        ideal = result.ideal
        if ideal is None or ideal.exact_accuracy <= ideal.chance + _IDEAL_MARGIN:
            return False
        if SANITY_KINDS.get(result.source.get("kind"), (None,))[0] != "brown":
            return True
        n_puzzles = result.scores["n_puzzles"]
        right = round(ideal.exact_accuracy * n_puzzles)
        p_value = metrics.binomial_p_value(right, n_puzzles, ideal.chance)
        return metrics.verdict(p_value, alpha=self.alpha, n_tests=self.n_tests) == "above_chance"

    def notes(self) -> list[str]:
        """What the table means: the test behind the verdicts, and where an ideal observer says more."""
        out = [
            f"verdict: one-sided binomial test of the exact-order count against chance (1/n!), alpha {self.alpha} "
            f"Bonferroni-corrected over {self.n_tests} dataset(s), on the {VERDICT_DECODING} decoding.",
        ]
        for result in self.datasets:
            model_exact = result.scores[VERDICT_DECODING]["exact_accuracy"]["value"]
            for name, baseline in result.baselines.items():
                beats = "beats" if self.model_beats(baseline) else "does not beat"
                baseline_exact = baseline.scores[VERDICT_DECODING]["exact_accuracy"]["value"]
                out.append(
                    f"{result.name}: the model {beats} the {name} baseline (exact {model_exact:.3f} vs "
                    f"{baseline_exact:.3f}, one-sided McNemar p={baseline.model_better_p_value:.2g})"
                )
        scored = list(dict.fromkeys(name for r in self.datasets for name in r.baselines))
        if scored:
            out.append(
                f"baseline rows ({', '.join(scored)}): no training (audiosort.baselines), the same puzzles and tests; "
                "they never change the exit code"
            )
        pairwise = [r.name for r in self.datasets if r.ideal and r.ideal.n_chunks != r.scores["n_chunks"]]
        if pairwise:
            names = ", ".join(pairwise)
            out.append(f"ideal observer of {names}: pairwise (n=2, chance 0.5); n chunks are too many to enumerate")
        at_chance = [r for r in self.datasets if r.sanity and self.verdict(r) == "at_chance"]
        if at_chance:
            out.append(f"sanity sets at chance: {', '.join(r.name for r in at_chance)}")
        # A set at chance proves the pipeline clean only where an ideal observer is at chance too.
        sortable = [f"{r.name} at {r.ideal.exact_accuracy:.3f}" for r in at_chance if self.ideal_sorts(r)]
        if sortable:
            out.append(
                f"  yet an ideal observer sorts {', '.join(sortable)} (exact order): "
                "there at chance means this model did not exploit the leak, not that there is none"
            )
        return out


@dataclass
class EvalReport(Verdicts):
    """The datasets of one evaluation and the verdicts that follow from them.

    Attributes
    ----------
    run_dir : Path
        The run evaluated.
    datasets : list of DatasetResult
        In evaluation order (the corpus split first).
    alpha : float in (0, 1)
        Family-wise false-positive rate, split over the datasets (Bonferroni).
    """

    run_dir: Path
    datasets: list[DatasetResult]
    alpha: float = ALPHA

    def to_dict(self) -> dict:
        """``eval.json``: settings, then one entry per dataset with a verdict per decoding and its baselines.

        ``datasets[name]["baselines"]["continuity"]`` holds the continuity
        baseline's scores on that dataset's puzzles in the model's layout (so
        ``["hungarian"]["exact_accuracy"]["value"]`` is its exact-order
        accuracy) and the McNemar comparison (see :meth:`Verdicts.entries`).
        """
        return {
            "run": str(self.run_dir),
            "alpha": self.alpha,
            "n_tests": self.n_tests,
            "verdict_decoding": VERDICT_DECODING,
            "datasets": self.entries(),
        }

    def lines(self) -> list[str]:
        """What ``audiosort eval`` prints on stdout: the table and what it means (problems go to stderr)."""
        puzzles = ", ".join(f"{r.name} {r.scores['n_puzzles']}" for r in self.datasets)
        return [f"eval of {self.run_dir} (puzzles: {puzzles})", "", *self.table(), "", *self.notes()]

    def write(self, folder: str | Path) -> None:
        """Write ``eval.json``, ``eval.md`` and one ``confusion-<name>.png`` per dataset, each atomically."""
        folder = Path(folder)
        _files.write_text(folder / "eval.json", json.dumps(self.to_dict(), indent=1) + "\n")
        lines = self.lines()
        _files.write_text(folder / "eval.md", "\n".join([f"# {lines[0]}", *lines[1:], *self.problems()]) + "\n")
        for result in self.datasets:
            _save_confusion(folder / f"confusion-{result.name}.png", result)


def evaluate(
    run_dir: str | Path,
    *,
    corpus: str | Path | None = None,
    split: str = "test",
    sanity: tuple = DEFAULT_SANITY,
    n_puzzles: int = 2000,
    seed: int = 0,
    allow_train: bool = False,
) -> EvalReport:
    """Score a run's model on a corpus split and on sanity sets; write the report into the run folder.

    Parameters
    ----------
    run_dir : str or Path
        Run folder of ``audiosort train`` (``config.yaml``, ``model.keras``).
    corpus : str or Path, optional
        Corpus folder to take ``split`` from; default the run's ``data.corpus``.
    split : {"train", "val", "test"}
        Which tracks to score. The corpus's fixed set when it was cut with the
        run's puzzle settings, else ``n_puzzles`` new ones.
    sanity : sequence of str
        Each a key of :data:`SANITY_KINDS` (rendered on the fly: 8 tracks of
        60 s at the run's sample rate) or a corpus folder (its test split, or
        the first split it has).
    n_puzzles : int > 0
        Puzzles per sanity set, and per split when no fixed set fits.
    seed : int
        Seeds the sanity audio and any new puzzles. The default is shared by
        every run, so that runs are scored on the same puzzles (paired tests).
    allow_train : bool
        Permit ``split="train"``.

    Returns
    -------
    EvalReport
        Also written to ``run_dir`` (see :meth:`EvalReport.write`). Every
        dataset carries the baselines of :data:`audiosort.baselines.BASELINES`
        scored on its puzzles.

    Raises
    ------
    InputError
        No run folder or model, ``split="train"`` without ``allow_train``, an
        unknown sanity name, or a corpus whose sample rate or chunk length
        does not match the model.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"no run folder at {run_dir}")
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if split == "train" and not allow_train:
        raise InputError(
            "--split train scores puzzles from the tracks the model was trained on, which inflates accuracy; "
            "use val or test, or pass --allow-train"
        )
    if isinstance(n_puzzles, bool) or not isinstance(n_puzzles, int) or n_puzzles < 1:
        raise InputError(f"--puzzles {n_puzzles!r} must be an int >= 1")
    sanity = tuple(sanity)
    for entry in sanity:
        if entry not in SANITY_KINDS and not Path(entry).is_dir():
            raise InputError(f"--sanity {entry!r} is neither a sanity kind ({', '.join(SANITY_KINDS)}) nor a corpus folder")
    config = load_run_config(run_dir)
    sample_rate = config.data.sample_rate
    spec = PuzzleSpec.from_config(config.puzzle, sample_rate=sample_rate)
    # Every input is checked before the model loads, so a usage error costs no time.
    main_corpus = _open_corpus(corpus if corpus is not None else config.data.corpus, sample_rate)
    sanity_corpora = {entry: _open_corpus(entry, sample_rate) for entry in sanity if entry not in SANITY_KINDS}
    model = load_run_model(run_dir, spec)
    batch_size = config.train.batch_size

    puzzles, fixed = main_corpus.puzzles_for(split, spec, n_puzzles=n_puzzles, seed=seed)
    source = {"kind": "corpus", "corpus": str(main_corpus.path), "split": split, "fixed_set": fixed}
    results = [score_dataset(split, False, source, puzzles, model, batch_size, sample_rate=sample_rate)]
    for entry in sanity:
        if entry in SANITY_KINDS:
            name = entry
            puzzles, source = sanity_puzzles(entry, spec, sample_rate=sample_rate, n_puzzles=n_puzzles, seed=seed)
            ideal = sanity_ideal_observer(entry, puzzles, spec, sample_rate)
        else:
            folder = sanity_corpora[entry]
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", folder.path.resolve().name)
            present = {t["split"] for t in folder.track_entries}
            folder_split = next((s for s in ("test", "val", "train") if s in present), "test")
            puzzles, fixed = folder.puzzles_for(folder_split, spec, n_puzzles=n_puzzles, seed=seed)
            source = {"kind": "corpus", "corpus": str(folder.path), "split": folder_split, "fixed_set": fixed}
            ideal = None
        if name in {r.name for r in results}:
            raise InputError(f"--sanity names {name!r} twice (or it clashes with the split); give each set once")
        results.append(score_dataset(name, True, source, puzzles, model, batch_size, ideal, sample_rate=sample_rate))
    report = EvalReport(run_dir=run_dir, datasets=results)
    report.write(run_dir)
    return report


def _open_corpus(path: str | Path, sample_rate: int) -> Corpus:
    corpus = Corpus(path)
    if corpus.sample_rate != sample_rate:
        raise InputError(
            f"corpus {corpus.path} is {corpus.sample_rate} Hz but the run's model was trained at {sample_rate} Hz "
            "(data.sample_rate); prepare the corpus at the run's rate"
        )
    return corpus


def sanity_tracks(
    kind: str, *, sample_rate: int, seed: int, split: str = "test"
) -> tuple[TrackTable, np.random.Generator, dict]:
    """Render the audio of one sanity kind: SANITY_TRACKS tracks of SANITY_TRACK_SECONDS.

    Parameters
    ----------
    kind : str
        A key of :data:`SANITY_KINDS`.
    sample_rate : int > 0, keyword-only
        Hz.
    seed : int, keyword-only
        Seeds the audio and the returned generator.
    split : {"test", "train"}, keyword-only
        ``"test"``: the tracks eval scores on; ``"train"``: other tracks, from
        an independent stream, for ``audiosort audit`` to train on.

    Returns
    -------
    tracks : TrackTable
        One int16 shard per track.
    rng : np.random.Generator
        Its own stream, for the puzzles cut from these tracks.
    source : dict
        JSON-ready description of the audio.
    """
    if split not in ("test", "train"):
        raise ValueError(f"split must be 'test' or 'train', got {split!r}")
    synthetic_kind, tone_method = SANITY_KINDS[kind]
    # One stream per kind, split into one per track and one for the puzzles, so that no two sets
    # (noise and brown both draw normals) share their random numbers; the train tracks come from
    # the child spawned after the test streams, so they never repeat test audio.
    streams = np.random.SeedSequence([seed, list(SANITY_KINDS).index(kind)]).spawn(SANITY_TRACKS + 2)
    streams = streams[:-1] if split == "test" else streams[-1].spawn(SANITY_TRACKS + 1)
    tone = {"tone_method": tone_method, "tone_hz": SANITY_TONE_HZ} if tone_method else {}
    tracks = [
        audio.to_int16(
            synthetic.render(
                synthetic_kind, SANITY_TRACK_SECONDS, sample_rate=sample_rate, rng=np.random.default_rng(stream), **tone
            )
        )
        for stream in streams[:-1]
    ]
    source = {"kind": kind, "tracks": SANITY_TRACKS, "track_seconds": SANITY_TRACK_SECONDS, "seed": seed, **tone}
    return TrackTable.from_arrays(tracks), np.random.default_rng(streams[-1]), source


def sanity_puzzles(kind: str, spec: PuzzleSpec, *, sample_rate: int, n_puzzles: int, seed: int) -> tuple[Puzzles, dict]:
    """A fresh sanity set: ``n_puzzles`` puzzles cut with ``spec`` from the test tracks of :func:`sanity_tracks`."""
    tracks, rng, source = sanity_tracks(kind, sample_rate=sample_rate, seed=seed)
    return make_puzzle_set(tracks, spec, n_puzzles, rng=rng), source


def sanity_ideal_observer(
    kind: str, puzzles: Puzzles, spec: PuzzleSpec, sample_rate: int
) -> leaks.IdealObserver | None:
    """The ideal observer's exact-order accuracy on a sanity set of ``kind`` (see :mod:`audiosort.leaks`)."""
    synthetic_kind, tone_method = SANITY_KINDS[kind]
    if synthetic_kind == "noise":
        return leaks.ideal_noise_accuracy(spec)
    if synthetic_kind == "brown":
        return leaks.ideal_brown_accuracy(puzzles.chunks, puzzles.order, spec, sample_rate=sample_rate)
    return leaks.ideal_tone_accuracy(spec, sample_rate=sample_rate, frequency_hz=SANITY_TONE_HZ, method=tone_method)


def score_dataset(name, sanity, source, puzzles, model, batch_size, ideal=None, *, sample_rate=None) -> DatasetResult:
    """Predict, then score against chance; the confusion matrix is of the hungarian decoding.

    With ``sample_rate`` (Hz, of the puzzles) every baseline of
    :data:`audiosort.baselines.BASELINES` is scored on the same puzzles and
    compared with the model; without it (``audiosort audit``, which judges the
    pipeline rather than a model) none is.
    """
    if puzzles.chunks.shape[1:] != tuple(model.input_shape[1:]):
        raise InputError(
            f"{name} puzzles are {puzzles.chunks.shape[1]} chunks of {puzzles.chunks.shape[2]} samples but the model "
            f"takes {model.input_shape[1]} of {model.input_shape[2]}"
        )
    scores = metrics.finite_scores(model.predict(puzzles.chunks, batch_size=batch_size, verbose=0), what=name)
    order = np.asarray(puzzles.order, dtype=np.int64)
    n_chunks = order.shape[1]
    predicted = metrics.decode(scores, method=VERDICT_DECODING)
    cells = (order * n_chunks + predicted).ravel()
    confusion = np.bincount(cells, minlength=n_chunks * n_chunks).reshape(n_chunks, n_chunks)
    scored_baselines = {}
    if sample_rate is not None:
        model_right = metrics.exact_correct(predicted, order)
        for baseline_name, baseline in baselines.BASELINES.items():
            baseline_scores = baseline(puzzles.chunks, sample_rate=sample_rate)
            baseline_right = metrics.exact_correct(metrics.decode(baseline_scores, method=VERDICT_DECODING), order)
            scored_baselines[baseline_name] = BaselineResult(
                metrics.score_puzzles(baseline_scores, order), metrics.mcnemar_p_value(model_right, baseline_right)
            )
    return DatasetResult(name, sanity, source, metrics.score_puzzles(scores, order), confusion, ideal, scored_baselines)


def _ideal_cell(result: DatasetResult) -> str:
    if result.ideal is None:
        return "-"
    text = f"{result.ideal.exact_accuracy:.3f}"
    return text if result.ideal.n_chunks == result.scores["n_chunks"] else f"{text} (n=2)"


def _save_confusion(path: Path, result: DatasetResult) -> None:
    """Row-normalized confusion matrix as a PNG, written to a temporary file and renamed."""
    confusion = result.confusion
    n_chunks = len(confusion)
    fractions = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    figure = Figure(figsize=(1.2 + 0.6 * n_chunks, 1.0 + 0.6 * n_chunks), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.imshow(fractions, vmin=0.0, vmax=1.0, cmap="viridis")
    for true_position, predicted_position in np.ndindex(confusion.shape):
        value = fractions[true_position, predicted_position]
        axes.text(predicted_position, true_position, f"{value:.2f}", ha="center", va="center",
                  color="black" if value > 0.5 else "white", fontsize=8)
    axes.set_xticks(range(n_chunks))
    axes.set_yticks(range(n_chunks))
    axes.set_xlabel("predicted position")
    axes.set_ylabel("true position")
    exact = result.scores[VERDICT_DECODING]["exact_accuracy"]["value"]
    axes.set_title(f"{result.name}: exact {exact:.3f}\n(chance {1 / math.factorial(n_chunks):.3f}, hungarian)", fontsize=9)
    tmp = path.with_name(f".{path.name}.partial")
    figure.savefig(tmp, format="png")
    os.replace(tmp, path)
