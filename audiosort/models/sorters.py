"""Sorter heads: n chunk embeddings -> an n x n score matrix.

:func:`build_sorter` returns a ``keras.Model`` named "sorter" with input
``[shape=(B, n, D)]`` (one embedding per slot) and output ``[shape=(B, n, n)]``
raw scores, row i over the n temporal positions of the chunk in slot i. The
row normalization (softmax or Sinkhorn) is applied after the head, in
:mod:`audiosort.models.build`. The successor head is the exception: it
outputs "slot j right after slot i" logits ``[shape=(B, n + 1, n + 1)]``,
decoded as the best path (:mod:`audiosort.decoding`). Each ``build_<name>``
here is the builder of one entry of :data:`audiosort.heads.HEADS`, which
holds the rest of that head's contract (loss, metrics, limits on n, decoding).
"""

from __future__ import annotations

import keras
from keras import layers

from audiosort.config import SorterConfig
from audiosort.errors import ConfigError
from audiosort.heads import any_n_heads, get_head
from audiosort.models.layers import (
    CrossSimilarity, ExpectedRankScores, JoinMismatch, PairFeatures, PermutationMarginals, SeamScores, SuccessorLogits, TimePositionScores,
)
from audiosort.models.views import SeamDropout
from audiosort.spectra import EDGE_MELS as SEAM_BANDS

MLP_NARROW_UNITS = 200  # the seed's third sorter layer
ATTENTION_MIN_WIDTH = 64
ATTENTION_MLP_RATIO = 2
# The layers of _join_scores that hold "slot j right after slot i", "slot i starts" and "slot i ends"
# (read again by join_scores, the heads' Head.join_scores).
JOIN_SCORE_LAYERS = ("successor_score", "first_score", "last_score")
# model.sorter.cross_similarity: the projection the frames' cosines are taken in, and the channels of the two
# convolutions that read each pair's similarity image (small: the image is T x T, 6 x 6 for the recipes' encoder).
CROSS_SIMILARITY_UNITS = 32
CROSS_SIMILARITY_FILTERS = 16


def build_sorter(cfg: SorterConfig, *, n_chunks: int, embedding_dim: int, frame_shape: tuple | None = None) -> keras.Model:
    """Build the sorter head named by ``cfg.type``.

    Parameters
    ----------
    cfg : SorterConfig
        ``type`` picks the entry of :data:`audiosort.heads.HEADS`; the other fields size it.
    n_chunks : int >= 2 or None
        Slots per puzzle, n, at most the head's ``max_n``. None builds a head
        for any n (only heads with ``any_n``), for a run whose n grows
        (``train.n_chunks_schedule``).
    embedding_dim : int > 0
        Width D of each chunk embedding.
    frame_shape : tuple (T, C) or None
        With ``cfg.cross_similarity``: frames and channels of each chunk's
        frame features (:func:`audiosort.models.encoders.encoder_with_frames`).

    Returns
    -------
    keras.Model
        Input ``[shape=(B, n_chunks, embedding_dim)]``, and with ``cfg.seam``
        also the edge spectra ``[shape=(B, n_chunks, 2, SEAM_BANDS)]``
        (:class:`audiosort.models.layers.EdgeLogMel` per slot), and with
        ``cfg.cross_similarity`` then the frames ``[shape=(B, n_chunks, T, C)]``;
        output ``[shape=(B, n_chunks, n_chunks)]`` unnormalized scores.

    Raises
    ------
    ConfigError
        Unknown ``cfg.type``; the message lists the valid names. ``n_chunks``
        None for a head whose weights depend on n, or above the head's ``max_n``.
    """
    head = get_head(cfg.type)
    if n_chunks is None and not head.any_n:
        raise ConfigError(
            f"model.sorter.type = {cfg.type!r} is built for one n; a run whose n grows needs one of {any_n_heads()}"
        )
    if n_chunks is not None and n_chunks < 2:
        raise ConfigError(f"n_chunks = {n_chunks!r} must be >= 2")
    if n_chunks is not None and head.max_n is not None and n_chunks > head.max_n:
        raise ConfigError(
            f"model.sorter.type = {cfg.type!r} {head.max_n_reason}: n_chunks must be <= {head.max_n}, "
            f"got {n_chunks}; use {' or '.join(map(repr, any_n_heads()))}"
        )
    embeddings = keras.Input((n_chunks, embedding_dim), name="embeddings")
    if not cfg.seam and not cfg.cross_similarity:
        return keras.Model(embeddings, head.build(embeddings, cfg, n_chunks=n_chunks), name="sorter")
    inputs, extra = [embeddings], {}
    if cfg.seam:
        extra["edges"] = keras.Input((n_chunks, 2, SEAM_BANDS), name="edges")
        inputs.append(extra["edges"])
    if cfg.cross_similarity:
        extra["frames"] = keras.Input((n_chunks, *frame_shape), name="frames")
        inputs.append(extra["frames"])
    return keras.Model(inputs, head.build(embeddings, cfg, n_chunks=n_chunks, **extra), name="sorter")


def build_mlp(embeddings, cfg: SorterConfig, *, n_chunks: int):
    """The seed's head: all n embeddings concatenated, Dense(hidden) x2, Dense(200), Dense(n*n).

    It sees the slots in a fixed order, so it must learn the same sorting rule
    once for every slot.
    """
    x = layers.Flatten(name="concat_slots")(embeddings)
    for i, units in enumerate((cfg.hidden_units, cfg.hidden_units, MLP_NARROW_UNITS)):
        x = layers.Dense(units, use_bias=False, name=f"dense_{i}")(x)
        x = layers.BatchNormalization(name=f"bn_{i}")(x)
        x = layers.ReLU(name=f"relu_{i}")(x)
    x = layers.Dense(n_chunks * n_chunks, name="scores_flat")(x)
    return layers.Reshape((n_chunks, n_chunks), name="scores")(x)


def build_attention(embeddings, cfg: SorterConfig, *, n_chunks: int):
    """Pre-norm transformer over the slots, then a per-slot Dense(n) over positions.

    No position information enters (no positional encoding, no mask), so the
    head is permutation-equivariant: permuting the input slots permutes the
    output rows the same way, and it learns one rule shared by all slots.

    To name its position among n, a slot must count the slots before it, and
    attention averages rather than counts: a weak route at n = 20, where the
    head stayed at uniform output. The rank head keeps this encoder and asks
    it for one scalar per slot instead; the sort does the counting.
    """
    return layers.Dense(n_chunks, name="scores")(_set_encoder(embeddings, cfg))


def build_rank(embeddings, cfg: SorterConfig, *, n_chunks: int | None):
    """The attention head's set encoder, then one scalar "time" per slot; decoding is an argsort of the times.

    Permutation-equivariant and free of n (nothing is sized by it), so one
    model serves any n and n may grow during training. Trained with the
    Plackett-Luce likelihood of the true order (ListMLE, see
    :class:`audiosort.models.objectives.PlackettLuceLoss`); its position
    scores (:class:`TimePositionScores`) are a unit-width peak at the time.
    """
    time = layers.Dense(1, name="time")(_set_encoder(embeddings, cfg))
    return TimePositionScores(name="scores")(layers.Reshape((-1,), name="times")(time))


def _set_encoder(embeddings, cfg: SorterConfig):
    """Pre-norm transformer over the slots, no positional encoding: ``(B, n, D)`` -> ``(B, n, width)``."""
    width = max(ATTENTION_MIN_WIDTH, embeddings.shape[-1])
    key_dim = max(1, width // cfg.attention_heads)
    x = layers.Dense(width, use_bias=False, name="project")(embeddings)
    # The n embeddings of a puzzle share most of their content; LayerNorm alone keeps
    # that shared part and the head sat at uniform output (loss ln n) on music.
    # Batch statistics remove it, as the mlp head's BatchNorm does; they are shared
    # by all slots, so the head stays permutation-equivariant.
    x = layers.BatchNormalization(name="project_bn")(x)
    for i in range(cfg.attention_layers):
        h = layers.LayerNormalization(name=f"block_{i}_attention_norm")(x)
        h = layers.MultiHeadAttention(cfg.attention_heads, key_dim, name=f"block_{i}_attention")(h, h)
        x = layers.Add(name=f"block_{i}_attention_add")([x, h])
        h = layers.LayerNormalization(name=f"block_{i}_mlp_norm")(x)
        h = layers.Dense(ATTENTION_MLP_RATIO * width, activation="gelu", name=f"block_{i}_mlp_in")(h)
        h = layers.Dense(width, name=f"block_{i}_mlp_out")(h)
        x = layers.Add(name=f"block_{i}_mlp_add")([x, h])
    return layers.LayerNormalization(name="final_norm")(x)


def build_pairwise(embeddings, cfg: SorterConfig, *, n_chunks: int, edges=None, frames=None):
    """Score every "slot j right after slot i" with one shared MLP, then marginalize over all n! orders.

    An order's score is the sum of its n - 1 successor scores plus a "starts
    the puzzle" score of its first chunk and an "ends it" score of its last
    (:class:`PermutationMarginals`); the output is each slot's exact position
    log-probabilities under the softmax over orders. The rule is learned once
    for every pair, so the head is permutation-equivariant and needs no
    normalization (rows and columns already sum to 1). The learned twin of the
    continuity baseline, which scores pairs by how smoothly they join; with
    ``cfg.seam`` it starts as that baseline (:func:`_join_scores`). With
    ``cfg.loss == "orders"`` the order log-probabilities follow the
    positions' as more columns (:class:`PermutationMarginals` ``with_orders``).
    With ``frames`` (``cfg.cross_similarity``) the pair MLP also reads the
    two chunks' frame-by-frame similarity (:func:`_join_scores`).
    """
    successor, first, last = _join_scores(embeddings, cfg, mismatch=cfg.mismatch, edges=edges, frames=frames)
    successor = layers.Reshape((n_chunks, n_chunks), name="successor")(successor)
    first = layers.Reshape((n_chunks,), name="first")(first)
    last = layers.Reshape((n_chunks,), name="last")(last)
    with_orders = cfg.loss == "orders"
    return PermutationMarginals(n_chunks, with_orders=with_orders, name="scores")([successor, first, last])


def build_successor(embeddings, cfg: SorterConfig, *, n_chunks: int | None, edges=None):
    """The pairwise head's join scores, trained on any n without enumerating orders.

    The pairwise head's shared MLP, which here also sees how far one chunk's
    learned "how it ends" is from the other's "how it starts"
    (:class:`JoinMismatch`; at n = 20 on synthetic music it raised val Kendall
    tau from 0.085 to 0.157), scores "slot j right after slot i", "starts" and
    "ends"; :class:`SuccessorLogits` lays them out as one ``(n + 1) x (n + 1)``
    matrix (node n is the puzzle's edge), trained by the cross-entropy of its
    rows and columns (:class:`audiosort.models.objectives.SuccessorLoss`) and
    decoded as the best Hamiltonian path, by the search that decodes the
    continuity baseline (:func:`audiosort.decoding.best_paths`). Nothing is
    sized by n, so n may grow during training.
    """
    return SuccessorLogits(name="scores")(_join_scores(embeddings, cfg, mismatch=True, edges=edges))


def _join_scores(embeddings, cfg: SorterConfig, *, mismatch: bool = False, edges=None, frames=None):
    """Successor ``(B, n, n, 1)``, first ``(B, n, 1)`` and last ``(B, n, 1)`` scores, from one MLP shared by every pair.

    The MLP sees both embeddings side by side, and with ``mismatch`` also the
    squared difference of a learned "how it ends" projection of the first and
    a "how it starts" projection of the second (:class:`JoinMismatch`).

    With ``edges`` (the flush edge spectra, ``(B, n, 2, SEAM_BANDS)``), the
    successor scores add the learned seam term (:class:`SeamScores`), and the
    three output layers start at zero, so that the untrained head scores
    every order by the continuity baseline's distances alone and sorts as it
    does; what the encoder adds is learned on top of the seam.

    With ``frames`` (each chunk's frame features, ``(B, n, T, C)``), the MLP
    also sees :class:`CrossSimilarity`'s features of every ordered pair: how
    the two chunks' frames align, a cue that needs no shared edge (a rhythm
    or a chord that returns a bar later).
    """
    # As in the attention head: batch statistics remove what a puzzle's embeddings share.
    x = layers.Dense(cfg.hidden_units, use_bias=False, name="project")(embeddings)
    x = layers.ReLU(name="project_relu")(layers.BatchNormalization(name="project_bn")(x))
    pairs = PairFeatures(name="pairs")(x)
    if mismatch:
        tails = layers.Dense(cfg.hidden_units, name="tail")(x)
        heads = layers.Dense(cfg.hidden_units, name="head")(x)
        pairs = layers.Concatenate(name="pairs_and_mismatch")([pairs, JoinMismatch(name="mismatch")([tails, heads])])
    if frames is not None:
        cross = CrossSimilarity(CROSS_SIMILARITY_UNITS, CROSS_SIMILARITY_FILTERS, name="cross_similarity")(frames)
        pairs = layers.Concatenate(name="pairs_and_cross_similarity")([pairs, cross])
    h = layers.Dense(cfg.hidden_units, activation="relu", name="pair_dense")(pairs)
    successor_name, first_name, last_name = JOIN_SCORE_LAYERS
    start = "zeros" if edges is not None else "glorot_uniform"
    successor = layers.Dense(1, kernel_initializer=start, name=successor_name)(h)
    first = layers.Dense(1, kernel_initializer=start, name=first_name)(x)
    last = layers.Dense(1, kernel_initializer=start, name=last_name)(x)
    if edges is not None:
        # Not in the layer named successor_name: what dream reads there is the encoder's part alone.
        seam = SeamScores(name="seam")(edges)
        if cfg.seam_dropout:
            seam = SeamDropout(cfg.seam_dropout, name="seam_dropout")(seam)
        successor = layers.Add(name="successor_and_seam")([successor, seam])
    return [successor, first, last]


def join_scores(sorter: keras.Model, embeddings, *, edges=None, training: bool | None = False):
    """A built pairwise or successor sorter's join scores for embeddings of any n: its :func:`_join_scores` layers run again.

    The layers hold no weight sized by n, so a head built for n chunks scores
    the joins of any number of them (``scripts/path_eval.py`` decodes n = 20
    with a pairwise head, which is built for n <= 7). Batch normalization runs
    in inference mode unless ``training`` says otherwise (None: as the
    enclosing model is called, for the embeddings-only loss of
    :func:`audiosort.models.build_training_twin`).

    Parameters
    ----------
    sorter : keras.Model
        The "sorter" of a model whose head has join scores (:attr:`audiosort.heads.Head.join_scores`).
    embeddings : tensor [shape=(B, n, D)]
        One chunk embedding per slot, n >= 1.
    edges : tensor [shape=(B, n, 2, M)] or None
        The chunks' flush edge spectra (the model's "edge_log_mel" layer), for
        a head with the seam term; None leaves the seam out.

    Returns
    -------
    successor : tensor [shape=(B, n, n, 1)]
        "Slot j right after slot i": with ``edges``, the model's own score
        (the seam term added); without, what the encoder adds alone.
    first, last : tensor [shape=(B, n, 1)]
        "Slot i starts the puzzle", "slot i ends it".

    Raises
    ------
    ConfigError
        A head with ``model.sorter.cross_similarity``: its join scores also
        read the chunks' frames.
    """
    layer = sorter.get_layer
    if any(each.name == "cross_similarity" for each in sorter.layers):
        raise ConfigError(
            "model.sorter.cross_similarity: this head's join scores also read the chunks' frames, which join_scores does not take"
        )
    x = layer("project_relu")(layer("project_bn")(layer("project")(embeddings), training=training))
    pairs = layer("pairs")(x)
    if any(each.name == "mismatch" for each in sorter.layers):
        pairs = layer("pairs_and_mismatch")([pairs, layer("mismatch")([layer("tail")(x), layer("head")(x)])])
    hidden = layer("pair_dense")(pairs)
    successor_name, first_name, last_name = JOIN_SCORE_LAYERS
    successor = layer(successor_name)(hidden)
    if edges is not None:
        # Seam dropout, if the head has it, is the identity outside training.
        successor = successor + layer("seam")(edges)
    return successor, layer(first_name)(x), layer(last_name)(x)


def build_precedence(embeddings, cfg: SorterConfig, *, n_chunks: int):
    """Score "slot i comes before slot j" per ordered pair, then place each slot at its expected rank.

    The pair scorer is the pairwise head's (a shared MLP on both embeddings),
    but it judges order at any distance, not only adjacency, and nothing is
    enumerated: :class:`ExpectedRankScores` turns the n x n precedence
    probabilities into position scores, so any n works (the seed's 20 chunks).
    Permutation-equivariant; softmax or Sinkhorn normalizes the rows after it.
    """
    x = layers.Dense(cfg.hidden_units, use_bias=False, name="project")(embeddings)
    x = layers.ReLU(name="project_relu")(layers.BatchNormalization(name="project_bn")(x))
    h = layers.Dense(cfg.hidden_units, activation="relu", name="pair_dense")(PairFeatures(name="pairs")(x))
    before = layers.Reshape((n_chunks, n_chunks), name="before")(layers.Dense(1, name="before_score")(h))
    return ExpectedRankScores(name="scores")(before)
