"""Augmentation: what each change does, that it is seeded and training-only, and that it cannot carry order.

The leak tests cut puzzles from white noise, whose chunks say nothing about their order, so whatever
a test finds in the augmented chunks came from the augmentation. Each test is run beside a
deliberately leaky augmentation (1 dB quieter per step of temporal position) that it must catch,
so that a pass means "no leak", not "a test too weak to see one". The honest augmentation is tested
both as a function and as the training pipeline applies it (on its worker threads, one spawned
generator per batch).
"""

import contextlib
import dataclasses

import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import LogisticRegression

from audiosort.config import AugmentConfig, ConfigError, load_config
from audiosort.data.augment import augment_batch
from audiosort.data.pipeline import prefetched_puzzle_batches
from audiosort.data.puzzles import PuzzleSpec, TrackTable, puzzle_batches
from audiosort.train import train_batches

SAMPLE_RATE = 16000
ON = AugmentConfig(enabled=True)
ONLY_GAIN = dataclasses.replace(ON, tilt_db_per_octave=0.0, eq_db=0.0, noise_min_dbfs=-150.0, noise_max_dbfs=-150.0)
ONLY_EQ = dataclasses.replace(ON, gain_db=0.0, noise_min_dbfs=-150.0, noise_max_dbfs=-150.0)
SPEC = PuzzleSpec(n_chunks=3, chunk_samples=400, pad_min_samples=0, pad_max_samples=160, pad_mode="per_gap", min_rms=0.0)
N_PUZZLES = 6000


def noise_batches(augmented_batch, *, n_puzzles=N_PUZZLES, seed=0):
    """``augmented_batch(tracks, n_puzzles, rng)`` on tracks of white noise: (chunks, order)."""
    rng = np.random.default_rng(seed)
    tracks = TrackTable.from_arrays([np.rint(rng.normal(0, 3000, 60 * SAMPLE_RATE)).astype(np.int16) for _ in range(4)])
    return augmented_batch(tracks, n_puzzles, rng)


def honest(tracks, n_puzzles, rng):
    chunks, order = next(puzzle_batches(tracks, SPEC, n_puzzles, rng=rng))
    return augment_batch(chunks, rng, ON, sample_rate=SAMPLE_RATE), order


def in_pipeline(tracks, n_puzzles, rng):
    """The honest augmentation as training applies it: on a worker thread, with the batch's own generator."""
    stream = prefetched_puzzle_batches(tracks, SPEC, n_puzzles, rng=rng, augment=ON, sample_rate=SAMPLE_RATE, workers=1, prefetch=1)
    with contextlib.closing(stream):
        return next(stream)


def leaky(tracks, n_puzzles, rng):
    """The negative control: the same augmentation, then 1 dB quieter per step of temporal position."""
    augmented, order = honest(tracks, n_puzzles, rng)
    return np.rint(augmented.astype(np.float32) * 10.0 ** (-order[..., None] / 20.0)).astype(np.int16), order


def slot_features(chunks):
    """Per slot: log RMS, and log power above 4 kHz minus below (the EQ's trace): (B, n, 2)."""
    spectrum = np.abs(np.fft.rfft(chunks.astype(np.float32), axis=-1)) ** 2
    high = spectrum[..., spectrum.shape[-1] // 2 :].sum(-1)
    low = spectrum[..., : spectrum.shape[-1] // 2].sum(-1)
    log_rms = 0.5 * np.log(np.mean(chunks.astype(np.float32) ** 2, axis=-1))
    return np.stack([log_rms, np.log(high) - np.log(low)], axis=-1)


def loudest_position_p_value(chunks, order):
    """Chi-square test that the temporal position of each puzzle's loudest chunk is uniform."""
    loudest_slot = slot_features(chunks)[..., 0].argmax(axis=1)
    positions = order[np.arange(len(order)), loudest_slot]
    return stats.chisquare(np.bincount(positions, minlength=SPEC.n_chunks)).pvalue


def classifier_accuracy(chunks, order):
    """Held-out accuracy of a logistic regression that reads every slot's features and names slot 0's position."""
    features = slot_features(chunks).reshape(len(chunks), -1)
    half = len(chunks) // 2
    classifier = LogisticRegression(max_iter=1000).fit(features[:half], order[:half, 0])
    return classifier.score(features[half:], order[half:, 0]), len(chunks) - half


LEAK_CASES = pytest.mark.parametrize(
    "augmented_batch, leaks", [(honest, False), (in_pipeline, False), (leaky, True)], ids=["augment", "pipeline", "leaky-control"]
)


@LEAK_CASES
def test_loudest_chunk_position_is_uniform_only_without_a_leak(augmented_batch, leaks):
    chunks, order = noise_batches(augmented_batch)
    p_value = loudest_position_p_value(chunks, order)
    assert (p_value < 1e-6) if leaks else (p_value > 1e-3), p_value


@LEAK_CASES
def test_a_trained_classifier_cannot_tell_positions_apart_without_a_leak(augmented_batch, leaks):
    chunks, order = noise_batches(augmented_batch, seed=1)
    accuracy, n_test = classifier_accuracy(chunks, order)
    # Chance is 1/3; with 3000 test puzzles a binomial's 99.9 % band is about +-0.028.
    upper = stats.binom.ppf(0.999, n_test, 1 / 3) / n_test
    assert (accuracy > 0.40) if leaks else (accuracy <= upper), accuracy


def test_gain_draws_are_independent_of_slot_and_position():
    rng = np.random.default_rng(2)
    chunks = np.full((4000, 3, 64), 10000, dtype=np.int16)
    gains_db = 20 * np.log10(augment_batch(chunks, rng, ONLY_GAIN, sample_rate=SAMPLE_RATE)[..., 0] / 10000)
    assert gains_db.min() >= -6.01 and gains_db.max() <= 0.01
    # Every slot draws from the same distribution: uniform on [-6, 0] dB.
    for slot in range(3):
        assert stats.kstest(gains_db[:, slot], stats.uniform(loc=-6, scale=6).cdf).pvalue > 1e-3


def test_eq_is_one_response_per_puzzle_for_all_its_chunks():
    rng = np.random.default_rng(3)
    one_chunk = np.rint(rng.normal(0, 3000, (50, 1, 800))).astype(np.int16)
    augmented = augment_batch(np.repeat(one_chunk, 3, axis=1), rng, ONLY_EQ, sample_rate=SAMPLE_RATE)
    # Equal up to rounding (the noise is far below one int16 step but still tips a few roundings).
    np.testing.assert_allclose(augmented[:, 1], augmented[:, 0], atol=1, rtol=0)
    np.testing.assert_allclose(augmented[:, 2], augmented[:, 0], atol=1, rtol=0)
    spectra = np.abs(np.fft.rfft(augmented[:, 0].astype(np.float64), axis=-1)) / np.abs(np.fft.rfft(one_chunk[:, 0], axis=-1))
    high_over_low_db = 20 * np.log10(spectra[:, 300:].mean(-1) / spectra[:, 10:60].mean(-1))
    assert high_over_low_db.std() > 2.0  # puzzles get different responses


def test_eq_does_not_wrap_a_chunks_start_into_its_end():
    # A click at the first sample: a filter applied through an FFT of the chunk's own length would
    # send its acausal half to the chunk's end; the doubled FFT keeps the end silent.
    chunks = np.zeros((20, 3, 1600), dtype=np.int16)
    chunks[..., 0] = 30000
    augmented = augment_batch(chunks, np.random.default_rng(4), ONLY_EQ, sample_rate=SAMPLE_RATE).astype(np.float64)
    assert np.abs(augmented[..., 800:]).max() <= 2 and np.abs(augmented[..., :50]).max() > 1000


def test_noise_level_lies_in_the_configured_range():
    config = dataclasses.replace(ON, gain_db=0.0, tilt_db_per_octave=0.0, eq_db=0.0, noise_min_dbfs=-50.0, noise_max_dbfs=-40.0)
    noise = augment_batch(np.zeros((500, 3, 4000), np.int16), np.random.default_rng(5), config, sample_rate=SAMPLE_RATE)
    rms_dbfs = 20 * np.log10(np.sqrt(np.mean(noise.astype(np.float64) ** 2, axis=-1)) / 32768)
    # 4000 samples estimate an RMS to about 0.1 dB.
    assert -50.4 < rms_dbfs.min() < -49.5 and -40.5 < rms_dbfs.max() < -39.6


def test_disabled_returns_the_chunks_and_enabled_is_seeded_int16():
    chunks = np.rint(np.random.default_rng(6).normal(0, 3000, (8, 3, 800))).astype(np.int16)
    assert augment_batch(chunks, np.random.default_rng(0), AugmentConfig(), sample_rate=SAMPLE_RATE) is chunks
    first = augment_batch(chunks, np.random.default_rng(7), ON, sample_rate=SAMPLE_RATE)
    second = augment_batch(chunks, np.random.default_rng(7), ON, sample_rate=SAMPLE_RATE)
    assert first.dtype == np.int16 and first.shape == chunks.shape and not np.array_equal(first, chunks)
    np.testing.assert_array_equal(first, second)


def test_training_batches_are_the_same_puzzles_augmented():
    rng = np.random.default_rng(8)
    tracks = TrackTable.from_arrays([np.rint(rng.normal(0, 3000, SAMPLE_RATE)).astype(np.int16) for _ in range(2)])
    plain = train_batches(tracks, SPEC, 16, rng=np.random.default_rng(9), augment=AugmentConfig(), sample_rate=SAMPLE_RATE)
    augmented = train_batches(tracks, SPEC, 16, rng=np.random.default_rng(9), augment=ON, sample_rate=SAMPLE_RATE)
    with contextlib.closing(plain), contextlib.closing(augmented):
        for _ in range(5):
            (plain_chunks, plain_order), (chunks, order) = next(plain), next(augmented)
            np.testing.assert_array_equal(order, plain_order)
            assert not np.array_equal(chunks, plain_chunks)
            # The same audio under a gentle EQ, gain and noise: every chunk still follows its un-augmented self.
            correlation = [np.corrcoef(a, b)[0, 1] for a, b in zip(chunks.reshape(-1, 400), plain_chunks.reshape(-1, 400))]
            assert min(correlation) > 0.5, min(correlation)  # unrelated chunks: about 0 +- 0.05


def test_augment_section_is_strict_and_off_by_default():
    assert load_config(None).augment == AugmentConfig() and not AugmentConfig().enabled
    assert load_config(None, ["augment.enabled=true", "augment.gain_db=3"]).augment.gain_db == 3.0
    with pytest.raises(ConfigError, match="did you mean 'gain_db'"):
        load_config(None, ["augment.gain=3"])
    with pytest.raises(ConfigError, match="must be <= noise_max_dbfs"):
        load_config(None, ["augment.noise_min_dbfs=-30"])


def test_per_chunk_off_keeps_only_the_shared_eq():
    # The same chunk in every slot: with per_chunk off the slots stay equal to the int16 step (one EQ per
    # puzzle, no gain or noise of their own); with it on they differ by their own gains and noise.
    rng = np.random.default_rng(8)
    one_chunk = np.rint(rng.normal(0, 3000, (40, 1, 800))).astype(np.int16)
    chunks = np.repeat(one_chunk, 3, axis=1)
    shared = augment_batch(chunks, np.random.default_rng(9), dataclasses.replace(ON, per_chunk=False), sample_rate=SAMPLE_RATE)
    np.testing.assert_array_equal(shared[:, 1], shared[:, 0])
    np.testing.assert_array_equal(shared[:, 2], shared[:, 0])
    assert not np.array_equal(shared, chunks)
    per_chunk = augment_batch(chunks, np.random.default_rng(9), ON, sample_rate=SAMPLE_RATE).astype(np.float64)
    assert np.abs(per_chunk[:, 1] - per_chunk[:, 0]).max() > 100
