"""Beats of a corpus split, tracked once and stored beside the corpus: where ``puzzle.align: beats`` starts chunks.

:func:`track_beats` finds one track's beats with librosa's tracker (Ellis
2007: a tempo from the onset envelope's autocorrelation, then the beats by
dynamic programming). The tempo comes from librosa's usual 32 ms onset
envelope; the beats are placed on a 10 ms one, one hop earlier than the
envelope marks them, so that a chunk starts within a few ms of its beat's
onset (on a click track, within 20 ms for all but the last beat,
tests/test_beats.py), at a fraction of what tracking the tempo at 10 ms costs.

:func:`open_beats` gives a split's beats as a
:class:`~audiosort.data.puzzles.BeatTable` for the rows of
:meth:`Corpus.tracks <audiosort.data.corpus.Corpus.tracks>`, tracking them
first when the file is missing or stale. Layout, beside the corpus::

    CORPUS/beats/<split>.npz   positions int64 (M,), first int64 (T + 1,), track_id int64 (T,),
                               tempo_bpm float64 (T,), index (JSON text: format, tracker
                               settings, corpus fingerprint)

One file, written atomically: an interrupted build leaves the old file or
none. A file whose index differs from what the corpus and the tracker
settings give now (the corpus was prepared again, the tracker changed) is
stale and tracked again. ``prepare`` tracks the train split when its config
says ``puzzle.align: beats``; ``train`` tracks it on first use otherwise.
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from audiosort import _files
from audiosort.data.corpus import Corpus
from audiosort.data.puzzles import BeatTable, TrackTable
from audiosort.errors import InputError, is_int
from audiosort.pcm import INT16_SCALE

FORMAT = "audiosort-beats/1"
# librosa's own onset resolution (512 samples at 16 kHz) for the tempo, whose autocorrelation costs
# grow with the frames per second; the beats themselves on the log-mel front end's 10 ms hop.
TEMPO_HOP_SECONDS = 0.032
BEAT_HOP_SECONDS = 0.010
# The onset envelope's window: 4 hops, so an onset moves the envelope within a few hops of it.
BEAT_WINDOW_SECONDS = 0.040


def tracker_settings(sample_rate: int) -> dict:
    """The tracker's settings in samples at ``sample_rate`` (Hz): part of a beats file's index."""
    return {
        "method": "librosa.beat.beat_track",
        "tempo_hop_samples": round(TEMPO_HOP_SECONDS * sample_rate),
        "beat_hop_samples": round(BEAT_HOP_SECONDS * sample_rate),
        "beat_window_samples": round(BEAT_WINDOW_SECONDS * sample_rate),
    }


def track_beats(audio: np.ndarray, *, sample_rate: int) -> tuple[np.ndarray, float]:
    """One track's beats.

    Parameters
    ----------
    audio : np.ndarray [shape=(samples,), dtype=int16]
        The track.
    sample_rate : int > 0
        Hz.

    Returns
    -------
    positions : np.ndarray [shape=(beats,), dtype=int64]
        Beat positions, in samples from the track's start, rising; empty where
        the tracker finds none (silence, a steady tone).
    tempo_bpm : float
        The tempo the beats were placed at, in beats per minute (0 where none).
    """
    import librosa  # numba compiles on first use: only where beats are tracked

    settings = tracker_settings(sample_rate)
    y = np.asarray(audio, dtype=np.float32) / np.float32(INT16_SCALE)
    tempo_hop, beat_hop = settings["tempo_hop_samples"], settings["beat_hop_samples"]
    coarse = librosa.onset.onset_strength(y=y, sr=sample_rate, hop_length=tempo_hop, n_fft=4 * tempo_hop)
    tempo = float(np.atleast_1d(librosa.feature.tempo(onset_envelope=coarse, sr=sample_rate, hop_length=tempo_hop))[0])
    fine = librosa.onset.onset_strength(y=y, sr=sample_rate, hop_length=beat_hop, n_fft=settings["beat_window_samples"])
    _, beats = librosa.beat.beat_track(onset_envelope=fine, sr=sample_rate, hop_length=beat_hop, bpm=tempo, units="samples")
    # The envelope marks an onset about one hop after it (clicks: 5-14 ms late): a chunk should start on the attack.
    positions = np.unique(np.clip(np.asarray(beats, dtype=np.int64) - beat_hop, 0, max(len(y) - 1, 0)))
    return positions, (tempo if positions.size else 0.0)


def beats_path(corpus: Corpus, split: str) -> Path:
    """``CORPUS/beats/<split>.npz``."""
    return corpus.path / "beats" / f"{split}.npz"


def open_beats(
    corpus: Corpus, split: str, tracks: TrackTable | None = None, *, jobs: int | None = None,
    echo: Callable[[str], None] | None = None,
) -> BeatTable:
    """The beats of ``corpus``'s ``split``, row by row of ``corpus.tracks(split)``: read, or tracked when missing or stale.

    Parameters
    ----------
    corpus : Corpus
    split : str
        A split with tracks.
    tracks : TrackTable, optional
        ``corpus.tracks(split)``, when the caller has it already.
    jobs : int > 0, optional
        Tracks tracked at once, on threads; default the usable CPU cores.
    echo : callable or None
        Told one line when the beats are tracked, and why, then what it found.

    Returns
    -------
    BeatTable

    Raises
    ------
    InputError
        A split without tracks, a bad ``jobs``, or a ``beats`` path in the
        corpus that cannot be written.
    """
    echo = echo or (lambda line: None)
    tracks = corpus.tracks(split) if tracks is None else tracks
    path = beats_path(corpus, split)
    expected = _index(corpus, split, tracks)
    why = _stale(path, expected, len(tracks))
    if why:
        echo(f"beats {path}: {why}; tracking them in {len(tracks)} tracks ({tracks.frames.sum() / corpus.sample_rate / 3600:.2f} h)")
        started = time.perf_counter()
        build_beats(corpus, split, tracks, jobs=jobs)
        beats = _read(path)[0]
        echo(
            f"beats {path}: {len(beats.positions)} beats in {time.perf_counter() - started:.1f} s "
            f"({int(np.sum(np.diff(beats.first) == 0))} tracks without any)"
        )
        return beats
    return _read(path)[0]


def build_beats(corpus: Corpus, split: str, tracks: TrackTable | None = None, *, jobs: int | None = None) -> Path:
    """Track the beats of every track of ``split`` and write ``CORPUS/beats/<split>.npz`` atomically; return its path."""
    tracks = corpus.tracks(split) if tracks is None else tracks
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    jobs = cores if jobs is None else jobs
    if not is_int(jobs) or jobs < 1:
        raise InputError(f"jobs = {jobs!r} must be an int >= 1")
    names = {entry["id"]: entry["shard"] for entry in corpus.track_entries}
    work = [
        (str(corpus.path / "audio" / names[int(track)]), int(offset), int(frames), corpus.sample_rate)
        for track, offset, frames in zip(tracks.track_id, tracks.offset, tracks.frames)
    ]
    # Threads, not processes: a spawned process re-runs a caller's script that lacks a __main__ guard, and a
    # forked one inherits TensorFlow's threads (train calls this). numpy's FFTs and products release the GIL.
    with ThreadPoolExecutor(min(jobs, len(work)), thread_name_prefix="beats") as pool:
        found = list(pool.map(_track_in_shard, *zip(*work)))
    table = BeatTable.from_lists([positions for positions, _ in found])
    path = beats_path(corpus, split)
    _files.check_name(path, "beats file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create {path.parent}: {e.strerror or e}; it must be a folder audiosort may write") from None
    with _files.replacing(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(
                f, positions=table.positions, first=table.first, track_id=tracks.track_id.astype(np.int64),
                tempo_bpm=np.array([tempo for _, tempo in found], dtype=np.float64),
                index=np.array(json.dumps(_index(corpus, split, tracks), sort_keys=True)),
            )
    return path


def _track_in_shard(shard_path: str, offset: int, frames: int, sample_rate: int) -> tuple[np.ndarray, float]:
    """:func:`track_beats` of the ``frames`` samples at ``offset`` of a shard file (what a worker process is given)."""
    shard = np.load(shard_path, mmap_mode="r")
    return track_beats(shard[offset : offset + frames], sample_rate=sample_rate)


def _index(corpus: Corpus, split: str, tracks: TrackTable) -> dict:
    """What a beats file of ``split`` must say it was tracked from: format, settings, the corpus, the tracks."""
    return {
        "format": FORMAT,
        "tracker": tracker_settings(corpus.sample_rate),
        "corpus": corpus.fingerprint(split),
        "tracks": [int(track) for track in tracks.track_id],
    }


def _read(path: Path) -> tuple[BeatTable, dict]:
    """The beats and the index of a beats file."""
    with np.load(path) as data:
        table = BeatTable(positions=data["positions"].astype(np.int64), first=data["first"].astype(np.int64))
        index = json.loads(str(data["index"]))
    return table, index


def _stale(path: Path, expected: dict, n_tracks: int) -> str:
    """Why the beats file at ``path`` cannot be used for ``expected`` ("" when it can)."""
    if not path.exists():
        return "not tracked yet"
    try:
        _files.check_regular(path, "beats file")
        table, index = _read(path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, InputError) as e:
        return f"unreadable ({type(e).__name__})"
    if index != json.loads(json.dumps(expected, sort_keys=True)):
        changed = [key for key in expected if not isinstance(index, dict) or index.get(key) != expected[key]]
        return f"stale ({', '.join(changed)} changed)"
    first = table.first
    if first.shape != (n_tracks + 1,) or first[0] != 0 or first[-1] != len(table.positions) or np.any(np.diff(first) < 0):
        return "damaged (its beat offsets do not fit its tracks)"
    return ""
