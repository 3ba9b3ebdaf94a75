"""Custom Keras layers: int16 front end, log-mel spectrogram, slot folding, row normalizations, order marginals, times.

Every layer here uses only ``keras.ops``, so a model runs unchanged under the
TensorFlow and JAX backends, and is registered under the package name
"audiosort" so that ``keras.saving.load_model`` rebuilds it from a ``.keras``
file once :mod:`audiosort.models` has been imported.

Shapes use B for the batch, n for the chunks (slots) of a puzzle and L for the
samples of a chunk.
"""

from __future__ import annotations

import itertools

import keras
import numpy as np
from keras import ops

from audiosort import spectra
from audiosort.pcm import INT16_SCALE


@keras.saving.register_keras_serializable(package="audiosort")
class Int16ToFloat(keras.layers.Layer):
    """Scale int16 PCM samples to floats in [-1, 1).

    Input ``[shape=(B, ...), dtype=int16]``; output the same shape in the
    layer's compute dtype, divided by 32768 (int16 full scale). Keeping this
    inside the model means every caller feeds the corpus's int16 chunks as they
    are, and a saved encoder carries its own input scaling.
    """

    def call(self, inputs):
        return ops.cast(inputs, self.compute_dtype) * (1.0 / INT16_SCALE)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="audiosort")
class LogMelSpectrogram(keras.layers.Layer):
    """Log-mel power spectrogram of mono audio, computed with matrix products.

    Frames of ``frame_length`` samples every ``frame_step`` samples (no
    centering or padding: the first frame starts at sample 0) are windowed by a
    periodic Hann window, zero-padded to ``fft_length`` and transformed by a
    real DFT written as one strided convolution with fixed cosine and sine
    kernels. The power spectrum is projected onto a Slaney mel filterbank and
    its log taken.

    Parameters
    ----------
    sample_rate : int > 0
        Sampling rate of the input, in Hz.
    frame_length : int > 0
        Window length, in samples (400 = 25 ms at 16 kHz).
    frame_step : int > 0
        Hop between consecutive frames, in samples (160 = 10 ms at 16 kHz).
    fft_length : int >= frame_length
        DFT size, in samples; gives ``fft_length // 2 + 1`` frequency bins.
    n_mels : int > 0
        Number of mel bands.
    f_min, f_max : float
        Lowest and highest filterbank frequency, in Hz; ``f_max=None`` means
        ``sample_rate / 2``.
    log_offset : float > 0
        Added to the mel power before the log, so silence maps to a finite
        ``log(log_offset)`` instead of -inf.

    Input ``[shape=(B, L), float]`` with ``L >= frame_length``, audio in
    [-1, 1]; output ``[shape=(B, 1 + (L - frame_length) // frame_step, n_mels)]``.

    Notes
    -----
    The filterbank (:func:`audiosort.spectra.mel_filterbank`, equal to
    ``librosa.filters.mel(htk=False, norm="slaney")``) and the DFT kernels
    (:func:`audiosort.spectra.windowed_dft_matrix`) are rebuilt from the
    constructor arguments rather than stored as weights, so they add no
    parameters. The result equals ``librosa.feature.melspectrogram(center=False,
    power=2)`` of the same frames.
    """

    def __init__(
        self,
        sample_rate,
        frame_length,
        frame_step,
        fft_length,
        n_mels,
        f_min=0.0,
        f_max=None,
        log_offset=1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        positive_ints = {"sample_rate": sample_rate, "frame_length": frame_length, "frame_step": frame_step, "n_mels": n_mels}
        for name, value in positive_ints.items():
            if int(value) != value or value < 1:
                raise ValueError(f"LogMelSpectrogram: {name} = {value!r} must be a positive integer")
        if int(fft_length) != fft_length or fft_length < frame_length:
            raise ValueError(f"LogMelSpectrogram: fft_length = {fft_length!r} must be an integer >= frame_length ({frame_length})")
        if log_offset <= 0:
            raise ValueError(f"LogMelSpectrogram: log_offset = {log_offset!r} must be > 0")
        self.sample_rate = int(sample_rate)
        self.frame_length = int(frame_length)
        self.frame_step = int(frame_step)
        self.fft_length = int(fft_length)
        self.n_mels = int(n_mels)
        self.f_min = float(f_min)
        self.f_max = None if f_max is None else float(f_max)
        self.log_offset = float(log_offset)
        self._dft_kernel = spectra.windowed_dft_matrix(self.frame_length, self.fft_length)[:, None, :]
        self._mel_matrix = spectra.mel_filterbank(
            self.sample_rate, self.fft_length, self.n_mels, f_min=self.f_min, f_max=self.f_max
        ).T

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"LogMelSpectrogram expects (batch, samples) input, got shape {input_shape}")
        samples = input_shape[1]
        if samples is not None and samples < self.frame_length:
            raise ValueError(f"LogMelSpectrogram: input of {samples} samples is shorter than frame_length = {self.frame_length}")

    def call(self, inputs):
        dft_kernel = ops.convert_to_tensor(self._dft_kernel, dtype=self.compute_dtype)
        mel_matrix = ops.convert_to_tensor(self._mel_matrix, dtype=self.compute_dtype)
        # One strided convolution = framing + window + DFT, without materializing the frames.
        spectrum = ops.conv(inputs[:, :, None], dft_kernel, strides=self.frame_step, padding="valid")
        n_bins = self.fft_length // 2 + 1
        power = ops.square(spectrum[..., :n_bins]) + ops.square(spectrum[..., n_bins:])
        return ops.log(ops.matmul(power, mel_matrix) + self.log_offset)

    def compute_output_shape(self, input_shape):
        batch, samples = input_shape
        frames = None if samples is None else 1 + (samples - self.frame_length) // self.frame_step
        return (batch, frames, self.n_mels)

    def get_config(self):
        config = super().get_config()
        config.update(
            sample_rate=self.sample_rate,
            frame_length=self.frame_length,
            frame_step=self.frame_step,
            fft_length=self.fft_length,
            n_mels=self.n_mels,
            f_min=self.f_min,
            f_max=self.f_max,
            log_offset=self.log_offset,
        )
        return config


@keras.saving.register_keras_serializable(package="audiosort")
class TimeStatistics(keras.layers.Layer):
    """Mean and standard deviation over time of every other feature: ``(B, T, ...)`` -> ``(B, 2 * prod(...))``.

    A time-frequency map ``(B, T, F, C)`` keeps its F * C features apart, so
    where in frequency a feature fires survives the pooling; only when is lost.
    """

    def call(self, inputs):
        x = ops.reshape(inputs, (ops.shape(inputs)[0], ops.shape(inputs)[1], -1))
        mean = ops.mean(x, axis=1)
        std = ops.sqrt(ops.maximum(ops.mean(ops.square(x), axis=1) - ops.square(mean), 0.0) + 1e-6)
        return ops.concatenate([mean, std], axis=-1)

    def compute_output_shape(self, input_shape):
        features = 1
        for size in input_shape[2:]:
            features *= size
        return (input_shape[0], 2 * features)


@keras.saving.register_keras_serializable(package="audiosort")
class FoldSlots(keras.layers.Layer):
    """Merge the slot axis into the batch: ``(B, n, *rest)`` -> ``(B * n, *rest)``.

    With :class:`UnfoldSlots` this applies one encoder to every chunk in a
    single call, so all chunks share its weights and its batch-norm statistics.
    """

    def call(self, inputs):
        return ops.reshape(inputs, (-1, *inputs.shape[2:]))

    def compute_output_shape(self, input_shape):
        batch, slots, *rest = input_shape
        folded = None if batch is None or slots is None else batch * slots
        return (folded, *rest)


@keras.saving.register_keras_serializable(package="audiosort")
class UnfoldSlots(keras.layers.Layer):
    """Split the batch back into puzzles: ``(B * n, *rest)`` -> ``(B, n, *rest)``.

    Parameters
    ----------
    n_chunks : int >= 1 or None
        Slots per puzzle, n. None: any n, read at call time from a second
        input, the puzzles ``(B, n, ...)`` that were folded (a model that grows
        n during training, see ``train.n_chunks_schedule``).
    """

    def __init__(self, n_chunks, **kwargs):
        super().__init__(**kwargs)
        if n_chunks is not None and (int(n_chunks) != n_chunks or n_chunks < 1):
            raise ValueError(f"UnfoldSlots: n_chunks = {n_chunks!r} must be a positive integer or None")
        self.n_chunks = None if n_chunks is None else int(n_chunks)

    def call(self, inputs):
        if self.n_chunks is None:
            folded, puzzles = inputs
            return ops.reshape(folded, (ops.shape(puzzles)[0], ops.shape(puzzles)[1], *folded.shape[1:]))
        return ops.reshape(inputs, (-1, self.n_chunks, *inputs.shape[1:]))

    def compute_output_shape(self, input_shape):
        if self.n_chunks is None:
            (_, *rest), (batch, n_chunks, *_) = input_shape
            return (batch, n_chunks, *rest)
        batch, *rest = input_shape
        return (None if batch is None else batch // self.n_chunks, self.n_chunks, *rest)

    def get_config(self):
        config = super().get_config()
        config.update(n_chunks=self.n_chunks)
        return config


@keras.saving.register_keras_serializable(package="audiosort")
class StopGradient(keras.layers.Layer):
    """The identity, through which no gradient flows back (``model.embeddings_only.stop_gradient``)."""

    def call(self, x):
        return ops.stop_gradient(x)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="audiosort")
class RowLogSoftmax(keras.layers.Layer):
    """Log-softmax over the last axis: each row of ``(B, n, n)`` scores becomes log-probabilities.

    Output ``[shape=(B, n, n)]`` with ``logsumexp(output, axis=-1) == 0``.
    """

    def call(self, inputs):
        return ops.log_softmax(inputs, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="audiosort")
class Sinkhorn(keras.layers.Layer):
    """Log-space Sinkhorn normalization of square score matrices.

    Alternately subtracts each row's and each column's logsumexp, ``iterations``
    times, then normalizes the rows once more, so that the rows of
    ``exp(output)`` sum to 1 exactly and its columns approach 1: a nearly
    doubly-stochastic matrix, i.e. a soft permutation (Mena et al. 2018,
    "Learning latent permutations with Gumbel-Sinkhorn networks", sec. 2,
    without the Gumbel noise).

    Parameters
    ----------
    iterations : int >= 1
        Row-and-column normalization rounds.

    Input ``[shape=(B, n, n)]`` scores; output ``[shape=(B, n, n)]`` log-probabilities,
    row i over positions for slot i.
    """

    def __init__(self, iterations, **kwargs):
        super().__init__(**kwargs)
        if int(iterations) != iterations or iterations < 1:
            raise ValueError(f"Sinkhorn: iterations = {iterations!r} must be a positive integer")
        self.iterations = int(iterations)

    def build(self, input_shape):
        if len(input_shape) != 3 or (None not in input_shape[1:] and input_shape[1] != input_shape[2]):
            raise ValueError(f"Sinkhorn expects (batch, n, n) scores, got shape {input_shape}")

    def call(self, inputs):
        log_p = ops.cast(inputs, self.compute_dtype)
        for _ in range(self.iterations):
            log_p = log_p - ops.logsumexp(log_p, axis=-1, keepdims=True)
            log_p = log_p - ops.logsumexp(log_p, axis=-2, keepdims=True)
        return log_p - ops.logsumexp(log_p, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(iterations=self.iterations)
        return config


@keras.saving.register_keras_serializable(package="audiosort")
class PairFeatures(keras.layers.Layer):
    """Every ordered pair of slots side by side: ``(B, n, D)`` -> ``(B, n, n, 2D)``.

    ``output[b, i, j] = concat(inputs[b, i], inputs[b, j])``: features of "the
    chunk in slot j comes right after the one in slot i", for a head that
    scores each pair with shared weights.
    """

    def call(self, inputs):
        # Broadcasting against zeros rather than repeat(n): n may be unknown until the call.
        zeros = ops.zeros_like(inputs)
        before = ops.expand_dims(inputs, 2) + ops.expand_dims(zeros, 1)
        after = ops.expand_dims(inputs, 1) + ops.expand_dims(zeros, 2)
        return ops.concatenate([before, after], axis=-1)

    def compute_output_shape(self, input_shape):
        batch, n, width = input_shape
        return (batch, n, n, 2 * width)


@keras.saving.register_keras_serializable(package="audiosort")
class PermutationMarginals(keras.layers.Layer):
    """Exact position log-probabilities of a distribution over all n! orders.

    An order (a sequence of slots s_0 ... s_{n-1}, slot s_k at position k)
    scores ``first[s_0] + sum_k successor[s_k, s_{k+1}] + last[s_{n-1}]``;
    the orders' probabilities are the softmax of those scores, and
    ``output[b, i, j] = log P(slot i at position j)``, summed over every order
    that puts it there. Rows and columns of ``exp(output)`` sum to 1 exactly.
    n! orders are enumerated, so n is at most :data:`MAX_ENUMERATED_CHUNKS`.

    Inputs ``[successor (B, n, n), first (B, n), last (B, n)]`` raw scores;
    output ``[shape=(B, n, n)]`` log-probabilities, computed in float32. With
    ``with_orders`` the log-probabilities of the n! orders (in the order of
    ``itertools.permutations(range(n))``, each a sequence of slots) follow as
    n! more columns, the same in every row: ``[shape=(B, n, n + n!)]``, for
    the order-level loss (:class:`audiosort.models.objectives.OrderLoss`),
    which the marginals alone cannot give.
    """

    MAX_ENUMERATED_CHUNKS = 7

    def __init__(self, n_chunks, with_orders=False, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.with_orders = bool(with_orders)
        if int(n_chunks) != n_chunks or not 2 <= n_chunks <= self.MAX_ENUMERATED_CHUNKS:
            raise ValueError(
                f"PermutationMarginals: n_chunks = {n_chunks!r} must be an integer in [2, {self.MAX_ENUMERATED_CHUNKS}]"
            )
        self.n_chunks = int(n_chunks)
        orders = np.array(list(itertools.permutations(range(self.n_chunks))), dtype=np.int32)  # (n!, n) slots
        self._orders = orders
        self._successor_index = orders[:, :-1] * self.n_chunks + orders[:, 1:]  # (n!, n-1) into a flat n x n
        # _placement[p, i, j]: 0 where order p puts slot i at position j, else a very negative number.
        placement = np.full((len(orders), self.n_chunks, self.n_chunks), -1e9, dtype=np.float32)
        rows = np.repeat(np.arange(len(orders)), self.n_chunks)
        placement[rows, orders.ravel(), np.tile(np.arange(self.n_chunks), len(orders))] = 0.0
        self._placement = placement

    def call(self, inputs):
        successor, first, last = (ops.cast(x, "float32") for x in inputs)
        n = self.n_chunks
        flat = ops.reshape(successor, (-1, n * n))
        scores = ops.sum(ops.take(flat, self._successor_index, axis=1), axis=-1)  # (B, n!)
        scores = scores + ops.take(first, self._orders[:, 0], axis=1) + ops.take(last, self._orders[:, -1], axis=1)
        log_p = ops.log_softmax(scores, axis=-1)
        marginals = ops.logsumexp(log_p[:, :, None, None] + self._placement[None], axis=1)
        if not self.with_orders:
            return marginals
        orders = ops.repeat(log_p[:, None, :], n, axis=1)
        return ops.concatenate([marginals, orders], axis=-1)

    def compute_output_shape(self, input_shape):
        width = self.n_chunks + (len(self._orders) if self.with_orders else 0)
        return (input_shape[0][0], self.n_chunks, width)

    def get_config(self):
        config = super().get_config()
        config.update(n_chunks=self.n_chunks, with_orders=self.with_orders)
        return config


@keras.saving.register_keras_serializable(package="audiosort")
class ExpectedRankScores(keras.layers.Layer):
    """Position scores from pairwise precedence: each slot's expected rank, then a peak around it.

    ``before[b, i, j]`` is a logit that slot i comes (anywhere) before slot j.
    It is made antisymmetric, ``d = before - before^T``, so that
    ``P(i before j) = sigmoid(d[i, j]) = 1 - P(j before i)``; slot i's expected
    position is ``r_i = sum_{j != i} P(j before i)``, in [0, n - 1]; and its
    score for position k is ``-(k - r_i)**2 / (2 * width**2)``, with ``width``
    (positions) learned. Nothing is enumerated, so n may be large, and
    permuting the slots permutes the rows alike.

    Input ``[shape=(B, n, n)]`` precedence logits; output ``[shape=(B, n, n)]``
    raw scores (row i over positions), computed in float32.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def build(self, input_shape):
        # softplus(0.5) ~ 0.97: a peak about one position wide at the start.
        self.width = self.add_weight(shape=(), initializer=keras.initializers.Constant(0.5), name="width")

    def call(self, inputs):
        before = ops.cast(inputs, "float32")
        n = before.shape[-1]
        precedes = ops.sigmoid(before - ops.transpose(before, (0, 2, 1)))  # [b, j, i]: P(j before i)
        expected = ops.sum(precedes, axis=1) - 0.5  # the diagonal is sigmoid(0) = 0.5
        positions = ops.arange(n, dtype="float32")
        width = ops.softplus(self.width) + 1e-3
        return -ops.square(positions[None, None, :] - expected[:, :, None]) / (2.0 * ops.square(width))

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="audiosort")
class TimePositionScores(keras.layers.Layer):
    """Position scores from one scalar "time" per slot: a unit-width peak at position ``time``.

    ``output[b, i, j] = time[b, i] * j - j**2 / 2``, which is
    ``-(j - time[b, i])**2 / 2`` up to a constant per row: after a row
    softmax, a discretized Gaussian of width one position around the time.
    Hungarian decoding of these scores is the argsort of the times (by the
    rearrangement inequality, ``sum_i time_i * pos_i`` is largest when the
    positions follow the times), and the times can be read back from the row
    log-probabilities as ``log_probs[..., 1] - log_probs[..., 0] + 1/2``
    (:class:`audiosort.models.objectives.PlackettLuceLoss` does so). Any n.

    Input ``[shape=(B, n)]`` times; output ``[shape=(B, n, n)]`` raw scores
    (row i over positions), computed in float32.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, inputs):
        time = ops.cast(inputs, "float32")
        positions = ops.cast(ops.arange(ops.shape(time)[1]), "float32")
        return time[:, :, None] * positions[None, None, :] - 0.5 * ops.square(positions)[None, None, :]

    def compute_output_shape(self, input_shape):
        batch, n_chunks = input_shape
        return (batch, n_chunks, n_chunks)


@keras.saving.register_keras_serializable(package="audiosort")
class SuccessorLogits(keras.layers.Layer):
    """The successor head's output: "slot j right after slot i" logits over n slots and one edge node.

    Index n is the edge of the puzzle, before its first chunk and after its
    last, so that an order is a cycle through all n + 1 nodes and every node
    has exactly one successor and one predecessor: ``output[b, i, j]`` is
    ``successor[b, i, j]`` for slots i != j, ``output[b, i, n]`` is
    ``last[b, i]`` (slot i ends the puzzle), ``output[b, n, j]`` is
    ``first[b, j]`` (slot j starts it), and the diagonal, which no order
    uses, is :data:`MASKED`. A row softmax then reads "what follows i", a
    column softmax "what precedes j" (:class:`audiosort.models.objectives.SuccessorLoss`).
    Nothing is sized by n.

    Inputs ``[successor (B, n, n, 1), first (B, n, 1), last (B, n, 1)]`` raw
    scores (the trailing axis of one Dense unit each); output
    ``[shape=(B, n + 1, n + 1)]`` logits, computed in float32.
    """

    MASKED = -1e9

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, inputs):
        successor, first, last = (ops.cast(ops.squeeze(x, axis=-1), "float32") for x in inputs)
        n = ops.shape(successor)[1]
        same_slot = ops.equal(ops.arange(n)[:, None], ops.arange(n)[None, :])
        successor = ops.where(same_slot[None], self.MASKED, successor)
        slots = ops.concatenate([successor, last[:, :, None]], axis=2)  # (B, n, n + 1)
        edge_to_edge = ops.full_like(first[:, :1], self.MASKED)
        edge = ops.concatenate([first, edge_to_edge], axis=1)[:, None, :]  # (B, 1, n + 1)
        return ops.concatenate([slots, edge], axis=1)

    def compute_output_shape(self, input_shape):
        batch, n_chunks = input_shape[0][:2]
        size = None if n_chunks is None else n_chunks + 1
        return (batch, size, size)


@keras.saving.register_keras_serializable(package="audiosort")
class JoinMismatch(keras.layers.Layer):
    """How far the end of each slot's chunk is from the start of every other: ``(tail_i - head_j)**2``.

    ``output[b, i, j] = (tails[b, i] - heads[b, j])**2``, per feature: the
    learned counterpart of the continuity baseline's distance between one
    chunk's last frames and the next one's first, which an MLP on the two
    embeddings side by side (:class:`PairFeatures`) would have to learn to
    subtract and square by itself.

    Inputs ``[tails (B, n, D), heads (B, n, D)]``; output ``[shape=(B, n, n, D)]``.
    """

    def call(self, inputs):
        tails, heads = inputs
        return ops.square(ops.expand_dims(tails, 2) - ops.expand_dims(heads, 1))

    def compute_output_shape(self, input_shape):
        (batch, n_chunks, width), _ = input_shape
        return (batch, n_chunks, n_chunks, width)


@keras.saving.register_keras_serializable(package="audiosort")
class EdgeLogMel(keras.layers.Layer):
    """The log-mel spectra of each chunk's two flush edges, exactly as the continuity baseline computes them.

    The last and the first ``edge_samples`` of every chunk (flush with its
    ends: no framing or padding loses them), each one Hann-windowed frame,
    zero-padded, as power per bin, pooled into the baseline's row-normalized
    mel bands, floored at the power of int16 rounding noise and logged
    (:func:`audiosort.spectra.edge_log_mel`, which the continuity baseline
    runs, on the same window and filterbank). Fixed: no weights. The learned seam term
    (:class:`SeamScores`) compares these, so that a head that starts from it
    starts where the baseline is.

    Parameters
    ----------
    sample_rate : int > 0
        Of the audio, in Hz.
    edge_samples : int > 0
        Length of each edge, in samples (240 = the baseline's 15 ms at 16 kHz);
        the whole chunk where it is shorter.

    Input ``[shape=(B, L), float]`` audio in [-1, 1); output
    ``[shape=(B, 2, n_mels)]``: row 0 the chunk's end ("tail"), row 1 its
    start ("head"), n_mels = :data:`audiosort.spectra.EDGE_MELS`.
    """

    def __init__(self, sample_rate, edge_samples, **kwargs):
        kwargs.setdefault("dtype", "float32")  # power spectra overflow float16
        super().__init__(**kwargs)
        for name, value in {"sample_rate": sample_rate, "edge_samples": edge_samples}.items():
            if int(value) != value or value < 1:
                raise ValueError(f"EdgeLogMel: {name} = {value!r} must be a positive integer")
        self.sample_rate = int(sample_rate)
        self.edge_samples = int(edge_samples)

    def build(self, input_shape):
        samples = self.edge_samples if input_shape[-1] is None else min(self.edge_samples, int(input_shape[-1]))
        window, filterbank = spectra.edge_analysis(self.sample_rate, samples)
        fft_length = 2 * (filterbank.shape[1] - 1)
        phase = 2 * np.pi * np.outer(np.arange(samples), np.arange(filterbank.shape[1])) / fft_length
        # Power normalized by the window's energy, as the baseline: white noise of variance s**2 gives s**2 per bin.
        scale = window[:, None] / np.sqrt(np.sum(window**2))
        self._samples = samples
        self._dft = np.concatenate([np.cos(phase) * scale, -np.sin(phase) * scale], axis=1).astype(np.float32)
        self._filterbank = filterbank.T.astype(np.float32)
        self._floor = spectra.POWER_FLOOR

    def call(self, inputs):
        audio = ops.cast(inputs, "float32")
        edges = ops.stack([audio[:, -self._samples :], audio[:, : self._samples]], axis=1)  # (B, 2, E)
        spectrum = ops.matmul(edges, self._dft)
        bins = self._filterbank.shape[0]
        power = ops.square(spectrum[..., :bins]) + ops.square(spectrum[..., bins:])
        return ops.log(ops.maximum(ops.matmul(power, self._filterbank), self._floor))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2, spectra.EDGE_MELS)

    def get_config(self):
        config = super().get_config()
        config.update(sample_rate=self.sample_rate, edge_samples=self.edge_samples)
        return config


@keras.saving.register_keras_serializable(package="audiosort")
class SeamScores(keras.layers.Layer):
    """The "slot j right after slot i" scores from the flush edge spectra: minus a learned per-band seam distance.

    ``output[b, i, j, 0] = -scale * sqrt(sum_k w_k * (tail[b, i, k] - head[b, j, k])**2)``
    with ``w_k = softplus(band_weight_k)`` and ``scale = exp(log_scale)``,
    learned. At initialization every ``w_k`` is 1, so the distance is the
    continuity baseline's Euclidean distance between one chunk's end and the
    next one's start, and a head whose other scores start at zero sorts as the
    baseline does (its best order is the baseline's).

    Parameters
    ----------
    initial_scale : float > 0
        ``scale`` at initialization, per unit of distance (log-mel units).

    Input ``[shape=(B, n, 2, M)]`` edge spectra (:class:`EdgeLogMel` per
    slot: index 0 the tail, 1 the head); output ``[shape=(B, n, n, 1)]``
    (the trailing axis of the pair MLP's one-unit score, to add to it),
    computed in float32.
    """

    def __init__(self, initial_scale=1.0, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if not initial_scale > 0:
            raise ValueError(f"SeamScores: initial_scale = {initial_scale!r} must be > 0")
        self.initial_scale = float(initial_scale)

    def build(self, input_shape):
        bands = input_shape[-1]
        # softplus(log(e - 1)) = 1: the baseline's unweighted distance.
        self.band_weight = self.add_weight(
            shape=(bands,), initializer=keras.initializers.Constant(float(np.log(np.e - 1.0))), name="band_weight"
        )
        self.log_scale = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(float(np.log(self.initial_scale))), name="log_scale"
        )

    def call(self, inputs):
        edges = ops.cast(inputs, "float32")
        difference = ops.expand_dims(edges[:, :, 0], 2) - ops.expand_dims(edges[:, :, 1], 1)  # (B, n, n, M)
        distance = ops.sqrt(ops.sum(ops.softplus(self.band_weight) * ops.square(difference), axis=-1) + 1e-6)
        return ops.expand_dims(-ops.exp(self.log_scale) * distance, -1)

    def compute_output_shape(self, input_shape):
        batch, n_chunks = input_shape[:2]
        return (batch, n_chunks, n_chunks, 1)

    def get_config(self):
        config = super().get_config()
        config.update(initial_scale=self.initial_scale)
        return config


@keras.saving.register_keras_serializable(package="audiosort")
class CrossSimilarity(keras.layers.Layer):
    """Features of every ordered pair of slots from the cosine similarity of their frames.

    Each slot's frames are projected (a learned Dense of ``units``, no bias)
    and scaled to unit length; for slots i and j, ``S[t, s]`` is the cosine
    of frame t of chunk i and frame s of chunk j, a ``T x T`` image. Two 3 x 3
    convolutions (``filters``, ReLU) read it, and their mean and max over the
    image are the pair's features. The convolutions see where in the image
    the chunks agree (a diagonal stripe: the same pattern at the same offset
    in both, as a repeated bar gives), which a mean or max of ``S`` itself
    would pool away. Each pair reads only its two chunks' frames.

    Parameters
    ----------
    units : int > 0
        Width of the projection the cosine is taken in.
    filters : int > 0
        Channels of each convolution; the output has twice as many features.

    Input ``[shape=(B, n, T, C)]`` frames; output ``[shape=(B, n, n, 2 * filters)]``,
    ``output[b, i, j]`` the features of "chunk i, then chunk j".
    """

    def __init__(self, units, filters, **kwargs):
        super().__init__(**kwargs)
        if not units > 0 or not filters > 0:
            raise ValueError(f"CrossSimilarity: units = {units!r} and filters = {filters!r} must be > 0")
        self.units = int(units)
        self.filters = int(filters)
        self.projection = keras.layers.Dense(self.units, use_bias=False, name="projection")
        self.conv_a = keras.layers.Conv2D(self.filters, 3, padding="same", activation="relu", name="conv_a")
        self.conv_b = keras.layers.Conv2D(self.filters, 3, padding="same", activation="relu", name="conv_b")

    def build(self, input_shape):
        frames, channels = input_shape[2:]
        self.projection.build((None, channels))
        self.conv_a.build((None, frames, frames, 1))
        self.conv_b.build((None, frames, frames, self.filters))

    def call(self, inputs):
        frames = inputs.shape[2]
        x = self.projection(inputs)
        x = x * ops.rsqrt(ops.sum(ops.square(x), axis=-1, keepdims=True) + 1e-12)
        similarity = ops.einsum("bitu,bjsu->bijts", x, x)  # (B, n, n, T, T)
        images = ops.reshape(similarity, (-1, frames, frames, 1))
        h = self.conv_b(self.conv_a(images))
        pooled = ops.concatenate([ops.mean(h, axis=(1, 2)), ops.max(h, axis=(1, 2))], axis=-1)
        shape = ops.shape(inputs)
        return ops.reshape(pooled, (shape[0], shape[1], shape[1], 2 * self.filters))

    def compute_output_shape(self, input_shape):
        batch, n_chunks = input_shape[:2]
        return (batch, n_chunks, n_chunks, 2 * self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, filters=self.filters)
        return config
