"""Score a model's predictions on a dataset and judge them against chance.

Shared by ``audiosort eval`` and ``audiosort audit``. :func:`score_dataset`
runs a model on one set of puzzles and scores it
(:func:`audiosort.metrics.score_puzzles`: accuracies with 95% intervals,
chance, the one-sided p-value of Kendall tau: a continuity-corrected normal
tail of its null, never below the exact p near alpha 0.01 (within 4 % of it
from 20 puzzles on) and about 11 % below it near p = 0.15 for one puzzle of 3
chunks; :func:`audiosort.metrics.kendall_tau_p_value`), with
every no-learning baseline of :mod:`audiosort.baselines` beside it where
asked. :class:`Verdicts` turns a family of scored datasets into verdicts at
alpha 0.01, Bonferroni corrected over the datasets.

Every verdict tests Kendall tau and the exact-order count against their
nulls, Bonferroni over the two (:func:`audiosort.metrics.chance_p_values`),
and the tables print in bold the one whose test decided. The exact-order
count alone, as before, was blind from about n = 10: at n = 20 a model that
restores every order but for three swapped pairs sorts no puzzle exactly,
though its tau is about 0.65. Kendall tau alone is blind to an order known
only up to its direction (a tone's shared phase step): mean tau 0.

Beside the verdict, not in it, the true neighbours placed side by side have
their own test at the same threshold (:meth:`Verdicts.neighbour_verdict`,
:func:`audiosort.metrics.neighbour_p_value`): tau and the exact order are
both nearly blind to a leak that links a chunk to its neighbour here and
there (brown noise across gaps of 0-5 ms at n = 20: tau 0.03), which the
neighbours see. Eval reports it; the audit fails on it as on the verdict.

A dataset's verdict is that of the decoding that gives its order
(:attr:`audiosort.metrics.PuzzleScores.order_decoding`): hungarian for
position scores, path for a successor head (and the continuity baseline),
whose order is the best path through its join scores and which has no other
decoding. Argmax and hungarian score the same model on the same puzzles, so
they are one test, not two, and correcting over both would only cost power.
Every decoding still carries its own verdict at the same threshold.

The model "beats" a baseline where paired tests on the same puzzles (each in
its order decoding, :func:`audiosort.metrics.better_p_values`) say it sorts
them better: a one-sided Wilcoxon signed-rank test on per-puzzle Kendall tau
and a one-sided exact McNemar test on exact orders, the smaller p doubled,
below the same threshold. McNemar alone was blind from about n = 7, where
neither sorts any puzzle exactly. A baseline decides nothing: a baseline that
sorts a sanity set says the audio has an order to find, not that the model
found it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np

from audiosort import baselines, decoding, leaks, metrics
from audiosort.data.puzzles import Puzzles
from audiosort.errors import InputError
from audiosort.predict import position_scores, score_predictions

ALPHA = 0.01
# An exactly computed ideal observer this far above chance (exact order, or Kendall tau) sorts its set:
# below it, a set at chance proves the pipeline clean.
_IDEAL_MARGIN = 0.01


@dataclass(frozen=True)
class BaselineResult:
    """A no-learning baseline scored on a dataset's puzzles, and how the model compares.

    Attributes
    ----------
    scores : metrics.PuzzleScores
        The baseline's order, scored as the decoding that found it
        (:data:`audiosort.baselines.DECODING`).
    model_better : dict
        Whether the model's order decoding sorts the same puzzles better
        (:func:`audiosort.metrics.better_p_values`): ``p_value`` (the
        comparison's), ``tau_p_value`` (Wilcoxon, per-puzzle Kendall tau) and
        ``exact_p_value`` (McNemar, exact orders).
    """

    scores: metrics.PuzzleScores
    model_better: dict

    @property
    def deciding_test(self) -> str:
        """Whose p-value decided the comparison (the smaller): ``"Kendall tau, Wilcoxon"`` or ``"exact order, McNemar"``."""
        tau_decided = self.model_better["tau_p_value"] <= self.model_better["exact_p_value"]
        return "Kendall tau, Wilcoxon" if tau_decided else "exact order, McNemar"


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
        :data:`audiosort.sanity.SANITY_KINDS`), and the corpus, split and
        whether its fixed set was used, or the synthetic tracks rendered.
    scores : metrics.PuzzleScores
        The model's scores per decoding it has (:func:`audiosort.predict.decodings_of`).
    confusion : np.ndarray [shape=(n, n), dtype=int64]
        ``confusion[t, p]``: slots of true position t predicted at p (its order decoding).
    ideal : leaks.IdealObserver or None
        The ideal observer of a synthetic sanity set; None where unknown.
    baselines : dict of str to BaselineResult
        Keyed by the names of :data:`audiosort.baselines.BASELINES`; empty
        where none was scored (``audiosort audit``).
    """

    name: str
    sanity: bool
    source: dict
    scores: metrics.PuzzleScores
    confusion: np.ndarray
    ideal: leaks.IdealObserver | None = None
    baselines: dict[str, BaselineResult] = field(default_factory=dict)


def score_dataset(
    puzzles: Puzzles,
    model: keras.Model,
    *,
    name: str,
    sanity: bool,
    source: dict,
    batch_size: int,
    ideal: leaks.IdealObserver | None = None,
    sample_rate: int | None = None,
) -> DatasetResult:
    """Predict, then score against chance; the confusion matrix is of the order decoding (hungarian or path).

    Parameters
    ----------
    puzzles : Puzzles
        ``chunks`` int16 (B, n, L) and their ``order`` (B, n).
    model : keras.Model
        Takes (B, n, L) int16 chunks, returns (B, n, n) log-probabilities.
    name, sanity, source, ideal
        Stored in the :class:`DatasetResult` (see its attributes).
    batch_size : int > 0, keyword-only
        Puzzles per predict batch.
    sample_rate : int > 0, optional, keyword-only
        Hz of the puzzles. Given, every baseline of
        :data:`audiosort.baselines.BASELINES` is scored on the same puzzles and
        compared with the model; None (``audiosort audit``, which judges the
        pipeline rather than a model) scores none.

    Raises
    ------
    InputError
        Puzzles of another shape than the model takes.
    """
    if any(want not in (None, got) for want, got in zip(model.input_shape[1:], puzzles.chunks.shape[1:])):
        raise InputError(
            f"{name} puzzles are {puzzles.chunks.shape[1]} chunks of {puzzles.chunks.shape[2]} samples but the model "
            f"takes {model.input_shape[1]} of {model.input_shape[2]}"
        )
    scores = position_scores(model, puzzles.chunks, batch_size=batch_size, what=name)
    order = np.asarray(puzzles.order, dtype=np.int64)
    n_chunks = order.shape[1]
    # Hungarian decoding reads a path-decoded model's certain scores back as its one order.
    predicted = decoding.decode(scores, method="hungarian")
    cells = (order * n_chunks + predicted).ravel()
    confusion = np.bincount(cells, minlength=n_chunks * n_chunks).reshape(n_chunks, n_chunks)
    scored_baselines = {}
    if sample_rate is not None:
        for baseline_name, baseline in baselines.BASELINES.items():
            baseline_order = decoding.decode(baseline(puzzles.chunks, sample_rate=sample_rate), method="hungarian")
            scored_baselines[baseline_name] = BaselineResult(
                metrics.score_orders(baseline_order, order, decoding=baselines.DECODING),
                metrics.better_p_values(predicted, baseline_order, order),
            )
    return DatasetResult(
        name, sanity, source, score_predictions(model, scores, order), confusion, ideal, scored_baselines
    )


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
        """Tests in the Bonferroni family: one per dataset (see the module docstring for why not per decoding)."""
        return len(self.datasets)

    def verdict(self, result: DatasetResult | BaselineResult, decoding: str | None = None) -> str:
        """``"above_chance"`` or ``"at_chance"`` for one dataset's model (or a baseline on it) and decoding (default: its order decoding)."""
        scores = result.scores.order_scores if decoding is None else result.scores.decodings[decoding]
        return metrics.verdict(scores.p_value, alpha=self.alpha, n_tests=self.n_tests)

    def neighbour_verdict(self, result: DatasetResult | BaselineResult, decoding: str | None = None) -> str:
        """The neighbours' own test, as :meth:`verdict` at the same threshold: ``"above_chance"`` or ``"at_chance"``."""
        scores = result.scores.order_scores if decoding is None else result.scores.decodings[decoding]
        return metrics.verdict(scores.neighbour_p_value, alpha=self.alpha, n_tests=self.n_tests)

    def model_beats(self, baseline: BaselineResult) -> bool:
        """Whether the model sorts the puzzles better than ``baseline`` (paired tests, same threshold as the verdicts)."""
        return baseline.model_better["p_value"] < self.alpha / self.n_tests

    def leaking(self) -> list[DatasetResult]:
        """The sanity sets the model sorts above chance."""
        return [r for r in self.datasets if r.sanity and self.verdict(r) == "above_chance"]

    def problems(self) -> list[str]:
        """One line per sanity set sorted above chance, e.g. ``"tone sorted above chance (Kendall tau 0.214, p=3.1e-12)"``."""
        return [f"{r.name} sorted above chance ({tau_and_p(r.scores.order_scores)})" for r in self.leaking()]

    @property
    def exit_code(self) -> int:
        """1 if any sanity set is sorted above chance, else 0."""
        return 1 if self.leaking() else 0

    def ideal_sorts(self, result: DatasetResult) -> bool:
        """Whether the set's ideal observer sorts it above chance.

        An exactly computed observer (white noise, the tone where its
        enumeration fits): by more than a margin (0.01) in exact-order
        accuracy, Kendall tau or the share of true neighbours found. A Monte
        Carlo one, on the set's own puzzles (brown noise; the tone at many
        chunks): by the test of the model's verdicts or by the neighbours'
        own test, each at the same threshold (:meth:`verdict`,
        :meth:`neighbour_verdict`), or its sampling noise alone would flag
        clean sets.
        """
        return result.ideal is not None and ideal_sorts(result.ideal, alpha=self.alpha, n_tests=self.n_tests)

    def ideal_leaking(self) -> list[DatasetResult]:
        """The sanity sets whose ideal observer sorts them above chance: the pipeline leaks there."""
        return [r for r in self.datasets if r.sanity and self.ideal_sorts(r)]


def ideal_sorts(ideal: leaks.IdealObserver, *, alpha: float = ALPHA, n_tests: int = 1) -> bool:
    """Whether an ideal observer sorts its set above chance (see :meth:`Verdicts.ideal_sorts`)."""
    if ideal.p_value is None:
        return (
            ideal.exact_accuracy > ideal.chance + _IDEAL_MARGIN
            or ideal.kendall_tau > _IDEAL_MARGIN
            or ideal.neighbour_share > metrics.chance(ideal.n_chunks).neighbour_share + _IDEAL_MARGIN
        )
    return any(
        metrics.verdict(p_value, alpha=alpha, n_tests=n_tests) == "above_chance"
        for p_value in (ideal.p_value, ideal.neighbour_p_value)
        if p_value is not None
    )


def format_p_value(p_value: float) -> str:
    """A p-value in 2 significant digits; one that underflowed to 0 as ``"< 1e-300"``, not a false ``"0"``."""
    return "< 1e-300" if p_value < 1e-300 else f"{p_value:.2g}"


def p_text(p_value: float) -> str:
    """``"p=3.1e-12"``, or ``"p < 1e-300"`` where it underflowed."""
    text = format_p_value(p_value)
    return f"p {text}" if text.startswith("<") else f"p={text}"


def tau_and_p(scores: metrics.DecodingScores) -> str:
    """What a verdict rests on, for one decoding's scores: ``"Kendall tau 0.214, p=3.1e-12"`` (or exact order)."""
    statistic = deciding_statistic(scores)
    name = "Kendall tau" if statistic == "kendall_tau" else "exact order"
    return f"{name} {getattr(scores, statistic).value:.3f}, {p_text(scores.p_value)}"


def neighbours_and_p(scores: metrics.DecodingScores, n_chunks: int) -> str:
    """What the neighbours' test rests on: ``"true neighbours found 0.273 (chance 0.100), p=2.1e-05"``."""
    chance = metrics.chance(n_chunks).neighbour_share
    return f"true neighbours found {scores.neighbour_share.value:.3f} (chance {chance:.3f}), {p_text(scores.neighbour_p_value)}"


def deciding_statistic(scores: metrics.DecodingScores) -> str:
    """``"kendall_tau"`` or ``"exact_accuracy"``: whose test gave one decoding's verdict p-value (the smaller)."""
    return "kendall_tau" if scores.tau_p_value <= scores.exact_p_value else "exact_accuracy"
