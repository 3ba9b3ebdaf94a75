"""16-bit PCM: the int16 form of audio that corpora, puzzles and models carry; no codec imported.

Decoding lives in :mod:`audiosort.audio` (librosa, soundfile, soxr); what only
converts between float audio and int16 lives here, so that models, puzzles
and baselines need no codec.
"""

from __future__ import annotations

import numpy as np

# One int16 step is 1 / INT16_SCALE in float. A power of two keeps the
# float <-> int16 scaling exact, and makes from_int16 -> to_int16 the identity.
INT16_SCALE = 32768


def to_int16(y: np.ndarray) -> np.ndarray:
    """Convert float audio to int16: ``round(y * 32768)``, clipped to [-32768, 32767].

    Parameters
    ----------
    y : np.ndarray [shape=(...), dtype=floating]
        Finite samples, full scale = 1.0. Values from ``32767 / 32768`` up to
        1.0 and beyond clip to 32767; values below -1.0 clip to -32768.

    Returns
    -------
    x : np.ndarray [shape=y.shape, dtype=int16]
        Rounded to the nearest step (ties to even), so
        ``from_int16(to_int16(y))`` is within half a step (1 / 65536) of ``y``
        for y in [-1, 32767/32768] and within one step (1 / 32768) up to 1.0.

    Raises
    ------
    TypeError
        If ``y`` is not a floating-point array.
    ValueError
        If ``y`` holds NaN or inf.
    """
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.floating):
        raise TypeError(f"to_int16 expects floating-point samples, got dtype {y.dtype}")
    if not np.isfinite(y).all():
        raise ValueError("to_int16 got NaN or inf samples")
    # float32 is exact here: scaling by a power of two only changes the exponent.
    scaled = y.astype(np.float32) * np.float32(INT16_SCALE)
    np.rint(scaled, out=scaled)
    np.clip(scaled, -INT16_SCALE, INT16_SCALE - 1, out=scaled)
    return scaled.astype(np.int16)


def from_int16(x: np.ndarray) -> np.ndarray:
    """Convert int16 audio to float32: ``x / 32768``.

    Parameters
    ----------
    x : np.ndarray [shape=(...), dtype=int16]

    Returns
    -------
    y : np.ndarray [shape=x.shape, dtype=float32]
        In [-1, 32767/32768]; ``to_int16(from_int16(x))`` equals ``x`` exactly.

    Raises
    ------
    TypeError
        If ``x`` is not int16.
    """
    x = np.asarray(x)
    if x.dtype != np.int16:
        raise TypeError(f"from_int16 expects int16 samples, got dtype {x.dtype}")
    return x.astype(np.float32) / np.float32(INT16_SCALE)
