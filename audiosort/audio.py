"""Decode any audio file to mono float32 at a chosen rate; write 16-bit wav.

This is the only module that touches audio codecs. Everything downstream sees
1-D float32 arrays in [-1, 1] at one sample rate, or their int16 form
(:func:`~audiosort.pcm.to_int16` / :func:`~audiosort.pcm.from_int16`, full
scale 32768 both ways, from :mod:`audiosort.pcm`, which imports no codec).

Decoding tries libsndfile (through ``soundfile``: wav, flac, ogg/vorbis,
opus, mp3, aiff, ...) and falls back to ``librosa.load`` (audioread, which
needs ffmpeg or similar for m4a and friends). Every decoding failure is a
:class:`~audiosort.errors.DecodeError` with a one-line reason, so that
``prepare`` can skip the file and record why. Folders of files decode on
threads (:func:`decode_all`), into a corpus or, for ``eval --audio``, into
memory (:func:`decode_tracks`).

Example
-------
>>> y = load("song.opus", sample_rate=16000)
>>> y.dtype, y.ndim
(dtype('float32'), 1)
>>> write_wav("song-16k.wav", y, sample_rate=16000)
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import queue
import struct
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile
import soxr
from tqdm import tqdm

from audiosort import _files
from audiosort.errors import DecodeError, InputError, is_int
from audiosort.pcm import INT16_SCALE, from_int16, to_int16  # noqa: F401  (the int16 form, re-exported)

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".m4a"})

# The highest rate music is commonly sold at. Above it nothing more is audible,
# and a decoded hour of float32 already takes 2.8 GB; a typo such as 100000000
# would ask for 1.4 TB per hour.
MAX_SAMPLE_RATE = 192_000

# Files decoded at once, at most: each holds a decoded track in memory.
MAX_JOBS = 256

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


@dataclass
class DecodedTracks:
    """Audio files decoded into memory (see :func:`decode_tracks`).

    Attributes
    ----------
    sources : list of str
        Each track's name (its path relative to the sources' common folder).
    tracks : list of np.ndarray [shape=(frames,), dtype=int16]
        The samples of each track, in the order of ``sources``.
    sample_rate : int
        Hz.
    skipped : list of dict
        ``{"source", "reason"}`` per file left out.
    """

    sources: list
    tracks: list
    sample_rate: int
    skipped: list

    @property
    def hours(self) -> float:
        """Hours of audio decoded."""
        return sum(len(track) for track in self.tracks) / self.sample_rate / 3600


def decode_tracks(
    sources: Iterable[str | Path], *, sample_rate: int, min_frames: int, jobs: int | None = None
) -> DecodedTracks:
    """Decode audio files and folders into memory, as ``audiosort prepare`` decodes them, without writing a corpus.

    For scoring a run on a folder of music (``eval --audio``): the same files
    are found, skipped and decoded as by :func:`audiosort.data.prepare.prepare`
    (:func:`audio_loaders`, :func:`decode_all`), and a track shorter than
    ``min_frames`` is skipped; memory holds every track.

    Parameters
    ----------
    sources : iterable of str or Path
        Files and folders (walked recursively for audio extensions).
    sample_rate : int in [1, 192000]
        Hz; files are resampled with soxr (HQ).
    min_frames : int >= 0
        Samples one puzzle spans at most (``PuzzleSpec.max_span_samples``); shorter tracks are skipped.
    jobs : int > 0, optional
        Files decoded at once; default all cores.

    Raises
    ------
    InputError
        Missing source, no audio found, nothing decodable.
    """
    check_sample_rate(sample_rate)
    named, unreadable, decode = audio_loaders(list(sources), sample_rate=sample_rate)
    names, arrays = [], []

    def keep(name: str, pcm: np.ndarray, digest: str) -> None:
        names.append(name)
        arrays.append(pcm)

    loaders = [(name, (lambda p=path: decode(p))) for name, path, _ in named]
    skipped = [*unreadable, *decode_all(loaders, keep, min_frames=min_frames, sample_rate=sample_rate, jobs=jobs, progress=False)]
    if not names:
        raise InputError(f"no usable audio among {len(skipped)} file(s) ({skipped_reasons(skipped)})")
    return DecodedTracks(names, arrays, sample_rate, skipped)


def audio_loaders(sources: list, *, sample_rate: int):
    """The audio files under ``sources`` as (name, path, target) (see :func:`_name_sources`), the files skipped, and the decoder.

    The decoder maps a path to its int16 samples at ``sample_rate`` and the
    sha256 of the file, raising :class:`DecodeError` for a file it cannot read.
    """
    files = find_audio_files(sources)
    if not files:
        raise InputError(f"no audio files found in {', '.join(str(s) for s in sources)}")
    named, unreadable = _name_sources(files)

    def decode(path: Path) -> tuple[np.ndarray, str]:
        try:
            digest = sha256_file(path)
        except InputError as e:
            raise DecodeError(str(e)) from None
        return to_int16(load(path, sample_rate=sample_rate)), digest

    return named, unreadable, decode


def skipped_reasons(skipped: list[dict]) -> str:
    """The first three skipped files and why, on one line (for an error that nothing was usable)."""
    return "; ".join(f"{s['source']}: {s['reason']}" for s in skipped[:3])


def _name_sources(files: list[tuple[Path, Path]]) -> tuple[list[tuple[str, Path, Path]], list[dict]]:
    """Name each found file by its path relative to the sources' common folder; skip those that cannot be read.

    A symlink is read through, wherever it points (a folder of links into a
    music library is a playlist), and named by the link. Skipped, each with a
    reason: a dangling symlink, a symlink loop, what is not a regular file (a
    FIFO, a device: reading it could block forever), and a name that is not
    UTF-8 (the manifest is JSON text).

    Returns
    -------
    named : list of (str, Path, Path)
        POSIX name relative to the common folder, the file to read, and the
        file it resolves to (a link's target).
    skipped : list of dict
        ``{"source", "reason"}`` per skipped file.
    """
    root_of = {root: root.resolve() for root, _ in files}
    common = Path(os.path.commonpath([str(resolved) for resolved in root_of.values()]))
    named, skipped = [], []
    for root, file in files:
        name = (root_of[root] / file.relative_to(root)).relative_to(common).as_posix()
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            printable = os.fsencode(name).decode("utf-8", "backslashreplace")
            skipped.append({"source": printable, "reason": "file name is not valid UTF-8 (rename it)"})
            continue
        try:
            target = file.resolve(strict=True)
        except FileNotFoundError:
            skipped.append({"source": name, "reason": f"dangling symlink to {os.readlink(file)}"})
            continue
        except (OSError, RuntimeError):
            skipped.append({"source": name, "reason": "symlink loop"})
            continue
        if not target.is_file():  # a FIFO or a device would block or never end the read
            skipped.append({"source": name, "reason": "not a regular file (a FIFO, device or socket)"})
            continue
        named.append((name, file, target))
    return named, skipped


def decode_all(
    jobs_in, keep: Callable[[str, np.ndarray, str], None], *, min_frames: int, sample_rate: int, jobs: int | None,
    progress: bool,
) -> list[dict]:
    """Run every loader in a thread pool and hand each usable track to ``keep(name, pcm, sha256)``; return the skipped.

    ``jobs_in`` holds ``(name, loader)`` pairs, each loader returning ``(pcm, sha256)``
    or raising :class:`DecodeError`. A track is unusable when empty, silent
    or shorter than ``min_frames`` samples (at ``sample_rate`` Hz), and
    skipped with its reason; ``jobs`` (default: all cores) loaders run at once.

    At most ``2 * jobs`` loaders are in flight, so memory holds a few tracks
    beyond what ``keep`` holds. Results are taken in submission order, which
    keeps the output independent of thread timing.
    """
    if jobs is None:
        jobs = os.cpu_count() or 1
    if not is_int(jobs) or not 1 <= jobs <= MAX_JOBS:
        raise InputError(f"jobs = {jobs} must be an int from 1 to {MAX_JOBS}")
    skipped: list[dict] = []
    # A bar in a log file or a pipe is noise, and would precede a one-line error.
    show = progress and sys.stderr.isatty()
    bar = tqdm(total=len(jobs_in), desc="decoding", unit="file", disable=not show, file=sys.stderr)
    pool = _DaemonPool(jobs)
    pending: list[tuple[str, concurrent.futures.Future]] = []
    loaders = iter(jobs_in)
    try:
        while True:
            for name, loader in loaders:
                pending.append((name, pool.submit(loader)))
                if len(pending) >= 2 * jobs:
                    break
            if not pending:
                break
            name, future = pending.pop(0)
            try:
                pcm, digest = _wait_for(future)
                reason = _unusable(pcm, min_frames, sample_rate)
            except DecodeError as e:
                reason = str(e)
            bar.update(1)
            if reason:
                skipped.append({"source": name, "reason": reason})
            else:
                keep(name, pcm, digest)
    finally:
        pool.close(pending=[future for _, future in pending])
    bar.close()
    return skipped


def _wait_for(future: concurrent.futures.Future):
    """``future.result()``, woken every 0.2 s: the kernel may hand SIGTERM or SIGINT to a worker
    thread, and Python runs the handler only once the main thread wakes up."""
    while True:
        try:
            return future.result(timeout=0.2)
        except TimeoutError:
            if future.done():  # the loader's own TimeoutError
                raise


class _DaemonPool:
    """``jobs`` daemon threads running submitted calls: a worker blocked in a read never holds the process.

    concurrent.futures joins its workers at exit, so a loader blocked forever
    (a hung network file) would keep the process alive after SIGTERM or
    Ctrl-C; a daemon thread dies with the process.
    """

    def __init__(self, jobs: int):
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._jobs = jobs
        for _ in range(jobs):
            threading.Thread(target=self._work, daemon=True).start()

    def submit(self, call: Callable) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._calls.put((future, call))
        return future

    def close(self, *, pending: Iterable[concurrent.futures.Future] = ()) -> None:
        """Cancel ``pending`` calls not yet started and let each thread end once its call returns."""
        for future in pending:
            future.cancel()
        for _ in range(self._jobs):
            self._calls.put(None)

    def _work(self) -> None:
        while (item := self._calls.get()) is not None:
            future, call = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as e:  # noqa: BLE001 - handed to the caller of future.result()
                future.set_exception(e)


def _unusable(pcm: np.ndarray, min_frames: int, sample_rate: int) -> str | None:
    """Why a decoded int16 track cannot be used, or None."""
    if len(pcm) == 0:
        return "no audio frames"
    if not np.any(pcm):
        return "silent (all samples are zero)"
    if len(pcm) < min_frames:
        return (
            f"too short: {len(pcm) / sample_rate:.3f} s, one puzzle needs "
            f"{min_frames / sample_rate:.3f} s"
        )
    return None
