"""Chunk encoders: one int16 chunk of L samples -> one embedding.

Each builder returns a ``keras.Model`` named "encoder" with input
``[shape=(B, L), dtype=int16]`` and output ``[shape=(B, embedding_dim), float]``.
The int16 -> [-1, 1) scaling (and, for ``logmel``, the spectrogram) happens
inside the model and always in float32, so a saved encoder takes the corpus's
chunks as they are, also under a mixed-precision policy. ``ENCODERS`` maps the
names users type in ``model.encoder.type`` to the builders.
"""

from __future__ import annotations

import math

import keras
from keras import layers

from audiosort.config import EncoderConfig
from audiosort.errors import ConfigError
from audiosort.models.layers import Int16ToFloat, LogMelSpectrogram, TimeStatistics

CONV1D_STEM_KERNEL = 11  # samples
CONV1D_STEM_STRIDE = 4
CONV1D_KERNEL = 9
CONV1D_BLOCK_STRIDE = 4
LOGMEL1D_KERNEL = 3  # frames


def build_encoder(cfg: EncoderConfig, *, chunk_samples: int, sample_rate: int) -> keras.Model:
    """Build the chunk encoder named by ``cfg.type``.

    Parameters
    ----------
    cfg : EncoderConfig
        ``type`` picks the builder in ``ENCODERS``; the other fields size it.
    chunk_samples : int > 0
        Chunk length L, in samples.
    sample_rate : int > 0
        Sampling rate of the chunks, in Hz (used by ``logmel`` to turn
        ``frame_seconds`` and ``hop_seconds`` into samples).

    Returns
    -------
    keras.Model
        Input ``[shape=(B, chunk_samples), dtype=int16]``, output
        ``[shape=(B, cfg.embedding_dim)]``.

    Raises
    ------
    ConfigError
        Unknown ``cfg.type`` (the message lists the valid names), or a log-mel
        frame or hop shorter than one sample.
    """
    if cfg.type not in ENCODERS:
        raise ConfigError(f"model.encoder.type = {cfg.type!r} is not one of {sorted(ENCODERS)}")
    if chunk_samples < 1:
        raise ConfigError(f"chunk_samples = {chunk_samples!r} must be >= 1")
    if sample_rate < 1:
        raise ConfigError(f"sample_rate = {sample_rate!r} must be >= 1")
    chunks = keras.Input((chunk_samples,), dtype="int16", name="chunk")
    audio = Int16ToFloat(dtype="float32", name="int16_to_float")(chunks)
    embedding = ENCODERS[cfg.type](audio, cfg, sample_rate=sample_rate)
    return keras.Model(chunks, embedding, name="encoder")


def encoder_with_frames(encoder: keras.Model) -> keras.Model:
    """The same encoder (its very layers) with the feature map it pools also as an output, one vector per frame.

    For a sorter that compares two chunks frame by frame
    (``model.sorter.cross_similarity``): the full model calls this one, so
    the convolutions run once for both outputs, while ``encoder`` itself, what
    ``encoder.keras`` saves and embed, probe and HEAR read, keeps its one
    output.

    Parameters
    ----------
    encoder : keras.Model
        From :func:`build_encoder`, of a type with a feature map (not ``mlp``).

    Returns
    -------
    keras.Model
        Named "encoder". Input ``[shape=(B, L), dtype=int16]``; outputs
        ``frames [shape=(B, T, C)]``, the map :func:`_pool_and_project` reads
        (a ``(T, F, C)`` map's frequency and channels flattened into C), and
        the embedding ``[shape=(B, embedding_dim)]``.

    Raises
    ------
    ConfigError
        An encoder with no feature map.
    """
    names = {layer.name for layer in encoder.layers}
    pooling = [name for name in POOLING_LAYERS if name in names]
    if not pooling:
        raise ConfigError("model.sorter.cross_similarity needs an encoder with frames (conv1d, logmel, logmel1d, logmel_resnet)")
    frames = encoder.get_layer(pooling[0]).input
    if len(frames.shape) == 4:
        frames = layers.Reshape((frames.shape[1], frames.shape[2] * frames.shape[3]), name="frames")(frames)
    return keras.Model(encoder.input, [frames, encoder.output], name="encoder")


def _mlp(audio, cfg: EncoderConfig, *, sample_rate: int):
    """The seed's encoder: two Dense(hidden_units) + BN + ReLU layers, then Dense(embedding_dim)."""
    x = audio
    for i in range(2):
        x = layers.Dense(cfg.hidden_units, use_bias=False, name=f"dense_{i}")(x)
        x = layers.BatchNormalization(name=f"bn_{i}")(x)
        x = layers.ReLU(name=f"relu_{i}")(x)
    return layers.Dense(cfg.embedding_dim, name="embedding")(x)


def _block_filters(cfg: EncoderConfig, block: int) -> int:
    """Channels of conv block ``block`` (0-based): ``filters``, doubled every other block."""
    return cfg.filters * 2 ** (block // 2)


def _conv1d(audio, cfg: EncoderConfig, *, sample_rate: int):
    """Raw-waveform ResNet: strided stem, ``blocks`` residual blocks each downsampling by 4, pooled.

    With 3200 samples (0.2 s at 16 kHz) the time axis goes 3200 -> 800 (stem)
    -> 200 -> 50 -> 13 -> 4 over four blocks; "same" padding keeps at least one
    step however short the chunk.
    """
    x = layers.Reshape((-1, 1), name="add_channel")(audio)
    x = layers.Conv1D(cfg.filters, CONV1D_STEM_KERNEL, strides=CONV1D_STEM_STRIDE, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for block in range(cfg.blocks):
        x = _residual_block_1d(x, _block_filters(cfg, block), name=f"block_{block}")
    return _pool_and_project(x, cfg, global_pools=(layers.GlobalAveragePooling1D, layers.GlobalMaxPooling1D))


def _residual_block_1d(x, filters: int, *, name: str):
    """Basic ResNet block (two convs, BN, ReLU) that downsamples time by ``CONV1D_BLOCK_STRIDE``."""
    shortcut = layers.Conv1D(filters, 1, strides=CONV1D_BLOCK_STRIDE, padding="same", use_bias=False, name=f"{name}_shortcut_conv")(x)
    shortcut = layers.BatchNormalization(name=f"{name}_shortcut_bn")(shortcut)
    y = layers.Conv1D(filters, CONV1D_KERNEL, strides=CONV1D_BLOCK_STRIDE, padding="same", use_bias=False, name=f"{name}_conv_a")(x)
    y = layers.BatchNormalization(name=f"{name}_bn_a")(y)
    y = layers.ReLU(name=f"{name}_relu_a")(y)
    y = layers.Conv1D(filters, CONV1D_KERNEL, padding="same", use_bias=False, name=f"{name}_conv_b")(y)
    y = layers.BatchNormalization(name=f"{name}_bn_b")(y)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_relu_b")(y)


def _logmel(audio, cfg: EncoderConfig, *, sample_rate: int):
    """Log-mel spectrogram, per-band BN, ``blocks`` of 3x3 conv + BN + ReLU + 2x2 max pool, pooled.

    Pooling is skipped along any axis already shorter than 2, so even 0.01 s
    chunks (one STFT frame) give a valid, if coarse, spectrogram.
    """
    x = _log_mel_image(audio, cfg, sample_rate=sample_rate)
    for block in range(cfg.blocks):
        x = layers.Conv2D(_block_filters(cfg, block), 3, padding="same", use_bias=False, name=f"block_{block}_conv")(x)
        x = layers.BatchNormalization(name=f"block_{block}_bn")(x)
        x = layers.ReLU(name=f"block_{block}_relu")(x)
        if _halving(x.shape) != (1, 1):
            x = layers.MaxPooling2D(_halving(x.shape), name=f"block_{block}_pool")(x)
    return _pool_and_project(x, cfg, global_pools=(layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D))


def _logmel1d(audio, cfg: EncoderConfig, *, sample_rate: int):
    """Log-mel frames, per-band BN, ``blocks`` of 1-D conv over time (the mel bands as channels) + BN + ReLU + pool 2.

    Every filter sees all bands of 3 neighbouring frames, so absolute
    frequency survives (a 2-D CNN shares its weights across bands), and the
    full-resolution 2-D layers that take most of ``logmel``'s CPU time are
    gone. Pooling is skipped once the time axis is shorter than 2.
    """
    x = _log_mel_frames(audio, cfg, sample_rate=sample_rate)
    for block in range(cfg.blocks):
        x = layers.Conv1D(_block_filters(cfg, block), LOGMEL1D_KERNEL, padding="same", use_bias=False, name=f"block_{block}_conv")(x)
        x = layers.BatchNormalization(name=f"block_{block}_bn")(x)
        x = layers.ReLU(name=f"block_{block}_relu")(x)
        if x.shape[1] >= 2:
            x = layers.MaxPooling1D(2, name=f"block_{block}_pool")(x)
    return _pool_and_project(x, cfg, global_pools=(layers.GlobalAveragePooling1D, layers.GlobalMaxPooling1D))


def _log_mel_image(audio, cfg: EncoderConfig, *, sample_rate: int):
    """Audio (B, L) -> per-band normalized log-mel spectrogram as a one-channel image (B, frames, n_mels, 1)."""
    x = _log_mel_frames(audio, cfg, sample_rate=sample_rate)
    return layers.Reshape((*x.shape[1:], 1), name="add_channel")(x)


def _log_mel_frames(audio, cfg: EncoderConfig, *, sample_rate: int):
    """Audio (B, L) -> per-band normalized log-mel frames (B, frames, n_mels).

    A chunk shorter than one STFT frame gets a single frame as long as the chunk.
    """
    x = log_mel_layer(cfg, chunk_samples=audio.shape[-1], sample_rate=sample_rate)(audio)
    return layers.BatchNormalization(name="band_norm")(x)


def log_mel_layer(cfg: EncoderConfig, *, chunk_samples: int, sample_rate: int) -> LogMelSpectrogram:
    """The fixed log-mel front end of the ``logmel*`` encoders, named "log_mel" (also what the feature cache runs).

    Parameters
    ----------
    cfg : EncoderConfig
        ``frame_seconds``, ``hop_seconds`` and ``n_mels``.
    chunk_samples : int > 0
        Chunk length L, in samples: a frame is never longer.
    sample_rate : int > 0
        Of the audio, in Hz.

    Returns
    -------
    LogMelSpectrogram
        Input ``[shape=(B, samples), float32]`` in [-1, 1); output
        ``[shape=(B, frames, n_mels), float32]``; the DFT is the frame rounded
        up to a power of two.

    Raises
    ------
    ConfigError
        A frame or hop shorter than one sample.
    """
    frame_samples = round(cfg.frame_seconds * sample_rate)
    hop_samples = round(cfg.hop_seconds * sample_rate)
    if frame_samples < 1:
        raise ConfigError(f"model.encoder.frame_seconds = {cfg.frame_seconds!r} is under one sample at {sample_rate} Hz")
    if hop_samples < 1:
        raise ConfigError(f"model.encoder.hop_seconds = {cfg.hop_seconds!r} is under one sample at {sample_rate} Hz")
    frame_samples = min(frame_samples, chunk_samples)
    fft_length = 2 ** math.ceil(math.log2(frame_samples))
    return LogMelSpectrogram(
        sample_rate,
        frame_samples,
        hop_samples,
        fft_length,
        cfg.n_mels,
        dtype="float32",  # power spectra overflow float16
        name="log_mel",
    )


def _halving(shape) -> tuple:
    """Stride or pool size 2 along each of (time, frequency) that is at least 2 long, else 1."""
    return tuple(2 if size >= 2 else 1 for size in shape[1:3])


def _logmel_resnet(audio, cfg: EncoderConfig, *, sample_rate: int):
    """A 2-D ResNet on the log-mel image, sized by ``filters`` (width) and ``blocks`` (depth).

    Stem: 3x3 conv (``filters``) + BN + ReLU + 2x2 max pool. Then ``blocks``
    basic residual blocks (two 3x3 convs, BN, ReLU, identity or 1x1-conv
    shortcut); block k has ``filters * 2 ** (k // 2)`` channels, and each
    block that doubles the channels first halves time and frequency with a
    stride of 2 (as ResNet-18's stages of two blocks). A 1 s chunk at a 10 ms
    hop with 64 bands is a 98 x 64 image; with 6 blocks it ends as 13 x 8.
    Axes already shorter than 2 are not halved, so short chunks still build.
    Then ``pooling`` and the embedding layer, as for ``logmel``.
    """
    x = _log_mel_image(audio, cfg, sample_rate=sample_rate)
    x = layers.Conv2D(cfg.filters, 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    if _halving(x.shape) != (1, 1):
        x = layers.MaxPooling2D(_halving(x.shape), name="stem_pool")(x)
    for block in range(cfg.blocks):
        filters = _block_filters(cfg, block)
        strides = _halving(x.shape) if filters != x.shape[-1] else (1, 1)
        x = _residual_block_2d(x, filters, strides=strides, name=f"block_{block}")
    return _pool_and_project(x, cfg, global_pools=(layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D))


def _residual_block_2d(x, filters: int, *, strides: tuple, name: str):
    """Basic 2-D ResNet block; a 1x1-conv shortcut where the channels or the resolution change."""
    shortcut = x
    if filters != x.shape[-1] or strides != (1, 1):
        shortcut = layers.Conv2D(filters, 1, strides=strides, padding="same", use_bias=False, name=f"{name}_shortcut_conv")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_shortcut_bn")(shortcut)
    y = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv_a")(x)
    y = layers.BatchNormalization(name=f"{name}_bn_a")(y)
    y = layers.ReLU(name=f"{name}_relu_a")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv_b")(y)
    y = layers.BatchNormalization(name=f"{name}_bn_b")(y)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_relu_b")(y)


# The first layer of _pool_and_project, by pooling: stats, global (and time on a 2-D map), time or flatten.
POOLING_LAYERS = ("time_statistics", "avg_pool", "flatten")


def _pool_and_project(x, cfg: EncoderConfig, *, global_pools):
    """The last feature map -> one embedding, by ``cfg.pooling``.

    ``global``: concatenated average and max over every axis but channels, then
    Dense(embedding_dim). ``time``: on a (time, frequency) map, average and
    max over frequency only, then flattened (on a 1-D map: flattened), so the
    embedding keeps when in the chunk each feature happens. ``flatten``: the
    whole map flattened. Both keep where in the chunk each feature sits (the
    start and end of a chunk are what its neighbours share). ``stats``: mean
    and standard deviation over time of every (frequency, channel) feature,
    which forgets when but keeps where in frequency (what pitch and track
    identity need). Then optional dropout and Dense(embedding_dim).
    """
    if cfg.pooling == "stats":
        x = TimeStatistics(name="time_statistics")(x)
    elif cfg.pooling == "flatten":
        x = layers.Flatten(name="flatten")(x)
    elif cfg.pooling == "time" and len(x.shape) == 4:
        # (B, T, F, C): average and max over frequency, keep time.
        bands = (1, x.shape[2])
        x = layers.Concatenate(name="pool")(
            [layers.AveragePooling2D(bands, name="avg_pool")(x), layers.MaxPooling2D(bands, name="max_pool")(x)]
        )
        x = layers.Flatten(name="flatten")(x)
    elif cfg.pooling == "time":
        x = layers.Flatten(name="flatten")(x)
    else:
        average, maximum = global_pools
        x = layers.Concatenate(name="pool")([average(name="avg_pool")(x), maximum(name="max_pool")(x)])
    if cfg.dropout:
        x = layers.Dropout(cfg.dropout, name="dropout")(x)
    return layers.Dense(cfg.embedding_dim, name="embedding")(x)


# The names users type, as config.ENCODER_TYPES lists them (config stays free of Keras; a test keeps the two equal).
ENCODERS = {"mlp": _mlp, "conv1d": _conv1d, "logmel": _logmel, "logmel_resnet": _logmel_resnet, "logmel1d": _logmel1d}
