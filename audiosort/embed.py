"""``audiosort embed``: a run's encoder as a feature extractor for audio files.

The encoder of a run (``encoder.keras``) maps one int16 chunk of L samples, L
the run's chunk length, to one embedding of D values. :func:`embed_files`
decodes each file at the run's sample rate, cuts it into frames of L samples
every ``hop`` samples (default ``hop = L``: frames end to end), and embeds them.

Framing: frame k covers samples ``[k * hop, k * hop + L)``; the last partial
frame is dropped rather than zero-padded, so every frame is audio the encoder
could have seen in training. A file shorter than one chunk has no frame: it is
skipped with a warning and recorded, as is a file that cannot be decoded.

Output ``.npz`` (written atomically; ``np.load`` reads it without pickle)::

    files            str (F,)               the files embedded, as given
    clip             float32 (F, D)         clip embedding: mean over each file's frames
    embeddings_<k>   float32 (frames_k, D)  frame embeddings of files[k], k = 0 .. F-1
    timestamps_<k>   float64 (frames_k,)    frame centers, seconds from the file's start:
                                            (k * hop + L / 2) / sample_rate
    skipped          str (S,)               the files not embedded, as given
    skipped_reasons  str (S,)               why, one line each
    sample_rate      int64 ()               Hz, the run's data.sample_rate
    chunk_samples    int64 ()               L
    hop_samples      int64 ()               hop

:class:`RunEncoder` and :func:`load_encoder` are how every consumer of a run's
encoder (this module, :mod:`audiosort.hear`) loads it.

Example
-------
>>> report = embed_files("runs/demo", ["song.flac", "talk.opus"], out="emb.npz")  # doctest: +SKIP
>>> with np.load("emb.npz") as data:  # doctest: +SKIP
...     data["clip"].shape, data["files"]
((2, 64), array(['song.flac', 'talk.opus'], dtype='<U9'))
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from audiosort import audio
from audiosort.data.puzzles import PuzzleSpec
from audiosort.errors import DecodeError, InputError
from audiosort.train import load_run_config

# Frames per encoder call: a 0.5 s chunk at 16 kHz makes a 4 MiB int16 batch.
BATCH_FRAMES = 256


@dataclass(frozen=True)
class RunEncoder:
    """A run's encoder with the geometry it was trained on.

    Attributes
    ----------
    encoder : keras.Model
        Input ``[shape=(B, chunk_samples), dtype=int16]``, output ``(B, embedding_dim)``.
    sample_rate : int > 0
        Hz; the rate of the audio the encoder was trained on (``data.sample_rate``).
    chunk_samples : int > 0
        Chunk length L, in samples.
    path : Path
        The ``encoder.keras`` file loaded.
    """

    encoder: keras.Model
    sample_rate: int
    chunk_samples: int
    path: Path

    @property
    def embedding_dim(self) -> int:
        """D, the length of one embedding."""
        return int(self.encoder.output_shape[-1])

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """Embed int16 frames of one chunk length each, ``BATCH_FRAMES`` at a time.

        Parameters
        ----------
        frames : np.ndarray [shape=(..., chunk_samples), dtype=int16]
            Any leading shape; may be a strided view (see :func:`frame`), which
            is copied one batch at a time, never whole.

        Returns
        -------
        embeddings : np.ndarray [shape=(..., embedding_dim), dtype=float32]
        """
        if frames.dtype != np.int16 or frames.ndim < 2 or frames.shape[-1] != self.chunk_samples:
            # The encoder's int16 input would silently truncate float audio to zeros.
            raise ValueError(
                f"frames must be int16 of shape (..., {self.chunk_samples}), got {frames.dtype} {frames.shape}"
            )
        leading = frames.shape[:-1]
        count = int(np.prod(leading))
        embeddings = np.empty((count, self.embedding_dim), dtype=np.float32)
        for start in range(0, count, BATCH_FRAMES):
            index = np.unravel_index(np.arange(start, min(start + BATCH_FRAMES, count)), leading)
            batch = np.ascontiguousarray(frames[index])
            embeddings[start : start + len(batch)] = np.asarray(self.encoder.predict_on_batch(batch), dtype=np.float32)
        return embeddings.reshape(*leading, self.embedding_dim)


def load_encoder(path: str | Path) -> RunEncoder:
    """Load a run's encoder and the sample rate and chunk length it was trained with.

    Parameters
    ----------
    path : str or Path
        A run folder of ``audiosort train``, or the ``encoder.keras`` inside
        one (its folder must hold the run's ``config.yaml``).

    Returns
    -------
    RunEncoder

    Raises
    ------
    InputError
        No such run folder or file, no ``config.yaml`` or ``encoder.keras``, or
        an encoder whose input length differs from the config's chunk length.
    """
    path = Path(path)
    if path.is_dir():
        run_dir, encoder_path = path, path / "encoder.keras"
    elif path.is_file():
        run_dir, encoder_path = path.parent, path
    else:
        raise InputError(f"no run folder or encoder file at {str(path)!r}")
    config = load_run_config(run_dir)
    if not encoder_path.is_file():
        raise InputError(f"{run_dir} has no encoder.keras (training did not finish?)")
    sample_rate = config.data.sample_rate
    chunk_samples = PuzzleSpec.from_config(config.puzzle, sample_rate=sample_rate).chunk_samples
    try:
        encoder = keras.saving.load_model(encoder_path, compile=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"cannot load {encoder_path} as a Keras model: {reason}") from None
    if tuple(encoder.input_shape[1:]) != (chunk_samples,):
        raise InputError(
            f"{encoder_path} takes chunks of shape {encoder.input_shape[1:]} but config.yaml cuts {chunk_samples} "
            "samples; the run folder is inconsistent"
        )
    return RunEncoder(encoder, sample_rate, chunk_samples, encoder_path)


def frame(pcm: np.ndarray, *, chunk_samples: int, hop_samples: int) -> np.ndarray:
    """Cut signals into frames of ``chunk_samples`` every ``hop_samples``, as a view.

    Parameters
    ----------
    pcm : np.ndarray [shape=(..., n_samples)]
        One signal or a batch; ``n_samples >= chunk_samples``.
    chunk_samples : int > 0, keyword-only
        Frame length, in samples.
    hop_samples : int > 0, keyword-only
        Samples between the starts of consecutive frames.

    Returns
    -------
    frames : np.ndarray [shape=(..., 1 + (n_samples - chunk_samples) // hop_samples, chunk_samples)]
        A read-only strided view of ``pcm``; frame k starts at sample
        ``k * hop_samples``. The last partial frame is dropped.
    """
    return sliding_window_view(pcm, chunk_samples, axis=-1)[..., ::hop_samples, :]


@dataclass
class EmbedReport:
    """What :func:`embed_files` wrote.

    Attributes
    ----------
    out : Path
        The ``.npz`` written.
    files : list of str
        The files embedded, as given.
    frames : list of int
        Frames embedded per file.
    embedding_dim : int
        D.
    hop_seconds : float
        Hop between frames, after rounding to samples, in seconds.
    skipped : list of (str, str)
        ``(file, reason)`` of each file not embedded.
    """

    out: Path
    files: list[str]
    frames: list[int]
    embedding_dim: int
    hop_seconds: float
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summary ``audiosort embed`` prints on stdout (the skipped files go to stderr)."""
        return [
            f"embedded {len(self.files)} file(s), {sum(self.frames)} frames of dimension {self.embedding_dim} "
            f"every {self.hop_seconds:.3f} s; skipped {len(self.skipped)}",
            f"wrote {self.out}",
        ]


def embed_files(
    run_dir: str | Path, paths: Sequence[str | Path], *, out: str | Path, hop_seconds: float | None = None
) -> EmbedReport:
    """Embed audio files with a run's encoder and save them to one ``.npz`` (layout: module docstring).

    Parameters
    ----------
    run_dir : str or Path
        Run folder (or its ``encoder.keras``), see :func:`load_encoder`.
    paths : sequence of str or Path
        Audio files, and folders whose audio files (by extension, recursively,
        see :func:`audiosort.audio.find_audio_files`) are all embedded.
    out : str or Path, keyword-only
        The ``.npz`` to write (atomically; missing parent folders are created).
    hop_seconds : float > 0, optional, keyword-only
        Time between the starts of consecutive frames, rounded to the nearest
        sample; default the run's chunk length (frames end to end).

    Returns
    -------
    EmbedReport

    Raises
    ------
    InputError
        A bad run folder, no paths, a hop under one sample, or no file embedded
        (every one missing, undecodable or shorter than one chunk).
    """
    if not paths:
        raise InputError("give at least one audio file or folder to embed")
    model = load_encoder(run_dir)
    sample_rate, chunk_samples = model.sample_rate, model.chunk_samples
    hop_samples = chunk_samples if hop_seconds is None else round(hop_seconds * sample_rate)
    if hop_samples < 1:
        raise InputError(f"--hop-seconds {hop_seconds!r} is less than one sample at {sample_rate} Hz")

    arrays = {}
    files, frame_counts, clips, skipped = [], [], [], []
    for path in _expand(paths):
        try:
            pcm = audio.to_int16(audio.load(path, sample_rate=sample_rate))
        except DecodeError as error:
            skipped.append((str(path), str(error)))
            continue
        if len(pcm) < chunk_samples:
            seconds, chunk_seconds = len(pcm) / sample_rate, chunk_samples / sample_rate
            skipped.append((str(path), f"{seconds:.3f} s is shorter than one chunk ({chunk_seconds:.3f} s)"))
            continue
        embeddings = model.embed(frame(pcm, chunk_samples=chunk_samples, hop_samples=hop_samples))
        k = len(files)
        arrays[f"embeddings_{k}"] = embeddings
        arrays[f"timestamps_{k}"] = (np.arange(len(embeddings)) * hop_samples + chunk_samples / 2) / sample_rate
        files.append(str(path))
        frame_counts.append(len(embeddings))
        clips.append(embeddings.mean(axis=0))
    if not files:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in skipped)
        raise InputError(f"nothing to embed: all {len(skipped)} file(s) skipped ({reasons})")

    out = Path(out)
    _save_npz(
        out,
        files=np.array(files, dtype=str),
        clip=np.stack(clips).astype(np.float32),
        skipped=np.array([name for name, _ in skipped], dtype=str),
        skipped_reasons=np.array([reason for _, reason in skipped], dtype=str),
        sample_rate=np.int64(sample_rate),
        chunk_samples=np.int64(chunk_samples),
        hop_samples=np.int64(hop_samples),
        **arrays,
    )
    return EmbedReport(out, files, frame_counts, model.embedding_dim, hop_samples / sample_rate, skipped)


def _expand(paths: Sequence[str | Path]) -> list[Path]:
    """Folders become their audio files; files (even missing ones, which load reports) stay as given."""
    expanded = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            expanded.extend(file for _, file in audio.find_audio_files([path]))
        else:
            expanded.append(path)
    return expanded


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez`` to a temporary file in the same folder, then rename over ``path``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create folder {path.parent}: {error.strerror or error}") from None
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as temp_file:
            np.savez(temp_file, **arrays)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
