"""The puzzle sampler: chunk sets with independent random gaps, shuffled.

A puzzle is n chunks of L samples cut from one track, separated by gaps, then
put into n slots in a uniformly random order. The label ``order[b, i]`` is the
temporal position (0 = earliest) of the chunk in slot i.

The sampler is the seed's lesson made code: every gap is drawn independently
(``pad_mode="per_gap"``), because a shared gap lets a model infer the step and
extrapolate a sine, and a fixed gap leaks the tone's phase step. The other two
modes exist only so that ``audiosort audit`` can show that they leak.
Training puzzles may instead start every chunk on a tracked beat
(``puzzle.align: beats``, a :class:`BeatTable` on the :class:`TrackTable`;
:func:`_draw_beat_starts` says why that carries no order of its own).

Everything here is vectorized over the batch: the chunks of B puzzles come from
one fancy-index gather into a strided window view of each shard, never a
Python loop per puzzle.
"""

from __future__ import annotations

import itertools
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from audiosort import _files
from audiosort.pcm import INT16_SCALE
from audiosort.config import PAD_MODES, PuzzleConfig
from audiosort.errors import InputError

# A rejection round redraws only the rejected puzzles; after this many rounds the
# threshold is considered unreachable for this audio.
_MAX_REJECTION_ROUNDS = 50


@dataclass(frozen=True)
class PuzzleSpec:
    """A puzzle's geometry in samples (what :class:`PuzzleConfig` says in seconds).

    Attributes
    ----------
    n_chunks : int >= 2
        Chunks per puzzle.
    chunk_samples : int > 0
        Length L of each chunk, in samples.
    pad_min_samples, pad_max_samples : int >= 0
        Bounds (inclusive) of each gap between consecutive chunks, in samples.
    pad_mode : {"per_gap", "shared", "fixed"}
        How gaps are drawn (see module docstring).
    min_rms : float >= 0
        Chunk sets having any chunk with RMS below this (full scale = 1.0) are
        redrawn; 0 disables the check.
    grid_samples : int > 0
        Chunk starts and gaps are whole multiples of this many samples (so
        must be the chunk length and the gap bounds): 1 for audio, the
        spacing of a feature cache's rows for cached features (a quarter hop,
        :meth:`audiosort.features.FrontEnd.grid_spec`).
    """

    n_chunks: int
    chunk_samples: int
    pad_min_samples: int
    pad_max_samples: int
    pad_mode: str = "per_gap"
    min_rms: float = 0.0
    grid_samples: int = 1

    def __post_init__(self):
        if self.n_chunks < 2:
            raise InputError(f"n_chunks = {self.n_chunks} must be >= 2")
        if self.chunk_samples < 1:
            raise InputError(f"chunk_samples = {self.chunk_samples} must be >= 1")
        if not 0 <= self.pad_min_samples <= self.pad_max_samples:
            raise InputError(f"gap bounds [{self.pad_min_samples}, {self.pad_max_samples}] samples are not 0 <= min <= max")
        if self.pad_mode not in PAD_MODES:
            raise InputError(f"pad_mode = {self.pad_mode!r} must be one of {PAD_MODES}")
        lengths = (self.chunk_samples, self.pad_min_samples, self.pad_max_samples)
        if self.grid_samples < 1 or any(length % self.grid_samples for length in lengths):
            raise InputError(f"chunk and gap bounds {lengths} samples are not whole multiples of grid_samples = {self.grid_samples}")

    @classmethod
    def from_config(cls, puzzle: PuzzleConfig, *, sample_rate: int) -> PuzzleSpec:
        """Convert a seconds-based :class:`PuzzleConfig` to samples at ``sample_rate`` (Hz).

        Lengths are rounded to the nearest sample; a chunk shorter than one
        sample at this rate is an error.
        """
        chunk_samples = round(puzzle.chunk_seconds * sample_rate)
        if chunk_samples < 1:
            raise InputError(
                f"puzzle.chunk_seconds = {puzzle.chunk_seconds} is less than one sample at {sample_rate} Hz"
            )
        return cls(
            n_chunks=puzzle.n_chunks,
            chunk_samples=chunk_samples,
            pad_min_samples=round(puzzle.pad_min_seconds * sample_rate),
            pad_max_samples=round(puzzle.pad_max_seconds * sample_rate),
            pad_mode=puzzle.pad_mode,
            min_rms=puzzle.min_rms,
        )

    @property
    def max_span_samples(self) -> int:
        """Longest possible chunk set, first chunk's start to last chunk's end, in samples."""
        return self.n_chunks * self.chunk_samples + (self.n_chunks - 1) * self.pad_max_samples


@dataclass
class Puzzles:
    """A batch of puzzles (the arrays of a fixed puzzle set, see DESIGN.md).

    Attributes
    ----------
    chunks : np.ndarray [shape=(B, n, L), dtype=int16]
        Slot i holds one chunk of L samples.
    order : np.ndarray [shape=(B, n), dtype=int32]
        ``order[b, i]``: temporal position (0 = earliest) of the chunk in slot i.
    track : np.ndarray [shape=(B,), dtype=int64]
        Index into the manifest's ``tracks`` of the track each puzzle was cut from.
    starts : np.ndarray [shape=(B, n), dtype=int64]
        Sample offset, within its track, of the chunk in slot i.
    """

    chunks: np.ndarray
    order: np.ndarray
    track: np.ndarray
    starts: np.ndarray

    def __len__(self) -> int:
        return len(self.order)


@dataclass(frozen=True)
class BeatTable:
    """Beats of the tracks of a :class:`TrackTable`, row by row (what :mod:`audiosort.data.beats` tracks).

    Attributes
    ----------
    positions : np.ndarray [shape=(M,), dtype=int64]
        Beat positions, in samples from the start of their track, rising
        within each track; the beats of row r are ``positions[first[r]:first[r + 1]]``.
    first : np.ndarray [shape=(T + 1,), dtype=int64]
        Where each row's beats begin in ``positions``; ``first[-1] = M``.
    """

    positions: np.ndarray
    first: np.ndarray

    @classmethod
    def from_lists(cls, beats: list[np.ndarray]) -> BeatTable:
        """One array of beat positions (samples, rising) per track, in row order."""
        counts = [len(b) for b in beats]
        positions = np.concatenate([np.asarray(b, dtype=np.int64) for b in beats]) if beats else np.zeros(0, np.int64)
        return cls(positions=positions, first=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))

    def of(self, row: int) -> np.ndarray:
        """The beat positions of row ``row`` (samples within its track)."""
        return self.positions[self.first[row] : self.first[row + 1]]


@dataclass(frozen=True)
class TrackTable:
    """Tracks laid end to end in 1-D int16 shards: what the sampler reads from.

    Attributes
    ----------
    shards : tuple of np.ndarray [shape=(frames,), dtype=int16]
        Memory-mapped corpus shards, or in-memory arrays.
    shard : np.ndarray [shape=(T,), dtype=int64]
        Which shard holds each track.
    offset : np.ndarray [shape=(T,), dtype=int64]
        First sample of each track within its shard.
    frames : np.ndarray [shape=(T,), dtype=int64]
        Length of each track, in samples.
    track_id : np.ndarray [shape=(T,), dtype=int64]
        Index of each track in the manifest (what :attr:`Puzzles.track` reports).
    beats : BeatTable or None
        The tracks' beats: with them, :func:`draw_starts` starts every chunk on
        a beat (training puzzles only, ``puzzle.align: beats``).
    """

    shards: tuple
    shard: np.ndarray
    offset: np.ndarray
    frames: np.ndarray
    track_id: np.ndarray
    beats: BeatTable | None = None

    @classmethod
    def from_arrays(cls, tracks: list[np.ndarray]) -> TrackTable:
        """One in-memory shard per track, track ids 0..T-1 (for synthetic sanity sets)."""
        tracks = [np.ascontiguousarray(t, dtype=np.int16) for t in tracks]
        count = len(tracks)
        return cls(
            shards=tuple(tracks),
            shard=np.arange(count, dtype=np.int64),
            offset=np.zeros(count, dtype=np.int64),
            frames=np.array([len(t) for t in tracks], dtype=np.int64),
            track_id=np.arange(count, dtype=np.int64),
        )

    def __len__(self) -> int:
        return len(self.frames)


def sample_puzzles(
    tracks: TrackTable, spec: PuzzleSpec, batch_size: int, *, rng: np.random.Generator, distinct_tracks: bool = False
) -> Puzzles:
    """Cut ``batch_size`` random puzzles from ``tracks``.

    A track is chosen with probability proportional to the number of chunk
    sets that fit in it, then a start uniformly among those, so every possible
    chunk set of the corpus is equally likely. A chunk set never mixes tracks.
    With ``distinct_tracks`` no two puzzles share a track (see :func:`draw_starts`).

    Parameters
    ----------
    tracks : TrackTable
        Where to cut from.
    spec : PuzzleSpec
        Geometry of a puzzle, in samples.
    batch_size : int > 0
        Number of puzzles B.
    rng : np.random.Generator
        The only source of randomness; the same state gives the same puzzles.
    distinct_tracks : bool
        Each puzzle from another track; a puzzle ``min_rms`` redraws comes
        from a track no other puzzle of the batch has.

    Returns
    -------
    Puzzles
        ``chunks`` (B, n, L) int16, ``order`` (B, n), ``track`` (B,), ``starts`` (B, n).

    Raises
    ------
    InputError
        No track is long enough for one chunk set, fewer than ``batch_size``
        are with ``distinct_tracks``, or ``min_rms`` rejects (nearly) every chunk set.
    """
    puzzles = _draw(tracks, spec, batch_size, rng, distinct_tracks=distinct_tracks)
    if spec.min_rms <= 0:
        return puzzles
    for redraws in itertools.count():
        quiet = np.flatnonzero(_chunk_rms(puzzles.chunks).min(axis=1) < spec.min_rms)
        if quiet.size == 0:
            return puzzles
        if redraws == _MAX_REJECTION_ROUNDS:
            raise InputError(
                f"min_rms = {spec.min_rms} rejects nearly every chunk set of this audio "
                f"({quiet.size} of {batch_size} still too quiet after {redraws} redraws); lower puzzle.min_rms"
            )
        kept = np.delete(puzzles.track, quiet) if distinct_tracks else None
        redrawn = _draw(tracks, spec, quiet.size, rng, distinct_tracks=distinct_tracks, taken_track_ids=kept)
        for name in ("chunks", "order", "track", "starts"):
            getattr(puzzles, name)[quiet] = getattr(redrawn, name)


def _draw(tracks: TrackTable, spec: PuzzleSpec, batch_size: int, rng: np.random.Generator, **draw) -> Puzzles:
    starts = draw_starts(tracks, spec, batch_size, rng=rng, **draw)
    return Puzzles(
        chunks=cut_chunks(tracks, starts.rows, starts.starts, chunk_samples=spec.chunk_samples),
        order=starts.order,
        track=tracks.track_id[starts.rows],
        starts=starts.starts,
    )


@dataclass(frozen=True)
class PuzzleStarts:
    """Where a batch of puzzles lies, before any audio is read: every random draw of a batch.

    Attributes
    ----------
    rows : np.ndarray [shape=(B,), dtype=int64]
        Row of each puzzle's track in the :class:`TrackTable` it was drawn from.
    starts : np.ndarray [shape=(B, n), dtype=int64]
        Sample offset, within its track, of the chunk in slot i.
    order : np.ndarray [shape=(B, n), dtype=int32]
        Temporal position (0 = earliest) of the chunk in slot i: the label.
    """

    rows: np.ndarray
    starts: np.ndarray
    order: np.ndarray


def draw_starts(
    tracks: TrackTable,
    spec: PuzzleSpec,
    batch_size: int,
    *,
    rng: np.random.Generator,
    distinct_tracks: bool = False,
    taken_track_ids: np.ndarray | None = None,
) -> PuzzleStarts:
    """Draw ``batch_size`` puzzles' tracks, chunk starts and labels, without reading audio.

    Every draw of :func:`sample_puzzles` (without ``min_rms`` rejection) is
    made here, in the same order, so ``draw_starts`` then :func:`cut_chunks`
    gives the same puzzles as ``sample_puzzles`` for the same ``rng`` state.
    The cut can then run elsewhere: on another thread, or on the device.

    Parameters
    ----------
    distinct_tracks : bool
        Draw the tracks without replacement: no two puzzles of the batch
        share one, so a loss over the batch never pairs two puzzles of one
        track as strangers (``model.contrastive.distinct_tracks``). Each
        track is still drawn with weight proportional to the chunk sets it
        holds, but only once, so where ``batch_size`` is a large share of the
        tracks, short tracks give a larger share of the puzzles than without.
        False: the draws of every earlier version, number for number.
    taken_track_ids : np.ndarray [shape=(k,), dtype=int64], optional
        With ``distinct_tracks``: :attr:`TrackTable.track_id` values not to draw (puzzles kept from a batch).

    Raises
    ------
    InputError
        No track is long enough for one chunk set; with ``distinct_tracks``,
        fewer than ``batch_size`` are (or are left beside ``taken_track_ids``).
    """
    if tracks.beats is not None:
        return _draw_beat_starts(tracks, spec, batch_size, rng)
    n, length = spec.n_chunks, spec.chunk_samples
    gaps = draw_gaps(spec, batch_size, rng=rng)
    # Offset of each chunk from the chunk set's start, in temporal order.
    chunk_offsets = np.arange(n, dtype=np.int64) * length
    chunk_offsets = chunk_offsets + np.concatenate([np.zeros((batch_size, 1), np.int64), np.cumsum(gaps, axis=1)], axis=1)
    span = chunk_offsets[:, -1] + length

    rows = _draw_rows(tracks, spec, batch_size, rng, distinct_tracks=distinct_tracks, taken_track_ids=taken_track_ids)
    grid = spec.grid_samples
    start = (rng.random(batch_size) * ((tracks.frames[rows] - span) // grid + 1)).astype(np.int64) * grid

    # Slot i holds the chunk of temporal position perm[b, i]: that is the label.
    order = np.argsort(rng.random((batch_size, n)), axis=1).astype(np.int32)
    starts = start[:, None] + np.take_along_axis(chunk_offsets, order, axis=1)
    return PuzzleStarts(rows=rows, starts=starts, order=order)


def _draw_rows(
    tracks: TrackTable,
    spec: PuzzleSpec,
    batch_size: int,
    rng: np.random.Generator,
    usable: np.ndarray | None = None,
    *,
    distinct_tracks: bool = False,
    taken_track_ids: np.ndarray | None = None,
) -> np.ndarray:
    """Each puzzle's track: a row of ``tracks``, drawn with probability proportional to the chunk sets it holds.

    ``usable`` (bool, one per row), where given, rules out the rows it marks
    False; ``distinct_tracks`` and ``taken_track_ids`` as in :func:`draw_starts`.
    """
    room = tracks.frames - spec.max_span_samples + 1
    if not np.any(room > 0):
        raise InputError(
            f"every track is shorter than one chunk set ({spec.max_span_samples} samples); "
            "use shorter chunks, fewer chunks or smaller gaps"
        )
    weights = np.maximum(room, 0).astype(np.float64)
    if usable is not None:
        weights *= usable
        if not weights.any():
            raise InputError("puzzle.align = 'beats' but no track long enough has a beat to start on; use puzzle.align=none")
    if distinct_tracks:
        if taken_track_ids is not None:
            weights[np.isin(tracks.track_id, taken_track_ids)] = 0.0
        eligible = np.count_nonzero(weights)
        if eligible < batch_size:
            raise InputError(
                f"distinct_tracks needs batch_size = {batch_size} tracks that hold a chunk set "
                f"({spec.max_span_samples} samples); {eligible} do: lower batch_size or turn distinct_tracks off"
            )
    return rng.choice(len(tracks), size=batch_size, replace=not distinct_tracks, p=weights / weights.sum())


def _draw_beat_starts(tracks: TrackTable, spec: PuzzleSpec, batch_size: int, rng: np.random.Generator) -> PuzzleStarts:
    """:func:`draw_starts` with every chunk starting on one of ``tracks.beats`` (``puzzle.align: beats``).

    A puzzle's track is drawn as without beats, among the tracks with a
    beat to start on; then a time uniformly in the
    track, up to the last start from which a chunk set of the shortest gaps
    still fits, and the first chunk starts on the first beat at or after it;
    each next chunk starts on a beat drawn uniformly among those whose gap
    after the previous chunk's end lies in [pad_min_samples,
    pad_max_samples] and whose chunk ends inside the track. A puzzle for
    which some step finds no such beat is drawn again, whole.

    Why this carries no order that the music does not (see also
    docs/training.md): the label is a uniform permutation of the slots,
    drawn independently of the starts, as without beats. The first beat is
    the one after a uniform time, so a beat is chosen as often as the time
    before it is long: the first chunk is uniform in time, not more often in
    fast passages (drawing the first beat uniformly among beats would put
    the first chunk more often where beats are dense, and "the chunk of the
    fastest beat comes first" would be an order cue that the sampler made).
    Each next beat is uniform among the beats of the gap window, which again
    is uniform in time at a locally steady tempo; on a steady beat grid the
    window holds the same number of beats after every beat, so the gaps are
    independent and identically distributed, as ``per_gap`` gaps are, and
    every chunk of a set has the same phase against the beat. What is left
    is the music's own: the gaps are whole beat periods, so they follow the
    tempo, a cue of the audio, as a chunk's content is. One caveat: a gap
    window narrower than two beat periods often holds one beat, and then at
    a steady tempo every gap of a set (and of a track) is the same, the shape
    of ``pad_mode: fixed``, whose constant phase step a waveform model can
    read on a sustained tone (0.5 s chunks at 0.5-1.0 s gaps on 6 recipe
    tracks: both gaps of a set within 20 ms in 54-95 % of sets on 5 of them).
    A log-mel encoder and the seam's edge spectra discard phase, and val,
    test and eval puzzles are never aligned, so this cannot inflate a score;
    the audit cannot test it, as its noise and tones have no beats. Only ``per_gap``
    gaps are drawn on beats: a gap shared by all gaps of a set (``shared``)
    or always the same (``fixed``) is what the audit shows leaking, and beats
    cannot honour either.
    """
    if spec.pad_mode != "per_gap" or spec.grid_samples != 1:
        raise InputError(
            f"chunk starts on beats need per-gap gaps of whole samples, not pad_mode {spec.pad_mode!r} "
            f"on a {spec.grid_samples}-sample grid"
        )
    n, length = spec.n_chunks, spec.chunk_samples
    beats = tracks.beats
    if len(beats.first) != len(tracks) + 1:
        raise ValueError(f"beats of {len(beats.first) - 1} tracks given for {len(tracks)} tracks")
    # Beats on one axis for every track (track r's sample 0 at sum(frames[:r])): one searchsorted finds a
    # window's beats for the whole batch, and a window past its track's end finds only the next track's.
    track_origin = np.concatenate([[0], np.cumsum(tracks.frames)[:-1]]).astype(np.int64)
    beat_rows = np.repeat(np.arange(len(tracks)), np.diff(beats.first))
    on_axis = beats.positions + track_origin[beat_rows]
    shortest_span = n * length + (n - 1) * spec.pad_min_samples
    # Past the last beat a chunk set of the shortest gaps can start from, and past the last beat a chunk fits after.
    first_end = np.searchsorted(on_axis, track_origin + tracks.frames - shortest_span, side="right")
    chunk_end = np.searchsorted(on_axis, track_origin + tracks.frames - length, side="right")
    # A track without a beat to start on (silence, a drone) would only ever be drawn again.
    has_first_beat = first_end > beats.first[:-1]

    rows = np.empty(batch_size, np.int64)
    beat_index = np.empty((batch_size, n), np.int64)
    todo = np.arange(batch_size)
    for redraws in itertools.count():
        count = todo.size
        drawn_rows = _draw_rows(tracks, spec, count, rng, usable=has_first_beat)
        latest = np.maximum(tracks.frames[drawn_rows] - shortest_span, 0)
        at = track_origin[drawn_rows] + (rng.random(count) * (latest + 1)).astype(np.int64)
        index = np.empty((count, n), np.int64)
        index[:, 0] = np.searchsorted(on_axis, at, side="left")
        dead = index[:, 0] >= first_end[drawn_rows]
        for k in range(1, n):
            previous_end = on_axis[np.minimum(index[:, k - 1], len(on_axis) - 1)] + length
            low = np.searchsorted(on_axis, previous_end + spec.pad_min_samples, side="left")
            high = np.minimum(np.searchsorted(on_axis, previous_end + spec.pad_max_samples, side="right"), chunk_end[drawn_rows])
            dead |= high <= low
            index[:, k] = low + (rng.random(count) * np.maximum(high - low, 0)).astype(np.int64)
        keep = ~dead
        rows[todo[keep]], beat_index[todo[keep]] = drawn_rows[keep], index[keep]
        todo = todo[dead]
        if todo.size == 0:
            break
        if redraws == _MAX_REJECTION_ROUNDS:
            raise InputError(
                f"puzzle.align = 'beats' finds no chain of {n} beats with gaps of {spec.pad_min_samples}-"
                f"{spec.pad_max_samples} samples for {todo.size} of {batch_size} puzzles after {redraws} redraws: "
                "the tracked beats are too sparse for these gaps; widen the gaps or use puzzle.align=none"
            )
    chunk_starts = on_axis[beat_index] - track_origin[rows][:, None]
    # Slot i holds the chunk of temporal position perm[b, i]: that is the label.
    order = np.argsort(rng.random((batch_size, n)), axis=1).astype(np.int32)
    return PuzzleStarts(rows=rows, starts=np.take_along_axis(chunk_starts, order, axis=1), order=order)


# Puzzles cut per block when writing into a given buffer: the block's temporary stays
# in cache, and the loop runs over blocks, not puzzles.
_CUT_BLOCK_BYTES = 1 << 20


def cut_chunks(
    tracks: TrackTable, rows: np.ndarray, starts: np.ndarray, *, chunk_samples: int, out: np.ndarray | None = None
) -> np.ndarray:
    """The chunks of ``chunk_samples`` samples at ``starts`` in the tracks ``rows``.

    Parameters
    ----------
    tracks : TrackTable
        Where to cut from.
    rows : np.ndarray [shape=(B,), dtype=int]
        Row of each puzzle's track in ``tracks``.
    starts : np.ndarray [shape=(B, n), dtype=int64]
        Sample offset of each chunk within its track.
    chunk_samples : int > 0
        Chunk length L, in samples.
    out : np.ndarray [shape=(B, n, L), dtype=int16], optional
        Written in place and returned; a reused buffer costs no fresh pages
        from the kernel, which a batch of hundreds of MB otherwise does.

    Returns
    -------
    np.ndarray [shape=(B, n, L), dtype=int16]
    """
    batch_size, n = starts.shape
    shard_of = tracks.shard[rows]
    absolute = tracks.offset[rows][:, None] + starts
    used = np.unique(shard_of)
    # Row r of a window view is shard[r : r + L]; indexing it with (B, n) start
    # positions copies each chunk once, straight into the result.
    if out is None and len(used) == 1:
        return np.asarray(sliding_window_view(tracks.shards[used[0]], chunk_samples)[absolute])
    if out is None:
        out = np.empty((batch_size, n, chunk_samples), dtype=np.int16)
    block = max(1, _CUT_BLOCK_BYTES // (n * chunk_samples * 2))
    for shard_index in used:
        window = sliding_window_view(tracks.shards[shard_index], chunk_samples)
        puzzles = np.flatnonzero(shard_of == shard_index)
        for first in range(0, len(puzzles), block):
            some = puzzles[first : first + block]
            out[some] = window[absolute[some]]
    return out


def draw_gaps(spec: PuzzleSpec, batch_size: int, *, rng: np.random.Generator) -> np.ndarray:
    """Gaps between consecutive chunks, in samples.

    Returns
    -------
    np.ndarray [shape=(batch_size, n_chunks - 1), dtype=int64]
        ``per_gap``: each drawn independently and uniformly among the
        multiples of ``grid_samples`` in [pad_min_samples, pad_max_samples];
        ``shared``: one such draw per puzzle, repeated; ``fixed``: always pad_max_samples.
    """
    shape = (batch_size, spec.n_chunks - 1)
    grid = spec.grid_samples
    low, high = spec.pad_min_samples // grid, spec.pad_max_samples // grid + 1
    if spec.pad_mode == "per_gap":
        return rng.integers(low, high, size=shape, dtype=np.int64) * grid
    if spec.pad_mode == "shared":
        return np.repeat(rng.integers(low, high, size=(batch_size, 1), dtype=np.int64), shape[1], axis=1) * grid
    return np.full(shape, spec.pad_max_samples, dtype=np.int64)


def _chunk_rms(chunks: np.ndarray) -> np.ndarray:
    """RMS of each chunk, full scale = 1.0: (B, n, L) int16 -> (B, n) float32."""
    power = np.square(chunks, dtype=np.float32).mean(axis=-1)
    return np.sqrt(power) / INT16_SCALE


def puzzle_batches(
    tracks: TrackTable, spec: PuzzleSpec, batch_size: int, *, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless stream of fresh training batches ``(chunks (B, n, L) int16, order (B, n) int32)``."""
    while True:
        puzzles = sample_puzzles(tracks, spec, batch_size, rng=rng)
        yield puzzles.chunks, puzzles.order


def relative_starts(starts: np.ndarray) -> np.ndarray:
    """Each chunk's start, in samples, from the start of its puzzle's earliest chunk.

    Parameters
    ----------
    starts : np.ndarray [shape=(B, n), dtype=int64]
        :attr:`Puzzles.starts`: offsets within the track.

    Returns
    -------
    np.ndarray [shape=(B, n), dtype=int32]
        0 for the earliest chunk; a puzzle spans less than 2**31 samples (a
        chunk set is held in memory), and nothing of the track's position is left.
    """
    return (starts - starts.min(axis=1, keepdims=True)).astype(np.int32)


# Bytes of int16 chunks one puzzle set may hold (a fixed set, a sanity set): it is held in memory.
MAX_SET_BYTES = 4 * 2**30


def check_set_size(n_puzzles: int, spec: PuzzleSpec) -> None:
    """Refuse, before anything is drawn, a set of ``n_puzzles`` whose chunks would exceed :data:`MAX_SET_BYTES`.

    Raises
    ------
    InputError
        Naming the size and the limit.
    """
    size = n_puzzles * spec.n_chunks * spec.chunk_samples * 2
    if size > MAX_SET_BYTES:
        raise InputError(
            f"{n_puzzles} puzzles of {spec.n_chunks} chunks of {spec.chunk_samples} samples hold "
            f"{size / 2**30:.3g} GiB; the limit is {MAX_SET_BYTES // 2**30} GiB a puzzle set: ask for fewer (n_puzzles)"
        )


def make_puzzle_set(
    tracks: TrackTable, spec: PuzzleSpec, n_puzzles: int, *, rng: np.random.Generator, batch_size: int = 4096
) -> Puzzles:
    """A fixed set of ``n_puzzles`` puzzles, drawn ``batch_size`` at a time to bound memory (see :func:`check_set_size`)."""
    check_set_size(n_puzzles, spec)
    parts = [
        sample_puzzles(tracks, spec, min(batch_size, n_puzzles - done), rng=rng)
        for done in range(0, n_puzzles, batch_size)
    ]
    return Puzzles(*(np.concatenate([getattr(p, name) for p in parts]) for name in ("chunks", "order", "track", "starts")))


def save_puzzle_set(path: str | Path, puzzles: Puzzles) -> None:
    """Write a fixed puzzle set as ``.npz`` (chunks, order, track, starts), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written through a path, not mkstemp's file: the set gets the usual mode (0644), like every other corpus file.
    with _files.replacing(path) as tmp:
        np.savez(tmp, chunks=puzzles.chunks, order=puzzles.order, track=puzzles.track, starts=puzzles.starts)


def load_puzzle_set(path: str | Path) -> Puzzles:
    """Read a fixed puzzle set written by :func:`save_puzzle_set`, checking its shapes.

    Raises
    ------
    InputError
        Missing file, not an npz, a missing array or inconsistent shapes.
    """
    path = Path(path)
    _files.check_regular(path, "puzzle set")  # a FIFO would block np.load forever
    try:
        with np.load(path) as data:
            arrays = {name: data[name] for name in ("chunks", "order", "track", "starts")}
    except FileNotFoundError:
        raise InputError(f"no puzzle set at {path}") from None
    except KeyError as e:
        raise InputError(f"{path} is not a puzzle set: missing array {e}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path} is not a puzzle set: {reason}") from None
    puzzles = Puzzles(**arrays)
    chunks, order = puzzles.chunks, puzzles.order
    if (
        chunks.ndim != 3
        or chunks.dtype != np.int16
        or order.shape != chunks.shape[:2]
        or puzzles.starts.shape != order.shape
        or puzzles.track.shape != order.shape[:1]
    ):
        raise InputError(
            f"{path} has inconsistent arrays: chunks {chunks.shape} {chunks.dtype}, order {order.shape}, "
            f"track {puzzles.track.shape}, starts {puzzles.starts.shape}"
        )
    return puzzles
