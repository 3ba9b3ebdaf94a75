"""Decode any audio file to mono float32 at a chosen rate; write 16-bit wav.

This is the only module that touches audio codecs. Everything downstream sees
1-D float32 arrays in [-1, 1] at one sample rate, or their int16 form
(:func:`~audiosort.pcm.to_int16` / :func:`~audiosort.pcm.from_int16`, full
scale 32768 both ways, from :mod:`audiosort.pcm`, which imports no codec).

Decoding tries libsndfile (through ``soundfile``: wav, flac, ogg/vorbis,
opus, mp3, aiff, ...) and falls back to ``librosa.load`` (audioread, which
needs ffmpeg or similar for m4a and friends). Every decoding failure is a
:class:`~audiosort.errors.DecodeError` with a one-line reason, so that
``prepare`` can skip the file and record why.

Example
-------
>>> y = load("song.opus", sample_rate=16000)
>>> y.dtype, y.ndim
(dtype('float32'), 1)
>>> write_wav("song-16k.wav", y, sample_rate=16000)
"""

from __future__ import annotations

import hashlib
import os
import struct
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import librosa
import numpy as np
import soundfile
import soxr

from audiosort import _files
from audiosort.errors import DecodeError, InputError, is_int
from audiosort.pcm import INT16_SCALE, from_int16, to_int16  # noqa: F401  (the int16 form, re-exported)

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".m4a"})

# The highest rate music is commonly sold at. Above it nothing more is audible,
# and a decoded hour of float32 already takes 2.8 GB; a typo such as 100000000
# would ask for 1.4 TB per hour.
MAX_SAMPLE_RATE = 192_000

_MAX_REASON_CHARS = 200
_SHA256_BLOCK_BYTES = 1 << 20

# libsndfile error codes whose own wording misleads once we know the path is a
# non-empty regular file: its mp3 reader reports data it cannot parse as code 7,
# "File does not exist or is not a regular file".
_LIBSNDFILE_REASONS = {
    1: "format not recognised",
    3: "malformed file",
    4: "unsupported encoding",
    7: "not a readable audio stream",
}


def find_audio_files(paths: Sequence[str | Path]) -> list[tuple[Path, Path]]:
    """List the audio files under the given files and folders.

    Parameters
    ----------
    paths : sequence of str or Path
        Files and folders. A folder is walked recursively and yields the files
        whose extension is in :data:`AUDIO_EXTENSIONS` (case-insensitive),
        skipping hidden files and folders (names starting with ``.``). A file
        given directly is always listed, whatever its name; the decoder
        judges it.

    Returns
    -------
    pairs : list of (root, file) tuples of Path
        ``root`` is the folder given (or the parent of a file given directly)
        and ``file`` lies under it, so ``file.relative_to(root)`` names the
        file within what the user gave. Paths come in the order given, and
        each folder's files sorted by their path relative to the folder, so
        the list is the same on every machine. A file reached twice (same
        resolved path) is listed once, at its first occurrence. Symlinks are
        listed as found, dangling ones and loops included (the caller
        decides what to do with them); folder symlinks are not followed.

    Raises
    ------
    InputError
        If a path does not exist.
    """
    pairs = []
    seen = set()
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise InputError(f"no such file or folder: {given}")
        if path.is_dir():
            candidates = [(path, file) for file in _walk_audio_files(path)]
        else:
            candidates = [(path.parent, path)]
        for root, file in candidates:
            # The same track listed twice could land in two splits and leak.
            # realpath, unlike Path.resolve, does not raise on a symlink loop;
            # prepare skips broken links and loops itself.
            key = os.path.realpath(file)
            if key not in seen:
                seen.add(key)
                pairs.append((root, file))
    return pairs


def _walk_audio_files(folder: Path) -> list[Path]:
    relative_paths = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [name for name in dirnames if not name.startswith(".")]
        relative_dir = Path(dirpath).relative_to(folder)
        relative_paths.extend(
            relative_dir / name
            for name in filenames
            if not name.startswith(".") and Path(name).suffix.lower() in AUDIO_EXTENSIONS
        )
    return [folder / relative_path for relative_path in sorted(relative_paths)]


def check_sample_rate(sample_rate: int) -> None:
    """Raise InputError unless ``sample_rate`` is an int in [1, :data:`MAX_SAMPLE_RATE`] (Hz)."""
    if not is_int(sample_rate) or sample_rate <= 0:
        raise InputError(f"sample_rate must be a positive int (Hz), got {sample_rate!r}")
    if sample_rate > MAX_SAMPLE_RATE:
        raise InputError(
            f"sample rate {sample_rate} Hz is above {MAX_SAMPLE_RATE} Hz, the highest supported "
            "(nothing above it is audible, and decoding would need too much memory)"
        )


def load(path: str | Path, *, sample_rate: int) -> np.ndarray:
    """Decode an audio file to mono float32 at ``sample_rate``.

    Parameters
    ----------
    path : str or Path
        Any file libsndfile can read (wav, flac, ogg/vorbis, opus, mp3, aiff,
        ...); other formats (m4a, ...) go through ``librosa.load``, which needs
        an audioread backend such as ffmpeg.
    sample_rate : int in [1, MAX_SAMPLE_RATE]
        Output rate in Hz. The file is resampled with soxr (quality "HQ")
        when its own rate differs.

    Returns
    -------
    y : np.ndarray [shape=(frames,), dtype=float32]
        The channels averaged, in [-1, 1] (full scale = 1.0); samples beyond
        full scale, from float files or resampling overshoot, are clipped.
        ``frames`` is about the file's duration in seconds times
        ``sample_rate``.

    Raises
    ------
    DecodeError
        If the file is missing, empty, cannot be decoded, has no audio frames,
        holds NaN/inf samples, or is a WAV holding less audio than its header
        declares (a cut-off copy: libsndfile would decode the part that is
        there, and a corpus built from it would differ from one built from
        the whole file without anyone noticing). The message is one short line with the
        reason and without the path (the caller knows which file it asked for).
    InputError
        If ``sample_rate`` is not an int in [1, :data:`MAX_SAMPLE_RATE`].
    """
    check_sample_rate(sample_rate)
    path = Path(path)
    _check_readable(path)

    _check_wav_complete(path)
    samples, file_rate = _decode(path)
    if samples.shape[0] == 0:
        raise DecodeError("no audio frames")
    if not np.isfinite(samples).all():
        raise DecodeError("non-finite samples (NaN or inf)")

    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    if file_rate != sample_rate:
        mono = soxr.resample(mono, file_rate, sample_rate, quality="HQ")
        if mono.shape[0] == 0:
            raise DecodeError(f"no audio frames left after resampling {file_rate} Hz -> {sample_rate} Hz")
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    np.clip(mono, -1.0, 1.0, out=mono)
    return mono


# Frames of the file decoded at a time by :func:`stream`: about 24 s at 44.1 kHz, 8 MiB of float32 stereo.
STREAM_BLOCK_FRAMES = 1 << 20


def stream(path: str | Path, *, sample_rate: int, block_frames: int | None = None) -> Iterator[np.ndarray]:
    """Decode an audio file block by block: what :func:`load` returns, in pieces, in bounded memory.

    Concatenated, the blocks equal ``load(path, sample_rate=sample_rate)``
    sample for sample (soxr resamples a stream as it resamples a whole
    signal). Formats libsndfile cannot read (m4a, ...) are decoded whole by
    :func:`load` and yielded as one block.

    Parameters
    ----------
    path : str or Path
    sample_rate : int in [1, MAX_SAMPLE_RATE]
        Output rate in Hz.
    block_frames : int > 0, optional
        Frames of the file read at a time; default :data:`STREAM_BLOCK_FRAMES`.

    Yields
    ------
    y : np.ndarray [shape=(frames,), dtype=float32]
        Mono, in [-1, 1]; some blocks may be empty (the resampler's delay).

    Raises
    ------
    DecodeError, InputError
        As :func:`load`, raised from the block where the problem shows.
    """
    check_sample_rate(sample_rate)
    block_frames = block_frames or STREAM_BLOCK_FRAMES
    path = Path(path)
    _check_readable(path)
    _check_wav_complete(path)
    try:
        file = soundfile.SoundFile(os.fsencode(path))
    except Exception:  # noqa: BLE001 - not for libsndfile: load tries the other decoders
        yield load(path, sample_rate=sample_rate)
        return
    with file:
        file_rate = int(file.samplerate)
        resampler = None if file_rate == sample_rate else soxr.ResampleStream(file_rate, sample_rate, 1, dtype="float32", quality="HQ")
        total = 0
        while True:
            try:
                samples = file.read(block_frames, dtype="float32", always_2d=True)
            except Exception as error:  # noqa: BLE001 - any library failure is a decode failure
                raise DecodeError(_truncate(f"cannot decode: {_short_reason(error)}")) from None
            last = len(samples) < block_frames
            if not np.isfinite(samples).all():
                raise DecodeError("non-finite samples (NaN or inf)")
            mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
            if resampler is not None:
                mono = resampler.resample_chunk(np.ascontiguousarray(mono), last=last)
            mono = np.ascontiguousarray(mono, dtype=np.float32)
            np.clip(mono, -1.0, 1.0, out=mono)
            total += len(mono)
            if last and total == 0:
                raise DecodeError("no audio frames")
            yield mono
            if last:
                return


def _check_readable(path: Path) -> None:
    """DecodeError unless ``path`` is a non-empty regular file (a FIFO or device would block or never end)."""
    if not path.is_file():
        raise DecodeError("no such file" if not path.exists() else "not a regular file")
    if path.stat().st_size == 0:
        raise DecodeError("empty file")


def _check_wav_complete(path: Path) -> None:
    """Raise DecodeError when a RIFF/WAVE file's ``data`` chunk declares more bytes than the file holds.

    A declared size of 0 or 0xFFFFFFFF is a stream written before its length
    was known, and is accepted.
    """
    with open(path, "rb") as file:
        head = file.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        size = path.stat().st_size
        position = 12
        while position + 8 <= size:
            file.seek(position)
            chunk_id, chunk_bytes = struct.unpack("<4sI", file.read(8))
            if chunk_id == b"data":
                held = size - position - 8
                if 0 < chunk_bytes < 0xFFFFFFFF and chunk_bytes > held:
                    raise DecodeError(
                        f"truncated WAV: the header declares {chunk_bytes} bytes of audio, the file holds {held} "
                        f"({held / chunk_bytes:.0%})"
                    )
                return
            position += 8 + chunk_bytes + (chunk_bytes & 1)


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """Return ``(samples [shape=(frames, channels), float32], rate in Hz)`` or raise DecodeError."""
    try:
        # As bytes: libsndfile takes any name the filesystem holds, UTF-8 or not.
        samples, file_rate = soundfile.read(os.fsencode(path), dtype="float32", always_2d=True)
        return samples, int(file_rate)
    except Exception as error:  # any library failure is a decode failure
        soundfile_reason = _short_reason(error)

    try:
        with warnings.catch_warnings():
            # librosa warns that soundfile failed (we know) and that audioread is deprecated.
            warnings.simplefilter("ignore")
            channels_first, file_rate = librosa.load(path, sr=None, mono=False)
    except Exception as error:  # any library failure is a decode failure
        raise DecodeError(_truncate(f"cannot decode: {soundfile_reason}; {_short_reason(error)}")) from None
    samples = np.atleast_2d(np.asarray(channels_first, dtype=np.float32)).T
    return samples, int(file_rate)


def _short_reason(error: Exception) -> str:
    if isinstance(error, soundfile.LibsndfileError):
        return _LIBSNDFILE_REASONS.get(error.code, error.error_string.strip().rstrip("."))
    if type(error).__name__ == "NoBackendError":
        return "no audioread backend could read it (is ffmpeg installed?)"
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0]}" if message else type(error).__name__


def _truncate(message: str) -> str:
    return message if len(message) <= _MAX_REASON_CHARS else message[: _MAX_REASON_CHARS - 3] + "..."


def printable(path: str | Path) -> str:
    """``path`` as text that prints and serializes anywhere: a byte of a non-UTF-8 name shown as ``\\xff``."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def write_wav(path: str | Path, y: np.ndarray, *, sample_rate: int) -> None:
    """Write mono audio as a 16-bit PCM wav, atomically.

    The file is written to a temporary name in the same folder and then
    renamed over ``path``, so a reader never sees a half-written file and an
    interrupted write leaves the old file (if any) untouched. Missing parent
    folders are created.

    Parameters
    ----------
    path : str or Path
        Destination file.
    y : np.ndarray [shape=(frames,), dtype=floating or int16]
        Float samples (full scale = 1.0) are converted with :func:`to_int16`;
        int16 samples are written as they are.
    sample_rate : int > 0
        In Hz, stored in the wav header.

    Raises
    ------
    TypeError
        If ``y`` is neither floating-point nor int16.
    ValueError
        If ``y`` is not 1-D, or holds NaN or inf.
    InputError
        If ``sample_rate`` is not a positive int.
    """
    check_sample_rate(sample_rate)
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"write_wav expects mono samples of shape (frames,), got shape {y.shape}")
    samples = y if y.dtype == np.int16 else to_int16(y)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _files.replacing(path) as temp_path:
        soundfile.write(temp_path, samples, sample_rate, format="WAV", subtype="PCM_16")


def sha256_file(path: str | Path) -> str:
    """Return the SHA-256 hex digest of a file's bytes, read in 1 MiB blocks.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    digest : str
        64 lowercase hex characters.

    Raises
    ------
    InputError
        If the file cannot be read.
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            while block := file.read(_SHA256_BLOCK_BYTES):
                digest.update(block)
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror}") from None
    return digest.hexdigest()
