"""Score a model's predictions on a dataset and judge them against chance.

Shared by ``audiosort eval`` and ``audiosort audit``. :func:`score_dataset`
runs a model on one set of puzzles and scores it
(:func:`audiosort.metrics.score_puzzles`: accuracies with 95% intervals,
chance, the one-sided binomial p-value of the exact-order count against 1/n!),
with every no-learning baseline of :mod:`audiosort.baselines` beside it where
asked. :class:`Verdicts` turns a family of scored datasets into verdicts at
alpha 0.01, Bonferroni corrected over the datasets.

A dataset's verdict is that of the decoding that gives its order
(:attr:`audiosort.metrics.PuzzleScores.verdict_decoding`): hungarian for
position scores, path for a successor head (and the continuity baseline),
whose order is the best path through its join scores and which has no other
decoding. Whenever argmax decodes a puzzle to a permutation, that permutation
maximizes the summed scores, so argmax's exact-order count never exceeds
hungarian's (up to ties) and its p-value is never smaller. The two decodings
are one test, not two, and correcting over both would only cost power. Every
decoding still carries its own verdict at the same threshold.

The model "beats" a baseline where a one-sided exact McNemar test
(:func:`audiosort.metrics.mcnemar_p_value`) that it gets the exact order right
more often on the same puzzles (each in its order decoding) is below the same threshold. A
baseline decides nothing: a baseline that sorts a sanity set says the audio has
an order to find, not that the model found it.
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
# An ideal observer this far above chance (exact order) sorts its set: below it, a set at chance proves
# the pipeline clean.
_IDEAL_MARGIN = 0.01


@dataclass(frozen=True)
class BaselineResult:
    """A no-learning baseline scored on a dataset's puzzles, and how the model compares.

    Attributes
    ----------
    scores : metrics.PuzzleScores
        The baseline's order, scored as the decoding that found it
        (:data:`audiosort.baselines.DECODING`).
    model_better_p_value : float in [0, 1]
        One-sided exact McNemar test that the model's order decoding gets
        the exact order right on more of the same puzzles than the baseline's.
    """

    scores: metrics.PuzzleScores
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
        model_right = metrics.exact_correct(predicted, order)
        for baseline_name, baseline in baselines.BASELINES.items():
            baseline_order = decoding.decode(baseline(puzzles.chunks, sample_rate=sample_rate), method="hungarian")
            scored_baselines[baseline_name] = BaselineResult(
                metrics.score_orders(baseline_order, order, decoding=baselines.DECODING),
                metrics.mcnemar_p_value(model_right, metrics.exact_correct(baseline_order, order)),
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
        scores = result.scores.verdict_scores if decoding is None else result.scores.decodings[decoding]
        return metrics.verdict(scores.p_value, alpha=self.alpha, n_tests=self.n_tests)

    def model_beats(self, baseline: BaselineResult) -> bool:
        """Whether the model sorts more puzzles exactly than ``baseline`` (McNemar, same threshold as the verdicts)."""
        return baseline.model_better_p_value < self.alpha / self.n_tests

    def leaking(self) -> list[DatasetResult]:
        """The sanity sets the model sorts above chance."""
        return [r for r in self.datasets if r.sanity and self.verdict(r) == "above_chance"]

    def problems(self) -> list[str]:
        """One line per sanity set sorted above chance, e.g. ``"tone sorted above chance (p=3.1e-12)"``."""
        return [f"{r.name} sorted above chance (p={r.scores.verdict_scores.p_value:.2g})" for r in self.leaking()]

    @property
    def exit_code(self) -> int:
        """1 if any sanity set is sorted above chance, else 0."""
        return 1 if self.leaking() else 0

    def ideal_sorts(self, result: DatasetResult) -> bool:
        """Whether the set's ideal observer sorts it above chance (exact order).

        By more than a margin (0.01), and for a Monte Carlo estimate (brown
        noise, on the set's own puzzles) also by the binomial test of the
        verdicts: otherwise its sampling noise alone (about 0.012 for 1000
        puzzles of 3) would flag clean sets.
        """
        ideal = result.ideal
        if ideal is None or ideal.exact_accuracy <= ideal.chance + _IDEAL_MARGIN:
            return False
        if ideal.monte_carlo_puzzles is None:
            return True
        right = round(ideal.exact_accuracy * ideal.monte_carlo_puzzles)
        p_value = metrics.binomial_p_value(right, ideal.monte_carlo_puzzles, ideal.chance)
        return metrics.verdict(p_value, alpha=self.alpha, n_tests=self.n_tests) == "above_chance"

    def ideal_leaking(self) -> list[DatasetResult]:
        """The sanity sets whose ideal observer sorts them above chance: the pipeline leaks there."""
        return [r for r in self.datasets if r.sanity and self.ideal_sorts(r)]
