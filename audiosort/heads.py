"""Sorter heads: one registry entry per head, the whole of its contract.

``HEADS`` maps each name users type in ``model.sorter.type`` to a :class:`Head`:
how the head is built, its loss and metrics, what it outputs, which n it takes,
how its outputs are decoded, the ``model.sorter`` keys it alone reads and, for
a head that scores joins, how to ask it for them. Everything that depends on
the head reads its entry and nothing else: config checks names, normalizations
and keys against it, :func:`audiosort.models.build_model` builds from it and
names the model (and its output layer) after it, training compiles with its
loss and metrics (on one machine and on a multi-worker cluster alike),
:mod:`audiosort.predict` decodes a saved model by the entry its name gives, and
``audiosort dream --mode continue`` reads its join scores. A new head is one entry here (a test may add one
for itself), with its builder beside the others in
:mod:`audiosort.models.sorters`.

The entries' Keras parts are imported on first use, so this module (and
config, which reads it) stays free of Keras and TensorFlow.

Example
-------
>>> HEADS["successor"].outputs, HEADS["successor"].any_n, HEADS["attention"].max_n
('successors', True, 7)
>>> model_name("rank"), head_name("audiosort_rank")
('audiosort_rank', 'rank')
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from audiosort.errors import ConfigError

OUTPUTS = ("positions", "successors")
# The name of a model's output layer, by what its head outputs (build_model names it; a saved
# model's head is known by it where the model's name says none).
OUTPUT_LAYERS = {"positions": "log_probs", "successors": "successor_logits"}
# The model.sorter keys that only the heads declaring them read (Head.keys); a value other than its
# default on any other head is a config error.
HEAD_KEYS = ("seam", "mismatch", "loss", "cross_similarity")
# build_model's name for a model is this prefix plus its head's name: how a saved model says its head.
MODEL_NAME_PREFIX = "audiosort_"


@dataclass(frozen=True)
class Head:
    """One sorter head's contract with the rest of audiosort.

    Attributes
    ----------
    build : callable
        ``build(embeddings, cfg, *, n_chunks)``: Keras tensor ``(B, n, D)``,
        :class:`audiosort.config.SorterConfig` and n (None: any n) -> the head's
        raw output tensor. ``positions`` heads give ``(B, n, n)`` scores, row i
        over the positions of slot i, which ``model.sorter.normalization``
        normalizes after the head; ``successors`` heads give ``(B, n + 1, n + 1)``
        logits, left as they are.
    loss : callable
        ``loss(sorter=None)``: the :class:`audiosort.config.SorterConfig` the
        model was built from (None: its defaults) -> a ``keras.losses.Loss``
        whose ``call(order (B, n), outputs)`` gives per-puzzle terms ``(B, k)``;
        training minimizes their mean.
    metrics : callable
        ``metrics()`` -> ``{name: fn}``, ``fn(order (B, n), outputs) -> (B,)``
        float32, one value per puzzle; training logs each name's mean over the
        puzzles seen (val: ``val_<name>``).
    outputs : str
        ``"positions"`` (log-probabilities ``(B, n, n)``) or ``"successors"``
        (logits ``(B, n + 1, n + 1)``, node n the puzzle's edge).
    decode : callable
        ``decode(outputs)``: finite outputs as numpy -> position scores
        ``(B, n, n)`` that :func:`audiosort.decoding.decode` reads. Default:
        positions pass through; successor logits become the certain scores of
        their best path (:func:`audiosort.decoding.best_successor_paths`).
    any_n : bool
        No weight is sized by n: one model takes puzzles of any n, and n may
        grow during training (``train.n_chunks_schedule``).
    max_n : int >= 2 or None
        The largest n the head is built for; None for no limit.
    max_n_reason : str
        Why there is a ``max_n``, for the error message.
    softmax_only : bool
        Its loss needs the rows normalized by softmax (or it normalizes its
        own outputs), so ``model.sorter.normalization`` must be softmax.
    keys : tuple of str
        The keys of :data:`HEAD_KEYS` it reads (``model.sorter.<key>``). With
        ``"seam"`` it scores joins and takes the learned seam term: ``build``
        then also gets ``edges=``, the flush edge spectra ``(B, n, 2, bands)``
        of :class:`audiosort.models.layers.EdgeLogMel`.
    join_scores : callable or None
        ``join_scores(sorter, embeddings)``: a sorter it built and embeddings
        ``(B, n, D)`` of any n -> its "slot j right after slot i" ``(B, n, n, 1)``,
        "slot i starts" ``(B, n, 1)`` and "slot i ends" ``(B, n, 1)`` scores,
        without the seam term: what ``audiosort dream --mode continue`` asks it
        about a chunk A and a chunk B. None: it scores no joins.
    """

    build: Callable
    loss: Callable
    metrics: Callable
    outputs: str = "positions"
    decode: Callable | None = None
    any_n: bool = False
    max_n: int | None = None
    max_n_reason: str = ""
    softmax_only: bool = False
    keys: tuple[str, ...] = ()
    join_scores: Callable | None = None

    def __post_init__(self):
        if self.outputs not in OUTPUTS:
            raise ValueError(f"Head.outputs = {self.outputs!r} must be one of {OUTPUTS}")
        if self.max_n is not None and (self.any_n or self.max_n < 2):
            raise ValueError(f"Head.max_n = {self.max_n!r} must be >= 2, and None for a head that takes any n")
        if not set(self.keys) <= set(HEAD_KEYS):
            raise ValueError(f"Head.keys = {self.keys!r} must be among {HEAD_KEYS}")
        if self.decode is None:
            object.__setattr__(self, "decode", _read_positions if self.outputs == "positions" else _best_successor_path)

    @property
    def seam(self) -> bool:
        """It takes the learned seam term (``model.sorter.seam``)."""
        return "seam" in self.keys

    @property
    def output_layer(self) -> str:
        """The name of the model's output layer (:data:`OUTPUT_LAYERS`)."""
        return OUTPUT_LAYERS[self.outputs]

    def compile_metrics(self) -> list:
        """Its metrics as Keras metrics for ``model.compile``: each per-puzzle value averaged over the puzzles."""
        import keras

        return [keras.metrics.MeanMetricWrapper(fn, name=name) for name, fn in self.metrics().items()]


def _lazy(module: str, name: str) -> Callable:
    """``module.name`` called through, imported on the first call (Keras loads only when a model is built)."""

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__qualname__ = call.__name__ = f"{module}.{name}"
    return call


def _without_sorter(loss: Callable) -> Callable:
    """A loss entry for a head whose loss no ``model.sorter`` key changes."""

    def call(sorter=None):
        return loss()

    call.__qualname__ = call.__name__ = loss.__name__
    return call


def _read_positions(scores):
    """Position log-probabilities are already position scores; columns after the n-th (order log-probabilities) go."""
    return scores[:, :, : scores.shape[1]]


def _best_successor_path(logits):
    """Successor logits ``(B, n + 1, n + 1)`` -> the certain position scores of their best path."""
    from audiosort import decoding

    return decoding.certain_scores(decoding.positions_of(decoding.best_successor_paths(logits)))


_SORTERS = "audiosort.models.sorters"
_OBJECTIVES = "audiosort.models.objectives"
_POSITION_LOSS = _without_sorter(_lazy(_OBJECTIVES, "row_cross_entropy"))
_POSITION_METRICS = _lazy(_OBJECTIVES, "position_metrics")
_JOIN_SCORES = _lazy(_SORTERS, "join_scores")
# The attention head names each slot's position among n by classification, which stayed at uniform
# output at n = 20 (docs/many-chunks.md); above this n, rank and successor are the heads to use.
ATTENTION_MAX_CHUNKS = 7
# PermutationMarginals enumerates all n! orders (its MAX_ENUMERATED_CHUNKS).
PAIRWISE_MAX_CHUNKS = 7

HEADS: dict[str, Head] = {
    "mlp": Head(build=_lazy(_SORTERS, "build_mlp"), loss=_POSITION_LOSS, metrics=_POSITION_METRICS),
    "attention": Head(
        build=_lazy(_SORTERS, "build_attention"), loss=_POSITION_LOSS, metrics=_POSITION_METRICS,
        max_n=ATTENTION_MAX_CHUNKS,
        max_n_reason="stays at uniform output on many chunks (it must count the slots before each one)",
    ),
    "pairwise": Head(
        build=_lazy(_SORTERS, "build_pairwise"), loss=_lazy(_OBJECTIVES, "pairwise_loss"), metrics=_POSITION_METRICS,
        max_n=PAIRWISE_MAX_CHUNKS, max_n_reason="enumerates all n! orders", keys=("seam", "mismatch", "loss", "cross_similarity"),
        join_scores=_JOIN_SCORES,
    ),
    "precedence": Head(build=_lazy(_SORTERS, "build_precedence"), loss=_POSITION_LOSS, metrics=_POSITION_METRICS),
    # Its loss reads the times back from row log-softmax differences, which Sinkhorn would change.
    "rank": Head(
        build=_lazy(_SORTERS, "build_rank"), loss=_without_sorter(_lazy(_OBJECTIVES, "PlackettLuceLoss")), metrics=_POSITION_METRICS,
        any_n=True, softmax_only=True,
    ),
    # Its loss normalizes the rows and the columns of its logits itself.
    "successor": Head(
        build=_lazy(_SORTERS, "build_successor"), loss=_without_sorter(_lazy(_OBJECTIVES, "SuccessorLoss")),
        metrics=_lazy(_OBJECTIVES, "successor_metrics"), outputs="successors", any_n=True, softmax_only=True,
        keys=("seam",), join_scores=_JOIN_SCORES,
    ),
}


def get_head(name: str) -> Head:
    """The entry of head ``name``; ConfigError naming the valid ones if there is none."""
    if name not in HEADS:
        raise ConfigError(f"model.sorter.type = {name!r} is not one of {sorted(HEADS)}")
    return HEADS[name]


def heads_reading(key: str) -> list[str]:
    """The heads that declare ``model.sorter.<key>`` (one of :data:`HEAD_KEYS`), sorted by name."""
    return sorted(name for name, head in HEADS.items() if key in head.keys)


def any_n_heads() -> list[str]:
    """The heads that take any n, sorted by name."""
    return sorted(name for name, head in HEADS.items() if head.any_n)


def model_name(head: str) -> str:
    """The name :func:`audiosort.models.build_model` gives a model with head ``head``."""
    return MODEL_NAME_PREFIX + head


def head_name(model_name: str) -> str | None:
    """The head a model's name says it has; None for a name that names none."""
    if model_name.startswith(MODEL_NAME_PREFIX) and model_name[len(MODEL_NAME_PREFIX):] in HEADS:
        return model_name[len(MODEL_NAME_PREFIX):]
    return None


def head_of(model) -> Head:
    """The entry of a sorting model's head, read from its name (see :func:`model_name`).

    A model named by no head outputs positions: a stand-in with only a
    ``predict``, or one saved before models were named after their head (its
    successor head then named its output layer as now: :data:`OUTPUT_LAYERS`).
    """
    name = head_name(getattr(model, "name", ""))
    if name is not None:
        return HEADS[name]
    layers = getattr(model, "layers", None)
    return HEADS["successor" if layers and layers[-1].name == OUTPUT_LAYERS["successors"] else "mlp"]
