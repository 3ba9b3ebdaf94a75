"""Synthetic audio: the shapes, spectra and structure the corpus and sanity sets rely on."""

import librosa
import numpy as np
import pytest

from audiosort.data import synthetic
from audiosort.errors import InputError


def rendered(kind, duration_seconds=2.0, sample_rate=16000, seed=0, **options):
    return synthetic.render(kind, duration_seconds, sample_rate=sample_rate, rng=np.random.default_rng(seed), **options)


def band_power(y, sample_rate, low_hz, high_hz):
    """Mean power per FFT bin between low_hz and high_hz."""
    power = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
    frequencies_hz = np.fft.rfftfreq(y.size, 1.0 / sample_rate)
    return power[(frequencies_hz >= low_hz) & (frequencies_hz < high_hz)].mean()


@pytest.mark.parametrize("kind", synthetic.KINDS)
@pytest.mark.parametrize("duration_seconds, sample_rate", [(0.01, 16000), (0.5, 16000), (1.3, 22050), (3.0, 8000)])
def test_every_kind_is_mono_float32_of_rounded_length_below_full_scale(kind, duration_seconds, sample_rate):
    y = rendered(kind, duration_seconds, sample_rate)
    assert y.shape == (round(duration_seconds * sample_rate),)
    assert y.dtype == np.float32
    assert np.all(np.isfinite(y))
    assert 0.3 < np.max(np.abs(y)) < 0.95


@pytest.mark.parametrize("kind", ["music", "brown"])
def test_music_and_brown_noise_peak_at_point_eight(kind):
    assert np.max(np.abs(rendered(kind, 5.0))) == pytest.approx(0.8, abs=1e-6)


def test_white_noise_has_standard_deviation_near_point_two():
    assert np.std(rendered("noise", 5.0)) == pytest.approx(0.2, rel=0.02)


@pytest.mark.parametrize("kind", synthetic.KINDS)
@pytest.mark.parametrize("tone_method", synthetic.TONE_METHODS)
def test_same_seed_gives_bit_identical_audio(kind, tone_method):
    first = rendered(kind, seed=7, tone_method=tone_method)
    second = rendered(kind, seed=7, tone_method=tone_method)
    assert first.tobytes() == second.tobytes()


@pytest.mark.parametrize(
    "kind, tone_method", [("music", "tiled"), ("noise", "tiled"), ("brown", "tiled"), ("tone", "exact")]
)
def test_different_seeds_give_different_audio(kind, tone_method):
    first = rendered(kind, seed=1, tone_method=tone_method)
    assert not np.array_equal(first, rendered(kind, seed=2, tone_method=tone_method))


@pytest.mark.parametrize("sample_rate, frequency_hz", [(16000, 440.0), (22050, 440.0), (8000, 1000.0), (44100, 997.0)])
@pytest.mark.parametrize("seed", [None, 3])
def test_tiled_tone_repeats_exactly_every_rounded_period(sample_rate, frequency_hz, seed):
    rng = None if seed is None else np.random.default_rng(seed)
    y = synthetic.tone(1.0, sample_rate=sample_rate, frequency_hz=frequency_hz, method="tiled", rng=rng)
    period_samples = round(sample_rate / frequency_hz)
    assert np.array_equal(y[period_samples:], y[:-period_samples])
    assert not np.array_equal(y[period_samples - 1 :], y[: -(period_samples - 1)])


def test_tiled_tone_random_start_is_a_whole_sample_rotation():
    longer_unrotated = synthetic.tone(0.2, sample_rate=16000, method="tiled")
    rotations = set()
    for seed in range(20):
        y = synthetic.tone(0.1, sample_rate=16000, method="tiled", rng=np.random.default_rng(seed))
        matches = [r for r in range(36) if np.array_equal(y, longer_unrotated[r : r + y.size])]
        assert len(matches) == 1
        rotations.update(matches)
    assert len(rotations) > 5


def test_tiled_tone_runs_at_sample_rate_over_rounded_period():
    y = synthetic.tone(1.0, sample_rate=16000, frequency_hz=440.0, method="tiled")
    spectrum = np.abs(np.fft.rfft(y))
    frequencies_hz = np.fft.rfftfreq(y.size, 1.0 / 16000)
    assert frequencies_hz[np.argmax(spectrum)] == pytest.approx(16000 / 36, abs=1.0)


@pytest.mark.parametrize("sample_rate, frequency_hz", [(16000, 440.0), (22050, 440.0), (16000, 1234.5)])
def test_exact_tone_peaks_at_requested_frequency_within_one_bin(sample_rate, frequency_hz):
    rng = np.random.default_rng(0)
    y = synthetic.tone(2.0, sample_rate=sample_rate, frequency_hz=frequency_hz, method="exact", rng=rng)
    frequencies_hz = np.fft.rfftfreq(y.size, 1.0 / sample_rate)
    bin_hz = frequencies_hz[1]
    assert abs(frequencies_hz[np.argmax(np.abs(np.fft.rfft(y)))] - frequency_hz) <= bin_hz
    assert np.max(np.abs(y)) == pytest.approx(0.5, abs=1e-3)


def test_white_noise_spectrum_is_flat():
    y = rendered("noise", 10.0)
    ratio = band_power(y, 16000, 50, 2000) / band_power(y, 16000, 5000, 7950)
    assert ratio == pytest.approx(1.0, abs=0.1)


def test_brown_noise_has_far_more_energy_at_low_than_high_frequencies():
    y = rendered("brown", 10.0)
    assert band_power(y, 16000, 50, 200) > 100 * band_power(y, 16000, 4000, 7950)


def test_brown_noise_is_continuous_from_sample_to_sample():
    y = rendered("brown", 10.0).astype(np.float64)
    assert np.mean(np.abs(np.diff(y))) < 0.1 * np.std(y)


def test_brown_noise_does_not_drift():
    y = rendered("brown", 20.0).astype(np.float64)
    assert abs(np.mean(y)) < 0.1 * np.std(y)


def test_brown_noise_first_sample_is_as_loud_as_the_rest():
    # An integrator started at zero would mark the start of every track.
    first_over_std = [y[0] / np.std(y) for y in (rendered("brown", 2.0, seed=seed) for seed in range(100))]
    assert np.sqrt(np.mean(np.square(first_over_std))) > 0.6


def test_music_is_not_silent():
    assert np.sqrt(np.mean(np.square(rendered("music", 10.0).astype(np.float64)))) > 0.05


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_music_loudness_changes_over_time(seed):
    y = rendered("music", 30.0, seed=seed).astype(np.float64)
    window_rms = np.sqrt(np.mean(np.square(y.reshape(-1, 8000)), axis=1))
    assert np.std(window_rms) > 0.15 * np.mean(window_rms)
    assert np.max(window_rms) > 1.5 * np.min(window_rms)


def test_music_tracks_differ_in_tempo_or_key_not_just_noise():
    # Different seeds must give different music, not the same song with other noise:
    # the long-term spectra (tuning and rhythm) of two tracks differ.
    spectra = [np.abs(np.fft.rfft(rendered("music", 10.0, seed=seed).astype(np.float64)))[:20000] for seed in (1, 2)]
    correlation = np.corrcoef(spectra[0], spectra[1])[0, 1]
    assert correlation < 0.8


def test_unknown_kind_raises_input_error_naming_it():
    with pytest.raises(InputError, match="'cello'") as error:
        rendered("cello")
    assert all(kind in str(error.value) for kind in synthetic.KINDS)


def test_unknown_tone_method_raises_input_error_naming_it():
    with pytest.raises(InputError, match="'wobbly'"):
        rendered("tone", tone_method="wobbly")


@pytest.mark.parametrize("duration_seconds", [0.0, -1.0, 1e-6, float("nan")])
def test_duration_shorter_than_one_sample_raises_input_error(duration_seconds):
    with pytest.raises(InputError, match="duration"):
        rendered("noise", duration_seconds)


def test_tone_at_or_above_nyquist_raises_input_error():
    with pytest.raises(InputError, match="8000"):
        rendered("tone", sample_rate=16000, tone_hz=8000.0)


@pytest.mark.parametrize("tempo_bpm", [90.0, 150.0])
def test_music_at_a_fixed_tempo_is_heard_at_that_tempo(tempo_bpm):
    y = synthetic.music(20.0, sample_rate=16000, rng=np.random.default_rng(3), tempo_bpm=tempo_bpm)
    heard = librosa.feature.tempo(y=y, sr=16000, start_bpm=120)[0]
    assert heard == pytest.approx(tempo_bpm, rel=0.05)  # librosa's tempo grid is ~2-4% coarse here


@pytest.mark.parametrize("tempo_bpm", [0.0, -10.0, float("nan")])
def test_music_refuses_a_tempo_that_is_not_positive(tempo_bpm):
    with pytest.raises(InputError, match="tempo_bpm"):
        synthetic.music(1.0, sample_rate=16000, rng=np.random.default_rng(0), tempo_bpm=tempo_bpm)


def test_section_loudness_swells_through_a_build_and_fades_through_a_breakdown():
    bar_samples = 100.0
    sections = [("build", bar, 2) for bar in range(2)] + [("drop", 0, 1)] + [("breakdown", bar, 2) for bar in range(2)]
    gain_db = 20 * np.log10(synthetic._section_loudness(sections, 500, bar_samples))
    assert gain_db[0] == pytest.approx(-10.0)
    assert gain_db[199] == pytest.approx(-0.05)
    assert np.all(np.diff(gain_db[:200]) > 0)
    assert np.all(gain_db[200:300] == 0.0)
    assert gain_db[300] == pytest.approx(0.0)
    assert gain_db[499] == pytest.approx(-9.0 * 199 / 200)
    assert np.all(np.diff(gain_db[300:]) < 0)


def sections_of(seed, duration_seconds, sample_rate=16000):
    """The sections :func:`synthetic.music` lays out for this seed, drawn in the same order, with bar length."""
    return synthetic.music_sections(duration_seconds, sample_rate=sample_rate, rng=np.random.default_rng(seed))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_music_gets_louder_and_brighter_through_each_build_and_quieter_through_each_breakdown(seed):
    # The long-range cue the demo's sorter learns: which way a section is going.
    duration_seconds, sample_rate = 40.0, 16000
    y = rendered("music", duration_seconds, sample_rate, seed=seed).astype(np.float64)
    sections, bar_samples = sections_of(seed, duration_seconds)
    checked = 0
    for bar, (kind, bar_in_section, section_bars) in enumerate(sections):
        last_bar = bar + section_bars - 1
        if bar_in_section != 0 or kind == "drop" or (last_bar + 1) * bar_samples > y.size:
            continue
        first = y[round(bar * bar_samples) : round((bar + 1) * bar_samples)]
        last = y[round(last_bar * bar_samples) : round((last_bar + 1) * bar_samples)]
        rms_first, rms_last = np.sqrt(np.mean(first**2)), np.sqrt(np.mean(last**2))
        centroid_first, centroid_last = (
            librosa.feature.spectral_centroid(y=part, sr=sample_rate).mean() for part in (first, last)
        )
        if kind == "build":
            assert rms_last > 1.5 * rms_first and centroid_last > centroid_first
        else:
            assert rms_last < 0.7 * rms_first and centroid_last < centroid_first
        checked += 1
    assert checked >= 1
