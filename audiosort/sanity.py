"""The sanity sets: audio whose order is unknowable, cut into puzzles, and their ideal observers.

White noise, brown noise and a tone carry no order of their own, so a model
(or an observer) that sorts their puzzles above chance has found the order in
how the puzzles were cut (DESIGN.md, "Leaks to know"). ``audiosort eval``
scores a trained model on the test tracks of each kind; ``audiosort audit``
trains a fresh model on the train tracks and scores it on the test tracks.
Both state beside each set the accuracy of its ideal observer
(:mod:`audiosort.leaks`).

Example
-------
>>> spec = PuzzleSpec(n_chunks=3, chunk_samples=3200, pad_min_samples=0, pad_max_samples=160)
>>> puzzles, source = sanity_puzzles("brown", spec, sample_rate=16000, n_puzzles=500, seed=0)  # doctest: +SKIP
>>> sanity_ideal_observer("brown", puzzles, spec, sample_rate=16000).kendall_tau  # doctest: +SKIP
0.6...
"""

from __future__ import annotations

import numpy as np

from audiosort import audio, leaks
from audiosort.data import synthetic
from audiosort.data.puzzles import PuzzleSpec, Puzzles, TrackTable, make_puzzle_set

# Names --sanity accepts: kind -> (synthetic kind, tone method).
SANITY_KINDS = {
    "noise": ("noise", None),
    "brown": ("brown", None),
    "tone": ("tone", "tiled"),
    "tone-exact": ("tone", "exact"),
}
# 8 tracks of 60 s: 2000 puzzles of 0.6 s (n=3, 0.2 s chunks) overlap little.
SANITY_TRACKS = 8
SANITY_TRACK_SECONDS = 60.0
SANITY_TONE_HZ = 440.0


def sanity_tracks(
    kind: str, *, sample_rate: int, seed: int, split: str = "test"
) -> tuple[TrackTable, np.random.Generator, dict]:
    """Render the audio of one sanity kind: SANITY_TRACKS tracks of SANITY_TRACK_SECONDS.

    Parameters
    ----------
    kind : str
        A key of :data:`SANITY_KINDS`.
    sample_rate : int > 0, keyword-only
        Hz.
    seed : int, keyword-only
        Seeds the audio and the returned generator.
    split : {"test", "train"}, keyword-only
        ``"test"``: the tracks eval and audit score on; ``"train"``: other
        tracks, from an independent stream, for ``audiosort audit`` to train on.

    Returns
    -------
    tracks : TrackTable
        One int16 shard per track.
    rng : np.random.Generator
        Its own stream, for the puzzles cut from these tracks.
    source : dict
        JSON-ready description of the audio.
    """
    if split not in ("test", "train"):
        raise ValueError(f"split must be 'test' or 'train', got {split!r}")
    synthetic_kind, tone_method = SANITY_KINDS[kind]
    # One stream per kind, split into one per track and one for the puzzles, so that no two sets
    # (noise and brown both draw normals) share their random numbers; the train tracks come from
    # the child spawned after the test streams, so they never repeat test audio.
    streams = np.random.SeedSequence([seed, list(SANITY_KINDS).index(kind)]).spawn(SANITY_TRACKS + 2)
    streams = streams[:-1] if split == "test" else streams[-1].spawn(SANITY_TRACKS + 1)
    tone = {"tone_method": tone_method, "tone_hz": SANITY_TONE_HZ} if tone_method else {}
    tracks = [
        audio.to_int16(
            synthetic.render(
                synthetic_kind, SANITY_TRACK_SECONDS, sample_rate=sample_rate, rng=np.random.default_rng(stream), **tone
            )
        )
        for stream in streams[:-1]
    ]
    source = {"kind": kind, "tracks": SANITY_TRACKS, "track_seconds": SANITY_TRACK_SECONDS, "seed": seed, **tone}
    return TrackTable.from_arrays(tracks), np.random.default_rng(streams[-1]), source


def sanity_puzzles(kind: str, spec: PuzzleSpec, *, sample_rate: int, n_puzzles: int, seed: int) -> tuple[Puzzles, dict]:
    """A fresh sanity set: ``n_puzzles`` puzzles cut with ``spec`` from the test tracks of :func:`sanity_tracks`."""
    tracks, rng, source = sanity_tracks(kind, sample_rate=sample_rate, seed=seed)
    return make_puzzle_set(tracks, spec, n_puzzles, rng=rng), source


def sanity_ideal_observer(
    kind: str, puzzles: Puzzles, spec: PuzzleSpec, sample_rate: int
) -> leaks.IdealObserver:
    """The ideal observer of a sanity set of ``kind``, exact or run on its puzzles (see :mod:`audiosort.leaks`)."""
    synthetic_kind, tone_method = SANITY_KINDS[kind]
    if synthetic_kind == "noise":
        return leaks.ideal_noise_accuracy(spec)
    if synthetic_kind == "brown":
        return leaks.ideal_brown_accuracy(puzzles.chunks, puzzles.order, spec, sample_rate=sample_rate)
    return leaks.ideal_tone_accuracy(
        spec, sample_rate=sample_rate, frequency_hz=SANITY_TONE_HZ, method=tone_method, starts=puzzles.starts,
        order=puzzles.order,
    )
