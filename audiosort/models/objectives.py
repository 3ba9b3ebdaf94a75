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

import itertools

import keras
import numpy as np
from keras import ops


def row_cross_entropy() -> keras.losses.Loss:
    """The position heads' loss: mean cross-entropy of the rows against ``order`` (log-probs are valid logits)."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, name="row_cross_entropy")


def pairwise_loss(sorter=None) -> keras.losses.Loss:
    """The pairwise head's loss: ``model.sorter.loss`` rows (:func:`row_cross_entropy`) or orders (:class:`OrderLoss`)."""
    return OrderLoss() if sorter is not None and sorter.loss == "orders" else row_cross_entropy()


@keras.saving.register_keras_serializable(package="audiosort")
class OrderLoss(keras.losses.Loss):
    """-log P(true order) under the softmax over all n! orders, for the pairwise head.

    The row cross-entropy scores each slot's position marginal on its own; this
    scores the whole order, so probability the head puts on orders that get
    some slots right but the order wrong is not rewarded.

    ``call(order (B, n) int, outputs (B, n, n + n!))``: the head's output with
    the order log-probabilities in columns n onwards, in the order of
    ``itertools.permutations(range(n))`` (each a sequence of slots;
    :class:`audiosort.models.layers.PermutationMarginals` ``with_orders``).
    Returns ``(B, 1)`` float32.
    """

    def __init__(self, name="order_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        outputs = ops.cast(y_pred, "float32")
        n = outputs.shape[1]
        orders = np.array(list(itertools.permutations(range(n))), dtype=np.int32)  # (n!, n) slots by position
        log_p = outputs[:, 0, n:]  # (B, n!)
        slots_by_position = ops.cast(ops.argsort(ops.cast(y_true, "int32"), axis=-1), "int32")  # (B, n)
        is_true = ops.all(ops.equal(slots_by_position[:, None, :], orders[None]), axis=-1)  # (B, n!)
        return -ops.sum(ops.where(is_true, log_p, 0.0), axis=-1, keepdims=True)


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


def _positions(log_probs):
    """The position columns ``(B, n, n)`` of a position head's output (the pairwise head may add order columns)."""
    n = log_probs.shape[1]
    return log_probs if n is None else log_probs[:, :, :n]


@keras.saving.register_keras_serializable(package="audiosort")
def exact_order_accuracy(order, log_probs):
    """1.0 per puzzle whose every row's argmax is its true position, else 0.0: ``(B,)``."""
    predicted = ops.argmax(_positions(log_probs), axis=-1)
    right = ops.equal(predicted, ops.cast(order, predicted.dtype))
    return ops.cast(ops.all(right, axis=-1), "float32")


@keras.saving.register_keras_serializable(package="audiosort")
def position_accuracy(order, log_probs):
    """Fraction of the n slots whose row argmax is their true position, per puzzle: ``(B,)``."""
    predicted = ops.argmax(_positions(log_probs), axis=-1)
    return ops.mean(ops.cast(ops.equal(predicted, ops.cast(order, predicted.dtype)), "float32"), axis=-1)


def position_metrics() -> dict:
    """The position heads' metrics: position accuracy (per slot, argmax decoding) and exact-order accuracy."""
    return {"position_accuracy": position_accuracy, "exact_accuracy": exact_order_accuracy}


def successor_metrics() -> dict:
    """The successor head's: successor accuracy (per row) and exact order (every row's argmax right)."""
    return {"successor_accuracy": successor_row_accuracy, "exact_accuracy": successor_exact_accuracy}


def same_puzzle_contrastive_loss(embeddings, temperature: float):
    """Supervised-contrastive loss over the chunk embeddings of a batch, the chunks of one puzzle as positives.

    Every one of the B * n chunks is an anchor; the other n - 1 chunks of its
    puzzle (one track) are its positives, every chunk of the other puzzles its
    negatives (Khosla et al. 2020, "Supervised Contrastive Learning", eq. 2,
    L_out). Embeddings are compared by cosine similarity divided by
    ``temperature``. Puzzles carry no track label: a puzzle cut from the same
    track as another in the batch counts as its negative (a false one). The
    sampler option ``model.contrastive.distinct_tracks``
    (:func:`audiosort.data.puzzles.draw_starts`) draws every puzzle of a
    training batch from another track, so that no negative is of the
    anchor's track; off, the loss is the standard in-batch one, false
    negatives included.

    Parameters
    ----------
    embeddings : tensor [shape=(B, n, D), float]
        The encoder's embedding of every chunk, by puzzle and slot; B >= 2, n >= 2.
    temperature : float > 0
        Of the softmax over similarities.

    Returns
    -------
    loss : tensor [shape=(), float32]
        Mean over anchors of minus the mean log-probability, under the
        softmax over all other chunks, of each of its positives; in nats.
        ``log(B * n - 1)`` when every embedding is the same; at least
        ``log(n - 1)``, reached when each puzzle's chunks coincide and the
        puzzles are far apart.
    """
    embeddings = ops.cast(embeddings, "float32")
    n_chunks = ops.shape(embeddings)[1]
    flat = ops.reshape(embeddings, (-1, embeddings.shape[-1]))  # (B * n, D), puzzle by puzzle
    # The epsilon keeps an all-zero embedding (a ReLU encoder's dead output) finite instead of NaN.
    unit = flat / ops.sqrt(ops.sum(ops.square(flat), axis=-1, keepdims=True) + 1e-12)
    similarity = ops.matmul(unit, ops.transpose(unit)) / temperature  # (B * n, B * n)
    count = ops.shape(flat)[0]
    puzzle = ops.arange(count) // n_chunks
    itself = ops.eye(count, dtype="bool")
    same_puzzle = ops.logical_and(ops.equal(puzzle[:, None], puzzle[None, :]), ops.logical_not(itself))
    # An anchor is never its own candidate: -1e9, not -inf, so that 0 * it stays 0 below.
    logits = ops.where(itself, -1e9, similarity)
    log_p = logits - ops.logsumexp(logits, axis=-1, keepdims=True)
    positives = ops.sum(ops.where(same_puzzle, log_p, 0.0), axis=-1) / ops.cast(n_chunks - 1, "float32")
    return -ops.mean(positives)


@keras.saving.register_keras_serializable(package="audiosort")
class SamePuzzleContrast(keras.layers.Layer):
    """Identity on the chunk embeddings ``(B, n, D)`` that, in training only, adds the same-track contrastive loss.

    ``weight * same_puzzle_contrastive_loss(z, temperature)``
    (:func:`same_puzzle_contrastive_loss`) joins the model's losses when the
    model is called with ``training=True`` (``fit``'s steps); evaluation and
    prediction neither compute nor report it, and the output is the input, so
    a trained model's outputs and val loss are what they would be without it.
    ``z`` is the embeddings, or with ``projection_units`` their image under a
    two-layer MLP (Chen et al. 2020, SimCLR): the invariance the loss asks for
    is then learned in the projection, and the embedding keeps what the
    projection discards (issue 27: the loss on the embeddings themselves cost
    tempo and sorting).

    Parameters
    ----------
    weight : float > 0
        Factor of the loss in the training objective (``model.contrastive.weight``).
    temperature : float > 0
        ``model.contrastive.temperature``.
    projection_units : int >= 0
        Width of the projection head; 0 compares the embeddings themselves.
    """

    def __init__(self, weight: float, temperature: float, projection_units: int = 0, **kwargs):
        super().__init__(**kwargs)
        if not weight > 0 or not temperature > 0 or projection_units < 0:
            raise ValueError(
                f"SamePuzzleContrast: weight = {weight!r} and temperature = {temperature!r} must be > 0, "
                f"projection_units = {projection_units!r} >= 0"
            )
        self.weight = float(weight)
        self.temperature = float(temperature)
        self.projection_units = int(projection_units)
        if self.projection_units:
            self.projection_hidden = keras.layers.Dense(self.projection_units, activation="relu", name="projection_hidden")
            self.projection = keras.layers.Dense(self.projection_units, name="projection")

    def build(self, input_shape):
        if self.projection_units:
            self.projection_hidden.build((None, input_shape[-1]))
            self.projection.build((None, self.projection_units))

    def call(self, embeddings, training=None):
        if training:
            projected = embeddings
            if self.projection_units:
                projected = self.projection(self.projection_hidden(embeddings))
            self.add_loss(self.weight * same_puzzle_contrastive_loss(projected, self.temperature))
        return embeddings

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(weight=self.weight, temperature=self.temperature, projection_units=self.projection_units)
        return config
