"""``audiosort embed``: a run's encoder as a feature extractor for audio files.

The encoder of a run (``encoder.keras``) maps one int16 chunk of L samples, L
the run's chunk length, to one embedding of D values. :func:`embed_files`
decodes each file at the run's sample rate, block by block
(:func:`audiosort.audio.stream`: a recording of hours is never whole in
memory), cuts it into frames of L samples every ``hop`` samples (default
``hop = L``: frames end to end), and embeds them.

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

:func:`audiosort.run.load_encoder` is how every consumer of a run's encoder
(this module, :mod:`audiosort.hear`, :mod:`audiosort.probe`) loads it.

Example
-------
>>> report = embed_files("runs/demo", ["song.flac", "talk.opus"], out="emb.npz")  # doctest: +SKIP
>>> with np.load("emb.npz") as data:  # doctest: +SKIP
...     data["clip"].shape, data["files"]
((2, 64), array(['song.flac', 'talk.opus'], dtype='<U9'))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from audiosort import _files, audio
from audiosort.errors import DecodeError, InputError
from audiosort.run import BATCH_FRAMES, RunEncoder, load_encoder

# A hop of a day: frames farther apart than any recording is long.
MAX_HOP_SECONDS = 86400.0


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
        The files embedded, as given (a byte of a non-UTF-8 name as ``\\xff``).
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
    run_dir: str | Path,
    paths: Sequence[str | Path],
    *,
    out: str | Path,
    hop_seconds: float | None = None,
    overwrite: bool = False,
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
        Never an input file, a file in the run folder, or anything but a
        regular file (see :func:`audiosort._files.check_output`).
    hop_seconds : float > 0, optional, keyword-only
        Time between the starts of consecutive frames, rounded to the nearest
        sample, at most :data:`MAX_HOP_SECONDS`; default the run's chunk
        length (frames end to end).
    overwrite : bool, keyword-only
        Replace an existing ``out``; without it, one is an error.

    Returns
    -------
    EmbedReport

    Raises
    ------
    InputError
        A bad run folder, no paths, an ``out`` that may not be written (see
        ``out``), a hop under one sample or not finite, or no file embedded
        (every one missing, undecodable or shorter than one chunk).
    """
    if not paths:
        raise InputError("give at least one audio file or folder to embed")
    if hop_seconds is not None and not (math.isfinite(hop_seconds) and 0 < hop_seconds <= MAX_HOP_SECONDS):
        raise InputError(f"hop_seconds={hop_seconds!r} must be a number of seconds in (0, {MAX_HOP_SECONDS:g}]")
    model = load_encoder(run_dir)
    files_in = _expand(paths)
    out = _files.check_output(out, what="out path", overwrite=overwrite, keep=(model.path.parent, *files_in), kind="file")
    sample_rate, chunk_samples = model.sample_rate, model.chunk_samples
    hop_samples = chunk_samples if hop_seconds is None else round(hop_seconds * sample_rate)
    if hop_samples < 1:
        raise InputError(f"hop_seconds = {hop_seconds!r} is less than one sample at {sample_rate} Hz")

    arrays = {}
    files, frame_counts, clips, skipped = [], [], [], []
    for path in files_in:
        try:
            embeddings, samples = _embed_file(model, path, hop_samples)
        except DecodeError as error:
            skipped.append((audio.printable(path), str(error)))
            continue
        if samples < chunk_samples:
            seconds, chunk_seconds = samples / sample_rate, chunk_samples / sample_rate
            skipped.append((audio.printable(path), f"{seconds:.3f} s is shorter than one chunk ({chunk_seconds:.3f} s)"))
            continue
        k = len(files)
        arrays[f"embeddings_{k}"] = embeddings
        arrays[f"timestamps_{k}"] = (np.arange(len(embeddings)) * hop_samples + chunk_samples / 2) / sample_rate
        files.append(audio.printable(path))
        frame_counts.append(len(embeddings))
        clips.append(embeddings.mean(axis=0))
    if not files:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in skipped)
        raise InputError(f"nothing to embed: all {len(skipped)} file(s) skipped ({reasons})")

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


def _embed_file(model: RunEncoder, path: Path, hop_samples: int) -> tuple[np.ndarray, int]:
    """Embed one file's frames, decoding it block by block (a long recording is never whole in memory).

    Returns
    -------
    embeddings : np.ndarray [shape=(frames, D), dtype=float32]
        Frame k covers samples ``[k * hop_samples, k * hop_samples + L)``, as :func:`frame` cuts them.
    samples : int
        Length of the decoded file, in samples at the run's rate.
    """
    length = model.chunk_samples
    # `held` is the decoded audio from sample `held_from` on; the next frame starts at `next_start`.
    held, held_from, next_start, total = np.empty(0, np.int16), 0, 0, 0
    batch, parts = [], []
    for block in audio.stream(path, sample_rate=model.sample_rate):
        total += len(block)
        held = np.concatenate([held, audio.to_int16(block)])
        drop = min(next_start - held_from, len(held))  # a hop longer than a frame skips audio
        held, held_from = held[drop:], held_from + drop
        if len(held) >= length:
            frames = frame(held, chunk_samples=length, hop_samples=hop_samples)
            batch.append(np.ascontiguousarray(frames))
            next_start += len(frames) * hop_samples
            drop = min(next_start - held_from, len(held))
            held, held_from = held[drop:], held_from + drop
        if sum(len(frames) for frames in batch) >= BATCH_FRAMES:
            parts.append(model.embed(np.concatenate(batch)))
            batch = []
    if batch:
        parts.append(model.embed(np.concatenate(batch)))
    embeddings = np.concatenate(parts) if parts else np.empty((0, model.embedding_dim), np.float32)
    return embeddings, total


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
    """``np.savez`` to ``path``, atomically (missing parent folders are created)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create folder {path.parent}: {error.strerror or error}") from None
    with _files.replacing(path) as tmp, open(tmp, "wb") as file:
        np.savez(file, **arrays)
