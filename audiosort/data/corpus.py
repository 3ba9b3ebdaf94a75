"""``prepare``: audio files (or synthetic audio) -> a sharded int16 corpus.

The corpus folder (DESIGN.md, "Corpus folder")::

    manifest.json            format, sample_rate, tracks, skipped, puzzles
    audio/<split>-<k>.npy    1-D int16 shards, tracks laid end to end
    puzzles/val.npz          fixed puzzle sets cut from held-out tracks
    puzzles/test.npz

Splits are by track and decided by a hash of each source's path, so adding
files never moves an existing track to another split, and a chunk set never
mixes tracks. Decoding runs in a thread pool with a bounded number of files in
flight; each decoded track goes straight to disk, so memory never holds the
corpus. Everything is written into a temporary folder beside the output and
renamed into place at the end.
"""

from __future__ import annotations

import concurrent.futures
import fnmatch
import hashlib
import json
import math
import os
import re
import shutil
import queue
import struct
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from tqdm import tqdm

from audiosort import _files, audio
from audiosort.config import DEFAULT_PUZZLES, PAD_MODES, SEED_RULE, PuzzleConfig, is_valid_seed, to_dict
from audiosort.data import synthetic
from audiosort.data.puzzles import (
    PuzzleSpec, Puzzles, TrackTable, check_set_size, load_puzzle_set, make_puzzle_set, save_puzzle_set,
)
from audiosort.errors import DecodeError, InputError

FORMAT = "audiosort-corpus/1"
SPLITS = ("train", "val", "test")
# Out of domain: every track of the sources named by --test-sources, never trained on.
OOD_SPLIT = "ood"
ALL_SPLITS = (*SPLITS, OOD_SPLIT)
PUZZLE_SPLITS = ("val", "test", OOD_SPLIT)
_TRACK_KEYS = ("id", "source", "split", "shard", "offset", "frames")
DEFAULT_SHARD_BYTES = 1 << 30
# Fixed .npy header size so a shard can be written as a stream and its length
# filled in at the end (NPY 1.0: magic, version, uint16 header length, header).
_NPY_HEADER_BYTES = 128


@dataclass
class PrepareSummary:
    """What ``prepare`` wrote: per-split track counts and hours, skipped files."""

    out: Path
    sample_rate: int
    tracks: dict = field(default_factory=dict)  # split -> number of tracks
    hours: dict = field(default_factory=dict)  # split -> hours of audio
    skipped: list = field(default_factory=list)  # [{"source", "reason"}]
    puzzles: dict = field(default_factory=dict)  # split -> number of fixed puzzles

    def lines(self) -> list[str]:
        """Human-readable summary, one line per fact."""
        out = [f"corpus: {self.out}  ({self.sample_rate} Hz, int16)"]
        for split in ALL_SPLITS:
            if split == OOD_SPLIT and not self.tracks.get(split):
                continue
            out.append(
                f"  {split:<5} {self.tracks.get(split, 0):5d} tracks  {self.hours.get(split, 0.0):8.3f} h"
                + (f"  {self.puzzles[split]} fixed puzzles" if split in self.puzzles else "")
            )
        out.append(f"  skipped {len(self.skipped)} file(s)")
        out += [f"    {s['source']}: {s['reason']}" for s in self.skipped]
        return out


@dataclass(frozen=True)
class CorpusSettings:
    """What a corpus is made of, beyond its tracks: rate, splits, fixed puzzle sets, shards.

    The keywords of :func:`prepare` that describe the corpus (not how it is
    built); see there for each field. Defaults here are those of
    :func:`prepare` and :func:`prepare_synthetic`.
    """

    puzzle: PuzzleConfig
    sample_rate: int = 16000
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    n_puzzles: int = DEFAULT_PUZZLES
    seed: int = 0
    shard_bytes: int = DEFAULT_SHARD_BYTES
    group_pattern: str | None = None
    split: str | None = None
    test_sources: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "test_sources", tuple(self.test_sources))

    def check(self) -> None:
        """Raise :class:`InputError` naming the first setting out of range."""
        audio.check_sample_rate(self.sample_rate)
        if not is_valid_seed(self.seed):
            raise InputError(f"seed {self.seed!r} {SEED_RULE}")
        n_puzzles, shard_bytes = self.n_puzzles, self.shard_bytes
        if isinstance(n_puzzles, bool) or not isinstance(n_puzzles, int) or n_puzzles < 0:
            raise InputError(f"puzzles per fixed set = {n_puzzles!r} must be an int >= 0")
        if isinstance(shard_bytes, bool) or not isinstance(shard_bytes, int) or shard_bytes < 2:
            raise InputError(f"largest shard = {shard_bytes!r} bytes must be an int >= 2 (one int16 sample)")
        val, test = self.val_fraction, self.test_fraction
        if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
            raise InputError(f"val ({val}) and test ({test}) fractions must be >= 0 and sum to < 1")
        if self.split is not None and self.split not in SPLITS:
            raise InputError(f"split {self.split!r} is not one of {', '.join(SPLITS)}")


# Files decoded at once, at most: each holds a decoded track in memory.
MAX_JOBS = 256
# Tracks a synthetic corpus may have (duration / track length).
MAX_SYNTHETIC_TRACKS = 100_000


@dataclass
class _Track:
    source: str
    path: Path  # temporary .npy of the decoded int16 audio
    frames: int
    sha256: str


def prepare(
    sources: Iterable[str | Path],
    out: str | Path,
    *,
    puzzle: PuzzleConfig,
    sample_rate: int = CorpusSettings.sample_rate,
    val_fraction: float = CorpusSettings.val_fraction,
    test_fraction: float = CorpusSettings.test_fraction,
    n_puzzles: int = CorpusSettings.n_puzzles,
    seed: int = CorpusSettings.seed,
    jobs: int | None = None,
    shard_bytes: int = CorpusSettings.shard_bytes,
    overwrite: bool = False,
    progress: bool = True,
    group_pattern: str | None = None,
    split: str | None = None,
    test_sources: Sequence[str] = (),
) -> PrepareSummary:
    """Decode audio files into a corpus folder at ``out``.

    Parameters
    ----------
    sources : iterable of str or Path
        Files and folders (walked recursively for audio extensions).
    out : str or Path
        Corpus folder to create.
    puzzle : PuzzleConfig
        Settings of the fixed val/test puzzle sets; a track too short for one
        chunk set of these settings is skipped.
    sample_rate : int in [1, 192000]
        Rate of the corpus, in Hz; files are resampled with soxr (HQ). The
        bound is :data:`audiosort.audio.MAX_SAMPLE_RATE`.
    val_fraction, test_fraction : float in [0, 1)
        Expected share of tracks held out for validation and test.
    n_puzzles : int >= 0
        Puzzles per fixed set.
    seed : int
        Seeds the fixed puzzle sets.
    jobs : int > 0, optional
        Files decoded at once; default all cores.
    shard_bytes : int >= 2
        Largest shard, in bytes (a longer track gets a shard of its own).
    overwrite : bool
        Replace an existing corpus at ``out`` (a folder holding
        ``manifest.json``, or an empty one). ``out`` may never be, hold or lie
        inside a source, nor be the working folder or above it (paths
        resolved, symlinks followed), with or without ``overwrite``.
    progress : bool
        Show a progress bar on stderr when stderr is a terminal.
    group_pattern : str, optional
        Regular expression removed from source paths before the split hash,
        so versions of one piece share a split (see :func:`assign_splits`).
    split : {"train", "val", "test"}, optional
        Put every track in this split instead of hashing (``"test"``: score a
        trained model on a whole folder without wasting any of it); the
        fractions are then unused.
    test_sources : sequence of str
        Glob patterns on the source paths (see :func:`hold_out`); matching
        tracks go to the out-of-domain split ``ood``, with its own fixed
        puzzle set, and never to train, val or test.

    Returns
    -------
    PrepareSummary

    Raises
    ------
    InputError
        Missing source, no audio found, nothing decodable, ``out`` exists or is
        not writable, ``out`` overlaps a source. A single bad file is skipped
        and recorded instead.
    """
    settings = CorpusSettings(
        puzzle=puzzle, sample_rate=sample_rate, val_fraction=val_fraction, test_fraction=test_fraction,
        n_puzzles=n_puzzles, seed=seed, shard_bytes=shard_bytes, group_pattern=group_pattern, split=split,
        test_sources=test_sources,
    )
    sources = list(sources)
    files = audio.find_audio_files(sources)
    if not files:
        raise InputError(f"no audio files found in {', '.join(str(s) for s in sources)}")
    named, unreadable = _name_sources(files, {Path(s) for s in sources if not Path(s).is_dir()})

    def decode(path: Path) -> tuple[np.ndarray, str]:
        try:
            digest = audio.sha256_file(path)
        except InputError as e:
            raise DecodeError(str(e)) from None
        return audio.to_int16(audio.load(path, sample_rate=sample_rate)), digest

    return _build_corpus(
        [(name, (lambda p=path: decode(p))) for name, path in named],
        out,
        settings,
        jobs=jobs,
        overwrite=overwrite,
        progress=progress,
        keep=sources,
        skipped=unreadable,
    )


def _name_sources(
    files: list[tuple[Path, Path]], given_files: set[Path]
) -> tuple[list[tuple[str, Path]], list[dict]]:
    """Name each found file by its path relative to the sources' common folder; skip those that cannot be read.

    Skipped, each with a reason: a dangling symlink, a symlink loop, what
    is not a regular file (a FIFO, a device: reading it could block
    forever), a symlink found in a folder that points outside that folder (its audio is
    not part of what was given), and a name that is not UTF-8 (the manifest
    is JSON text).

    Returns
    -------
    named : list of (str, Path)
        POSIX name relative to the common folder, and the file to read.
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
        # A file given directly may link anywhere; a link found in a folder must stay inside that folder.
        if file not in given_files and file.is_symlink() and not target.is_relative_to(root_of[root]):
            skipped.append({"source": name, "reason": f"symlink to a file outside {root}"})
            continue
        named.append((name, file))
    return named, skipped


def prepare_synthetic(
    kind: str,
    out: str | Path,
    *,
    duration_seconds: float,
    track_seconds: float = 60.0,
    tone_method: str = "tiled",
    puzzle: PuzzleConfig,
    sample_rate: int = CorpusSettings.sample_rate,
    seed: int = CorpusSettings.seed,
    jobs: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    **other_settings,
) -> PrepareSummary:
    """Render a synthetic corpus (``music``, ``noise``, ``brown`` or ``tone``) at ``out``.

    Parameters
    ----------
    kind : str
        One of :data:`audiosort.data.synthetic.KINDS`.
    duration_seconds : float > 0
        Total audio, in seconds, cut into tracks of ``track_seconds``.
    track_seconds : float > 0
        Length of each track, in seconds.
    tone_method : {"tiled", "exact"}
        How ``tone`` is made (see :func:`audiosort.data.synthetic.tone`).
    seed : int
        Seeds both the audio (track k uses ``[seed, k]``) and the puzzle sets.
    jobs, overwrite, progress
        As in :func:`prepare`.
    **other_settings
        The remaining corpus settings of :func:`prepare` (fractions,
        n_puzzles, shard_bytes, ...): fields of :class:`CorpusSettings`.
    """
    settings = CorpusSettings(puzzle=puzzle, sample_rate=sample_rate, seed=seed, **other_settings)
    if kind not in synthetic.KINDS:
        raise InputError(f"unknown synthetic kind {kind!r}; choose one of {', '.join(synthetic.KINDS)}")
    if not (math.isfinite(duration_seconds) and duration_seconds > 0):
        raise InputError(f"duration ({duration_seconds} s) must be a number of seconds > 0")
    spec = PuzzleSpec.from_config(puzzle, sample_rate=sample_rate)
    shortest = spec.max_span_samples / sample_rate
    if not (math.isfinite(track_seconds) and track_seconds >= shortest):
        raise InputError(
            f"--track-seconds {track_seconds} must be a number of seconds >= {shortest:.3f} (one puzzle's longest span)"
        )
    n_tracks = max(1, round(duration_seconds / track_seconds))
    if n_tracks > MAX_SYNTHETIC_TRACKS:
        raise InputError(
            f"--duration / --track-seconds makes {n_tracks} tracks; the limit is {MAX_SYNTHETIC_TRACKS}: "
            "give longer tracks or a shorter duration"
        )
    seconds = duration_seconds / n_tracks

    def render(k: int) -> tuple[np.ndarray, str]:
        y = synthetic.render(
            kind, seconds, sample_rate=sample_rate, rng=np.random.default_rng([seed, k]), tone_method=tone_method
        )
        pcm = audio.to_int16(y)
        return pcm, hashlib.sha256(pcm.tobytes()).hexdigest()

    label = f"{kind}-{tone_method}" if kind == "tone" else kind
    return _build_corpus(
        [(f"synthetic/{label}/{k:05d}", (lambda k=k: render(k))) for k in range(n_tracks)],
        out,
        settings,
        jobs=jobs,
        overwrite=overwrite,
        progress=progress,
    )


def _build_corpus(
    jobs_in: list[tuple[str, Callable[[], tuple[np.ndarray, str]]]],
    out: str | Path,
    settings: CorpusSettings,
    *,
    jobs: int | None,
    overwrite: bool,
    progress: bool,
    keep: Iterable[str | Path] = (),
    skipped: Iterable[dict] = (),
) -> PrepareSummary:
    """Load each (source name, loader) pair and write the corpus atomically; ``out`` may not overlap ``keep``."""
    settings.check()
    spec = PuzzleSpec.from_config(settings.puzzle, sample_rate=settings.sample_rate)
    check_set_size(settings.n_puzzles, spec)
    out = Path(out)
    with _files.new_folder(out, overwrite=overwrite, what="corpus", keep=keep, marker="manifest.json") as tmp:
        try:
            return _write_corpus(
                jobs_in, tmp, out, settings, spec=spec, jobs=jobs, progress=progress, skipped=list(skipped)
            )
        except OSError as e:
            # Sources are read through audio.load, which turns every read failure into a skipped file;
            # an OSError here is a failed write (a full disk, a quota), and new_folder removes the partial corpus.
            reason = e.strerror or f"a write was cut short ({e}; is the disk full?)"
            raise InputError(f"cannot write corpus {out}: {reason}; nothing was written") from None


def _write_corpus(
    jobs_in, tmp: Path, out: Path, settings: CorpusSettings, *, spec: PuzzleSpec, jobs, progress, skipped
) -> PrepareSummary:
    """Fill the temporary folder ``tmp`` (see :func:`_build_corpus`); return the summary."""
    sample_rate, split, group_pattern = settings.sample_rate, settings.split, settings.group_pattern
    (tmp / "decoded").mkdir()
    tracks, unusable = _decode_all(jobs_in, tmp / "decoded", spec, sample_rate, jobs, progress)
    skipped = [*skipped, *unusable]
    if not tracks:
        reasons = "; ".join(f"{s['source']}: {s['reason']}" for s in skipped[:3])
        raise InputError(f"no usable audio among {len(skipped)} file(s) ({reasons})")
    names = [t.source for t in tracks]
    held_out = hold_out(names, settings.test_sources, group_pattern=group_pattern)
    if split is not None:
        splits = [OOD_SPLIT if ood else split for ood in held_out]
    else:
        kept = [name for name, ood in zip(names, held_out) if not ood]
        in_domain = iter(
            assign_splits(
                kept,
                val_fraction=settings.val_fraction,
                test_fraction=settings.test_fraction,
                group_pattern=group_pattern,
            )
        )
        splits = [OOD_SPLIT if ood else next(in_domain) for ood in held_out]
    manifest_tracks = _write_shards(tracks, splits, tmp / "audio", settings.shard_bytes)
    shutil.rmtree(tmp / "decoded")
    manifest = {
        "format": FORMAT,
        "sample_rate": sample_rate,
        "dtype": "int16",
        "tracks": manifest_tracks,
        "skipped": skipped,
        "group_pattern": group_pattern,
        "test_sources": list(settings.test_sources),
        "split": split,
        "puzzles": {
            **to_dict(settings.puzzle), "seed": settings.seed, "count": settings.n_puzzles, **_spec_samples(spec)
        },
    }
    summary = PrepareSummary(out=out, sample_rate=sample_rate, skipped=skipped)
    for name in ALL_SPLITS:
        frames = [t["frames"] for t in manifest_tracks if t["split"] == name]
        summary.tracks[name] = len(frames)
        summary.hours[name] = sum(frames) / sample_rate / 3600
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    corpus = Corpus(tmp)
    for code, name in enumerate(ALL_SPLITS):
        if name in PUZZLE_SPLITS and summary.tracks[name] and settings.n_puzzles:
            # Each split's set has its own stream, so adding val tracks never changes the test set.
            rng = np.random.default_rng([settings.seed, code])
            puzzles = make_puzzle_set(corpus.tracks(name), spec, settings.n_puzzles, rng=rng)
            save_puzzle_set(tmp / "puzzles" / f"{name}.npz", puzzles)
            summary.puzzles[name] = settings.n_puzzles
    return summary


def hold_out(sources: list[str], patterns: Sequence[str], *, group_pattern: str | None = None) -> list[bool]:
    """Which sources go to the out-of-domain split: those whose path matches one of ``patterns``.

    Parameters
    ----------
    sources : list of str
        Source paths relative to the sources' common folder (POSIX).
    patterns : sequence of str
        Shell-style globs (:func:`fnmatch.fnmatchcase`, where ``*`` also
        crosses ``/``): ``supertux/*`` holds out every file under
        ``supertux/``. A pattern matching no source is an error (a typo would
        otherwise hold out nothing, silently).
    group_pattern : str, optional
        As in :func:`assign_splits`: when one version of a piece is held out,
        every version is, so no near-copy is trained on.

    Returns
    -------
    list of bool
        True for each held-out source.
    """
    if not patterns:
        return [False] * len(sources)
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(source, pattern) for source in sources):
            raise InputError(
                f"--test-sources {pattern!r} matches no track (paths are relative to the sources' common folder, "
                f"e.g. {sources[0]!r})"
            )
    keys = _group_keys(sources, group_pattern)
    held_keys = {key for key, source in zip(keys, sources) if any(fnmatch.fnmatchcase(source, p) for p in patterns)}
    return [key in held_keys for key in keys]


def _group_keys(sources: list[str], group_pattern: str | None) -> list[str]:
    if not group_pattern:
        return list(sources)
    try:
        pattern = re.compile(group_pattern)
    except re.error as e:
        raise InputError(f"--group-pattern {group_pattern!r} is not a regular expression: {e}") from None
    return [pattern.sub("", s) for s in sources]


def _spec_samples(spec: PuzzleSpec) -> dict:
    return {
        "chunk_samples": spec.chunk_samples,
        "pad_min_samples": spec.pad_min_samples,
        "pad_max_samples": spec.pad_max_samples,
    }


def _decode_all(jobs_in, folder: Path, spec: PuzzleSpec, sample_rate: int, jobs: int | None, progress: bool):
    """Run every loader in a thread pool, write each track to ``folder``; return (tracks, skipped).

    At most ``2 * jobs`` loaders are in flight, so memory holds a few tracks,
    never the corpus. Results are taken in submission order, which keeps the
    output independent of thread timing.
    """
    if jobs is None:
        jobs = os.cpu_count() or 1
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= MAX_JOBS:
        raise InputError(f"--jobs {jobs} must be an int from 1 to {MAX_JOBS}")
    tracks: list[_Track] = []
    skipped: list[dict] = []
    # A bar in a log file or a pipe is noise, and would precede a one-line error.
    show = progress and sys.stderr.isatty()
    bar = tqdm(total=len(jobs_in), desc="decoding", unit="file", disable=not show, file=sys.stderr)
    pool = _DaemonPool(jobs)
    pending: list[tuple[str, concurrent.futures.Future]] = []
    loaders = iter(jobs_in)
    try:
        while True:
            for name, load in loaders:
                pending.append((name, pool.submit(load)))
                if len(pending) >= 2 * jobs:
                    break
            if not pending:
                break
            name, future = pending.pop(0)
            try:
                pcm, digest = future.result()
                reason = _unusable(pcm, spec, sample_rate)
            except DecodeError as e:
                reason = str(e)
            bar.update(1)
            if reason:
                skipped.append({"source": name, "reason": reason})
                continue
            path = folder / f"{len(tracks):06d}.npy"
            np.save(path, pcm)
            tracks.append(_Track(source=name, path=path, frames=len(pcm), sha256=digest))
    finally:
        pool.close(pending=[future for _, future in pending])
    bar.close()
    return tracks, skipped


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


def _unusable(pcm: np.ndarray, spec: PuzzleSpec, sample_rate: int) -> str | None:
    """Why a decoded int16 track cannot be used, or None."""
    if len(pcm) == 0:
        return "no audio frames"
    if not np.any(pcm):
        return "silent (all samples are zero)"
    if len(pcm) < spec.max_span_samples:
        return (
            f"too short: {len(pcm) / sample_rate:.3f} s, one puzzle needs "
            f"{spec.max_span_samples / sample_rate:.3f} s"
        )
    return None


def split_fraction(source: str) -> float:
    """Where a source path falls in [0, 1): a stable hash that decides its split."""
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(
    sources: list[str], *, val_fraction: float, test_fraction: float, group_pattern: str | None = None
) -> list[str]:
    """Split tracks by a hash of their source path.

    A source lands in ``test`` when its hash fraction u < test_fraction, in
    ``val`` when u < test_fraction + val_fraction, else ``train``; so adding
    sources never moves an existing one. With 3 or more groups, every split
    whose fraction is non-zero gets at least one: the train group whose u lies
    closest to the empty split's interval moves there (only small corpora are
    ever affected).

    Parameters
    ----------
    sources : list of str
        Source paths (relative, POSIX), one per track.
    val_fraction, test_fraction : float in [0, 1)
    group_pattern : str, optional
        A regular expression removed from each path before hashing, so that
        versions of one piece (``track3.opus``, ``track3_enhanced.opus`` with
        ``_enhanced``) share a split instead of leaking across it.

    Returns
    -------
    list of str
        "train", "val" or "test" per source.
    """
    keys = _group_keys(sources, group_pattern)
    groups = sorted(set(keys))
    u = np.array([split_fraction(g) for g in groups])
    splits = np.where(u < test_fraction, "test", np.where(u < test_fraction + val_fraction, "val", "train")).astype(object)
    intervals = {"test": (0.0, test_fraction), "val": (test_fraction, test_fraction + val_fraction)}
    if len(groups) >= 3:
        for split, (low, high) in intervals.items():
            if high > low and not np.any(splits == split):
                donors = np.flatnonzero(splits == "train")
                if len(donors) <= 1:
                    donors = np.flatnonzero(splits != split)
                distance = np.maximum(low - u[donors], u[donors] - high)
                splits[donors[np.argmin(distance)]] = split
    split_of = dict(zip(groups, splits))
    return [str(split_of[k]) for k in keys]


def _write_shards(tracks: list[_Track], splits: list[str], folder: Path, shard_bytes: int) -> list[dict]:
    """Lay the tracks of each split end to end in ``<split>-<k>.npy`` shards; return manifest entries."""
    folder.mkdir()
    entries: list[dict] = [{} for _ in tracks]
    for split in ALL_SPLITS:
        writer = None
        for index in (i for i, s in enumerate(splits) if s == split):
            track = tracks[index]
            if writer is None or (writer.frames and (writer.frames + track.frames) * 2 > shard_bytes):
                if writer:
                    writer.close()
                writer = _ShardWriter(folder / f"{split}-{writer.number + 1 if writer else 0:05d}.npy")
            offset = writer.append(np.load(track.path, mmap_mode="r"))
            entries[index] = {
                "id": index,
                "source": track.source,
                "split": split,
                "shard": writer.path.name,
                "offset": offset,
                "frames": track.frames,
                "sha256": track.sha256,
            }
        if writer:
            writer.close()
    return entries


class _ShardWriter:
    """Stream int16 samples into a 1-D ``.npy`` whose length is written on close."""

    def __init__(self, path: Path):
        self.path = path
        self.number = int(path.stem.rsplit("-", 1)[1])
        self.frames = 0
        self.file = open(path, "wb")
        self.file.write(_npy_header(0))

    def append(self, samples: np.ndarray) -> int:
        """Write samples (int16); return the offset of the first one, in samples."""
        offset = self.frames
        self.file.write(np.ascontiguousarray(samples, dtype="<i2").tobytes())
        self.frames += len(samples)
        return offset

    def close(self) -> None:
        self.file.seek(0)
        self.file.write(_npy_header(self.frames))
        self.file.close()


def _npy_header(frames: int) -> bytes:
    header = f"{{'descr': '<i2', 'fortran_order': False, 'shape': ({frames},), }}"
    header = header.ljust(_NPY_HEADER_BYTES - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1")


class Corpus:
    """A corpus folder written by :func:`prepare`, opened read-only.

    Parameters
    ----------
    path : str or Path
        The corpus folder.

    Raises
    ------
    InputError
        Missing folder or manifest, or a manifest of another format.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        manifest_path = self.path / "manifest.json"
        if not self.path.is_dir():
            raise InputError(f"no corpus at {self.path} (run `audiosort prepare` first)")
        try:
            self.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{self.path} is not a corpus: no manifest.json") from None
        except UnicodeDecodeError as e:
            raise InputError(f"cannot read {manifest_path}: not UTF-8 text (byte {e.start}); prepare the corpus again") from None
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read {manifest_path}: {_first_line(e)}") from None
        if not isinstance(self.manifest, dict) or self.manifest.get("format") != FORMAT:
            found = self.manifest.get("format") if isinstance(self.manifest, dict) else type(self.manifest).__name__
            raise InputError(f"{manifest_path} has format {found!r}, expected {FORMAT!r}")
        self.sample_rate: int = self.manifest.get("sample_rate")
        if isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate, int) or self.sample_rate <= 0:
            raise InputError(f"{manifest_path}: sample_rate {self.sample_rate!r} is not a positive int")
        _check_puzzle_settings(self.manifest.get("puzzles"), manifest_path)
        self._shards: dict[str, np.ndarray] = {}
        self._check_tracks(manifest_path)

    def _check_tracks(self, manifest_path: Path) -> None:
        """Check every manifest entry and open every shard (headers only), naming the first damaged file.

        Cheap (one header read per shard, no audio read) and done on open, so
        that train and eval fail at once with the file's name instead of
        deep inside a batch.
        """
        tracks = self.manifest.get("tracks")
        if not isinstance(tracks, list) or not tracks:
            raise InputError(f"{manifest_path} lists no tracks ('tracks' missing or empty)")
        extent: dict[str, int] = {}
        for index, entry in enumerate(tracks):
            if not isinstance(entry, dict):
                raise InputError(f"{manifest_path}: tracks[{index}] is not an object")
            missing = [key for key in _TRACK_KEYS if key not in entry]
            if missing:
                raise InputError(f"{manifest_path}: tracks[{index}] lacks {', '.join(repr(k) for k in missing)}")
            numbers = [entry[key] for key in ("id", "offset", "frames")]
            if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in numbers) or entry["id"] != index:
                raise InputError(f"{manifest_path}: tracks[{index}] has a bad id, offset or frames ({numbers})")
            if entry["split"] not in ALL_SPLITS:
                raise InputError(f"{manifest_path}: tracks[{index}] has unknown split {entry['split']!r}")
            shard = entry["shard"]
            if not isinstance(shard, str) or Path(shard).name != shard or not shard.endswith(".npy"):
                raise InputError(f"{manifest_path}: tracks[{index}] names shard {shard!r}, not a file in audio/")
            extent[shard] = max(extent.get(shard, 0), entry["offset"] + entry["frames"])
        for name, needed in sorted(extent.items()):
            samples = self.shard(name)
            if len(samples) < needed:
                raise InputError(
                    f"corpus shard {self.path / 'audio' / name} holds {len(samples)} samples but the manifest "
                    f"needs {needed}; prepare the corpus again"
                )

    @property
    def track_entries(self) -> list[dict]:
        """The manifest's ``tracks`` list."""
        return self.manifest["tracks"]

    def shard(self, name: str) -> np.ndarray:
        """A shard, memory-mapped: 1-D int16."""
        if name not in self._shards:
            path = self.path / "audio" / name
            try:
                samples = np.load(path, mmap_mode="r", allow_pickle=False)
            except FileNotFoundError:
                raise InputError(f"corpus shard {path} is missing; prepare the corpus again") from None
            except (OSError, ValueError, EOFError) as e:
                raise InputError(f"corpus shard {path} is damaged ({_first_line(e)}); prepare the corpus again") from None
            if not isinstance(samples, np.ndarray) or samples.dtype != np.int16 or samples.ndim != 1:
                raise InputError(f"corpus shard {path} is not a 1-D int16 array; prepare the corpus again")
            # A plain ndarray view of the memory map: same pages, no memmap subclass in every gather.
            self._shards[name] = np.asarray(samples)
        return self._shards[name]

    def tracks(self, split: str) -> TrackTable:
        """The tracks of one split as a :class:`TrackTable` over memory-mapped shards.

        Raises
        ------
        InputError
            Unknown split, or a split with no tracks.
        """
        if split not in ALL_SPLITS:
            raise InputError(f"unknown split {split!r}; choose one of {', '.join(ALL_SPLITS)}")
        entries = [t for t in self.track_entries if t["split"] == split]
        if not entries:
            raise InputError(f"corpus {self.path} has no {split} tracks")
        names = sorted({t["shard"] for t in entries})
        return TrackTable(
            shards=tuple(self.shard(name) for name in names),
            shard=np.array([names.index(t["shard"]) for t in entries], dtype=np.int64),
            offset=np.array([t["offset"] for t in entries], dtype=np.int64),
            frames=np.array([t["frames"] for t in entries], dtype=np.int64),
            track_id=np.array([t["id"] for t in entries], dtype=np.int64),
        )

    def track_audio(self, track_id: int) -> np.ndarray:
        """The samples of one track: 1-D int16 (a memory-mapped view)."""
        entry = self.track_entries[track_id]
        return self.shard(entry["shard"])[entry["offset"] : entry["offset"] + entry["frames"]]

    def puzzle_set(self, split: str) -> Puzzles:
        """The fixed puzzle set of ``split`` (``val``, ``test`` or ``ood``), checked against the manifest.

        Raises
        ------
        InputError
            Missing or unreadable file, or puzzles that do not fit the
            manifest (chunk length, chunk count, track indices), naming the file.
        """
        path = self.path / "puzzles" / f"{split}.npz"
        puzzles = load_puzzle_set(path)
        settings = self.puzzle_settings
        _, n_chunks, chunk_samples = puzzles.chunks.shape
        if (n_chunks, chunk_samples) != (settings.get("n_chunks"), settings.get("chunk_samples")):
            raise InputError(
                f"{path} holds puzzles of {n_chunks} chunks of {chunk_samples} samples but the manifest says "
                f"{settings.get('n_chunks')} of {settings.get('chunk_samples')}; prepare the corpus again"
            )
        in_split = {t["id"] for t in self.track_entries if t["split"] == split}
        if not set(np.unique(puzzles.track).tolist()) <= in_split:
            raise InputError(f"{path} cites tracks outside the {split} split; prepare the corpus again")
        return puzzles

    def puzzles_for(self, split: str, spec: PuzzleSpec, *, n_puzzles: int, seed: int) -> tuple[Puzzles, bool]:
        """Puzzles of ``split`` cut as ``spec`` says: the fixed set when it was made so, else a new seeded one.

        Returns
        -------
        puzzles : Puzzles
        fixed : bool
            True when these are the corpus's fixed ``puzzles/<split>.npz``.
        """
        settings = self.puzzle_settings
        made_with = PuzzleSpec(
            n_chunks=settings["n_chunks"],
            chunk_samples=settings["chunk_samples"],
            pad_min_samples=settings["pad_min_samples"],
            pad_max_samples=settings["pad_max_samples"],
            pad_mode=settings["pad_mode"],
            min_rms=settings["min_rms"],
        )
        if made_with == spec and (self.path / "puzzles" / f"{split}.npz").exists():
            return self.puzzle_set(split), True
        rng = np.random.default_rng([seed, ALL_SPLITS.index(split)])
        return make_puzzle_set(self.tracks(split), spec, n_puzzles, rng=rng), False

    @property
    def puzzle_settings(self) -> dict:
        """The puzzle settings the fixed sets were made with (manifest ``puzzles``)."""
        return self.manifest["puzzles"]


def _check_puzzle_settings(settings, manifest_path: Path) -> None:
    """The manifest's ``puzzles``: what :meth:`Corpus.puzzles_for` reads, each of its type."""
    if not isinstance(settings, dict):
        raise InputError(f"{manifest_path} has no puzzle settings ('puzzles')")
    for key in ("n_chunks", "chunk_samples", "pad_min_samples", "pad_max_samples"):
        value = settings.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"{manifest_path}: puzzles.{key} = {value!r} is not an int >= 0; prepare the corpus again")
    if settings.get("pad_mode") not in PAD_MODES:
        raise InputError(f"{manifest_path}: puzzles.pad_mode = {settings.get('pad_mode')!r} is not one of {PAD_MODES}")
    min_rms = settings.get("min_rms")
    if isinstance(min_rms, bool) or not isinstance(min_rms, (int, float)) or not math.isfinite(min_rms):
        raise InputError(f"{manifest_path}: puzzles.min_rms = {min_rms!r} is not a number; prepare the corpus again")


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def parse_duration(text: str) -> float:
    """Seconds from ``"90"``, ``"90s"``, ``"30m"`` or ``"2h"``.

    Raises
    ------
    InputError
        Not a positive number with an optional s/m/h suffix.
    """
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    text = str(text).strip().lower()
    scale = units.get(text[-1:], None)
    number = text[:-1] if scale else text
    try:
        seconds = float(number) * (scale or 1.0)
    except ValueError:
        raise InputError(f"duration {text!r} is not a number of seconds or a number with s/m/h") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise InputError(f"duration {text!r} must be > 0")
    return seconds
