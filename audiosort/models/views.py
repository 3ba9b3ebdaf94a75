"""Two paths into the sorting network: each chunk's own view for the encoder, the raw edges for the seam.

Issue 27: with the seam term reading the flush edges, the encoder was left to
learn whatever the seam could not, and what it learned was edges too (a unit
dream of it is a train of onsets; pitch fell from 0.79 to 0.36 on the probe).
Jigsaw and order-prediction papers met the same shortcut (Doersch et al. 2015,
Noroozi & Favaro 2016, Lee et al. 2017's OPN, Xu et al. 2019's VCOP) and cut
it the same way: each tile gets its own jitter, colour and crop, so low-level
continuity between tiles stops being a cue. Here:

:class:`ChunkViews`
    in front of the encoder only: per chunk, in training, an independent
    gain, spectral tilt and time shift; always, the outer
    ``edge_mask_seconds`` of each chunk silenced, so the encoder never sees
    where one chunk meets the next. The seam term still reads the raw edges.
:class:`SeamDropout`
    in training, the seam term is dropped for a random share of the puzzles,
    so on those the embeddings alone must sort (the encoder carries order).

Neither can carry order: every draw is i.i.d. per chunk or per puzzle and
independent of the slot and of the temporal position, and the mask is the
same for every chunk.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from audiosort.data.augment import TILT_FLOOR_HZ, TILT_PIVOT_HZ
from audiosort.pcm import INT16_SCALE


@keras.saving.register_keras_serializable(package="audiosort")
class ChunkViews(keras.layers.Layer):
    """Each chunk under its own view for the encoder: gain, tilt and shift in training, masked edges always.

    Parameters
    ----------
    sample_rate : int > 0
        Hz, to place the tilt's frequencies.
    gain_db : float >= 0
        Per chunk, in training: an attenuation drawn uniformly in ``[-gain_db, 0]`` dB.
    tilt_db_per_octave : float >= 0
        Per chunk, in training: a spectral tilt around 1 kHz drawn uniformly in
        ``[-x, x]`` dB per octave (zero-phase, through an FFT of twice the
        chunk's length so nothing wraps from one end into the other).
    shift_samples : int >= 0
        Per chunk, in training: the audio moves by a whole number of samples
        drawn uniformly in ``[-shift_samples, shift_samples]`` (the end it
        leaves is filled with the edge sample).
    edge_mask_samples : int >= 0
        The first and last ``edge_mask_samples`` of every chunk are set to
        zero, in training and in inference alike (the model sees what it was
        trained on).

    Input and output ``[shape=(B, L), dtype=int16]``: the folded chunks, as
    the encoder takes them; the output is rounded and clipped to int16.
    """

    def __init__(self, sample_rate, gain_db=0.0, tilt_db_per_octave=0.0, shift_samples=0, edge_mask_samples=0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not sample_rate > 0 or min(gain_db, tilt_db_per_octave, shift_samples, edge_mask_samples) < 0:
            raise ValueError(
                f"ChunkViews: sample_rate = {sample_rate!r} must be > 0 and gain_db = {gain_db!r}, tilt_db_per_octave = "
                f"{tilt_db_per_octave!r}, shift_samples = {shift_samples!r}, edge_mask_samples = {edge_mask_samples!r} >= 0"
            )
        self.sample_rate = int(sample_rate)
        self.gain_db = float(gain_db)
        self.tilt_db_per_octave = float(tilt_db_per_octave)
        self.shift_samples = int(shift_samples)
        self.edge_mask_samples = int(edge_mask_samples)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        length = input_shape[-1]
        if length is not None and 2 * self.edge_mask_samples >= length:
            raise ValueError(f"ChunkViews: edge_mask_samples = {self.edge_mask_samples} masks all {length} samples of a chunk")

    def call(self, chunks, training=None):
        audio = ops.cast(chunks, "float32")
        if training:
            audio = self._viewed(audio)
        if self.edge_mask_samples:
            length = ops.shape(audio)[-1]
            position = ops.arange(length)
            keep = ops.logical_and(position >= self.edge_mask_samples, position < length - self.edge_mask_samples)
            audio = audio * ops.cast(keep, "float32")
        audio = ops.clip(ops.round(audio), -INT16_SCALE, INT16_SCALE - 1)
        return ops.cast(audio, "int16")

    def _viewed(self, audio):
        batch, length = ops.shape(audio)[0], ops.shape(audio)[-1]
        if self.shift_samples:
            shift = keras.random.randint((batch, 1), -self.shift_samples, self.shift_samples + 1, seed=self.seed_generator)
            source = ops.clip(ops.arange(length)[None, :] - shift, 0, length - 1)
            audio = ops.take_along_axis(audio, ops.cast(source, "int32"), axis=-1)
        if self.tilt_db_per_octave:
            fft_length = 2 * audio.shape[-1]
            tilt = keras.random.uniform((batch, 1), -self.tilt_db_per_octave, self.tilt_db_per_octave, seed=self.seed_generator)
            frequency = np.fft.rfftfreq(fft_length, d=1.0 / self.sample_rate)
            octaves = np.log2(np.maximum(frequency, TILT_FLOOR_HZ) / TILT_PIVOT_HZ).astype("float32")
            gain = ops.power(10.0, tilt * octaves[None, :] / 20.0)
            real, imag = ops.rfft(audio, fft_length=fft_length)
            audio = ops.irfft((real * gain, imag * gain), fft_length=fft_length)[:, : audio.shape[-1]]
        if self.gain_db:
            gain_db = keras.random.uniform((batch, 1), -self.gain_db, 0.0, seed=self.seed_generator)
            audio = audio * ops.power(10.0, gain_db / 20.0)
        return audio

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            sample_rate=self.sample_rate, gain_db=self.gain_db, tilt_db_per_octave=self.tilt_db_per_octave,
            shift_samples=self.shift_samples, edge_mask_samples=self.edge_mask_samples, seed=self.seed,
        )
        return config


@keras.saving.register_keras_serializable(package="audiosort")
class SeamDropout(keras.layers.Layer):
    """In training, zero the seam scores ``(B, n, n, 1)`` of a random share ``rate`` of the puzzles; identity otherwise.

    Unlike dropout of units, nothing is rescaled: a puzzle either has the
    seam as in inference or has none, and on the latter the pair MLP's
    scores from the embeddings alone must sort it.

    Parameters
    ----------
    rate : float in [0, 1)
        Probability that a puzzle's seam term is dropped in a training step.
    """

    def __init__(self, rate, seed=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if not 0 <= rate < 1:
            raise ValueError(f"SeamDropout: rate = {rate!r} must be in [0, 1)")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, seam, training=None):
        if not training or not self.rate:
            return seam
        keep = keras.random.uniform((ops.shape(seam)[0], 1, 1, 1), seed=self.seed_generator) >= self.rate
        return seam * ops.cast(keep, seam.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed)
        return config
