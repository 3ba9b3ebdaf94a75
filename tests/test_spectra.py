"""The one filterbank and edge analysis: every number the earlier librosa-built ones gave, bit for bit."""

from __future__ import annotations

import warnings

import keras
import librosa
import numpy as np
import pytest

from audiosort import baselines, probe, spectra
from audiosort.models.layers import EdgeLogMel, LogMelSpectrogram

SAMPLE_RATE = 16000


@pytest.mark.parametrize("sample_rate", [8000, 16000, 22050, 44100, 96000])
@pytest.mark.parametrize("fft_length", [64, 400, 512, 4096])
@pytest.mark.parametrize("n_mels, f_min, f_max", [(40, 0.0, None), (64, 0.0, None), (128, 0.0, None), (40, 20.0, 3900.0)])
def test_mel_filterbank_is_librosas_bit_for_bit(sample_rate, fft_length, n_mels, f_min, f_max):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # empty bands at small fft_length: ours keep them empty too
        expected = librosa.filters.mel(sr=sample_rate, n_fft=fft_length, n_mels=n_mels, fmin=f_min, fmax=f_max)
    ours = spectra.mel_filterbank(sample_rate, fft_length, n_mels, f_min=f_min, f_max=f_max)
    assert ours.dtype == expected.dtype == np.float32
    np.testing.assert_array_equal(ours, expected)


def _reference_log_mel(audio, *, frame_length, frame_step, fft_length, n_mels, log_offset):
    """Uncentered frames, periodic Hann, float64 rfft, librosa's filterbank: what the layer computed before spectra.py."""
    frames = np.lib.stride_tricks.sliding_window_view(audio.astype(np.float64), frame_length, axis=-1)[:, ::frame_step]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame_length) / frame_length)
    spectrum = np.fft.rfft(frames * window, n=fft_length)
    filterbank = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=fft_length, n_mels=n_mels).astype(np.float64)
    return np.log((spectrum.real**2 + spectrum.imag**2) @ filterbank.T + log_offset)


@pytest.mark.parametrize("frame_length, frame_step, fft_length, n_mels", [(400, 160, 512, 64), (512, 160, 512, 40), (240, 80, 256, 32)])
def test_log_mel_layer_equals_the_numpy_reference(frame_length, frame_step, fft_length, n_mels):
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, size=(3, 3200)).astype(np.float32)
    layer = LogMelSpectrogram(SAMPLE_RATE, frame_length, frame_step, fft_length, n_mels, dtype="float32")
    ours = keras.ops.convert_to_numpy(layer(audio))
    expected = _reference_log_mel(audio, frame_length=frame_length, frame_step=frame_step, fft_length=fft_length, n_mels=n_mels, log_offset=1e-6)
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, atol=1e-5, rtol=1e-5)


def test_edge_analysis_is_the_baselines_earlier_one():
    rng = np.random.default_rng(1)
    for sample_rate, edge_samples in ((16000, 240), (8000, 120), (44100, 662), (16000, 37)):
        window, filterbank = spectra.edge_analysis(sample_rate, edge_samples)
        fft_length = 1 << (max(edge_samples, int(np.ceil(sample_rate / 32.0))) - 1).bit_length()
        expected_bank = librosa.filters.mel(sr=sample_rate, n_fft=fft_length, n_mels=40).astype(np.float64)
        expected_bank /= expected_bank.sum(axis=1, keepdims=True)
        expected_window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(edge_samples) / edge_samples)
        np.testing.assert_array_equal(filterbank, expected_bank)
        np.testing.assert_array_equal(window, expected_window)
        edges = rng.normal(scale=0.1, size=(5, edge_samples))
        power = np.abs(np.fft.rfft(edges * expected_window, n=fft_length)) ** 2 / np.sum(expected_window**2)
        expected = np.log(np.maximum(power @ expected_bank.T, 1e-10))
        np.testing.assert_allclose(spectra.edge_log_mel(edges, sample_rate=sample_rate), expected, rtol=1e-12, atol=1e-12)


def test_edge_log_mel_layer_and_the_baseline_share_one_edge_analysis():
    edges = np.random.default_rng(2).uniform(-0.3, 0.3, size=(4, 3200)).astype(np.float32)
    ours = keras.ops.convert_to_numpy(EdgeLogMel(SAMPLE_RATE, 240)(edges))
    assert ours.shape == (4, 2, spectra.EDGE_MELS)
    np.testing.assert_allclose(ours[:, 0], spectra.edge_log_mel(edges[:, -240:].astype(np.float64), sample_rate=SAMPLE_RATE), atol=1e-4)
    assert baselines.continuity_scores.__kwdefaults__["edge_seconds"] == spectra.EDGE_SECONDS


def test_probe_log_mel_is_librosas_melspectrogram_bit_for_bit():
    y = np.random.default_rng(3).normal(scale=0.1, size=12000).astype(np.float32)
    expected = librosa.feature.melspectrogram(y=y, sr=SAMPLE_RATE, n_fft=512, hop_length=160, n_mels=probe.LOGMEL_BANDS)
    np.testing.assert_array_equal(probe.log_mel(y, sample_rate=SAMPLE_RATE), np.log(expected + probe.LOGMEL_FLOOR).astype(np.float32))


@pytest.mark.parametrize("sample_rate, fft_length", [(16000, 2048), (22050, 1024), (16000, 512), (8000, 256)])
def test_the_chroma_and_peak_one_mel_filterbanks_are_librosas_bit_for_bit(sample_rate, fft_length):
    np.testing.assert_array_equal(
        spectra.chroma_filterbank(sample_rate, fft_length), librosa.filters.chroma(sr=sample_rate, n_fft=fft_length, norm=None)
    )
    np.testing.assert_array_equal(
        spectra.mel_filterbank(sample_rate, fft_length, 16, unit_area=False),
        librosa.filters.mel(sr=sample_rate, n_fft=fft_length, n_mels=16, norm=None),
    )
