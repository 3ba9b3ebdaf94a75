"""Augmentations of training chunks that cannot carry order.

:func:`augment_batch` changes a batch of sampled puzzles ``(B, n, L)`` so that a
model cannot memorize its training tracks by their exact sound, in four ways:

per-puzzle spectral tilt and one EQ band
    one frequency response drawn per puzzle and applied to all its n chunks
    (the track sounds as through another mix or speaker, the same for every chunk);
per-chunk gain
    an attenuation drawn per chunk, so loudness steps between chunks say less
    about which chunk continues which;
per-chunk noise
    white noise at a low level drawn per chunk, which hides the noise floor a
    chunk shares with its neighbours.

Why this cannot leak order: every per-chunk value is drawn i.i.d. for each
slot of each puzzle, from a distribution that depends neither on the slot nor
on the chunk's temporal position, and every per-puzzle value is the same for
all the puzzle's chunks. The draws are therefore independent of ``order``;
only the audio, as before, carries it. ``tests/test_augment.py`` checks this
with a chi-square test and a trained classifier, beside a deliberately leaky
augmentation that both catch.

Only training batches are augmented, on the input pipeline's worker threads
(:func:`audiosort.data.pipeline.prefetched_puzzle_batches`, given the config by
:func:`audiosort.train.train_batches`); the fixed val and test sets,
evaluation, the sanity sets' scoring, embedding and probes see the audio as it is.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from audiosort.config import AugmentConfig

INT16 = np.iinfo(np.int16)
TILT_PIVOT_HZ = 1000.0
# Below this the tilt is held flat, so a tilt of +3 dB/octave does not send DC and rumble to -30 dB.
TILT_FLOOR_HZ = 50.0
EQ_CENTRE_MIN_HZ, EQ_CENTRE_MAX_HZ = 100.0, 6000.0
EQ_SIGMA_OCTAVES = 0.5  # the bell is a Gaussian in log-frequency, about one octave wide at half its gain
_FFT_BLOCK_BYTES = 4 << 20  # spectrum of the puzzles filtered at once


def augment_batch(chunks: np.ndarray, rng: np.random.Generator, config: AugmentConfig, *, sample_rate: int) -> np.ndarray:
    """Apply the configured per-puzzle EQ, and unless ``per_chunk`` is off per-chunk gain and noise, to a batch of puzzles.

    Parameters
    ----------
    chunks : np.ndarray [shape=(B, n, L), dtype=int16]
        Puzzles in slot order, as :func:`audiosort.data.puzzles.sample_puzzles`
        returns them. Not modified.
    rng : np.random.Generator
        Every draw comes from it; the same state gives the same result.
    config : AugmentConfig
        Magnitudes; ``enabled = False`` returns ``chunks`` unchanged.
    sample_rate : int > 0
        Hz, to place the EQ's frequencies.

    Returns
    -------
    np.ndarray [shape=(B, n, L), dtype=int16]
        The augmented chunks, rounded and clipped to int16.

    Notes
    -----
    The EQ is a zero-phase filter applied to each chunk on its own through an
    FFT of twice the chunk's length, so the filter's tails never wrap from one
    end of a chunk into the other, and no chunk's audio reaches another.
    """
    if chunks.ndim != 3:
        raise ValueError(f"augment_batch expects chunks of shape (B, n, L), got {chunks.shape}")
    if not config.enabled:
        return chunks
    batch, n_chunks, length = chunks.shape
    audio = chunks.astype(np.float32)
    if config.tilt_db_per_octave > 0 or config.eq_db > 0:
        response_db = puzzle_response_db(batch, rng, config, fft_length=2 * length, sample_rate=sample_rate)
        gain = (10.0 ** (response_db / 20.0)).astype(np.float32)[:, None, :]
        # scipy's FFT keeps float32 and pads without a copy: about 10 times faster here than numpy's.
        # A whole batch's spectrum is 8x its int16 audio (49 MB for 256 x 3 x 0.5 s), above malloc's
        # mmap threshold: fresh pages every batch. Blocks of puzzles keep it small and reused.
        block = max(1, _FFT_BLOCK_BYTES // (n_chunks * (length + 1) * np.dtype(np.complex64).itemsize))
        for first in range(0, batch, block):
            puzzles = slice(first, first + block)
            spectrum = scipy.fft.rfft(audio[puzzles], n=2 * length, axis=-1)
            spectrum *= gain[puzzles]
            audio[puzzles] = scipy.fft.irfft(spectrum, n=2 * length, axis=-1)[..., :length]
    if config.per_chunk:
        _gain_and_noise(audio, rng, config)
    return np.clip(np.rint(audio, out=audio), INT16.min, INT16.max, out=audio).astype(np.int16)


def _gain_and_noise(audio: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> None:
    """Scale each chunk of ``audio`` (B, n, L) float32 by its own gain and add its own white noise, in place."""
    batch, n_chunks, length = audio.shape
    if config.gain_db > 0:
        audio *= (10.0 ** (rng.uniform(-config.gain_db, 0.0, size=(batch, n_chunks, 1)) / 20.0)).astype(np.float32)
    noise_rms = -float(INT16.min) * 10.0 ** (rng.uniform(config.noise_min_dbfs, config.noise_max_dbfs, size=(batch, n_chunks, 1)) / 20.0)
    noise = rng.standard_normal((batch, n_chunks, length), dtype=np.float32)
    noise *= noise_rms.astype(np.float32)
    audio += noise


def puzzle_response_db(
    batch: int, rng: np.random.Generator, config: AugmentConfig, *, fft_length: int, sample_rate: int
) -> np.ndarray:
    """One random frequency response per puzzle: a tilt around 1 kHz plus one bell band.

    Parameters
    ----------
    batch : int > 0
        Number of puzzles B.
    rng : np.random.Generator
    config : AugmentConfig
        ``tilt_db_per_octave`` and ``eq_db`` bound the draws.
    fft_length : int > 0, keyword-only
        Samples of the FFT the response is for; it has ``fft_length // 2 + 1`` bins.
    sample_rate : int > 0, keyword-only
        Hz.

    Returns
    -------
    np.ndarray [shape=(B, fft_length // 2 + 1), dtype=float64]
        Gain of each bin, in dB.
    """
    frequency_hz = np.fft.rfftfreq(fft_length, d=1.0 / sample_rate)
    octaves_from_pivot = np.log2(np.maximum(frequency_hz, TILT_FLOOR_HZ) / TILT_PIVOT_HZ)
    tilt = rng.uniform(-config.tilt_db_per_octave, config.tilt_db_per_octave, size=(batch, 1))
    centre_octaves = rng.uniform(
        np.log2(EQ_CENTRE_MIN_HZ / TILT_PIVOT_HZ), np.log2(EQ_CENTRE_MAX_HZ / TILT_PIVOT_HZ), size=(batch, 1)
    )
    bell_db = rng.uniform(-config.eq_db, config.eq_db, size=(batch, 1))
    bell = np.exp(-0.5 * ((octaves_from_pivot[None, :] - centre_octaves) / EQ_SIGMA_OCTAVES) ** 2)
    return tilt * octaves_from_pivot[None, :] + bell_db * bell
