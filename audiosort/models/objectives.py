"""Loss and training metrics of the sorting task, in keras.ops.

The model outputs row-normalized log-probabilities ``[shape=(B, n, n)]``
(row i: where the chunk in slot i belongs); labels are ``order [shape=(B, n)]``.
Registered under package "audiosort" so a saved, compiled model reloads.
"""

from __future__ import annotations

import keras
from keras import ops


def sorting_loss(sorter_type: str = "mlp") -> keras.losses.Loss:
    """The training loss of a sorter head: ``loss.call(order, log_probs)`` gives ``(B, n)`` terms to average.

    Mean cross-entropy of the rows against ``order`` (log-probs are valid
    logits), plus, for the rank head, the Plackett-Luce likelihood of the
    order (:class:`PlackettLuceLoss`).
    """
    if sorter_type == "rank":
        return PlackettLuceLoss()
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


@keras.saving.register_keras_serializable(package="audiosort")
def exact_order_accuracy(order, log_probs):
    """1.0 per puzzle whose every row's argmax is its true position, else 0.0: ``(B,)``."""
    predicted = ops.argmax(log_probs, axis=-1)
    right = ops.equal(predicted, ops.cast(order, predicted.dtype))
    return ops.cast(ops.all(right, axis=-1), "float32")


def sorting_metrics() -> list:
    """Position accuracy (per slot, argmax decoding) and exact-order accuracy (per puzzle)."""
    return [
        keras.metrics.SparseCategoricalAccuracy(name="position_accuracy"),
        keras.metrics.MeanMetricWrapper(exact_order_accuracy, name="exact_accuracy"),
    ]
