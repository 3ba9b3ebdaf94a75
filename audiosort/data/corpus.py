"""The corpus folder written by ``audiosort prepare``, opened read-only (:class:`Corpus`).

The corpus folder (DESIGN.md, "Corpus folder")::

    manifest.json            format, sample_rate, tracks, skipped, puzzles
    audio/<split>-<k>.npy    1-D int16 shards, tracks laid end to end
    puzzles/val.npz          fixed puzzle sets cut from held-out tracks
    puzzles/test.npz
    beats/train.npz          the train split's beats, for puzzle.align: beats (audiosort.data.beats)
    features/<key>/...       the feature cache (audiosort.features)

It is written by :mod:`audiosort.data.prepare`; which track goes to which
split is :mod:`audiosort.data.splits`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np

from audiosort import _files
from audiosort.data.puzzles import PuzzleSpec, Puzzles, TrackTable, load_puzzle_set, make_puzzle_set
from audiosort.config import PAD_MODES
from audiosort.data.splits import ALL_SPLITS
from audiosort.errors import InputError, is_int

FORMAT = "audiosort-corpus/1"
_TRACK_KEYS = ("id", "source", "split", "shard", "offset", "frames")


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
        if not manifest_path.exists():
            raise InputError(f"{self.path} is not a corpus: no manifest.json")
        try:
            self.manifest = json.loads(_files.read_regular(manifest_path, "corpus manifest").decode("utf-8"))
        except UnicodeDecodeError as e:
            raise InputError(f"cannot read {manifest_path}: not UTF-8 text (byte {e.start}); prepare the corpus again") from None
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read {manifest_path}: {_first_line(e)}") from None
        if not isinstance(self.manifest, dict) or self.manifest.get("format") != FORMAT:
            found = self.manifest.get("format") if isinstance(self.manifest, dict) else type(self.manifest).__name__
            raise InputError(f"{manifest_path} has format {found!r}, expected {FORMAT!r}")
        self.sample_rate: int = self.manifest.get("sample_rate")
        if not is_int(self.sample_rate) or self.sample_rate <= 0:
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
            if any(not is_int(n) or n < 0 for n in numbers) or entry["id"] != index:
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
            _files.check_regular(path, "corpus shard")  # a FIFO would block np.load forever
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

    def fingerprint(self, split: str) -> dict:
        """What files computed from ``split`` (a feature cache, beats) record of the corpus they came from.

        The manifest's SHA-256 and the size and modification time of each of
        the split's shards: preparing the corpus again changes one of them, so
        such a file is then stale.
        """
        shards = sorted({entry["shard"] for entry in self.track_entries if entry["split"] == split})
        stats = {name: os.stat(self.path / "audio" / name) for name in shards}
        return {
            "manifest_sha256": hashlib.sha256((self.path / "manifest.json").read_bytes()).hexdigest(),
            "shards": {name: [stat.st_size, stat.st_mtime_ns] for name, stat in stats.items()},
        }

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
        if not is_int(value) or value < 0:
            raise InputError(f"{manifest_path}: puzzles.{key} = {value!r} is not an int >= 0; prepare the corpus again")
    if settings.get("pad_mode") not in PAD_MODES:
        raise InputError(f"{manifest_path}: puzzles.pad_mode = {settings.get('pad_mode')!r} is not one of {PAD_MODES}")
    min_rms = settings.get("min_rms")
    if isinstance(min_rms, bool) or not isinstance(min_rms, (int, float)) or not math.isfinite(min_rms):
        raise InputError(f"{manifest_path}: puzzles.min_rms = {min_rms!r} is not a number; prepare the corpus again")


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
