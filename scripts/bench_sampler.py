"""Benchmark the puzzle sampler and `prepare`, each beside its yardstick in the same run.

    python scripts/bench_sampler.py [--minutes 30] [--batch 1024]

Prints, for n=3 and n=10 at 0.2 s chunks and n=3 at 0.01 s chunks (16 kHz):
- puzzles/s of the vectorized sampler over a memory-mapped corpus,
- puzzles/s of a straightforward per-puzzle Python loop over the same shards,
- their ratio, and the sampler's bytes/s over `np.copyto` of the same bytes,
- main's sampler (before the pipeline, kept here) beside this one, the cut into
  a reused buffer, and the threaded pipeline, alternated in one run (0.5 s chunks
  at batch 64 and 4096 are the demo config's),
and `prepare`'s decoding throughput (seconds of audio per wall second) on
44.1 kHz stereo FLAC files (decode, mono, resample to 16 kHz, write).
Single-threaded numpy throughout; run on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from numpy.lib.stride_tricks import sliding_window_view

from audiosort.config import PuzzleConfig
from audiosort.data import synthetic
from audiosort.data.corpus import Corpus
from audiosort.data.prepare import prepare, prepare_synthetic
from audiosort.data.pipeline import prefetched_puzzle_batches
from audiosort.data.puzzles import PuzzleSpec, TrackTable, cut_chunks, draw_gaps, draw_starts, sample_puzzles


def loop_sampler(tracks: TrackTable, spec: PuzzleSpec, batch_size: int, rng: np.random.Generator):
    """The straightforward way: one puzzle at a time, slicing each chunk."""
    n, length = spec.n_chunks, spec.chunk_samples
    weights = np.maximum(tracks.frames - spec.max_span_samples + 1, 0)
    p = weights / weights.sum()
    chunks = np.empty((batch_size, n, length), np.int16)
    order = np.empty((batch_size, n), np.int32)
    for b in range(batch_size):
        t = rng.choice(len(tracks), p=p)
        gaps = rng.integers(spec.pad_min_samples, spec.pad_max_samples + 1, size=n - 1)
        span = n * length + gaps.sum()
        start = rng.integers(0, tracks.frames[t] - span + 1)
        audio = tracks.shards[tracks.shard[t]]
        base = tracks.offset[t] + start
        offsets = np.arange(n) * length + np.concatenate([[0], np.cumsum(gaps)])
        perm = rng.permutation(n)
        for i in range(n):
            s = base + offsets[perm[i]]
            chunks[b, i] = audio[s : s + length]
        order[b] = perm
    return chunks, order


def main_sample_puzzles(tracks: TrackTable, spec: PuzzleSpec, batch_size: int, rng: np.random.Generator):
    """``sample_puzzles`` as main had it before the pipeline (commit 1d442a2, no ``min_rms``): the yardstick."""
    n, length = spec.n_chunks, spec.chunk_samples
    gaps = draw_gaps(spec, batch_size, rng=rng)
    chunk_offsets = np.arange(n, dtype=np.int64) * length
    chunk_offsets = chunk_offsets + np.concatenate([np.zeros((batch_size, 1), np.int64), np.cumsum(gaps, axis=1)], axis=1)
    span = chunk_offsets[:, -1] + length
    room = tracks.frames - spec.max_span_samples + 1
    weights = np.maximum(room, 0).astype(np.float64)
    track = rng.choice(len(tracks), size=batch_size, p=weights / weights.sum())
    start = (rng.random(batch_size) * (tracks.frames[track] - span + 1)).astype(np.int64)
    order = np.argsort(rng.random((batch_size, n)), axis=1).astype(np.int32)
    starts = start[:, None] + np.take_along_axis(chunk_offsets, order, axis=1)
    shard_of = tracks.shard[track]
    absolute = tracks.offset[track][:, None] + starts
    used = np.unique(shard_of)
    if len(used) == 1:
        chunks = np.asarray(sliding_window_view(tracks.shards[used[0]], length)[absolute])
    else:
        chunks = np.empty((batch_size, n, length), dtype=np.int16)
        for shard_index in used:
            rows = shard_of == shard_index
            chunks[rows] = sliding_window_view(tracks.shards[shard_index], length)[absolute[rows]]
    return chunks, order


def bench_old_vs_new(corpus: Corpus, n_chunks: int, chunk_seconds: float, batch_size: int, rounds: int = 3) -> None:
    """puzzles/s of main's sampler beside this one, the cut into a reused buffer and the threaded pipeline.

    Alternated ``rounds`` times; each value is the best round, the ratio the median of per-round ratios.
    """
    cfg = PuzzleConfig(n_chunks=n_chunks, chunk_seconds=chunk_seconds, pad_min_seconds=0.0, pad_max_seconds=0.01)
    spec = PuzzleSpec.from_config(cfg, sample_rate=corpus.sample_rate)
    tracks = corpus.tracks("train")
    rng = np.random.default_rng(0)
    buffer = np.empty((batch_size, n_chunks, spec.chunk_samples), np.int16)

    def cut_into_buffer():
        starts = draw_starts(tracks, spec, batch_size, rng=rng)
        cut_chunks(tracks, starts.rows, starts.starts, chunk_samples=spec.chunk_samples, out=buffer)

    pipeline = prefetched_puzzle_batches(tracks, spec, batch_size, rng=rng, workers=len(os.sched_getaffinity(0)))
    ways = {
        "main's sample_puzzles": lambda: main_sample_puzzles(tracks, spec, batch_size, rng),
        "sample_puzzles": lambda: sample_puzzles(tracks, spec, batch_size, rng=rng),
        "draw_starts + cut into one buffer": cut_into_buffer,
        f"pipeline, {len(os.sched_getaffinity(0))} threads": lambda: next(pipeline),
    }
    rates = {name: [] for name in ways}
    for _ in range(rounds):
        for name, fn in ways.items():
            rates[name].append(rate(fn, min_seconds=0.5) * batch_size)
    pipeline.close()
    baseline = np.array(rates["main's sample_puzzles"])
    print(f"n={n_chunks} chunk={chunk_seconds:.2f}s batch {batch_size}:")
    for name, values in rates.items():
        values = np.array(values)
        print(f"  {name:<36} {values.max():10,.0f} puzzles/s  {np.median(values / baseline):5.2f} x main's  "
              f"(rounds {' '.join(f'{v:,.0f}' for v in values)})")


def rate(fn, min_seconds: float = 1.0) -> float:
    """Calls per second of fn, after one warm-up call, timed over at least min_seconds."""
    fn()
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < min_seconds:
        fn()
        calls += 1
    return calls / elapsed


def bench_sampler(corpus: Corpus, n_chunks: int, chunk_seconds: float, batch_size: int) -> None:
    cfg = PuzzleConfig(n_chunks=n_chunks, chunk_seconds=chunk_seconds, pad_min_seconds=0.0, pad_max_seconds=0.01)
    spec = PuzzleSpec.from_config(cfg, sample_rate=corpus.sample_rate)
    tracks = corpus.tracks("train")
    rng = np.random.default_rng(0)
    fast = rate(lambda: sample_puzzles(tracks, spec, batch_size, rng=rng)) * batch_size
    loop_batch = max(64, batch_size // 16)
    slow = rate(lambda: loop_sampler(tracks, spec, loop_batch, rng)) * loop_batch
    puzzle_bytes = n_chunks * spec.chunk_samples * 2
    src = np.random.default_rng(1).integers(-2000, 2000, size=batch_size * puzzle_bytes // 2, dtype=np.int16)
    dst = np.empty_like(src)
    copy = rate(lambda: np.copyto(dst, src)) * batch_size
    print(
        f"n={n_chunks:<3d} chunk={chunk_seconds:.2f}s ({puzzle_bytes / 1e3:6.1f} KB/puzzle)  "
        f"vectorized {fast:10,.0f} puzzles/s  loop {slow:9,.0f} puzzles/s  ratio {fast / slow:6.1f}x  "
        f"bandwidth {fast * puzzle_bytes / 1e9:5.2f} GB/s = {fast / copy:4.2f} of np.copyto"
    )


def bench_prepare(folder: Path, minutes: float, jobs: int) -> None:
    src = folder / "flac"
    src.mkdir(exist_ok=True)
    tracks = max(2, round(minutes / 2))
    rng = np.random.default_rng(0)
    if not any(src.iterdir()):
        for k in range(tracks):
            y = synthetic.music(120.0, sample_rate=44100, rng=rng)
            sf.write(src / f"track{k:03d}.flac", np.stack([y, 0.8 * y], axis=1), 44100)
    seconds = sum(sf.info(p).duration for p in src.iterdir())
    start = time.perf_counter()
    prepare([src], folder / f"corpus-jobs{jobs}", puzzle=PuzzleConfig(), n_puzzles=0, jobs=jobs, progress=False, overwrite=True)
    wall = time.perf_counter() - start
    print(
        f"prepare --jobs {jobs}: {seconds / 60:.1f} min of 44.1 kHz stereo FLAC in {wall:.2f} s "
        f"= {seconds / wall:,.0f} s of audio per wall second"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="audio in the benchmark corpus")
    parser.add_argument("--batch", type=int, default=1024, help="puzzles per sampler call")
    parser.add_argument("--skip-prepare", action="store_true", help="only the sampler benchmarks")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepare_synthetic(
            "noise", tmp / "noise", duration_seconds=args.minutes * 60, puzzle=PuzzleConfig(), n_puzzles=0, progress=False
        )
        corpus = Corpus(tmp / "noise")
        print(f"corpus: {args.minutes:.0f} min of white noise at 16 kHz, memory-mapped; batch {args.batch}")
        for n_chunks, chunk_seconds in ((3, 0.2), (10, 0.2), (3, 0.01)):
            bench_sampler(corpus, n_chunks, chunk_seconds, args.batch)
        print(f"this sampler beside main's, load average {os.getloadavg()[0]:.1f}:")
        for n_chunks, chunk_seconds, batch_size in ((3, 0.2, args.batch), (3, 0.5, 64), (3, 0.5, 4096), (3, 0.01, args.batch)):
            bench_old_vs_new(corpus, n_chunks, chunk_seconds, batch_size)
        if args.skip_prepare:
            return
        for jobs in sorted({1, os.cpu_count() or 1}):
            bench_prepare(tmp, minutes=min(args.minutes, 10), jobs=jobs)


if __name__ == "__main__":
    main()
