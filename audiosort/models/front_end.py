"""The inputs of a sorter's feature twin, computed by the sorter's own front-end layers.

A run with ``data.features = 'cached'`` fits the feature twin
(:func:`audiosort.models.build_feature_model`) on cached front-end frames; its
val inputs come from here, so val's front end is the model's, not the cache's.
"""

from __future__ import annotations

import keras
import numpy as np


def front_end_inputs(model: keras.Model, encoder: keras.Model, chunks: np.ndarray, *, batch_size: int) -> tuple[np.ndarray, ...]:
    """The inputs of ``model``'s feature twin for ``chunks``, computed by ``model``'s own front-end layers.

    Parameters
    ----------
    model, encoder : keras.Model
        From :func:`audiosort.models.build_model` with a log-mel encoder.
    chunks : np.ndarray [shape=(B, n, L), dtype=int16]
    batch_size : int > 0
        Puzzles per call.

    Returns
    -------
    tuple of np.ndarray
        ``frames [shape=(B, n, T, n_mels), float32]`` and, for a seam head,
        ``edges [shape=(B, n, 2, edge_mels), float32]``: what
        :func:`audiosort.features.cached_puzzle_batches` gathers
        (in float32, not rounded to the cache's float16).
    """
    log_mel = keras.Model(encoder.input, encoder.get_layer("log_mel").output)
    seam = model.get_layer("edge_log_mel") if "edge_log_mel" in {layer.name for layer in model.layers} else None
    n_puzzles, n_chunks, chunk_samples = chunks.shape
    flat = chunks.reshape(-1, chunk_samples)
    parts = []
    for start in range(0, len(flat), batch_size * n_chunks):
        block = flat[start : start + batch_size * n_chunks]
        outputs = [log_mel(block, training=False)]
        if seam is not None:
            outputs.append(seam(model.get_layer("seam_int16_to_float")(block)))
        parts.append([keras.ops.convert_to_numpy(output).astype(np.float32) for output in outputs])
    return tuple(np.concatenate(part).reshape(n_puzzles, n_chunks, *part[0].shape[1:]) for part in zip(*parts))

