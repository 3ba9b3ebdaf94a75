"""Training-only targets: what sorting throws away (:class:`SpectralTargets`), and the gaps (:class:`GapRegression`).

Issue 27: sorting rewards what changes between the chunks of one track and
ignores what stays (key, register, instrumentation): the recipe's encoder
fell from its random weights' 0.79 to 0.36 on the pitch probe. Pascual et
al. 2019 (PASE) and Ravanelli et al. 2020 keep such information by asking
the encoder to regress fixed descriptors of its own input beside the
self-supervised task. :class:`SpectralTargets` does that for two
descriptors computed in the model from the raw chunk, with no label:

chroma
    the energy in each of the 12 pitch classes (librosa's chroma filterbank,
    :func:`audiosort.spectra.chroma_filterbank`, on the STFT power), averaged over the chunk's frames;
envelope
    the chunk's mean log power in ``ENVELOPE_BANDS`` mel bands.

Both are taken as logarithms and centred over their bins, so neither depends
on the chunk's loudness. An MLP reads them off the embedding, and the squared
error joins the training loss; prediction and evaluation never compute it.

:class:`GapRegression` asks for a cue that only music has at wide gaps
(issue 27, lever 5): how far apart in time two consecutive chunks are, read
off their two embeddings (TemporalGap, Jenni et al. 2020). Its target comes
from the puzzle's starts, which the saved model never takes: it lives in a
training twin of the model (:func:`audiosort.models.build.build_gap_twin`).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from audiosort.pcm import INT16_SCALE
from audiosort.spectra import chroma_filterbank, mel_filterbank

FFT_LENGTH = 2048  # 128 ms at 16 kHz: 7.8 Hz bins, fine enough for the pitch classes above ~100 Hz
HOP_LENGTH = 512
ENVELOPE_BANDS = 16
POWER_FLOOR = 1e-8  # of the frame-mean power; keeps silent chunks' logarithms finite


def descriptor_filterbank(sample_rate: int) -> np.ndarray:
    """The chroma and envelope filterbanks stacked: ``[shape=(12 + ENVELOPE_BANDS, FFT_LENGTH // 2 + 1), float32]``."""
    chroma = chroma_filterbank(sample_rate, FFT_LENGTH)
    mel = mel_filterbank(sample_rate, FFT_LENGTH, ENVELOPE_BANDS, unit_area=False)
    return np.concatenate([chroma, mel]).astype(np.float32)


def chunk_descriptors(audio, filterbank: np.ndarray):
    """Centred log chroma and log envelope of each chunk.

    Parameters
    ----------
    audio : tensor [shape=(B, L), float32]
        Chunks, full scale 1.
    filterbank : np.ndarray [shape=(12 + ENVELOPE_BANDS, FFT_LENGTH // 2 + 1)]
        From :func:`descriptor_filterbank`.

    Returns
    -------
    tensor [shape=(B, 12 + ENVELOPE_BANDS), float32]
        The chroma's logarithms minus their mean, then the envelope's minus theirs.
    """
    real, imag = ops.stft(audio, FFT_LENGTH, HOP_LENGTH, FFT_LENGTH, window="hann", center=True)
    power = ops.mean(ops.square(real) + ops.square(imag), axis=1)  # (B, bins)
    log_energy = ops.log(ops.matmul(power, ops.convert_to_tensor(filterbank.T)) + POWER_FLOOR)
    chroma, envelope = log_energy[:, :12], log_energy[:, 12:]
    return ops.concatenate(
        [chroma - ops.mean(chroma, axis=-1, keepdims=True), envelope - ops.mean(envelope, axis=-1, keepdims=True)], axis=-1
    )


@keras.saving.register_keras_serializable(package="audiosort")
class SpectralTargets(keras.layers.Layer):
    """Identity on the embeddings ``(B, n, D)`` that, in training, adds ``weight`` times the descriptors' squared error.

    Inputs ``[embeddings (B, n, D), chunks (B, n, L) int16]``; output the
    embeddings. In training, an MLP (``hidden_units``, ReLU) predicts each
    chunk's :func:`chunk_descriptors` from its embedding; ``weight`` times the
    mean squared error over chunks and descriptors is added with ``add_loss``.

    Parameters
    ----------
    sample_rate : int > 0
        Hz of the chunks.
    weight : float > 0
        Factor of the loss in the training objective.
    hidden_units : int > 0
        Width of the predictor's hidden layer.
    """

    def __init__(self, sample_rate, weight, hidden_units=128, **kwargs):
        super().__init__(**kwargs)
        if not sample_rate > 0 or not weight > 0 or not hidden_units > 0:
            raise ValueError(f"SpectralTargets: sample_rate = {sample_rate!r}, weight = {weight!r}, hidden_units = {hidden_units!r} must be > 0")
        self.sample_rate = int(sample_rate)
        self.weight = float(weight)
        self.hidden_units = int(hidden_units)
        self.filterbank = descriptor_filterbank(self.sample_rate)
        self.hidden = keras.layers.Dense(self.hidden_units, activation="relu", name="hidden")
        self.readout = keras.layers.Dense(self.filterbank.shape[0], name="descriptors")

    def build(self, input_shapes):
        embeddings_shape, _ = input_shapes
        self.hidden.build((None, embeddings_shape[-1]))
        self.readout.build((None, self.hidden_units))

    def call(self, inputs, training=None):
        embeddings, chunks = inputs
        if training:
            dim, length = embeddings.shape[-1], chunks.shape[-1]
            audio = ops.reshape(ops.cast(chunks, "float32"), (-1, length)) * (1.0 / INT16_SCALE)
            target = ops.stop_gradient(chunk_descriptors(audio, self.filterbank))
            predicted = self.readout(self.hidden(ops.reshape(embeddings, (-1, dim))))
            self.add_loss(self.weight * ops.mean(ops.square(ops.cast(predicted, "float32") - target)))
        return embeddings

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def get_config(self):
        config = super().get_config()
        config.update(sample_rate=self.sample_rate, weight=self.weight, hidden_units=self.hidden_units)
        return config


@keras.saving.register_keras_serializable(package="audiosort")
class GapRegression(keras.layers.Layer):
    """Identity on the model's output that, in training, adds ``weight`` times the gap head's squared error.

    Inputs ``[outputs, embeddings (B, n, D), offsets (B, n) int32]``: the
    sorting model's output (returned unchanged), the chunk embeddings by slot
    (the view embeddings where ``model.views`` is on) and each slot's chunk
    start from its puzzle's earliest, in samples
    (:func:`audiosort.data.puzzles.relative_starts`). In training the slots are
    put in temporal order by their offsets; for each of the n - 1 pairs of
    consecutive chunks an MLP (``hidden_units``, ReLU) reads the two
    embeddings, earlier first, and predicts the gap between them scaled to
    [0, 1] over ``[pad_min_samples, pad_max_samples]``, so that one weight
    means the same at any gap range; ``weight`` times the mean squared error
    over pairs is added with ``add_loss``. The offsets reach only the target
    (behind a stop-gradient): the encoder still sees each chunk's own audio
    alone, and the sorter never sees the offsets or the gap head.

    Parameters
    ----------
    chunk_samples : int > 0
        Length L of a chunk, in samples.
    pad_min_samples, pad_max_samples : int, 0 <= min < max
        The gap range of the training puzzles, in samples.
    weight : float > 0
        Factor of the loss in the training objective (``model.gap_regression.weight``).
    hidden_units : int > 0
        Width of the gap head's hidden layer.
    """

    def __init__(self, chunk_samples, pad_min_samples, pad_max_samples, weight, hidden_units=128, **kwargs):
        # float32 whatever the policy: the output it passes on is the model's float32 log-probabilities.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if not chunk_samples > 0 or not 0 <= pad_min_samples < pad_max_samples or not weight > 0 or not hidden_units > 0:
            raise ValueError(
                f"GapRegression: chunk_samples = {chunk_samples!r}, weight = {weight!r} and hidden_units = {hidden_units!r} "
                f"must be > 0, and 0 <= pad_min_samples = {pad_min_samples!r} < pad_max_samples = {pad_max_samples!r}"
            )
        self.chunk_samples = int(chunk_samples)
        self.pad_min_samples = int(pad_min_samples)
        self.pad_max_samples = int(pad_max_samples)
        self.weight = float(weight)
        self.hidden_units = int(hidden_units)
        self.hidden = keras.layers.Dense(self.hidden_units, activation="relu", dtype="float32", name="gap_hidden")
        self.readout = keras.layers.Dense(1, dtype="float32", name="gap")

    def build(self, input_shapes):
        _, embeddings_shape, _ = input_shapes
        self.hidden.build((None, 2 * embeddings_shape[-1]))
        self.readout.build((None, self.hidden_units))

    def call(self, inputs, training=None):
        outputs, embeddings, offsets = inputs
        if training:
            self.add_loss(self.weight * ops.mean(ops.square(self.predicted_gaps(embeddings, offsets) - self.gap_targets(offsets))))
        return outputs

    def gap_targets(self, offsets):
        """The n - 1 gaps of each puzzle in temporal order, scaled to [0, 1] over the gap range: ``(B, n - 1)`` float32."""
        ordered = ops.sort(ops.cast(offsets, "float32"), axis=-1)
        gap_samples = ordered[:, 1:] - ordered[:, :-1] - self.chunk_samples
        return ops.stop_gradient((gap_samples - self.pad_min_samples) / (self.pad_max_samples - self.pad_min_samples))

    def predicted_gaps(self, embeddings, offsets):
        """The head's estimate of each gap from the two chunks' embeddings, earlier first: ``(B, n - 1)`` float32."""
        slot_at = ops.argsort(offsets, axis=-1)  # (B, n): the slot at each temporal position
        ordered = ops.take_along_axis(ops.cast(embeddings, "float32"), slot_at[:, :, None], axis=1)
        pairs = ops.concatenate([ordered[:, :-1], ordered[:, 1:]], axis=-1)  # (B, n - 1, 2 D)
        return self.readout(self.hidden(pairs))[..., 0]

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def get_config(self):
        config = super().get_config()
        config.update(
            chunk_samples=self.chunk_samples, pad_min_samples=self.pad_min_samples, pad_max_samples=self.pad_max_samples,
            weight=self.weight, hidden_units=self.hidden_units,
        )
        return config
