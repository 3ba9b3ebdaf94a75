"""A run's encoder behind the HEAR 2021 common API.

HEAR (Holistic Evaluation of Audio Representations, hearbenchmark.com) scores
an embedding through three functions of a Python module, which this module is:

- :func:`load_model` returns a model with the attributes ``sample_rate`` (Hz),
  ``scene_embedding_size`` and ``timestamp_embedding_size``;
- :func:`get_timestamp_embeddings` gives embeddings at regular timestamps
  (milliseconds, frame centers);
- :func:`get_scene_embeddings` gives one embedding per sound.

Input: a batch of mono sounds ``(n_sounds, n_samples)`` at ``model.sample_rate``,
float in [-1, 1], all of one length within a call (the HEAR kit pads each
batch). Anything ``np.asarray`` turns into such an array is accepted: numpy
arrays, TensorFlow eager tensors, JAX arrays, CPU torch tensors. Outputs are
numpy arrays. The floats are converted to int16 with
:func:`audiosort.audio.to_int16` (values beyond [-1, 1] clip) before they reach
the encoder, whose int16 input would otherwise truncate them to zero.

Frames: the encoder sees chunks of the run's chunk length L; the hop between
timestamps is ``min(L, 50 ms)`` rounded to samples (HEAR asks for 50 ms or
less). As in the HEAR baseline, each sound is zero-padded by L // 2 samples in
front and L - L // 2 behind, and frame k covers padded samples
``[k * hop, k * hop + L)``: it is centered on sample ``k * hop`` of the sound,
so the timestamps are ``k * hop / sample_rate * 1000`` ms, the first is 0 and
there are ``1 + n_samples // hop`` of them. Every sound, even one shorter than
a chunk, gets at least one embedding; frames near either end hold zeros.

The scene embedding is the mean of the timestamp embeddings.

Example
-------
>>> model = load_model("runs/demo")  # doctest: +SKIP
>>> audio = np.zeros((4, 2 * model.sample_rate), dtype=np.float32)  # doctest: +SKIP
>>> embeddings, timestamps = get_timestamp_embeddings(audio, model)  # doctest: +SKIP
>>> embeddings.shape, timestamps[0, :3]  # doctest: +SKIP
((4, 41, 64), array([  0.,  50., 100.], dtype=float32))
"""

from __future__ import annotations

import functools
import sys

import numpy as np

from audiosort import audio as audio_io
from audiosort.embed import frame
from audiosort.errors import InputError
from audiosort.run import RunEncoder, load_encoder

# HEAR's upper bound on the hop between timestamp embeddings.
MAX_HOP_SECONDS = 0.05


class HearModel:
    """A run's encoder with the attributes the HEAR API requires.

    :func:`load_model` returns it as a ``tf.Module`` on the TensorFlow backend,
    and on any other backend once TensorFlow is imported (see :func:`_model_class`).

    Parameters
    ----------
    encoder : RunEncoder
        The run's encoder, chunk length and sample rate.
    """

    def __init__(self, encoder: RunEncoder):
        self.encoder = encoder

    @property
    def sample_rate(self) -> int:
        """Hz; the rate the input audio must have."""
        return self.encoder.sample_rate

    @property
    def scene_embedding_size(self) -> int:
        """Length of one scene embedding."""
        return self.encoder.embedding_dim

    @property
    def timestamp_embedding_size(self) -> int:
        """Length of one timestamp embedding."""
        return self.encoder.embedding_dim

    @property
    def hop_samples(self) -> int:
        """Samples between consecutive timestamps: the chunk length, at most 50 ms."""
        return min(self.encoder.chunk_samples, max(1, round(MAX_HOP_SECONDS * self.encoder.sample_rate)))


def load_model(model_file_path: str = "") -> HearModel:
    """Load a run's encoder for the HEAR API.

    Parameters
    ----------
    model_file_path : str
        A run folder of ``audiosort train``, or its ``encoder.keras`` or
        ``model.keras`` (either stands for the run's encoder). Required: there
        is no pretrained default.

    Returns
    -------
    HearModel
        A ``tf.Module`` too on the TensorFlow backend, and under JAX when
        TensorFlow is already imported (HEAR's validator and evaluation kit
        import it before they call this); under JAX otherwise a plain
        :class:`HearModel`, and TensorFlow is not imported.

    Raises
    ------
    InputError
        An empty path, or no usable run there (see :func:`audiosort.run.load_encoder`).
    """
    if not str(model_file_path):
        raise InputError(
            "audiosort.hear.load_model needs a run folder (or its encoder.keras); there is no default model"
        )
    return _model_class()(load_encoder(model_file_path))


def _model_class() -> type[HearModel]:
    """:class:`HearModel`, made a ``tf.Module`` when TensorFlow is the backend or already imported.

    HEAR's own validator (``hearvalidator``) accepts only a ``tf.Module`` or a
    ``torch.nn.Module``, and imports both TensorFlow and PyTorch before it
    loads the model, so under JAX too it gets a ``tf.Module`` (a container:
    the encoder still runs on JAX). TensorFlow is never imported here unless
    it is the backend, so a JAX machine without TensorFlow loads a plain
    :class:`HearModel`.
    """
    import keras

    if keras.backend.backend() != "tensorflow" and sys.modules.get("tensorflow") is None:
        return HearModel
    return _tensorflow_model_class()


@functools.cache
def _tensorflow_model_class() -> type[HearModel]:
    import tensorflow as tf

    class TensorFlowHearModel(HearModel, tf.Module):
        def __init__(self, encoder: RunEncoder):
            tf.Module.__init__(self, name="audiosort_encoder")
            HearModel.__init__(self, encoder)

    return TensorFlowHearModel


def get_timestamp_embeddings(audio, model: HearModel) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of centered frames every ``model.hop_samples``, with their timestamps.

    Parameters
    ----------
    audio : array-like [shape=(n_sounds, n_samples), floating]
        Mono sounds at ``model.sample_rate``, full scale 1.0; ``n_sounds >= 1``,
        ``n_samples >= 1``. See the module docstring for the types accepted.
    model : HearModel
        From :func:`load_model`.

    Returns
    -------
    embeddings : np.ndarray [shape=(n_sounds, n_timestamps, model.timestamp_embedding_size), dtype=float32]
    timestamps : np.ndarray [shape=(n_sounds, n_timestamps), dtype=float32]
        Frame centers in milliseconds from the start of each sound:
        ``k * hop_samples / sample_rate * 1000`` for k = 0 .. n_timestamps - 1,
        with ``n_timestamps = 1 + n_samples // hop_samples``.

    Raises
    ------
    InputError
        ``audio`` not 2-D, empty, not floating-point, or holding NaN/inf.
    """
    pcm = _to_int16(audio)
    chunk_samples, hop_samples = model.encoder.chunk_samples, model.hop_samples
    # Half a chunk of zeros on each side centers frame k on sample k * hop of the sound.
    padded = np.pad(pcm, ((0, 0), (chunk_samples // 2, chunk_samples - chunk_samples // 2)))
    frames = frame(padded, chunk_samples=chunk_samples, hop_samples=hop_samples)
    embeddings = model.encoder.embed(frames)
    timestamps_ms = np.arange(frames.shape[1]) * (hop_samples / model.sample_rate * 1000.0)
    return embeddings, np.broadcast_to(timestamps_ms.astype(np.float32), frames.shape[:2]).copy()


def get_scene_embeddings(audio, model: HearModel) -> np.ndarray:
    """One embedding per sound: the mean of its timestamp embeddings.

    Parameters
    ----------
    audio : array-like [shape=(n_sounds, n_samples), floating]
        As for :func:`get_timestamp_embeddings`.
    model : HearModel
        From :func:`load_model`.

    Returns
    -------
    embeddings : np.ndarray [shape=(n_sounds, model.scene_embedding_size), dtype=float32]
    """
    embeddings, _ = get_timestamp_embeddings(audio, model)
    return embeddings.mean(axis=1)


def _to_int16(audio) -> np.ndarray:
    """Check a HEAR batch and convert it to int16: array-like (n_sounds, n_samples) float -> int16."""
    samples = np.asarray(audio)
    if samples.ndim != 2 or samples.shape[0] < 1 or samples.shape[1] < 1:
        raise InputError(f"audio must have shape (n_sounds, n_samples) with both >= 1, got {samples.shape}")
    if not np.issubdtype(samples.dtype, np.floating):
        raise InputError(f"audio must be floating-point samples in [-1, 1], got dtype {samples.dtype}")
    if not np.isfinite(samples).all():
        raise InputError("audio holds NaN or inf samples")
    return audio_io.to_int16(samples)
