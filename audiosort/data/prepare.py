"""``prepare``: audio files (or synthetic audio) -> a sharded int16 corpus (read by :class:`~audiosort.data.corpus.Corpus`).

The folder's layout is in :mod:`audiosort.data.corpus`; the split policy in
:mod:`audiosort.data.splits`. Decoding runs in a thread pool with a bounded
number of files in flight; each decoded track goes straight to disk, so memory
never holds the corpus. Everything is written into a temporary folder beside
the output and renamed into place at the end.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from audiosort import _files, audio
from audiosort.config import DEFAULT_PUZZLES, SEED_RULE, PuzzleConfig, is_valid_seed, to_dict
from audiosort.data import synthetic
from audiosort.data.beats import build_beats
from audiosort.data.corpus import FORMAT, Corpus
from audiosort.data.puzzles import PuzzleSpec, check_set_size, make_puzzle_set, save_puzzle_set
from audiosort.data.splits import ALL_SPLITS, OOD_SPLIT, PUZZLE_SPLITS, SPLITS, assign_splits, hold_out
from audiosort.errors import InputError, is_int

DEFAULT_SHARD_BYTES = 1 << 30
# Tracks a synthetic corpus may have (duration / track length).
MAX_SYNTHETIC_TRACKS = 100_000
# Samples of one synthetic track (70 min at 16 kHz): each is rendered whole in float64, 512 MiB at most.
MAX_TRACK_SAMPLES = 1 << 26
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
    split: str | None = None  # the one split every track went to (prepare --split), or None

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

    def warnings(self) -> list[str]:
        """The splits a corpus was left without by its fractions: training needs val, eval needs test."""
        if self.split is not None:  # prepare --split puts every track in one split on purpose
            return []
        needs = {"val": "train cannot score val puzzles", "test": "eval has no test split to score"}
        return [
            f"warning: corpus {self.out} has no {split} tracks ({why}); give more tracks or a larger --{split}-fraction"
            for split, why in needs.items() if not self.tracks.get(split)
        ]


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
        if not is_int(n_puzzles) or n_puzzles < 0:
            raise InputError(f"puzzles per fixed set = {n_puzzles!r} must be an int >= 0")
        if not is_int(shard_bytes) or shard_bytes < 2:
            raise InputError(f"largest shard = {shard_bytes!r} bytes must be an int >= 2 (one int16 sample)")
        val, test = self.val_fraction, self.test_fraction
        if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
            raise InputError(f"val ({val}) and test ({test}) fractions must be >= 0 and sum to < 1")
        if self.split is not None and self.split not in SPLITS:
            raise InputError(f"split {self.split!r} is not one of {', '.join(SPLITS)}")


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
        Files and folders (walked recursively for audio extensions). A
        symlink to a file is read through wherever it points and named by the
        link; a dangling link or a loop is skipped with its reason.
    out : str or Path
        Corpus folder to create.
    puzzle : PuzzleConfig
        Settings of the fixed val/test puzzle sets; a track too short for one
        chunk set of these settings is skipped. With ``align = "beats"``, the
        train split's beats are tracked too (:mod:`audiosort.data.beats`),
        ``jobs`` tracks at once.
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
        inside a source or a linked file, nor be the working folder or above
        it (paths resolved, symlinks followed), with or without ``overwrite``.
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
    named, unreadable, decode = audio.audio_loaders(sources, sample_rate=sample_rate)
    return _build_corpus(
        [(name, (lambda p=path: decode(p))) for name, path, _ in named],
        out,
        settings,
        jobs=jobs,
        overwrite=overwrite,
        progress=progress,
        # A link's target is an input too: --overwrite never deletes a file through a link.
        keep=[*sources, *(target for _, path, target in named if path.is_symlink())],
        skipped=unreadable,
    )


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
            f"track_seconds={track_seconds} must be a number of seconds >= {shortest:.3f} (one puzzle's longest span)"
        )
    n_tracks = max(1, round(duration_seconds / track_seconds))
    if n_tracks > MAX_SYNTHETIC_TRACKS:
        raise InputError(
            f"duration_seconds / track_seconds makes {n_tracks} tracks; the limit is {MAX_SYNTHETIC_TRACKS}: "
            "give longer tracks or a shorter duration"
        )
    seconds = duration_seconds / n_tracks
    if seconds * sample_rate > MAX_TRACK_SAMPLES:
        raise InputError(
            f"synthetic tracks of {seconds:g} s at {sample_rate} Hz are {seconds * sample_rate:,.0f} samples each; "
            f"the limit is {MAX_TRACK_SAMPLES:,} ({MAX_TRACK_SAMPLES / sample_rate / 60:.1f} min): give a shorter track_seconds"
        )

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
    with _files.new_folder(
        out, overwrite=overwrite, what="corpus", keep=keep, marker="manifest.json", contents=("features", "beats")
    ) as tmp:
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
    tracks: list[_Track] = []

    def keep(name: str, pcm: np.ndarray, digest: str) -> None:
        # Each track goes straight to disk, so memory never holds the corpus.
        path = tmp / "decoded" / f"{len(tracks):06d}.npy"
        np.save(path, pcm)
        tracks.append(_Track(source=name, path=path, frames=len(pcm), sha256=digest))

    decoded = audio.decode_all(
        jobs_in, keep, min_frames=spec.max_span_samples, sample_rate=sample_rate, jobs=jobs, progress=progress
    )
    skipped = [*skipped, *decoded]
    if not tracks:
        raise InputError(f"no usable audio among {len(skipped)} file(s) ({audio.skipped_reasons(skipped)})")
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
            # The fixed sets are never aligned to beats (only training puzzles are): the manifest says how they were cut.
            **to_dict(dataclasses.replace(settings.puzzle, align="none")), "seed": settings.seed,
            "count": int(settings.n_puzzles), **_spec_samples(spec),
        },
    }
    summary = PrepareSummary(out=out, sample_rate=sample_rate, skipped=skipped, split=split)
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
    if settings.puzzle.align == "beats" and summary.tracks["train"]:
        build_beats(corpus, "train", jobs=jobs)
    return summary


def _spec_samples(spec: PuzzleSpec) -> dict:
    return {
        "chunk_samples": spec.chunk_samples,
        "pad_min_samples": spec.pad_min_samples,
        "pad_max_samples": spec.pad_max_samples,
    }


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
