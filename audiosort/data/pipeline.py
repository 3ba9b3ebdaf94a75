"""The training input pipeline: puzzle batches cut and augmented ahead of time, off the train step's path.

:func:`prefetched_puzzle_batches` yields the same puzzles as
:func:`~audiosort.data.puzzles.puzzle_batches` for the same generator state,
but cuts them (and, for training, augments them) on background threads while
the model trains on earlier ones:

- every random draw of the puzzles (:func:`~audiosort.data.puzzles.draw_starts`)
  stays on the caller's thread, in order, so the stream is the plain sampler's stream;
- the cuts (:func:`~audiosort.data.puzzles.cut_chunks`, a memory copy during
  which numpy releases the GIL) run on ``workers`` threads, ``prefetch``
  batches ahead;
- so does the augmentation (:func:`~audiosort.data.augment.augment_batch`:
  FFTs, products and noise, during which numpy and scipy release the GIL), each
  batch with its own generator, spawned for it in batch order on the caller's
  thread, so what a batch becomes does not depend on which thread augments it
  or when;
- a batch larger than malloc's mmap threshold (32 MiB) is written into a
  buffer of a small ring, reused only once nothing outside the ring holds it
  (the model's input pipeline may keep a batch, or a tensor sharing its
  memory, for a while), so a large batch costs no fresh pages from the kernel;
- with ``min_rms`` rejection the next draw depends on the audio just cut, so
  whole batches are sampled by one background thread, in order.

Why a host pipeline rather than the train split resident on the accelerator
with only the starts sent: it runs unchanged on both backends and on corpora
larger than device memory, and it needs no change to the model or the step
(see docs/benchmarks.md for what was measured and what awaits a GPU).

It also keeps the C allocator from handing large buffers back to the kernel
after every step (:func:`keep_freed_memory`): on Linux with glibc, building a
TensorFlow ``from_generator`` dataset, as ``model.fit`` does for a generator,
pins malloc's mmap threshold at 128 KiB, so every larger buffer of every step,
numpy's or TensorFlow's, was mapped fresh, page-faulted in and unmapped again.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import functools
import os
import platform
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator

import numpy as np

from audiosort.config import AugmentConfig
from audiosort.data.augment import augment_batch
from audiosort.data.puzzles import PuzzleSpec, TrackTable, cut_chunks, draw_starts, relative_starts, sample_puzzles

# glibc's mallopt parameters (malloc.h) and the largest mmap threshold it accepts
# on 64-bit (HEAP_MAX_SIZE / 2), the ceiling of its own dynamic threshold.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MAX_MMAP_THRESHOLD_BYTES = 32 << 20


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed blocks of up to 32 MiB for reuse instead of unmapping them.

    Sets the mmap threshold to 32 MiB and the trim threshold to twice that,
    the values glibc's own dynamic threshold grows to, which TensorFlow's
    ``GeneratorDatasetOp`` disables by pinning the threshold at 128 KiB
    (``tensorflow::data::ApplyPython311MemoryPatch``, TensorFlow 2.21). It
    does so each time such a dataset is built, so :func:`prefetched_puzzle_batches`
    calls this for every batch it hands out (a few microseconds).

    Returns
    -------
    bool
        False where the C library is not glibc (nothing is changed there).
    """
    libc = _glibc()
    if libc is None:
        return False
    return bool(
        libc.mallopt(_M_MMAP_THRESHOLD, _MAX_MMAP_THRESHOLD_BYTES)
        and libc.mallopt(_M_TRIM_THRESHOLD, 2 * _MAX_MMAP_THRESHOLD_BYTES)
    )


@functools.cache
def _glibc():
    """The C library where it is glibc (whose mallopt parameters these are), else None."""
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return None


def prefetched_puzzle_batches(
    tracks: TrackTable,
    spec: PuzzleSpec,
    batch_size: int,
    *,
    rng: np.random.Generator,
    augment: AugmentConfig = AugmentConfig(),
    sample_rate: int | None = None,
    workers: int | None = None,
    prefetch: int | None = None,
    distinct_tracks: bool = False,
    offsets: bool = False,
) -> Iterator[tuple]:
    """Endless training batches ``(chunks (B, n, L) int16, order (B, n) int32)``, cut and augmented ahead on threads.

    Batch k holds the puzzles of the k-th batch of
    :func:`~audiosort.data.puzzles.puzzle_batches` given the same ``rng``
    state (the same chunks where ``augment`` is off, the same labels and
    starts always). The stream draws ahead: after k batches, ``rng`` has
    advanced by up to ``prefetch + 1`` more.

    With ``augment.enabled``, batch k's chunks are then
    ``augment_batch(chunks, augment_rngs[k], augment, sample_rate=sample_rate)``,
    where ``augment_rngs = rng.spawn(1)[0].spawn(...)``: one generator spawned
    from ``rng`` when the stream starts, and from it one child per batch, in
    batch order. Spawning does not advance ``rng``'s own stream, so the
    puzzles are those of augmentation off, and the augmented audio of batch k
    depends only on ``rng``'s seed and k, never on ``workers``, ``prefetch``
    or which thread ran first.

    Parameters
    ----------
    tracks : TrackTable
        Where to cut from (a corpus split).
    spec : PuzzleSpec
        Geometry of a puzzle, in samples.
    batch_size : int > 0
        Puzzles per batch, B.
    rng : np.random.Generator
        The only source of randomness; used on the caller's thread only
        (on one background thread, in order, when ``spec.min_rms > 0``).
        It must have a seed sequence to spawn from, as
        ``np.random.default_rng(seed)`` has.
    augment : AugmentConfig
        Training-only augmentation; off by default (never give it for
        validation, test or evaluation puzzles).
    sample_rate : int > 0, optional
        Hz, for the augmentation's EQ; required when ``augment.enabled``.
    workers : int > 0, optional
        Threads cutting and augmenting batches; default: the usable CPU
        cores, at most 4.
    prefetch : int > 0, optional
        Batches in flight beyond the one handed out; default ``workers + 1``.
    distinct_tracks : bool
        No two puzzles of a batch from one track
        (:func:`~audiosort.data.puzzles.draw_starts`); a stream of its own.
    offsets : bool
        Yield ``((chunks, offsets), order)``, where ``offsets [shape=(B, n),
        dtype=int32]`` is each chunk's start from its puzzle's earliest, in
        samples (:func:`~audiosort.data.puzzles.relative_starts`): the
        targets of ``model.gap_regression``'s training twin. The puzzles are
        the same as without.

    Yields
    ------
    chunks : np.ndarray [shape=(B, n, L), dtype=int16]
    order : np.ndarray [shape=(B, n), dtype=int32]

    Notes
    -----
    A generator (``model.fit`` accepts only those): its threads stop when it
    is closed or garbage-collected.
    """
    stream = _Prefetcher(
        tracks, spec, batch_size, rng=rng, augment=augment, sample_rate=sample_rate, workers=workers, prefetch=prefetch,
        distinct_tracks=distinct_tracks,
    )
    try:
        while True:
            keep_freed_memory()
            chunks, order, starts = stream.next_batch()
            yield ((chunks, relative_starts(starts)), order) if offsets else (chunks, order)
    finally:
        stream.close()


class _Prefetcher:
    """The state of :func:`prefetched_puzzle_batches`: its thread pools, the batches in flight, the buffer ring."""

    def __init__(self, tracks, spec, batch_size, *, rng, augment, sample_rate, workers, prefetch, distinct_tracks):
        self.tracks, self.spec, self.batch_size, self.rng = tracks, spec, batch_size, rng
        self.distinct_tracks = distinct_tracks
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.workers = workers or max(1, min(4, cores))
        self.prefetch = prefetch or self.workers + 1
        if batch_size < 1 or self.workers < 1 or self.prefetch < 1:
            raise ValueError(f"batch_size {batch_size}, workers {self.workers}, prefetch {self.prefetch} must be >= 1")
        if augment.enabled and sample_rate is None:
            raise ValueError("augmentation needs the sample_rate of the tracks")
        self.augment, self.sample_rate = augment, sample_rate
        self._augment_rngs = rng.spawn(1)[0] if augment.enabled else None
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="puzzles")
        # Rejection draws depend on the audio cut, so batches are sampled whole, in order, by one thread
        # (and augmented on the pool).
        self._sampler = ThreadPoolExecutor(1, thread_name_prefix="puzzles-whole") if spec.min_rms > 0 else None
        self._pending: collections.deque[Future] = collections.deque()
        # Room for the batches in flight here and those a consumer typically holds
        # (Keras keeps the two it peeks at, tf.data prefetches a few).
        self._ring: list[np.ndarray] = []
        self.ring_size = self.prefetch + 4
        self._batch_bytes = batch_size * spec.n_chunks * spec.chunk_samples * np.dtype(np.int16).itemsize

    def next_batch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(chunks, order, starts)`` of the next batch."""
        while len(self._pending) <= self.prefetch:
            self._pending.append(self._submit())
        return self._pending.popleft().result()

    def _submit(self) -> Future:
        augment_rng = self._augment_rngs.spawn(1)[0] if self._augment_rngs is not None else None
        if self._sampler is not None:
            sampled = self._sampler.submit(self._sample_whole)
            return sampled if augment_rng is None else self._pool.submit(self._augment_sampled, sampled, augment_rng)
        starts = draw_starts(self.tracks, self.spec, self.batch_size, rng=self.rng, distinct_tracks=self.distinct_tracks)
        # Below malloc's mmap threshold a fresh batch comes from recycled memory, and the
        # one-step cut is faster than the cut into a buffer through a small temporary.
        out = self._free_buffer() if self._batch_bytes > _MAX_MMAP_THRESHOLD_BYTES else None
        return self._pool.submit(self._cut, starts.rows, starts.starts, starts.order, out, augment_rng)

    def _sample_whole(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        puzzles = sample_puzzles(self.tracks, self.spec, self.batch_size, rng=self.rng, distinct_tracks=self.distinct_tracks)
        return puzzles.chunks, puzzles.order, puzzles.starts

    def _augment_sampled(self, sampled: Future, augment_rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        chunks, order, starts = sampled.result()
        return self._augmented(chunks, augment_rng), order, starts

    def _cut(self, rows, starts, order, out, augment_rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        chunks = cut_chunks(self.tracks, rows, starts, chunk_samples=self.spec.chunk_samples, out=out)
        return (chunks if augment_rng is None else self._augmented(chunks, augment_rng)), order, starts

    def _augmented(self, chunks: np.ndarray, augment_rng: np.random.Generator) -> np.ndarray:
        return augment_batch(chunks, augment_rng, self.augment, sample_rate=self.sample_rate)

    def _free_buffer(self) -> np.ndarray:
        """A ring buffer nobody else references (no batch, view or tensor alias), or a new one."""
        for index in range(len(self._ring)):
            # Two references: the ring's list and getrefcount's own argument.
            if sys.getrefcount(self._ring[index]) == 2:
                return self._ring[index]
        buffer = np.empty((self.batch_size, self.spec.n_chunks, self.spec.chunk_samples), dtype=np.int16)
        if len(self._ring) < self.ring_size:
            self._ring.append(buffer)
        return buffer

    def close(self) -> None:
        """Stop the background threads (batches already handed out stay valid)."""
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        # The sampler first: a pool thread waiting on one of its cancelled batches then returns.
        if self._sampler is not None:
            self._sampler.shutdown(wait=True, cancel_futures=True)
        self._pool.shutdown(wait=True, cancel_futures=True)
