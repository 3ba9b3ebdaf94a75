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

import functools

import numpy as np

from audiosort import decoding
from audiosort.pcm import INT16_SCALE

# Measured on synthetic music at 16 kHz (n=3, 2000 puzzles, exact order): edges of 5/10/15/20/25 ms
# sort 0.05 s chunks at 0.58/0.69/0.64/0.59/0.53, 0.2 s chunks at 0.71/0.80/0.78/0.74/0.71 and 0.5 s
# chunks at 0.62/0.71/0.72/0.72/0.72. Shorter edges describe the audio that continues into the next
# chunk; longer ones resolve frequency better (15 ms: 67 Hz).
EDGE_SECONDS = 0.015
N_MELS = 40
# Band powers are floored here before the log: the power of int16 rounding noise, 1 / (12 * 32768**2)
# = 7.8e-11 (full scale 1). Below it, differences are rounding, not sound, and silence stays finite.
POWER_FLOOR = 1e-10
# FFT bins no wider than this (Hz, by zero-padding short edges), so that no mel band of N_MELS
# at 8-96 kHz is left without a bin.
_MAX_BIN_HZ = 32.0
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
    Each edge is one frame: the edge samples under a Hann window, zero-padded
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
    window, filterbank = edge_analysis(int(sample_rate), edge_samples)
    fft_length = 2 * (filterbank.shape[1] - 1)
    per_puzzle = max(2 * n_chunks * fft_length, n_chunks**2 * N_MELS)
    block = max(1, _BLOCK_ELEMENTS // per_puzzle)
    positions = np.empty((n_puzzles, n_chunks), dtype=np.int64)
    for start in range(0, n_puzzles, block):
        part = chunks[start : start + block]
        # Edges in full-scale units: the ends of every chunk, then the starts.
        edges = np.concatenate([part[..., -edge_samples:], part[..., :edge_samples]], axis=1) / INT16_SCALE
        spectrum = np.fft.rfft(edges * window, n=fft_length)
        power = (spectrum.real**2 + spectrum.imag**2) / np.sum(window**2)
        log_mel = np.log(np.maximum(power @ filterbank.T, POWER_FLOOR))
        ends, starts = log_mel[:, :n_chunks], log_mel[:, n_chunks:]
        # cost[b, a, c]: chunk in slot a right before the chunk in slot c.
        cost = np.linalg.norm(ends[:, :, None, :] - starts[:, None, :, :], axis=-1)
        positions[start : start + block] = decoding.positions_of(decoding.best_paths(-cost))
    return decoding.certain_scores(positions)


# name -> scorer(chunks, *, sample_rate) -> scores (B, n, n): the baselines ``audiosort eval`` reports.
BASELINES = {"continuity": continuity_scores}
# How every baseline here finds its order, as eval names it (metrics.PATH_DECODING): the best path.
DECODING = "path"


@functools.lru_cache(maxsize=None)
def edge_analysis(sample_rate, edge_samples):
    """Periodic Hann window (edge_samples,) and row-normalized mel filterbank (N_MELS, fft_length // 2 + 1).

    Also the fixed front end of the learned seam term (:class:`audiosort.models.layers.EdgeLogMel`),
    so that the model's edge spectra are continuity's.
    """
    # Deferred: models import this module's constants for the seam term, and must not load a codec library.
    import librosa.filters

    fft_length = 1 << (max(edge_samples, int(np.ceil(sample_rate / _MAX_BIN_HZ))) - 1).bit_length()
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(edge_samples) / edge_samples)
    filterbank = librosa.filters.mel(sr=sample_rate, n_fft=fft_length, n_mels=N_MELS).astype(np.float64)
    filterbank /= filterbank.sum(axis=1, keepdims=True)
    return window, filterbank

