"""Losses and training metrics of the sorter heads, in keras.ops.

The model outputs row-normalized log-probabilities ``[shape=(B, n, n)]``
(row i: where the chunk in slot i belongs), or, for the successor head,
"what follows what" logits ``[shape=(B, n + 1, n + 1)]``; labels are
``order [shape=(B, n)]``. Which head trains with which is its entry in
:data:`audiosort.heads.HEADS`; every metric gives one value per puzzle,
``(B,)``, so that a multi-worker loop can sum them as ``fit`` averages them.
Registered under package "audiosort" so a saved, compiled model reloads.
"""

from __future__ import annotations

import keras
from keras import ops


def row_cross_entropy() -> keras.losses.Loss:
    """The position heads' loss: mean cross-entropy of the rows against ``order`` (log-probs are valid logits)."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, name="row_cross_entropy")


@keras.saving.register_keras_serializable(package="audiosort")
class PlackettLuceLoss(keras.losses.Loss):
    """ListMLE for the rank head: the negative log-likelihood of the true order under Plackett-Luce, plus row CE.

    The rank head's rows are a unit-width peak at each slot's time t_i
    (:class:`audiosort.models.layers.TimePositionScores`), so
    ``t_i = log_probs[b, i, 1] - log_probs[b, i, 0] + 1/2``. Plackett-Luce
    picks the latest chunk first with probability softmax(t), then the latest
    of the rest, and so on (Xia et al. 2008, "Listwise approach to learning to
    rank"); the term for position k is ``logsumexp(t of positions <= k) -
    t of position k``. Nothing is enumerated: O(n**2) per puzzle. The row
    cross-entropy added to it keeps the times on the scale of positions, so
    that argmax decoding and the probabilities read as positions too.

    ``call(order (B, n) int, log_probs (B, n, n))`` returns ``(B, n)``
    float32: Plackett-Luce term of position k plus cross-entropy of row k.
    """

    def __init__(self, name="plackett_luce", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        log_probs = ops.cast(y_pred, "float32")
        order = ops.cast(y_true, "int32")
        time = log_probs[..., 1] - log_probs[..., 0]  # + 1/2, which no softmax sees
        by_position = ops.take_along_axis(time, ops.argsort(order, axis=-1), axis=-1)  # (B, n): time of position k
        n = ops.shape(by_position)[1]
        earlier_or_same = ops.arange(n)[None, :] <= ops.arange(n)[:, None]  # [k, m]: m <= k
        candidates = ops.where(earlier_or_same[None], by_position[:, None, :], -1e9)
        plackett_luce = ops.logsumexp(candidates, axis=-1) - by_position
        row_cross_entropy = -ops.squeeze(ops.take_along_axis(log_probs, order[..., None], axis=-1), axis=-1)
        return plackett_luce + row_cross_entropy


def successor_targets(order):
    """The true neighbours of every node of the successor head's ``(n + 1) x (n + 1)`` matrix.

    Node n is the puzzle's edge (:class:`audiosort.models.layers.SuccessorLogits`).

    Parameters
    ----------
    order : tensor [shape=(B, n), int]
        Temporal position of the chunk in each slot.

    Returns
    -------
    following : tensor [shape=(B, n + 1), int32]
        ``following[b, i]``: the slot right after slot i (n after the last
        one); ``following[b, n]`` the first slot.
    preceding : tensor [shape=(B, n + 1), int32]
        ``preceding[b, j]``: the slot right before slot j (n before the first
        one); ``preceding[b, n]`` the last slot.
    """
    order = ops.cast(order, "int32")
    slot_at = ops.cast(ops.argsort(order, axis=-1), "int32")  # (B, n): slot at position k
    edge = ops.full_like(slot_at[:, :1], ops.shape(order)[1])
    after = ops.concatenate([slot_at, edge], axis=1)  # position k + 1 -> slot, n past the end
    before = ops.concatenate([edge, slot_at], axis=1)  # position k - 1 (shifted by one) -> slot, n before the start
    following = ops.concatenate([ops.take_along_axis(after, order + 1, axis=1), slot_at[:, :1]], axis=1)
    preceding = ops.concatenate([ops.take_along_axis(before, order, axis=1), slot_at[:, -1:]], axis=1)
    return following, preceding


@keras.saving.register_keras_serializable(package="audiosort")
class SuccessorLoss(keras.losses.Loss):
    """The successor head's loss: cross-entropy of every row and every column of its logits.

    Row i of the ``(n + 1) x (n + 1)`` logits is a softmax over what follows
    slot i, column j one over what precedes slot j (node n is the puzzle's
    edge, see :func:`successor_targets`). Each of the 2 (n + 1) softmaxes has
    one right answer, so nothing is enumerated and n may be large; the column
    terms make two slots compete for one successor, as they do in an order.

    ``call(order (B, n) int, logits (B, n + 1, n + 1))`` returns ``(B, n + 1)``
    float32: the mean of row k's and column k's cross-entropy, in nats.
    """

    def __init__(self, name="successor_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        logits = ops.cast(y_pred, "float32")
        following, preceding = successor_targets(y_true)
        rows = -ops.take_along_axis(ops.log_softmax(logits, axis=-1), following[:, :, None], axis=2)[:, :, 0]
        columns = -ops.take_along_axis(ops.log_softmax(logits, axis=-2), preceding[:, None, :], axis=1)[:, 0, :]
        return 0.5 * (rows + columns)


def _successor_rows_right(order, logits):
    """Whether each of the n + 1 rows' argmax is the true successor: ``(B, n + 1)`` bool."""
    following, _ = successor_targets(order)
    return ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), following)


@keras.saving.register_keras_serializable(package="audiosort")
def successor_row_accuracy(order, logits):
    """Fraction of the n + 1 rows whose argmax is the true successor, per puzzle: ``(B,)``."""
    return ops.mean(ops.cast(_successor_rows_right(order, logits), "float32"), axis=-1)


@keras.saving.register_keras_serializable(package="audiosort")
def successor_exact_accuracy(order, logits):
    """1.0 per puzzle whose every row's argmax is its true successor (the whole order follows), else 0.0: ``(B,)``."""
    return ops.cast(ops.all(_successor_rows_right(order, logits), axis=-1), "float32")


@keras.saving.register_keras_serializable(package="audiosort")
def exact_order_accuracy(order, log_probs):
    """1.0 per puzzle whose every row's argmax is its true position, else 0.0: ``(B,)``."""
    predicted = ops.argmax(log_probs, axis=-1)
    right = ops.equal(predicted, ops.cast(order, predicted.dtype))
    return ops.cast(ops.all(right, axis=-1), "float32")


@keras.saving.register_keras_serializable(package="audiosort")
def position_accuracy(order, log_probs):
    """Fraction of the n slots whose row argmax is their true position, per puzzle: ``(B,)``."""
    predicted = ops.argmax(log_probs, axis=-1)
    return ops.mean(ops.cast(ops.equal(predicted, ops.cast(order, predicted.dtype)), "float32"), axis=-1)


def position_metrics() -> dict:
    """The position heads' metrics: position accuracy (per slot, argmax decoding) and exact-order accuracy."""
    return {"position_accuracy": position_accuracy, "exact_accuracy": exact_order_accuracy}


def successor_metrics() -> dict:
    """The successor head's: successor accuracy (per row) and exact order (every row's argmax right)."""
    return {"successor_accuracy": successor_row_accuracy, "exact_accuracy": successor_exact_accuracy}
