"""Assemble the sorting network: shared encoder on every chunk, sorter head, row normalization.

The full model maps ``chunks [shape=(B, n, L), dtype=int16]`` to
``log_probs [shape=(B, n, n), float32]``: row i holds log-probabilities over
the n temporal positions of the chunk in slot i. Since log-probabilities are
valid logits (their log-softmax is themselves), the training loss is
``keras.losses.SparseCategoricalCrossentropy(from_logits=True)`` against
``order [shape=(B, n), int]``, the mean cross-entropy of the rows.

Example
-------
>>> model, encoder = build_model(ModelConfig(), n_chunks=3, chunk_samples=3200, sample_rate=16000)
>>> model.output_shape, encoder.output_shape
((None, 3, 3), (None, 64))
"""

from __future__ import annotations

import keras

from audiosort.config import ModelConfig, SorterConfig
from audiosort.errors import ConfigError
from audiosort.heads import OUTPUT_LAYERS, get_head, head_of, model_name
from audiosort.models.auxiliary import EmbeddingsOnlyOrder, GapRegression, SpectralTargets
from audiosort.models.encoders import build_encoder, encoder_with_frames
from audiosort.models.layers import EdgeLogMel, FoldSlots, Int16ToFloat, RowLogSoftmax, Sinkhorn, StopGradient, UnfoldSlots
from audiosort.models.objectives import SamePuzzleContrast
from audiosort.models.sorters import build_sorter, join_scores
from audiosort.models.views import ChunkViews
from audiosort.spectra import EDGE_SECONDS


# The output layer computes in float32 whatever the global dtype policy, so that
# log-probabilities, the loss and Sinkhorn's logsumexps stay exact under mixed precision.
def _softmax(cfg: SorterConfig) -> keras.layers.Layer:
    return RowLogSoftmax(dtype="float32", name=OUTPUT_LAYERS["positions"])


def _sinkhorn(cfg: SorterConfig) -> keras.layers.Layer:
    return Sinkhorn(cfg.sinkhorn_iterations, dtype="float32", name=OUTPUT_LAYERS["positions"])


# The names users type, as config.NORMALIZATIONS lists them (config stays free of Keras; a test keeps the two equal).
NORMALIZATIONS = {"softmax": _softmax, "sinkhorn": _sinkhorn}


def build_model(model_cfg: ModelConfig, *, n_chunks: int, chunk_samples: int, sample_rate: int) -> tuple[keras.Model, keras.Model]:
    """Build the full sorting model and the encoder inside it.

    Parameters
    ----------
    model_cfg : ModelConfig
        ``encoder.type``, ``sorter.type`` and ``sorter.normalization`` pick the
        parts by name (see ``ENCODERS``, :data:`audiosort.heads.HEADS`, ``NORMALIZATIONS``).
    n_chunks : int >= 2 or None
        Chunks per puzzle, n. None: any n (a head with ``any_n``); the
        model then takes puzzles of any size, for a run whose n grows.
    chunk_samples : int > 0
        Chunk length L, in samples.
    sample_rate : int > 0
        Sampling rate of the chunks, in Hz.

    Returns
    -------
    model : keras.Model
        Input ``[shape=(B, n_chunks, chunk_samples), dtype=int16]``, output
        ``[shape=(B, n_chunks, n_chunks), float32]`` row-normalized
        log-probabilities; for a head that outputs successors ``[shape=(B,
        n_chunks + 1, n_chunks + 1)]`` logits. Named after its head
        (:func:`audiosort.heads.model_name`), which is how
        :func:`audiosort.heads.head_of` knows a loaded model's head. Not compiled.
    encoder : keras.Model
        The shared chunk encoder (also ``model.get_layer("encoder")``, which
        with ``sorter.cross_similarity`` has the frames as a first output,
        :func:`audiosort.models.encoders.encoder_with_frames`): input
        ``[shape=(B, chunk_samples), dtype=int16]``, output
        ``[shape=(B, embedding_dim)]``.

    Raises
    ------
    ConfigError
        An unknown encoder, sorter or normalization name; the message lists
        the valid ones.
    """
    sorter_cfg: SorterConfig = model_cfg.sorter
    if sorter_cfg.normalization not in NORMALIZATIONS:
        raise ConfigError(f"model.sorter.normalization = {sorter_cfg.normalization!r} is not one of {sorted(NORMALIZATIONS)}")
    encoder = build_encoder(model_cfg.encoder, chunk_samples=chunk_samples, sample_rate=sample_rate)
    # The cross-similarity head reads the encoder's frames: the model calls the same layers with both outputs.
    encoder_in_model = encoder_with_frames(encoder) if sorter_cfg.cross_similarity else encoder
    frame_shape = tuple(encoder_in_model.output_shape[0][1:]) if sorter_cfg.cross_similarity else None
    sorter = build_sorter(sorter_cfg, n_chunks=n_chunks, embedding_dim=model_cfg.encoder.embedding_dim, frame_shape=frame_shape)
    chunks = keras.Input((n_chunks, chunk_samples), dtype="int16", name="chunks")
    # Folding the slots into the batch runs the encoder once on all B * n chunks:
    # shared weights, and batch-norm statistics over every chunk rather than per slot.
    folded = FoldSlots(name="fold_slots")(chunks)
    views = model_cfg.views
    if views.enabled:
        # The encoder's path only: the seam below reads the raw edges (two paths, issue 27).
        folded = ChunkViews(
            sample_rate, gain_db=views.gain_db, tilt_db_per_octave=views.tilt_db_per_octave,
            shift_samples=round(views.shift_seconds * sample_rate), edge_mask_samples=round(views.edge_mask_seconds * sample_rate),
            name="chunk_views",
        )(folded)
    folded = encoder_in_model(folded)
    if sorter_cfg.cross_similarity:
        # Only the pairwise head reads frames, and it is built for one n.
        folded_frames, folded = folded
        frames = UnfoldSlots(n_chunks, name="frames_unfold_slots")(folded_frames)
    unfold = UnfoldSlots(n_chunks, name="unfold_slots")
    embeddings = unfold(folded) if n_chunks is not None else unfold([folded, chunks])
    targets = model_cfg.spectral_targets
    if targets.weight > 0 or targets.tempogram_weight > 0:
        embeddings = SpectralTargets(
            sample_rate, targets.weight, targets.hidden_units, targets.tempogram_weight, name="spectral_targets"
        )([embeddings, chunks])
    contrastive = model_cfg.contrastive
    if contrastive.weight > 0:
        embeddings = SamePuzzleContrast(
            contrastive.weight, contrastive.temperature, contrastive.projection_units, name="same_puzzle_contrast"
        )(embeddings)
    if model_cfg.embeddings_only.stop_gradient:
        # The seam model's loss trains the head, not the encoder; the training twin's embeddings-only loss trains both.
        embeddings = StopGradient(name="sorter_stop_gradient")(embeddings)
    if sorter_cfg.seam:
        # The seam term's fixed front end reads the raw chunks' flush edges, which the encoder's frames miss.
        audio = Int16ToFloat(dtype="float32", name="seam_int16_to_float")(FoldSlots(name="seam_fold_slots")(chunks))
        edges = EdgeLogMel(sample_rate, round(EDGE_SECONDS * sample_rate), name="edge_log_mel")(audio)
        unfold_edges = UnfoldSlots(n_chunks, name="seam_unfold_slots")
        embeddings = [embeddings, unfold_edges(edges) if n_chunks is not None else unfold_edges([edges, chunks])]
    if sorter_cfg.cross_similarity:
        embeddings = [*(embeddings if isinstance(embeddings, list) else [embeddings]), frames]
    name, head = model_name(sorter_cfg.type), get_head(sorter_cfg.type)
    if head.outputs == "successors":
        # No position scores to normalize: its loss normalizes rows and columns of the logits itself.
        return keras.Model(chunks, keras.layers.Identity(name=head.output_layer)(sorter(embeddings)), name=name), encoder
    log_probs = NORMALIZATIONS[sorter_cfg.normalization](sorter_cfg)(sorter(embeddings))
    return keras.Model(chunks, log_probs, name=name), encoder



def build_feature_model(model: keras.Model, encoder: keras.Model) -> keras.Model:
    """The training twin of a ``logmel*`` model: the same layers, fed the cached front end instead of audio.

    Everything after the fixed front end (the encoder from ``band_norm`` on,
    the sorter head, the normalization) is the very layer objects of ``model``
    and ``encoder``, so training this model trains them, and ``model`` (saved
    as ``model.keras``, raw audio in) has the trained weights with no copy.
    Its inputs are what :func:`audiosort.features.cached_puzzle_batches`
    gathers.

    Parameters
    ----------
    model, encoder : keras.Model
        From :func:`build_model` with a ``logmel``, ``logmel1d`` or ``logmel_resnet`` encoder.

    Returns
    -------
    keras.Model
        Inputs ``frames [shape=(B, n, T, n_mels), float32]`` (the encoder's
        log-mel frames of each chunk) and, for a seam head, ``edges
        [shape=(B, n, 2, edge_mels), float32]`` (:class:`EdgeLogMel` of each
        chunk); the outputs of ``model``, under its name.

    Raises
    ------
    ConfigError
        An encoder without the "log_mel" front end.
    """
    try:
        front = encoder.get_layer("log_mel")
    except ValueError:
        raise ConfigError("data.features = 'cached' needs a log-mel encoder (logmel, logmel1d, logmel_resnet)") from None
    # The encoder's graph from the front end's output on: its layers, not copies.
    body = keras.Model(front.output, encoder.output, name="encoder_body")
    n_chunks = model.input_shape[1]
    frames = keras.Input((n_chunks, *front.output.shape[1:]), name="frames")
    folded = body(FoldSlots(name="fold_slots")(frames))
    unfold = UnfoldSlots(n_chunks, name="unfold_slots")
    embeddings = unfold(folded) if n_chunks is not None else unfold([folded, frames])
    inputs = [frames]
    layer_names = {layer.name for layer in model.layers}
    if "frames_unfold_slots" in layer_names:
        raise ConfigError("data.features = 'cached' cannot feed model.sorter.cross_similarity (its frames are not cached); use raw")
    if "chunk_views" in layer_names or "spectral_targets" in layer_names:
        raise ConfigError(
            "data.features = 'cached' cannot apply model.views or model.spectral_targets (both read the audio); use raw"
        )
    if "same_puzzle_contrast" in layer_names:
        embeddings = model.get_layer("same_puzzle_contrast")(embeddings)
    if "edge_log_mel" in layer_names:
        edges = keras.Input((n_chunks, *model.get_layer("edge_log_mel").output.shape[1:]), name="edges")
        inputs.append(edges)
        embeddings = [embeddings, edges]
    scores = model.get_layer("sorter")(embeddings)
    output = model.get_layer(head_of(model).output_layer)(scores)
    return keras.Model(inputs, output, name=model.name)


def build_training_twin(model: keras.Model, model_cfg: ModelConfig, *, pad_min_samples: int, pad_max_samples: int) -> keras.Model:
    """The training twin of ``model`` for the losses that read each chunk's start: the same layers, plus the offsets and those heads.

    ``model.gap_regression`` regresses the gaps between chunks, and
    ``model.embeddings_only`` scores the order the embeddings alone give;
    both need where each chunk was cut, which a sorting model must never
    take (it would be the answer) and a saved model should not ask for. So
    ``model`` (saved as ``model.keras``) stays as built, and the twin, which
    ``fit`` trains, reads ``model``'s own graph: the same layer objects, so
    training it trains ``model``, with :class:`GapRegression` and
    :class:`EmbeddingsOnlyOrder` reading the embeddings that feed the sorter
    and passing the output on unchanged. In inference the twin's output is
    ``model``'s.

    Parameters
    ----------
    model : keras.Model
        From :func:`build_model` with ``model_cfg``.
    model_cfg : ModelConfig
        ``gap_regression`` and ``embeddings_only``; at least one has a weight > 0.
    pad_min_samples, pad_max_samples : int, 0 <= min < max
        The training puzzles' gap range, in samples (scales the gap target to [0, 1]).

    Returns
    -------
    keras.Model
        Inputs ``chunks [shape=(B, n, L), dtype=int16]`` and ``offsets
        [shape=(B, n), dtype=int32]`` (:func:`audiosort.data.puzzles.relative_starts`),
        the output of ``model``, under its name. Not compiled.
    """
    if not model_cfg.training_twin:
        raise ValueError("build_training_twin: neither model.gap_regression nor model.embeddings_only has a weight > 0")
    chunks = model.inputs[0]
    n_chunks = model.input_shape[1]
    offsets = keras.Input((n_chunks,), dtype="int32", name="offsets")
    # The embeddings the sorter reads, before the seam joins them: the encoder's (and views') output, by slot.
    embeddings = model.get_layer("unfold_slots").output
    output = model.output
    gaps = model_cfg.gap_regression
    if gaps.weight > 0:
        head = GapRegression(chunks.shape[-1], pad_min_samples, pad_max_samples, gaps.weight, gaps.hidden_units, name="gap_regression")
        output = head([output, embeddings, offsets])
    if model_cfg.embeddings_only.weight > 0:
        # The head's own layers, without the seam, with batch statistics as the model is called (training=None).
        successor, first, last = join_scores(model.get_layer("sorter"), embeddings, training=None)
        alone = EmbeddingsOnlyOrder(n_chunks, model_cfg.embeddings_only.weight, name="embeddings_only")
        output = alone([output, successor, first, last, offsets])
    return keras.Model([chunks, offsets], output, name=model.name)
