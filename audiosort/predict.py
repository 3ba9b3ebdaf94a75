"""A sorting model's position scores for puzzles: what eval, audit and listen decode.

Most sorter heads output position log-probabilities ``(B, n, n)``, row i over
the temporal positions of the chunk in slot i, and are decoded row by row or
by assignment (:func:`audiosort.decoding.decode`). The successor head outputs
"slot j right after slot i" logits ``(B, n + 1, n + 1)`` instead (node n is the
puzzle's edge, :class:`audiosort.models.layers.SuccessorLogits`); its order is
the best Hamiltonian path through them, found by the search that decodes the
continuity baseline (:func:`audiosort.decoding.best_paths`), and it is returned
as certain position scores, which every decoding reads back as that order.
Which applies is the ``decode`` of the model's head
(:func:`audiosort.heads.head_of`).

Example
-------
>>> scores = position_scores(model, puzzles.chunks, batch_size=256)  # doctest: +SKIP
>>> predicted = decoding.decode(scores, method="hungarian")  # doctest: +SKIP
"""

from __future__ import annotations

import keras
import numpy as np

from audiosort import decoding, metrics
from audiosort.heads import head_of


def position_scores(model: keras.Model, chunks: np.ndarray, *, batch_size: int = 256, what: str = "these puzzles") -> np.ndarray:
    """Score puzzles with a sorting model, as position log-probabilities ready to decode.

    Parameters
    ----------
    model : keras.Model
        A sorting model of :func:`audiosort.models.build_model` (or loaded from a run).
    chunks : np.ndarray [shape=(B, n, L), dtype=int16]
        The puzzles' chunks, slot by slot.
    batch_size : int > 0
        Puzzles per predict batch.
    what : str
        What is scored, for error messages.

    Returns
    -------
    np.ndarray [shape=(B, n, n), dtype=float64]
        Finite log-probabilities; ``[b, i, j]`` scores slot i at position j.

    Raises
    ------
    InputError
        NaN scores: the model's weights are broken.
    """
    return to_position_scores(model, model.predict(chunks, batch_size=batch_size, verbose=0), what=what)


def to_position_scores(model: keras.Model, outputs: np.ndarray, *, what: str = "these puzzles") -> np.ndarray:
    """What ``model`` output for some puzzles, as finite position log-probabilities ``(B, n, n)``.

    The outputs, with -inf clipped (:func:`audiosort.decoding.finite_scores`),
    go through the ``decode`` of the model's head: position log-probabilities
    pass through, successor logits ``(B, n + 1, n + 1)`` become the certain
    scores of their best path (:func:`audiosort.decoding.best_successor_paths`).
    Raises InputError on NaN, as :func:`position_scores`.
    """
    return head_of(model).decode(decoding.finite_scores(outputs, what=what))


def decodings_of(model: keras.Model) -> tuple[str, ...]:
    """How ``model``'s orders are decoded, the names eval and training give them, read from its head's entry.

    ``("argmax", "hungarian")`` for a head that outputs position
    log-probabilities (:data:`audiosort.decoding.DECODINGS`); ``("path",)`` for
    one that outputs successors, whose order is its best path
    (:data:`audiosort.metrics.PATH_DECODING`).
    """
    return (metrics.PATH_DECODING,) if head_of(model).outputs == "successors" else decoding.DECODINGS


def score_predictions(model: keras.Model, scores: np.ndarray, order: np.ndarray) -> metrics.PuzzleScores:
    """Score ``model``'s position scores (:func:`to_position_scores`) against the true ``order`` (B, n), per decoding it has.

    A successor head's scores are certain (one order), scored once, as ``path``
    (:func:`audiosort.metrics.score_orders`); position scores by every one of
    :data:`audiosort.decoding.DECODINGS` (:func:`audiosort.metrics.score_puzzles`).
    """
    if decodings_of(model) == (metrics.PATH_DECODING,):
        return metrics.score_orders(decoding.decode(scores, method="hungarian"), order)
    return metrics.score_puzzles(scores, order)
