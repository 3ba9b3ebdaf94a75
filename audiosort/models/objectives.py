"""Loss and training metrics of the sorting task, in keras.ops.

The model outputs row-normalized log-probabilities ``[shape=(B, n, n)]``
(row i: where the chunk in slot i belongs); labels are ``order [shape=(B, n)]``.
Registered under package "audiosort" so a saved, compiled model reloads.
"""

from __future__ import annotations

import keras
from keras import ops


def sorting_loss() -> keras.losses.Loss:
    """Mean cross-entropy of the rows against ``order`` (log-probs are valid logits)."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, name="row_cross_entropy")


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
