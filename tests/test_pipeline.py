"""The input pipeline: the plain sampler's batches, cut ahead on threads, in buffers nobody else holds."""

import contextlib
import resource
import sys
import time

import numpy as np
import pytest

from audiosort.config import AugmentConfig
from audiosort.data.augment import augment_batch
from audiosort.data.pipeline import keep_freed_memory, prefetched_puzzle_batches
from audiosort.data.puzzles import PuzzleSpec, TrackTable, cut_chunks, draw_starts, puzzle_batches, sample_puzzles


def two_shard_tracks():
    """Five ramp tracks over two shards, so cuts cross the per-shard path."""
    audio = [((np.arange(n) + 1000 * k) % 32000).astype(np.int16) for k, n in enumerate([9000, 20000, 7000, 30000, 12000])]
    shards = (np.concatenate(audio[:2]), np.concatenate(audio[2:]))
    return TrackTable(
        shards=shards,
        shard=np.array([0, 0, 1, 1, 1]),
        offset=np.array([0, 9000, 0, 7000, 37000]),
        frames=np.array([9000, 20000, 7000, 30000, 12000]),
        track_id=np.array([10, 11, 12, 13, 14]),
    )


SPEC = PuzzleSpec(n_chunks=3, chunk_samples=400, pad_min_samples=0, pad_max_samples=300)


@pytest.mark.parametrize("workers, prefetch", [(1, 1), (3, 2)])
def test_stream_batches_equal_the_plain_samplers_for_the_same_seed(workers, prefetch):
    tracks = two_shard_tracks()
    plain = puzzle_batches(tracks, SPEC, 64, rng=np.random.default_rng(5))
    with contextlib.closing(
        prefetched_puzzle_batches(tracks, SPEC, 64, rng=np.random.default_rng(5), workers=workers, prefetch=prefetch)
    ) as stream:
        for _ in range(12):
            (chunks, order), (want_chunks, want_order) = next(stream), next(plain)
            np.testing.assert_array_equal(order, want_order)
            np.testing.assert_array_equal(chunks, want_chunks)


def test_stream_with_min_rms_rejection_equals_the_plain_sampler():
    # Half of each track silent: about half the chunk sets are redrawn, consuming the rng by the audio.
    audio = [np.where(np.arange(20000) < 10000, 0, 3000).astype(np.int16) for _ in range(3)]
    tracks = TrackTable.from_arrays(audio)
    spec = PuzzleSpec(n_chunks=2, chunk_samples=500, pad_min_samples=0, pad_max_samples=100, min_rms=0.01)
    plain = puzzle_batches(tracks, spec, 32, rng=np.random.default_rng(6))
    with contextlib.closing(prefetched_puzzle_batches(tracks, spec, 32, rng=np.random.default_rng(6), workers=2)) as stream:
        for _ in range(6):
            (chunks, order), (want_chunks, want_order) = next(stream), next(plain)
            np.testing.assert_array_equal(order, want_order)
            np.testing.assert_array_equal(chunks, want_chunks)
            assert np.all(np.abs(chunks).max(axis=-1) > 0)


AUGMENT = AugmentConfig(enabled=True)


def augmented_stream(tracks, spec, seed, *, batches, workers, prefetch, consumer_pause=0.0):
    """The first ``batches`` augmented batches of the pipeline, consumed with a random pause of up to ``consumer_pause`` s."""
    pauses = np.random.default_rng(seed + 1).uniform(0, consumer_pause, batches)
    stream = prefetched_puzzle_batches(
        tracks, spec, 32, rng=np.random.default_rng(seed), augment=AUGMENT, sample_rate=16000, workers=workers, prefetch=prefetch
    )
    with contextlib.closing(stream):
        got = []
        for pause in pauses:
            got.append(next(stream))
            time.sleep(pause)
        return got


def expected_augmented(tracks, spec, seed, *, batches):
    """The contract: batch k is the plain sampler's batch k, augmented with the k-th child of one generator spawned from the rng."""
    rng = np.random.default_rng(seed)
    batch_rngs = rng.spawn(1)[0].spawn(batches)
    plain = puzzle_batches(tracks, spec, 32, rng=rng)
    return [(augment_batch(chunks, batch_rng, AUGMENT, sample_rate=16000), order) for (chunks, order), batch_rng in zip(plain, batch_rngs)]


@pytest.mark.parametrize("workers, prefetch, consumer_pause", [(1, 1, 0.0), (3, 2, 0.0), (4, 6, 0.02)])
def test_augmented_batches_depend_only_on_the_seed_not_on_threads_or_timing(workers, prefetch, consumer_pause):
    tracks = two_shard_tracks()
    got = augmented_stream(tracks, SPEC, 11, batches=10, workers=workers, prefetch=prefetch, consumer_pause=consumer_pause)
    want = expected_augmented(tracks, SPEC, 11, batches=10)
    plain = puzzle_batches(tracks, SPEC, 32, rng=np.random.default_rng(11))
    for (chunks, order), (want_chunks, want_order), (plain_chunks, _) in zip(got, want, plain):
        np.testing.assert_array_equal(order, want_order)
        np.testing.assert_array_equal(chunks, want_chunks)
        assert not np.array_equal(chunks, plain_chunks)


def test_augmented_batches_with_min_rms_rejection_follow_the_same_contract():
    audio = [np.where(np.arange(20000) < 10000, 0, 3000).astype(np.int16) for _ in range(3)]
    tracks = TrackTable.from_arrays(audio)
    spec = PuzzleSpec(n_chunks=2, chunk_samples=500, pad_min_samples=0, pad_max_samples=100, min_rms=0.01)
    got = augmented_stream(tracks, spec, 12, batches=6, workers=3, prefetch=3)
    for (chunks, order), (want_chunks, want_order) in zip(got, expected_augmented(tracks, spec, 12, batches=6)):
        np.testing.assert_array_equal(order, want_order)
        np.testing.assert_array_equal(chunks, want_chunks)


def test_augmentation_without_a_sample_rate_is_refused():
    with pytest.raises(ValueError, match="sample_rate"):
        next(prefetched_puzzle_batches(two_shard_tracks(), SPEC, 8, rng=np.random.default_rng(0), augment=AUGMENT))


def test_cut_into_a_buffer_equals_the_fresh_cut():
    tracks = two_shard_tracks()
    starts = draw_starts(tracks, SPEC, 500, rng=np.random.default_rng(7))
    fresh = cut_chunks(tracks, starts.rows, starts.starts, chunk_samples=400)
    buffer = np.full((500, 3, 400), -1, dtype=np.int16)
    assert cut_chunks(tracks, starts.rows, starts.starts, chunk_samples=400, out=buffer) is buffer
    np.testing.assert_array_equal(buffer, fresh)
    np.testing.assert_array_equal(fresh, sample_puzzles(tracks, SPEC, 500, rng=np.random.default_rng(7)).chunks)


def test_large_batches_reuse_buffers_but_never_one_still_held():
    # 5 puzzles of 3 x 1.2 M samples: 36 MB a batch, above malloc's mmap threshold, so cut into the ring.
    tracks = TrackTable.from_arrays([((np.arange(4_000_000) + 7 * k) % 32000).astype(np.int16) for k in range(2)])
    spec = PuzzleSpec(n_chunks=3, chunk_samples=1_200_000, pad_min_samples=0, pad_max_samples=1000)
    plain = puzzle_batches(tracks, spec, 5, rng=np.random.default_rng(8))
    prefetch = 2
    with contextlib.closing(
        prefetched_puzzle_batches(tracks, spec, 5, rng=np.random.default_rng(8), workers=2, prefetch=prefetch)
    ) as stream:
        held_batch = next(stream)[0]
        held_view = next(stream)[0][3:5]
        copies = held_batch.copy(), held_view.copy()
        next(plain), next(plain)
        addresses = set()
        for _ in range(12):
            chunks, order = next(stream)
            want_chunks, want_order = next(plain)
            np.testing.assert_array_equal(chunks, want_chunks)
            np.testing.assert_array_equal(order, want_order)
            addresses.add(chunks.__array_interface__["data"][0])
            del chunks, want_chunks
        np.testing.assert_array_equal(held_batch, copies[0])
        np.testing.assert_array_equal(held_view, copies[1])
    assert len(addresses) <= prefetch + 4, "buffers are reused once released"


def minor_faults_per_3mib_buffer(reps=20):
    """Minor page faults per allocate-fill-free of a 3 MiB numpy array (the demo batch's size)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(reps):
        buffer = np.empty(3 << 20, np.uint8)
        buffer.fill(1)
        del buffer
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / reps


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc and getrusage's minor faults")
def test_stream_undoes_tensorflows_pinned_mmap_threshold():
    tf = pytest.importorskip("tensorflow")
    if not keep_freed_memory():
        pytest.skip("not glibc")
    # Building a from_generator iterator is what pins malloc's mmap threshold at 128 KiB;
    # after it, every 3 MiB buffer was mapped fresh: 768 page faults each.
    iter(tf.data.Dataset.from_generator(lambda: iter([1]), output_signature=tf.TensorSpec((), tf.int32)))
    with contextlib.closing(prefetched_puzzle_batches(two_shard_tracks(), SPEC, 8, rng=np.random.default_rng(9))) as stream:
        next(stream)
        minor_faults_per_3mib_buffer(2)
        assert minor_faults_per_3mib_buffer() < 50
