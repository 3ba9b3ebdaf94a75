"""``audiosort dream``: follow a trained network's gradient back to the waveform, to hear what sorting taught it.

The seed's last idea ("deep dream-style generation") as a command. A waveform
is changed, step by step, in the direction that raises one objective of the
run's own network, computed through the model's own front end (the log-mel
layer or the raw-waveform stem, in keras.ops), so the gradient reaches the
samples themselves and no phase has to be guessed afterwards. Three modes:

``unit``
    Start from quiet noise (or an audio file) and maximise the mean of one
    unit (channel) of one encoder layer over the whole clip: what does unit k
    respond to?
``amplify``
    The classic deep dream: start from real audio and raise the mean square of
    a layer's activations, so that whatever the layer already hears grows.
``continue``
    Given a chunk A of a file, change a chunk B (from noise, or from another
    chunk of the file) until the sorter is confident that B comes right
    after A: the head's log-odds, in nats, of the two-chunk order A, B over
    B, A, each order scored by its join scores as the head scores every
    order ("A starts" + "B right after A" + "B ends"). The seam term of a
    successor head is part of its join score.

Each step is normalized gradient ascent on ``z``, the waveform being
``AMPLITUDE_BOUND * tanh(z)`` so that it never leaves [-1, 1]; the step is
a fixed fraction of the waveform's level, since the log-mel front end hears
changes in proportion to it. A total variation penalty over time (the mean
absolute sample-to-sample step) is subtracted, weighted as a fraction of the
step, so the output stays audio rather than adversarial static. Steps run in octaves, coarse to fine: octave
k of K keeps only the part of each update below ``sample_rate / 2 ** (K - k)``
Hz, so slow changes come first and the last octave works on the full band. In
``unit`` and ``amplify``, each step first shifts the clip circularly by a
random offset of up to one chunk (jitter), so the result does not lock onto
the encoder's frame grid. Everything random comes from one seeded generator:
the same seed on the same backend gives the same WAV.

Written into ``out`` as one set: built in a hidden folder beside it and
swapped in whole, so a reader (or a kill mid-write) sees the old set or the
new one. ``out`` may be missing, empty or an earlier dream, and never the
run folder, the corpus, the source audio, the working folder or one above it::

    before.wav        the starting point (continue: A then B as it started)
    dream.wav         the result (continue: A then the dreamed B)
    spectrogram.png   log-mel spectrograms of both, one above the other
    dream.json        the settings, the seed, and the objective and total variation per step

Example
-------
>>> result = dream("runs/demo", out="dream/", mode="unit", unit=3, seconds=2.0)  # doctest: +SKIP
>>> print("\\n".join(result.lines()))  # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from keras import ops
from tqdm import tqdm

from audiosort import _files, audio
from audiosort.errors import DecodeError, InputError, check_positive_int
from audiosort.heads import HEADS, get_head
from audiosort.run import load_encoder, load_run_config, load_run_model

MODES = ("unit", "amplify", "continue")
DEFAULT_SECONDS = 2.0
DEFAULT_STEPS = 40  # per octave
DEFAULT_OCTAVES = 3
# Each update's root mean square, as a fraction of the waveform's (z, the waveform over AMPLITUDE_BOUND
# before tanh): 0.01 absolute steps made quiet noise worse, not better, through the log-mel front end.
DEFAULT_STEP_SIZE = 0.1
# At 1 an update is as loud as the waveform itself; beyond it, tanh saturates into a square wave.
MAX_STEP_SIZE = 1.0
# The share of each step's direction that lowers total variation rather than raising the objective.
DEFAULT_TV_WEIGHT = 0.3
# Below full scale, so that a dream written as int16 never clips.
AMPLITUDE_BOUND = 0.95
# Standard deviation of the starting noise: quiet, so the network, not the noise, makes the sound.
NOISE_LEVEL = 0.01
# The front end's first layer: everything after it takes float audio in [-1, 1] and is differentiable.
FRONT_LAYER = "int16_to_float"
# A seam head's layers (audiosort.models.build, .sorters): the edge spectra of the chunks' float audio,
# and the successor scores with the seam term added.
EDGE_LAYER = "edge_log_mel"
SPECTROGRAM_MELS = 64
SPECTROGRAM_FRAME_SECONDS = 0.032
SPECTROGRAM_HOP_SECONDS = 0.008
PNG_COLOURS = 64
# The file that marks a folder as a dream's, so that a later dream may replace it.
REPORT_NAME = "dream.json"


@dataclass
class DreamResult:
    """What one dream did.

    Attributes
    ----------
    mode : str
        One of :data:`MODES`.
    out : Path
        Folder holding before.wav, dream.wav, spectrogram.png and dream.json.
    settings : dict
        Everything dream.json records besides the per-step values.
    objective : list of float
        The objective at each step, before its update (unit: mean activation;
        amplify: mean square activation; continue: the sorter's log-odds of the
        order A, B over B, A, in nats).
    total_variation : list of float
        The mean absolute sample-to-sample step of the waveform at each step.
    """

    mode: str
    out: Path
    settings: dict
    objective: list = field(default_factory=list)
    total_variation: list = field(default_factory=list)

    def lines(self) -> list[str]:
        """What ``audiosort dream`` prints."""
        if self.mode == "continue":
            what = "the sorter's log-odds of A, B over B, A"
        elif self.mode == "unit":
            what = f"mean of unit {self.settings['unit']} of layer {self.settings['layer']!r}"
        else:
            what = f"mean square of layer {self.settings['layer']!r}"
        return [
            f"dream ({self.mode}): {what} went from {self.objective[0]:.4g} to {self.objective[-1]:.4g} "
            f"over {len(self.objective)} steps",
            f"wrote before.wav, dream.wav, spectrogram.png and dream.json in {self.out}",
        ]


def dream(
    run_dir: str | Path,
    *,
    out: str | Path,
    mode: str,
    source: str | Path | None = None,
    start_seconds: float = 0.0,
    init_seconds: float | None = None,
    seconds: float | None = None,
    layer: str | None = None,
    unit: int = 0,
    steps: int = DEFAULT_STEPS,
    octaves: int = DEFAULT_OCTAVES,
    step_size: float = DEFAULT_STEP_SIZE,
    tv_weight: float = DEFAULT_TV_WEIGHT,
    seed: int = 0,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> DreamResult:
    """Dream with a run's network and write the result into ``out``.

    Parameters
    ----------
    run_dir : str or Path
        Run folder of ``audiosort train`` (``config.yaml``, ``encoder.keras``;
        ``model.keras`` too for ``continue``).
    out : str or Path, keyword-only
        Folder for the four files, replaced whole: missing, empty or an
        earlier dream's (it holds ``dream.json``); not the working folder or
        one above it, and neither inside nor around the run folder, its
        corpus or ``source``. Nothing is written elsewhere.
    mode : {"unit", "amplify", "continue"}, keyword-only
        What to optimise (see the module docstring).
    source : str or Path, optional, keyword-only
        Audio file, decoded at the run's sample rate. ``unit``: start from it
        instead of noise; ``amplify``: the audio to amplify (required);
        ``continue``: where chunk A is cut (required).
    start_seconds : float >= 0, keyword-only
        Where in ``source`` the clip (or chunk A) starts, in seconds, rounded
        to the nearest sample.
    init_seconds : float >= 0, optional, keyword-only
        ``continue`` only: start B from the chunk of ``source`` at this time,
        in seconds, instead of from noise.
    seconds : float > 0, optional, keyword-only
        Length of the dream, in seconds (default :data:`DEFAULT_SECONDS`), at
        least one chunk of the run. Not for ``continue``, whose B is one chunk.
    layer : str, optional, keyword-only
        Encoder layer whose activations are the objective (``unit``,
        ``amplify``); default the encoder's output, the embedding.
    unit : int >= 0, keyword-only
        ``unit`` only: the channel of ``layer`` (its last axis) to maximise.
    steps : int > 0, keyword-only
        Gradient steps per octave.
    octaves : int > 0, keyword-only
        Coarse-to-fine stages; each halves the lowest cut-off of the update.
    step_size : float in (0, 1], keyword-only
        Root mean square of each update of z (the waveform's pre-tanh value),
        as a fraction of the waveform's root mean square (at least
        :data:`NOISE_LEVEL`'s).
    tv_weight : float in [0, 1), keyword-only
        Share of each step's direction spent lowering total variation.
    seed : int, keyword-only
        Seeds the starting noise and the jitter.
    progress : bool, keyword-only
        A progress bar on stderr when stderr is a terminal.
    log : callable, optional, keyword-only
        Called with one line per octave when no progress bar is shown.

    Returns
    -------
    DreamResult

    Raises
    ------
    InputError, DecodeError
        An ``out`` that may not be replaced (see ``out``), a run without an
        encoder (or, for ``continue``, without a sorter whose head has join
        scores), an unknown layer or unit, a missing or too short source, a
        dream shorter than one chunk, a setting out of range.
    """
    _check_settings(mode=mode, steps=steps, octaves=octaves, step_size=step_size, tv_weight=tv_weight,
                    start_seconds=start_seconds, init_seconds=init_seconds)
    run_dir = Path(run_dir)
    run_encoder = load_encoder(run_dir)
    inputs = [run_encoder.path.parent, load_run_config(run_encoder.path.parent).data.corpus]
    inputs += [] if source is None else [source]
    _check_out(out, inputs)
    sample_rate, chunk_samples = run_encoder.sample_rate, run_encoder.chunk_samples
    rng = np.random.default_rng(seed)
    settings = {
        "run": str(run_dir), "mode": mode, "seed": seed, "backend": keras.backend.backend(),
        "sample_rate": sample_rate, "chunk_samples": chunk_samples, "steps_per_octave": steps, "octaves": octaves,
        "step_size": step_size, "tv_weight": tv_weight, "amplitude_bound": AMPLITUDE_BOUND,
        "source": None if source is None else str(source), "start_seconds": start_seconds,
    }
    if mode == "continue":
        if seconds is not None:
            raise InputError(f"seconds = {seconds!r} does not apply to continue: B is one chunk of the run")
        if layer is not None:
            raise InputError(f"layer = {layer!r} does not apply to continue: its objective is the sorter's join score")
        objective, first_chunk, start, jitter_samples = _continue_objective(
            run_dir, source, start_seconds=start_seconds, init_seconds=init_seconds, rng=rng, sample_rate=sample_rate
        )
        settings.update(init_seconds=init_seconds)
    else:
        if init_seconds is not None:
            raise InputError(f"init_seconds = {init_seconds!r} applies to continue only")
        seconds = DEFAULT_SECONDS if seconds is None else seconds
        layer = run_encoder.encoder.layers[-1].name if layer is None else layer
        activations = _activations_model(run_encoder.encoder, layer)
        if mode == "unit":
            _check_unit(activations, layer, unit)
        clip_samples = _clip_samples(seconds, sample_rate=sample_rate, chunk_samples=chunk_samples)
        if source is None and mode == "amplify":
            raise InputError("amplify needs audio to amplify: pass a source file")
        start = (
            _cut(source, start_seconds, clip_samples, sample_rate=sample_rate)
            if source is not None
            else NOISE_LEVEL * rng.standard_normal(clip_samples).astype(np.float32)
        )
        objective = _encoder_objective(activations, mode, unit=unit, chunk_samples=chunk_samples)
        first_chunk, jitter_samples = None, chunk_samples
        settings.update(seconds=clip_samples / sample_rate, layer=layer, unit=unit if mode == "unit" else None)

    value_and_gradient = value_and_gradient_function(objective)
    result = DreamResult(mode=mode, out=Path(out), settings=settings)
    dreamed = _ascend(
        start, value_and_gradient, result, rng=rng, steps=steps, octaves=octaves, step_size=step_size,
        tv_weight=tv_weight, jitter_samples=jitter_samples, progress=progress, log=log,
    )
    if first_chunk is not None:
        start, dreamed = np.concatenate([first_chunk, start]), np.concatenate([first_chunk, dreamed])
    _write(result, start, dreamed, inputs, sample_rate=sample_rate,
           seam_samples=None if first_chunk is None else len(first_chunk))
    return result


def _check_settings(*, mode: str, steps: int, octaves: int, step_size: float, tv_weight: float,
                    start_seconds: float, init_seconds: float | None) -> None:
    if mode not in MODES:
        raise InputError(f"mode = {mode!r} is not one of {list(MODES)}")
    check_positive_int(steps, "steps =")
    check_positive_int(octaves, "octaves =")
    if not 0 < step_size <= MAX_STEP_SIZE:
        raise InputError(f"step_size = {step_size!r} must be in (0, {MAX_STEP_SIZE:g}]: "
                         "a larger step replaces the waveform instead of changing it")
    if not 0 <= tv_weight < 1:
        raise InputError(f"tv_weight = {tv_weight!r} must be in [0, 1)")
    for name, seconds in (("start_seconds", start_seconds), ("init_seconds", init_seconds)):
        if seconds is not None and not (np.isfinite(seconds) and seconds >= 0):
            raise InputError(f"{name} = {seconds!r} must be a finite number of seconds >= 0")


def _check_out(out: str | Path, inputs: list) -> Path:
    """Refuse, before any step is taken, an ``out`` that would replace something the user did not name as a dream.

    ``out`` is replaced whole: it may be missing, empty, or an earlier dream
    (it holds ``dream.json``), and may neither be, hold nor lie inside the
    run folder, the corpus or the source; never the working folder or one above it.
    """
    if Path(out).exists() and not Path(out).is_dir():
        raise InputError(f"out={out} exists and is not a folder; name a folder for the four files")
    path = _files.check_output(out, what="out path", overwrite=True, keep=inputs)
    if path.is_dir() and not (path / REPORT_NAME).exists() and any(path.iterdir()):
        raise InputError(f"out={out} holds files and no {REPORT_NAME}: name a new or empty folder, or an earlier dream's")
    return path


def _activations_model(encoder: keras.Model, layer: str) -> keras.Model:
    """The encoder from float audio ``(B, L)`` in [-1, 1] to ``layer``'s output, skipping the int16 input.

    The int16 input would round away any gradient; the layer after it takes
    the same audio as floats, so the sub-model is the network as trained.
    """
    names = [each.name for each in encoder.layers]
    if FRONT_LAYER not in names:
        raise InputError(f"this encoder has no {FRONT_LAYER!r} layer: not an audiosort encoder")
    usable = names[names.index(FRONT_LAYER) + 1 :]
    if layer not in usable:
        raise InputError(f"layer = {layer!r} is not a layer of this encoder; it has {', '.join(usable)}")
    return keras.Model(encoder.get_layer(FRONT_LAYER).output, encoder.get_layer(layer).output, name=f"to_{layer}")


def _check_unit(activations: keras.Model, layer: str, unit: int) -> None:
    width = activations.output_shape[-1]
    if isinstance(unit, bool) or not isinstance(unit, int) or not 0 <= unit < width:
        raise InputError(f"unit = {unit!r} is not a unit of layer {layer!r}, which has {width} (0-{width - 1})")


def _clip_samples(seconds: float, *, sample_rate: int, chunk_samples: int) -> int:
    if not np.isfinite(seconds) or seconds <= 0:
        raise InputError(f"seconds = {seconds!r} must be a positive number")
    clip_samples = round(seconds * sample_rate)
    if clip_samples < chunk_samples:
        raise InputError(
            f"seconds = {seconds!r} is shorter than one chunk of this run ({chunk_samples / sample_rate:g} s)"
        )
    return clip_samples


def _cut(source: str | Path, start_seconds: float, samples: int, *, sample_rate: int) -> np.ndarray:
    """``samples`` samples of ``source`` from ``start_seconds``, float32 in [-1, 1]."""
    if not np.isfinite(start_seconds) or start_seconds < 0:
        raise InputError(f"start_seconds = {start_seconds!r} must be >= 0")
    try:
        y = audio.load(source, sample_rate=sample_rate)
    except DecodeError as error:
        raise DecodeError(f"cannot read {source}: {error}") from None
    start = round(start_seconds * sample_rate)
    if start + samples > len(y):
        raise InputError(
            f"{source} is {len(y) / sample_rate:.3f} s long: no {samples / sample_rate:.3f} s from {start_seconds} s"
        )
    return y[start : start + samples].astype(np.float32)


def _encoder_objective(activations: keras.Model, mode: str, *, unit: int, chunk_samples: int):
    """Clip ``(S,)`` -> scalar: the mean of one unit (``unit``) or of the square of all (``amplify``) over frames.

    The clip is cut into ``S // chunk_samples`` back-to-back frames (the rest
    is left out this step; the jitter moves which part that is).
    """

    def objective(clip):
        frames = clip.shape[0] // chunk_samples
        values = activations(ops.reshape(clip[: frames * chunk_samples], (frames, chunk_samples)), training=False)
        if mode == "unit":
            return ops.mean(values[..., unit])
        return ops.mean(ops.square(values))

    return objective


def _continue_objective(run_dir: Path, source, *, start_seconds: float, init_seconds, rng, sample_rate: int):
    """``continue``: the objective of B, chunk A, B's starting point, and no jitter (the seam must stay put)."""
    head = load_run_config(run_dir).model.sorter.type
    if not get_head(head).join_scores:
        serving = sorted(name for name, entry in HEADS.items() if entry.join_scores)
        raise InputError(f"continue needs a sorter head with join scores ({' or '.join(serving)}); this run's head is {head!r}")
    model = load_run_model(run_dir)
    sorter = model.get_layer("sorter")
    if source is None:
        raise InputError("continue needs audio to cut chunk A from: pass a source file")
    encoder = model.get_layer("encoder")
    chunk_samples = encoder.input_shape[-1]
    first_chunk = _cut(source, start_seconds, chunk_samples, sample_rate=sample_rate)
    start = (
        NOISE_LEVEL * rng.standard_normal(chunk_samples).astype(np.float32)
        if init_seconds is None
        else _cut(source, init_seconds, chunk_samples, sample_rate=sample_rate)
    )
    embed = _activations_model(encoder, encoder.layers[-1].name)
    join_scores = get_head(head).join_scores
    # A seam head adds its seam term, read off the chunks' raw edge spectra, to the successor scores:
    # B's score must include it.
    edge_spectra = model.get_layer(EDGE_LAYER) if any(layer.name == "seam" for layer in sorter.layers) else None
    # A head built for n chunks takes n slots; the scores of the pair (A, B) depend on those two
    # slots alone (every pair is scored by the same MLP), so the rest are filled with A.
    slots = sorter.inputs[0].shape[1] or 2
    first_audio = ops.convert_to_tensor(first_chunk[None])

    def filled(pair_values):
        return ops.concatenate([pair_values, ops.repeat(pair_values[:1], slots - 2, axis=0)], axis=0)[None]

    def objective(second):
        pair = ops.concatenate([first_audio, second[None]], axis=0)
        edges = None if edge_spectra is None else filled(edge_spectra(pair))
        successor, first, last = (
            ops.reshape(x, (-1,)) for x in join_scores(sorter, filled(embed(pair, training=False)), edges=edges)
        )
        # Two orders of the pair; successor is the flattened slots x slots matrix.
        forward = first[0] + successor[1] + last[1]
        backward = first[1] + successor[slots] + last[0]
        return forward - backward

    return objective, first_chunk, start, 0


def value_and_gradient_function(objective):
    """``objective`` (a keras.ops function of one float32 array) -> a numpy function returning (value, gradient).

    The one place that knows the backend: a TensorFlow GradientTape inside a
    tf.function, or jax.value_and_grad under jit. The models stay backend-free.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(reduce_retracing=True)
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = objective(x)
            return value, tape.gradient(value, x)

        def run(x):
            value, gradient = step(tf.constant(x))
            return float(value), gradient.numpy()

        return run
    if backend == "jax":
        import jax

        step = jax.jit(jax.value_and_grad(objective))

        def run(x):
            value, gradient = step(x)
            return float(value), np.asarray(gradient)

        return run
    raise InputError(f"dream takes gradients under the tensorflow or jax backend, not {backend!r}")


def _ascend(start, value_and_gradient, result: DreamResult, *, rng, steps, octaves, step_size, tv_weight,
            jitter_samples, progress, log) -> np.ndarray:
    """Normalized gradient ascent on z, the waveform being ``AMPLITUDE_BOUND * tanh(z)``; returns the waveform.

    Fills ``result.objective`` and ``result.total_variation`` step by step.
    """
    z = np.arctanh(np.clip(start / AMPLITUDE_BOUND, -0.999, 0.999)).astype(np.float64)
    show = progress and sys.stderr.isatty()
    bar = tqdm(total=steps * octaves, desc=f"dream ({result.mode})", unit="step", disable=not show, file=sys.stderr)
    for octave in range(octaves):
        # Octave k of K keeps the update below Nyquist / 2 ** (K - 1 - k): coarse to fine.
        kept_fraction = 0.5 ** (octaves - 1 - octave)
        for _ in range(steps):
            shift = int(rng.integers(0, jitter_samples)) if jitter_samples else 0
            wave = AMPLITUDE_BOUND * np.tanh(z)
            value, gradient = value_and_gradient(np.roll(wave, shift).astype(np.float32))
            if not np.isfinite(value) or not np.all(np.isfinite(gradient)):
                raise InputError(f"the objective or its gradient is not finite at step {len(result.objective)}: "
                                 "the run's weights are broken")
            gradient = np.roll(gradient.astype(np.float64), -shift)
            result.objective.append(value)
            result.total_variation.append(float(np.mean(np.abs(np.diff(wave)))))
            direction = _unit_rms(gradient) - tv_weight * _unit_rms(_total_variation_gradient(wave))
            update = _low_pass(direction * (1.0 - np.tanh(z) ** 2), kept_fraction)
            # Relative to the waveform's level: the log-mel front end hears changes in proportion to it.
            level = max(float(np.sqrt(np.mean(np.square(wave)))), NOISE_LEVEL)
            z += step_size * level * _unit_rms(update)
            bar.update()
        if not show and log is not None:
            log(f"octave {octave + 1}/{octaves}: objective {result.objective[-1]:.4g}, "
                f"total variation {result.total_variation[-1]:.4g}")
    bar.close()
    return (AMPLITUDE_BOUND * np.tanh(z)).astype(np.float32)


def _unit_rms(x: np.ndarray) -> np.ndarray:
    rms = np.sqrt(np.mean(np.square(x)))
    return x / rms if rms > 0 else x


def _total_variation_gradient(wave: np.ndarray) -> np.ndarray:
    """Gradient of ``sum |wave[t + 1] - wave[t]|`` (its mean's, up to the scale that the normalization removes)."""
    signs = np.sign(np.diff(wave))
    gradient = np.zeros_like(wave)
    gradient[1:] += signs
    gradient[:-1] -= signs
    return gradient


def _low_pass(x: np.ndarray, kept_fraction: float) -> np.ndarray:
    """``x`` with its spectrum above ``kept_fraction`` of Nyquist set to zero (no change at 1)."""
    if kept_fraction >= 1:
        return x
    spectrum = np.fft.rfft(x)
    spectrum[int(np.ceil(kept_fraction * (len(spectrum) - 1))) + 1 :] = 0
    return np.fft.irfft(spectrum, n=len(x))


def _write(result: DreamResult, before: np.ndarray, after: np.ndarray, inputs: list, *, sample_rate: int,
           seam_samples) -> None:
    """The four files, built in a hidden folder beside ``result.out`` and swapped in whole (a kill leaves the old set)."""
    with _files.new_folder(result.out, overwrite=True, what="out path", keep=inputs, marker=REPORT_NAME) as out:
        audio.write_wav(out / "before.wav", before, sample_rate=sample_rate)
        audio.write_wav(out / "dream.wav", after, sample_rate=sample_rate)
        save_spectrograms(out / "spectrogram.png", {"before": before, "dream": after}, sample_rate=sample_rate,
                          seam_seconds=None if seam_samples is None else seam_samples / sample_rate)
        report = {**result.settings, "objective": result.objective, "total_variation": result.total_variation}
        _files.write_text(out / REPORT_NAME, json.dumps(report, indent=1, allow_nan=False) + "\n")


def save_spectrograms(path: str | Path, clips: dict, *, sample_rate: int, seam_seconds: float | None = None) -> None:
    """Log-mel spectrograms of ``clips``, one panel each on a shared colour scale, as a PNG, atomically.

    Parameters
    ----------
    path : str or Path
        The PNG to write.
    clips : dict of str to np.ndarray [shape=(S,), float, in [-1, 1]]
        Panel title -> audio, top to bottom.
    sample_rate : int > 0
        Of every clip, in Hz.
    seam_seconds : float, optional
        Draw a line at this time in every panel (continue: where B starts).
    """
    import librosa
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    n_fft = round(SPECTROGRAM_FRAME_SECONDS * sample_rate)
    hop = round(SPECTROGRAM_HOP_SECONDS * sample_rate)
    images = {
        title: librosa.power_to_db(
            librosa.feature.melspectrogram(y=np.asarray(y, np.float32), sr=sample_rate, n_fft=n_fft, hop_length=hop,
                                           n_mels=SPECTROGRAM_MELS),
            ref=1.0, amin=1e-10, top_db=None,
        )
        for title, y in clips.items()
    }
    top = max(float(image.max()) for image in images.values())
    figure = Figure(figsize=(6.4, 1.9 * len(images)), dpi=90)
    FigureCanvasAgg(figure)
    for k, (title, image) in enumerate(images.items()):
        axes = figure.add_subplot(len(images), 1, k + 1)
        seconds = len(clips[title]) / sample_rate
        shown = axes.imshow(image, origin="lower", aspect="auto", cmap="magma", vmin=top - 80, vmax=top,
                            extent=(0, seconds, 0, SPECTROGRAM_MELS))
        if seam_seconds is not None:
            axes.axvline(seam_seconds, color="cyan", linewidth=1)
        axes.set_title(title, fontsize=9)
        axes.set_ylabel("mel band", fontsize=8)
        axes.tick_params(labelsize=7)
        figure.colorbar(shown, ax=axes, label="dB")
    axes.set_xlabel("seconds", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    buffer.seek(0)
    # A noise-like spectrogram compresses badly in full colour; 64 colours keep it small and look the same.
    with _files.replacing(path) as tmp, Image.open(buffer) as image:
        image.convert("RGB").quantize(colors=PNG_COLOURS).save(tmp, format="png", optimize=True)
