"""Training-only targets: what sorting throws away (:class:`SpectralTargets`: pitch classes, spectral envelope, tempo), and the gaps (:class:`GapRegression`).

Issue 27: sorting rewards what changes between the chunks of one track and
ignores what stays (key, register, instrumentation): the recipe's encoder
fell from its random weights' 0.79 to 0.36 on the pitch probe. Pascual et
al. 2019 (PASE) and Ravanelli et al. 2020 keep such information by asking
the encoder to regress fixed descriptors of its own input beside the
self-supervised task. :class:`SpectralTargets` does that for descriptors
computed in the model from the raw chunk, with no label:

chroma
    the energy in each of the 12 pitch classes (librosa's chroma filterbank,
    :func:`audiosort.spectra.chroma_filterbank`, on the STFT power), averaged over the chunk's frames;
envelope
    the chunk's mean log power in ``ENVELOPE_BANDS`` mel bands;
tempogram (its own weight)
    the autocorrelation of the chunk's onset strength at ``TEMPOGRAM_LAGS``
    (:func:`chunk_tempogram`): how periodic its onsets are at each period,
    the local tempogram of Grosche et al. 2010, what stays along a track
    and what a chunk two beats away shares.

Chroma and envelope are taken as logarithms and centred over their bins, and
the tempogram is divided by its value at lag 0, so none depends on the
chunk's loudness. An MLP reads them off the embedding, and the squared error
joins the training loss; prediction and evaluation never compute it.

:class:`GapRegression` asks for a cue that only music has at wide gaps
(issue 27, lever 5): how far apart in time two consecutive chunks are, read
off their two embeddings (TemporalGap, Jenni et al. 2020). Its target comes
from the puzzle's starts, which the saved model never takes: it lives in a
training twin of the model (:func:`audiosort.models.build.build_training_twin`).

:class:`EmbeddingsOnlyOrder` (issue 27, lever 2) asks the pairwise seam head
to sort every training puzzle a second time from the embeddings alone, its
seam muted, so that the encoder must carry order itself; it needs the true
order, which comes to it through the same twin.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from audiosort.models.layers import PermutationMarginals
from audiosort.pcm import INT16_SCALE
from audiosort.spectra import chroma_filterbank, mel_filterbank

FFT_LENGTH = 2048  # 128 ms at 16 kHz: 7.8 Hz bins, fine enough for the pitch classes above ~100 Hz
HOP_LENGTH = 512
ENVELOPE_BANDS = 16
POWER_FLOOR = 1e-8  # of the frame-mean power; keeps silent chunks' logarithms finite
# The onset front end of the probe's clip-long tempogram (audiosort.probe.tempogram): 32 ms windows every 10 ms.
TEMPOGRAM_FRAME_SECONDS = 0.032
TEMPOGRAM_HOP_SECONDS = 0.010
ONSET_BANDS = 40
# Below the chunk's loudest band and frame: librosa's top_db of 80 dB, so a gain changes no difference of logs.
ONSET_DYNAMIC_RANGE = 1e-8
# In hops: 40 to 350 ms (2.9 to 25 onsets a second). Shorter lags see the 32 ms window's own overlap; at
# 350 ms a 0.5 s chunk still has 11 pairs of onset frames to correlate.
TEMPOGRAM_LAGS = tuple(range(4, 36))


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


def chunk_tempogram(audio, *, sample_rate: int):
    """Autocorrelation of each chunk's onset strength at ``TEMPOGRAM_LAGS``, divided by its value at lag 0.

    Onset strength as librosa's ``onset_strength``: the rectified rise of the
    log power in ``ONSET_BANDS`` mel bands from one 32 ms frame to the next
    (hop 10 ms), averaged over the bands, with the logs floored
    ``ONSET_DYNAMIC_RANGE`` below the chunk's loudest band and frame. Its
    mean over the chunk is removed before correlating, so the value at a lag
    says how much more alike the onsets that far apart are than the chunk's
    average, and a periodic rhythm peaks at its period.

    Parameters
    ----------
    audio : tensor [shape=(B, L), float32]
        Chunks, full scale 1. A chunk shorter than a frame is one frame long.
    sample_rate : int > 0
        Hz.

    Returns
    -------
    tensor [shape=(B, len(TEMPOGRAM_LAGS)), float32]
        In [-1, 1]; zero at lags the chunk is too short for, and everywhere
        for a chunk without onsets.
    """
    length = audio.shape[-1]
    frame_samples = min(round(TEMPOGRAM_FRAME_SECONDS * sample_rate), length)
    hop_samples = round(TEMPOGRAM_HOP_SECONDS * sample_rate)
    fft_length = 2 ** math.ceil(math.log2(frame_samples))
    filterbank = mel_filterbank(sample_rate, fft_length, ONSET_BANDS, unit_area=False)
    real, imag = ops.stft(audio, frame_samples, hop_samples, fft_length, window="hann", center=False)
    mel = ops.matmul(ops.square(real) + ops.square(imag), ops.convert_to_tensor(filterbank.T))  # (B, frames, bands)
    floor = ops.maximum(ONSET_DYNAMIC_RANGE * ops.max(mel, axis=(1, 2), keepdims=True), np.finfo(np.float32).tiny)
    log_mel = ops.log(ops.maximum(mel, floor))
    onsets = ops.mean(ops.relu(log_mel[:, 1:] - log_mel[:, :-1]), axis=-1)  # (B, frames - 1)
    onsets = onsets - ops.mean(onsets, axis=-1, keepdims=True)
    n_onsets = onsets.shape[-1]
    energy = ops.sum(ops.square(onsets), axis=-1)
    lags = [
        ops.sum(onsets[:, lag:] * onsets[:, :-lag], axis=-1) if lag < n_onsets else ops.zeros_like(energy)
        for lag in TEMPOGRAM_LAGS
    ]
    # A chunk without onsets has zero energy: its correlations are zero, not 0 / 0.
    return ops.stack(lags, axis=-1) / ops.expand_dims(ops.maximum(energy, POWER_FLOOR), -1)


@keras.saving.register_keras_serializable(package="audiosort")
class SpectralTargets(keras.layers.Layer):
    """Identity on the embeddings ``(B, n, D)`` that, in training, adds the descriptors' weighted squared errors.

    Inputs ``[embeddings (B, n, D), chunks (B, n, L) int16]``; output the
    embeddings. In training, an MLP (``hidden_units``, ReLU) predicts each
    chunk's :func:`chunk_descriptors` (if ``weight`` > 0) and its
    :func:`chunk_tempogram` (if ``tempogram_weight`` > 0) from its embedding;
    each weight times the mean squared error over chunks and that
    descriptor's values is added with ``add_loss``.

    Parameters
    ----------
    sample_rate : int > 0
        Hz of the chunks.
    weight : float >= 0
        Factor of the chroma and envelope loss; 0 leaves them out.
    hidden_units : int > 0
        Width of the predictor's hidden layer.
    tempogram_weight : float >= 0
        Factor of the tempogram loss; 0 leaves it out (the layer is then as
        it was before the tempogram). One of the two weights must be > 0.
    """

    def __init__(self, sample_rate, weight, hidden_units=128, tempogram_weight=0.0, **kwargs):
        super().__init__(**kwargs)
        if not sample_rate > 0 or not hidden_units > 0 or not (weight >= 0 and tempogram_weight >= 0 and weight + tempogram_weight > 0):
            raise ValueError(
                f"SpectralTargets: sample_rate = {sample_rate!r} and hidden_units = {hidden_units!r} must be > 0, weight = "
                f"{weight!r} and tempogram_weight = {tempogram_weight!r} >= 0 and not both 0"
            )
        self.sample_rate = int(sample_rate)
        self.weight = float(weight)
        self.hidden_units = int(hidden_units)
        self.tempogram_weight = float(tempogram_weight)
        self.filterbank = descriptor_filterbank(self.sample_rate)
        self.spectral_width = self.filterbank.shape[0] if self.weight > 0 else 0
        width = self.spectral_width + (len(TEMPOGRAM_LAGS) if self.tempogram_weight > 0 else 0)
        self.hidden = keras.layers.Dense(self.hidden_units, activation="relu", name="hidden")
        self.readout = keras.layers.Dense(width, name="descriptors")

    def build(self, input_shapes):
        embeddings_shape, _ = input_shapes
        self.hidden.build((None, embeddings_shape[-1]))
        self.readout.build((None, self.hidden_units))

    def call(self, inputs, training=None):
        embeddings, chunks = inputs
        if training:
            dim, length = embeddings.shape[-1], chunks.shape[-1]
            audio = ops.reshape(ops.cast(chunks, "float32"), (-1, length)) * (1.0 / INT16_SCALE)
            predicted = ops.cast(self.readout(self.hidden(ops.reshape(embeddings, (-1, dim)))), "float32")
            if self.weight > 0:
                target = ops.stop_gradient(chunk_descriptors(audio, self.filterbank))
                self.add_loss(self.weight * ops.mean(ops.square(predicted[:, : self.spectral_width] - target)))
            if self.tempogram_weight > 0:
                target = ops.stop_gradient(chunk_tempogram(audio, sample_rate=self.sample_rate))
                self.add_loss(self.tempogram_weight * ops.mean(ops.square(predicted[:, self.spectral_width :] - target)))
        return embeddings

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def get_config(self):
        config = super().get_config()
        config.update(
            sample_rate=self.sample_rate, weight=self.weight, hidden_units=self.hidden_units, tempogram_weight=self.tempogram_weight
        )
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


@keras.saving.register_keras_serializable(package="audiosort")
class EmbeddingsOnlyOrder(keras.layers.Layer):
    """Identity on the model's output that, in training, adds ``weight`` times the sorting loss of the embeddings alone.

    Inputs ``[outputs, successor (B, n, n, 1), first (B, n, 1), last (B, n, 1),
    offsets (B, n) int32]``: the sorting model's output (returned unchanged),
    the pairwise head's join scores computed from the chunk embeddings
    without the seam term (:func:`audiosort.models.sorters.join_scores`
    without edges), and each slot's chunk start from its puzzle's earliest,
    in samples (:func:`audiosort.data.puzzles.relative_starts`), whose ranks
    are the true order. In training, the join scores become position
    log-probabilities over all n! orders (:class:`PermutationMarginals`, as the
    head itself does), and ``weight`` times their row cross-entropy against
    the true order (nats per slot, the head's ``rows`` loss) is added with
    ``add_loss``. Prediction and evaluation compute nothing.

    Parameters
    ----------
    n_chunks : int in [2, 7]
        Slots per puzzle, n.
    weight : float > 0
        Factor of the loss in the training objective (``model.embeddings_only.weight``).
    """

    def __init__(self, n_chunks, weight, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if not weight > 0:
            raise ValueError(f"EmbeddingsOnlyOrder: weight = {weight!r} must be > 0")
        self.n_chunks = int(n_chunks)
        self.weight = float(weight)
        self.marginals = PermutationMarginals(self.n_chunks, name="embeddings_only_marginals")

    def build(self, input_shapes):
        n = self.n_chunks
        self.marginals.build([(None, n, n), (None, n), (None, n)])

    def call(self, inputs, training=None):
        outputs, successor, first, last, offsets = inputs
        if training:
            self.add_loss(self.weight * ops.mean(self.slot_cross_entropy(successor, first, last, offsets)))
        return outputs

    def slot_cross_entropy(self, successor, first, last, offsets):
        """Minus the log-probability of each slot's true position under the embeddings alone: ``(B, n)`` float32, nats."""
        n = self.n_chunks
        log_probs = self.marginals([ops.reshape(successor, (-1, n, n)), ops.reshape(first, (-1, n)), ops.reshape(last, (-1, n))])
        order = ops.argsort(ops.argsort(offsets, axis=-1), axis=-1)  # (B, n): each slot's temporal position
        return -ops.take_along_axis(log_probs, ops.cast(order, "int32")[:, :, None], axis=-1)[..., 0]

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def get_config(self):
        config = super().get_config()
        config.update(n_chunks=self.n_chunks, weight=self.weight)
        return config
