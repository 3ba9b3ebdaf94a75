"""No-learning sorters: what a model's accuracy must beat to show it learned anything.

A model that sorts held-out music above chance may only have learned what any
signal-processing trick already knows: that audio mostly changes slowly, so a
chunk's end sounds like the next chunk's start. :func:`continuity_scores` is
that trick with no training at all, and ``audiosort eval`` scores it beside
the model on the same puzzles (:data:`BASELINES`).

Each baseline returns scores in the model's form (see :mod:`audiosort.decoding`):
``scores[b, i, j]``, higher meaning "the chunk in slot i of puzzle b sits at
temporal position j", so that :func:`audiosort.metrics.score_puzzles` scores it
with the very statistics of the model.

Example
-------
>>> rng = np.random.default_rng(0)
>>> chunks = (rng.normal(size=(4, 3, 800)) * 3000).astype(np.int16)
>>> scores = continuity_scores(chunks, sample_rate=16000)
>>> scores.shape, bool(np.all(scores.max(axis=2) == 0.0))
((4, 3, 3), True)
"""

from __future__ import annotations

import numpy as np

from audiosort import decoding, spectra
from audiosort.pcm import INT16_SCALE
from audiosort.spectra import EDGE_SECONDS

# Floats of the largest intermediate array (spectra, pairwise differences, order costs) held at once.
_BLOCK_ELEMENTS = 1 << 22


def continuity_scores(chunks, *, sample_rate, edge_seconds=EDGE_SECONDS):
    """Sort each puzzle so that consecutive chunks join most smoothly; no training.

    The cost of putting chunk a right before chunk c is the Euclidean distance
    between the log-mel spectrum of a's last ``edge_seconds`` and that of c's
    first ``edge_seconds``. The predicted order is the one with the least
    total cost over its n - 1 joins.

    Parameters
    ----------
    chunks : np.ndarray [shape=(B, n, L), dtype=int16]
        Puzzles as the sampler cuts them (:class:`audiosort.data.puzzles.Puzzles`);
        L in samples, n >= 2. Any real dtype in int16 units is accepted.
    sample_rate : int > 0, keyword-only
        Of the chunks, in Hz.
    edge_seconds : float > 0, keyword-only
        Length of each edge analysed, in seconds (default 0.015 s: 240 samples
        at 16 kHz); the whole chunk where it is shorter.

    Returns
    -------
    scores : np.ndarray [shape=(B, n, n), dtype=float64]
        ``scores[b, i, j]`` is 0.0 when the chunk in slot i is predicted at
        position j, else :data:`audiosort.decoding.LOWEST_SCORE` (a finite
        log 0): a log-probability of certainty, which argmax and hungarian
        decoding both read back as the predicted order.

    Raises
    ------
    ValueError
        ``chunks`` not of shape (B, n, L) with B >= 1, n >= 2, L >= 1, or a
        non-positive ``sample_rate`` or ``edge_seconds``.

    Notes
    -----
    Each edge is one frame (:func:`audiosort.spectra.edge_log_mel`, the
    front end of the learned seam term too): the edge samples under a Hann window, zero-padded
    to a power of two with bins at most 32 Hz wide, as power per bin (white
    noise of variance s**2 gives s**2 in every bin), pooled into 40 Slaney mel
    bands (each band the weighted mean of its bins) from 0 Hz to
    ``sample_rate / 2``, floored at the power of int16 rounding noise (1e-10)
    and logged. One frame, not the mean of several, because the audio nearest
    the edge is what continues into the next chunk.

    The order is found by :func:`audiosort.decoding.best_paths` on the join
    costs (negated: a successor matrix), the very search that decodes a
    learned successor head, so that a model beating this baseline beats it by
    what it learned, not by its decoder: exact (Held-Karp) up to
    :data:`audiosort.decoding.EXACT_PATH_MAX_CHUNKS` chunks, a beam search
    above. Ties (e.g. silent chunks) go to lower slot indices, which carries
    no information: the sampler shuffles uniformly.
    """
    chunks = np.asarray(chunks)
    if chunks.ndim != 3 or chunks.shape[0] < 1 or chunks.shape[1] < 2 or chunks.shape[2] < 1:
        raise ValueError(f"chunks must have shape (B, n, L) with B >= 1, n >= 2, L >= 1, got {chunks.shape}")
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate < 1:
        raise ValueError(f"sample_rate must be a positive int (Hz), got {sample_rate!r}")
    if not edge_seconds > 0:
        raise ValueError(f"edge_seconds must be > 0, got {edge_seconds!r}")
    n_puzzles, n_chunks, chunk_samples = chunks.shape
    edge_samples = min(chunk_samples, max(1, round(edge_seconds * sample_rate)))
    _, filterbank = spectra.edge_analysis(int(sample_rate), edge_samples)
    fft_length = 2 * (filterbank.shape[1] - 1)
    per_puzzle = max(2 * n_chunks * fft_length, n_chunks**2 * spectra.EDGE_MELS)
    block = max(1, _BLOCK_ELEMENTS // per_puzzle)
    positions = np.empty((n_puzzles, n_chunks), dtype=np.int64)
    for start in range(0, n_puzzles, block):
        part = chunks[start : start + block]
        # Edges in full-scale units: the ends of every chunk, then the starts.
        edges = np.concatenate([part[..., -edge_samples:], part[..., :edge_samples]], axis=1) / INT16_SCALE
        log_mel = spectra.edge_log_mel(edges, sample_rate=int(sample_rate))
        ends, starts = log_mel[:, :n_chunks], log_mel[:, n_chunks:]
        # cost[b, a, c]: chunk in slot a right before the chunk in slot c.
        cost = np.linalg.norm(ends[:, :, None, :] - starts[:, None, :, :], axis=-1)
        positions[start : start + block] = decoding.positions_of(decoding.best_paths(-cost))
    return decoding.certain_scores(positions)


# name -> scorer(chunks, *, sample_rate) -> scores (B, n, n): the baselines ``audiosort eval`` reports.
BASELINES = {"continuity": continuity_scores}
# How every baseline here finds its order, as eval names it (metrics.PATH_DECODING): the best path.
DECODING = "path"

