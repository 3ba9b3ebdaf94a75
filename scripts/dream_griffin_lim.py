"""Dream on the waveform, or on the log-mel image and invert it with Griffin-Lim: which reaches the unit?

    python scripts/dream_griffin_lim.py runs/demo --out /tmp/dream-compare --unit 3

Both start from the same quiet noise and take the same number of normalized
gradient steps to raise the mean of one unit of an encoder layer:

- waveform: ``audiosort.dream.dream`` (mode unit), through the model's own front end;
- log-mel: the encoder's log-mel layer output is the variable, one image
  per chunk; the result is turned back into audio with
  ``librosa.feature.inverse.mel_to_audio`` (Griffin-Lim, the layer's own
  frame, hop and filterbank, 32 iterations).

What counts is the audio written, so both are scored the same way: the unit's
mean over the clip's chunks when the written 16-bit audio is fed back through
the encoder. Printed as a markdown table with the spectral flatness (1 for
white noise, near 0 for tones) and the seconds each took; writes both WAVs
and a three-panel spectrogram (start, waveform dream, Griffin-Lim dream).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import keras
import librosa
import numpy as np

from audiosort import audio
from audiosort.dream import DEFAULT_OCTAVES, DEFAULT_STEPS, NOISE_LEVEL, dream, save_spectrograms, value_and_gradient_function
from audiosort.models.layers import LogMelSpectrogram
from audiosort.run import load_encoder

MEL_STEP = 0.05  # root mean square of each log-mel update, in nats (log power)
GRIFFIN_LIM_ITERATIONS = 32


def unit_of_audio(encoder: keras.Model, wave: np.ndarray, layer: str, unit: int, chunk_samples: int) -> float:
    """The unit's mean over the back-to-back chunks of ``wave``, fed as 16-bit audio through the whole encoder."""
    probe = keras.Model(encoder.input, encoder.get_layer(layer).output)
    frames = len(wave) // chunk_samples
    chunks = audio.to_int16(wave[: frames * chunk_samples]).reshape(frames, chunk_samples)
    return float(np.mean(np.asarray(probe.predict_on_batch(chunks))[..., unit]))


def mel_dream(encoder: keras.Model, start: np.ndarray, *, layer: str, unit: int, steps: int, chunk_samples: int,
              sample_rate: int) -> np.ndarray:
    """Gradient ascent on the log-mel images of ``start``'s chunks, then Griffin-Lim back to audio."""
    mel_layer = next(each for each in encoder.layers if isinstance(each, LogMelSpectrogram))
    front = keras.Model(encoder.get_layer("int16_to_float").output, mel_layer.output)
    after_mel = keras.Model(mel_layer.output, encoder.get_layer(layer).output)
    frames = len(start) // chunk_samples
    images = np.asarray(front(start[: frames * chunk_samples].reshape(frames, chunk_samples)), dtype=np.float64)
    step = value_and_gradient_function(lambda x: keras.ops.mean(after_mel(x, training=False)[..., unit]))
    for _ in range(steps):
        _, gradient = step(images.astype(np.float32))
        images += MEL_STEP * gradient / np.sqrt(np.mean(np.square(gradient)))
    power = np.maximum(np.exp(images) - mel_layer.log_offset, 0.0)
    pieces = [
        librosa.feature.inverse.mel_to_audio(
            image.T, sr=sample_rate, n_fft=mel_layer.fft_length, hop_length=mel_layer.frame_step,
            win_length=mel_layer.frame_length, center=False, power=2.0, n_iter=GRIFFIN_LIM_ITERATIONS,
            # Long enough for every frame of an n_fft window (the layer's frames are frame_length long).
            length=(image.shape[0] - 1) * mel_layer.frame_step + mel_layer.fft_length,
        )[:chunk_samples]
        for image in power
    ]
    wave = np.concatenate(pieces)
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--unit", type=int, default=0)
    parser.add_argument("--layer", default="embedding")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run_encoder = load_encoder(args.run_dir)
    encoder, sample_rate, chunk_samples = run_encoder.encoder, run_encoder.sample_rate, run_encoder.chunk_samples
    steps = DEFAULT_STEPS * DEFAULT_OCTAVES

    began = time.perf_counter()
    dream(args.run_dir, out=args.out / "waveform", mode="unit", layer=args.layer, unit=args.unit,
          seconds=args.seconds, seed=args.seed, progress=False)
    waveform_seconds = time.perf_counter() - began
    start, _ = librosa.load(args.out / "waveform" / "before.wav", sr=None)
    waveform, _ = librosa.load(args.out / "waveform" / "dream.wav", sr=None)

    began = time.perf_counter()
    griffin_lim = mel_dream(encoder, start, layer=args.layer, unit=args.unit, steps=steps, chunk_samples=chunk_samples,
                            sample_rate=sample_rate)
    mel_seconds = time.perf_counter() - began
    audio.write_wav(args.out / "griffin_lim.wav", griffin_lim, sample_rate=sample_rate)
    save_spectrograms(args.out / "compare.png", {"start (noise)": start, "waveform dream": waveform,
                                                 "log-mel dream + Griffin-Lim": griffin_lim}, sample_rate=sample_rate)

    print(f"unit {args.unit} of layer {args.layer!r}, {args.seconds:g} s from noise of std {NOISE_LEVEL}, {steps} steps each")
    print("| method | unit mean of the written audio | spectral flatness | seconds |")
    print("| --- | --- | --- | --- |")
    for name, wave, seconds in (("start (noise)", start, 0.0), ("waveform", waveform, waveform_seconds),
                                ("log-mel + Griffin-Lim", griffin_lim, mel_seconds)):
        flatness = float(np.mean(librosa.feature.spectral_flatness(y=wave)))
        value = unit_of_audio(encoder, wave, args.layer, args.unit, chunk_samples)
        print(f"| {name} | {value:.3f} | {flatness:.3f} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
