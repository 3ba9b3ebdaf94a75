"""Ground floor for spectra: the one mel filterbank, the windowed DFT, the edge analysis and their constants.

numpy only: no Keras, no codec library. Everything in audiosort that turns
audio into mel bands takes its filterbank here: the model's front end
(:class:`audiosort.models.layers.LogMelSpectrogram`, which computes in
``keras.ops`` on this module's DFT matrix and filterbank), the feature cache
that runs that front end once per corpus, the probe's log-mel baseline
(:func:`audiosort.probe.log_mel`), and the flush edge spectra that the continuity baseline
(:func:`audiosort.baselines.continuity_scores`) compares and the learned seam
term (:class:`audiosort.models.layers.EdgeLogMel`) starts from
(:func:`edge_analysis`, :func:`edge_log_mel`). So models need no evaluation
room, and nothing needs librosa, to get a filterbank or a constant.

Example
-------
>>> mel_filterbank(16000, 512, 64).shape
(64, 257)
>>> edge_log_mel(np.zeros((3, 240)), sample_rate=16000).shape
(3, 40)
"""

from __future__ import annotations

import functools

import numpy as np

# Measured on synthetic music at 16 kHz (n=3, 2000 puzzles, exact order): edges of 5/10/15/20/25 ms
# sort 0.05 s chunks at 0.58/0.69/0.64/0.59/0.53, 0.2 s chunks at 0.71/0.80/0.78/0.74/0.71 and 0.5 s
# chunks at 0.62/0.71/0.72/0.72/0.72. Shorter edges describe the audio that continues into the next
# chunk; longer ones resolve frequency better (15 ms: 67 Hz).
EDGE_SECONDS = 0.015
EDGE_MELS = 40
# Edge band powers are floored here before the log: the power of int16 rounding noise,
# 1 / (12 * 32768**2) = 7.8e-11 (full scale 1). Below it, differences are rounding, not sound, and
# silence stays finite.
POWER_FLOOR = 1e-10
# Edge FFT bins no wider than this (Hz, by zero-padding short edges), so that no mel band of
# EDGE_MELS at 8-96 kHz is left without a bin.
MAX_EDGE_BIN_HZ = 32.0

# Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, logarithmic above.
_LINEAR_HZ_PER_MEL = 200.0 / 3
_LOG_START_HZ = 1000.0
_LOG_START_MEL = _LOG_START_HZ / _LINEAR_HZ_PER_MEL
_LOG_STEP = np.log(6.4) / 27.0


def _hz_to_mel(frequencies: np.ndarray) -> np.ndarray:
    frequencies = np.atleast_1d(np.asarray(frequencies, dtype=np.float64))
    mels = frequencies / _LINEAR_HZ_PER_MEL
    high = frequencies >= _LOG_START_HZ
    mels[high] = _LOG_START_MEL + np.log(frequencies[high] / _LOG_START_HZ) / _LOG_STEP
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    frequencies = _LINEAR_HZ_PER_MEL * mels
    high = mels >= _LOG_START_MEL
    frequencies[high] = _LOG_START_HZ * np.exp(_LOG_STEP * (mels[high] - _LOG_START_MEL))
    return frequencies


def mel_filterbank(
    sample_rate: int, fft_length: int, n_mels: int, *, f_min: float = 0.0, f_max: float | None = None, unit_area: bool = True
) -> np.ndarray:
    """The Slaney mel filterbank: triangles on the Slaney mel scale, each of unit area in Hz.

    Parameters
    ----------
    sample_rate : int > 0
        Of the audio, in Hz.
    fft_length : int > 0
        DFT size, in samples; the filterbank has ``fft_length // 2 + 1`` bins.
    n_mels : int > 0
        Number of mel bands.
    f_min, f_max : float >= 0, keyword-only
        Lowest and highest band edge, in Hz; ``f_max=None`` means ``sample_rate / 2``.
    unit_area : bool, keyword-only
        Scale each triangle to unit area in Hz (librosa's ``norm="slaney"``);
        False leaves each with a peak of 1 (``norm=None``).

    Returns
    -------
    filterbank : np.ndarray [shape=(n_mels, fft_length // 2 + 1), dtype=float32]
        Band m's weight of each DFT bin.

    Notes
    -----
    Equals ``librosa.filters.mel(sr=sample_rate, n_fft=fft_length, n_mels=n_mels,
    fmin=f_min, fmax=f_max)`` (htk=False, norm="slaney") to the last bit: the
    same float64 ramps written into a float32 array, as librosa builds it,
    which is what every model, cache and result so far was computed with.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    bin_hz = np.fft.rfftfreq(n=fft_length, d=1.0 / sample_rate)
    edges_hz = _mel_to_hz(np.linspace(*_hz_to_mel(np.array([f_min, f_max], dtype=np.float64)), n_mels + 2))
    widths_hz = np.diff(edges_hz)
    ramps = np.subtract.outer(edges_hz, bin_hz)
    weights = np.zeros((n_mels, len(bin_hz)), dtype=np.float32)
    for band in range(n_mels):
        rising = -ramps[band] / widths_hz[band]
        falling = ramps[band + 2] / widths_hz[band + 1]
        weights[band] = np.maximum(0, np.minimum(rising, falling))
    if unit_area:
        weights *= (2.0 / (edges_hz[2 : n_mels + 2] - edges_hz[:n_mels]))[:, None]
    return weights


def chroma_filterbank(sample_rate: int, fft_length: int) -> np.ndarray:
    """The 12 pitch classes' weights of each DFT bin, starting at C: librosa's chroma filterbank, unnormalized.

    Each bin's frequency, in twelfths of an octave above A0/16 (A4 = 440 Hz),
    adds a Gaussian bump to its pitch class (width: the bin's own spacing on
    that scale, at least one semitone), weighted by a Gaussian over octaves
    centred on octave 5 (C5 to C6's neighbourhood, about 500-1000 Hz), two
    octaves wide.

    Parameters
    ----------
    sample_rate : int > 0
        Of the audio, in Hz.
    fft_length : int > 0
        DFT size, in samples.

    Returns
    -------
    filterbank : np.ndarray [shape=(12, fft_length // 2 + 1), dtype=float32]

    Notes
    -----
    Equals ``librosa.filters.chroma(sr=sample_rate, n_fft=fft_length,
    norm=None)`` (tuning 0, ctroct 5, octwidth 2, base_c): spectra keeps no
    codec library's import, and the models read their chroma here.
    """
    n_chroma = 12
    frequencies = np.linspace(0, sample_rate, fft_length, endpoint=False)[1:]
    semitones = n_chroma * np.log2(frequencies / (440.0 / 16))
    semitones = np.concatenate(([semitones[0] - 1.5 * n_chroma], semitones))
    widths = np.concatenate((np.maximum(semitones[1:] - semitones[:-1], 1.0), [1]))
    distance = np.subtract.outer(semitones, np.arange(0, n_chroma, dtype="d")).T
    half = np.round(float(n_chroma) / 2)
    distance = np.remainder(distance + half + 10 * n_chroma, n_chroma) - half
    weights = np.exp(-0.5 * (2 * distance / np.tile(widths, (n_chroma, 1))) ** 2)
    weights *= np.tile(np.exp(-0.5 * (((semitones / n_chroma - 5.0) / 2.0) ** 2)), (n_chroma, 1))
    weights = np.roll(weights, -3, axis=0)
    return np.ascontiguousarray(weights[:, : fft_length // 2 + 1], dtype=np.float32)


def hann_window(length: int) -> np.ndarray:
    """The periodic Hann window (as librosa and tf.signal use for spectra) [shape=(length,), dtype=float64]."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)


def windowed_dft_matrix(frame_length: int, fft_length: int) -> np.ndarray:
    """Hann window and real DFT as one matrix: a frame (frame_length,) times it gives cos | -sin parts.

    Returns
    -------
    np.ndarray [shape=(frame_length, 2 * (fft_length // 2 + 1)), dtype=float32]
        Columns ``[:bins]`` the real parts, ``[bins:]`` the imaginary parts of
        the DFT of the frame under :func:`hann_window`, zero-padded to ``fft_length``.
    """
    t = np.arange(frame_length)
    phase = 2 * np.pi * np.outer(t, np.arange(fft_length // 2 + 1)) / fft_length
    return (np.concatenate([np.cos(phase), -np.sin(phase)], axis=1) * hann_window(frame_length)[:, None]).astype(np.float32)


@functools.lru_cache(maxsize=None)
def edge_analysis(sample_rate: int, edge_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """The window and filterbank of one flush edge: what the continuity baseline and the seam term compare.

    Parameters
    ----------
    sample_rate : int > 0
        Hz.
    edge_samples : int > 0
        Length of the edge, in samples (:data:`EDGE_SECONDS` of audio, or the whole chunk where shorter).

    Returns
    -------
    window : np.ndarray [shape=(edge_samples,), dtype=float64]
        Periodic Hann.
    filterbank : np.ndarray [shape=(EDGE_MELS, fft_length // 2 + 1), dtype=float64]
        :func:`mel_filterbank` from 0 Hz to ``sample_rate / 2``, each band's
        row normalized to sum 1 (a band's power is the mean of its bins'),
        with ``fft_length`` the edge zero-padded to a power of two with bins
        at most :data:`MAX_EDGE_BIN_HZ` wide.
    """
    fft_length = 1 << (max(edge_samples, int(np.ceil(sample_rate / MAX_EDGE_BIN_HZ))) - 1).bit_length()
    filterbank = mel_filterbank(sample_rate, fft_length, EDGE_MELS).astype(np.float64)
    filterbank /= filterbank.sum(axis=1, keepdims=True)
    return hann_window(edge_samples), filterbank


def edge_log_mel(edges: np.ndarray, *, sample_rate: int) -> np.ndarray:
    """Log-mel spectrum of each edge as one frame (:func:`edge_analysis`), floored at :data:`POWER_FLOOR`.

    Parameters
    ----------
    edges : np.ndarray [shape=(..., E), float]
        Edges of E samples in full-scale units (int16 / 32768).
    sample_rate : int > 0, keyword-only
        Hz.

    Returns
    -------
    np.ndarray [shape=(..., EDGE_MELS), dtype=float64]
        Log power per band, power per bin normalized by the window's energy
        (white noise of variance s**2 gives s**2 in every band).
    """
    window, filterbank = edge_analysis(int(sample_rate), edges.shape[-1])
    spectrum = np.fft.rfft(edges * window, n=2 * (filterbank.shape[1] - 1))
    power = (spectrum.real**2 + spectrum.imag**2) / np.sum(window**2)
    return np.log(np.maximum(power @ filterbank.T, POWER_FLOOR))
