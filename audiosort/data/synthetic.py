"""Procedural audio: a demo music corpus, and the sanity sets that must not sort.

``music`` is the embedded default training corpus (no audio files are
committed, so the demo corpus is generated): seeded, EDM-like tracks with a
tempo, key, chord progression, drum pattern, bass line, melody and timbres of
their own, laid out in build-ups, drops and breakdowns. Each section has a
direction a listener hears over seconds: a build-up swells (louder, brighter,
faster snare roll, rising riser), a drop adds a layer every two bars, a
breakdown fades and darkens. That is what lets a sorter order chunks cut
0.5-1.0 s apart, where edges no longer join (docs/demo.md). Plucks that
decay, kicks whose pitch falls and crashes give short chunks a local arrow of
time too.

``noise`` (white), ``brown`` and ``tone`` are the sanity sets: the puzzle
pipeline must leave them at chance (DESIGN.md, "Leaks to know"). Brown noise
is continuous from one sample to the next, a tripwire for zero gaps; the tone
is ``tiled`` by default because an exact 440 Hz tone leaks order through
integer-sample gaps.

Every function returns mono float32 of shape ``(frames,)`` with
``frames = round(duration_seconds * sample_rate)``, in [-1, 1] with its peak
below full scale, and is a pure function of its arguments and of the
``np.random.Generator`` passed in.

Example
-------
>>> rng = np.random.default_rng(0)
>>> y = render("music", 60.0, sample_rate=16000, rng=rng)
>>> y.shape, y.dtype
((960000,), dtype('float32'))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from audiosort.errors import InputError, is_int

KINDS = ("music", "noise", "brown", "tone")
TONE_METHODS = ("tiled", "exact")

TONE_AMPLITUDE = 0.5
WHITE_NOISE_STD = 0.2
BROWN_NOISE_PEAK = 0.8
BROWN_NOISE_LEAK_HZ = 5.0
MUSIC_PEAK = 0.8


def render(
    kind: str,
    duration_seconds: float,
    *,
    sample_rate: int,
    rng: np.random.Generator,
    tone_method: str = "tiled",
    tone_hz: float = 440.0,
) -> np.ndarray:
    """Render ``duration_seconds`` of one synthetic kind.

    Parameters
    ----------
    kind : {"music", "noise", "brown", "tone"}
        What to render (see :data:`KINDS`): :func:`music`, :func:`white_noise`,
        :func:`brown_noise` or :func:`tone`.
    duration_seconds : float > 0
        Length, in seconds.
    sample_rate : int > 0
        Samples per second (Hz).
    rng : np.random.Generator
        The only source of randomness; the tone uses it for its start phase.
    tone_method : {"tiled", "exact"}
        How ``tone`` is made; ignored for the other kinds.
    tone_hz : float > 0
        Requested frequency of ``tone``, in Hz; ignored for the other kinds.

    Returns
    -------
    y : np.ndarray [shape=(round(duration_seconds * sample_rate),), dtype=float32]
        Mono samples in [-1, 1].

    Raises
    ------
    InputError
        If ``kind`` is not one of :data:`KINDS`, or an argument of the chosen
        function is out of range.
    """
    if kind == "music":
        return music(duration_seconds, sample_rate=sample_rate, rng=rng)
    if kind == "noise":
        return white_noise(duration_seconds, sample_rate=sample_rate, rng=rng)
    if kind == "brown":
        return brown_noise(duration_seconds, sample_rate=sample_rate, rng=rng)
    if kind == "tone":
        return tone(duration_seconds, sample_rate=sample_rate, frequency_hz=tone_hz, method=tone_method, rng=rng)
    raise InputError(f"unknown synthetic kind {kind!r}; choose one of {', '.join(KINDS)}")


def tone(
    duration_seconds: float,
    *,
    sample_rate: int,
    frequency_hz: float = 440.0,
    method: str = "tiled",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """A sine tone of amplitude 0.5, exactly periodic.

    Parameters
    ----------
    duration_seconds : float > 0
        Length, in seconds.
    sample_rate : int > 0
        Samples per second (Hz).
    frequency_hz : float, 0 < frequency_hz < sample_rate / 2
        Requested frequency, in Hz. ``"tiled"`` rounds it (see Notes).
    method : {"tiled", "exact"}
        ``"exact"``: ``0.5 * sin(2 pi f t + phase)`` with
        ``t = arange(frames) / sample_rate`` in float64.
        ``"tiled"``: one period of ``round(sample_rate / frequency_hz)``
        samples, repeated.
    rng : np.random.Generator or None
        If given, draws a random start: a uniform phase for ``"exact"``, a
        uniform integer rotation of the period for ``"tiled"``. If None the
        tone starts at phase 0.

    Returns
    -------
    y : np.ndarray [shape=(round(duration_seconds * sample_rate),), dtype=float32]
        Peak 0.5. For ``"tiled"``, ``y[p:] == y[:-p]`` exactly with
        ``p = round(sample_rate / frequency_hz)`` samples.

    Raises
    ------
    InputError
        If ``method`` is not one of :data:`TONE_METHODS`, ``frequency_hz`` is
        not below the Nyquist frequency, or the duration or rate is invalid.

    Notes
    -----
    ``"tiled"`` changes the frequency to ``sample_rate / p``: 16000 / 36 =
    444.4 Hz for 440 Hz at 16 kHz. This is on purpose. On an exact 440 Hz tone
    every integer-sample gap advances the phase by a different step (0.0275
    cycle per sample at 16 kHz), so the steps of gaps 0-160 samples and of
    their negatives (the reversed order) never coincide, and an observer that
    measures phase sorts two chunks with accuracy 0.997 even with a random gap
    per pair. With an integer period p, a gap of g samples steps the phase by
    ``(g mod p) / p``, and the reversed order's step ``(-g mod p) / p`` is the
    step of another gap in the range, so forward and reversed orders look
    alike (exactly so when the gap range covers whole periods). See DESIGN.md,
    "Leaks to know"; keep ``"exact"`` as the harder tripwire.
    """
    frames = _frames(duration_seconds, sample_rate)
    if method not in TONE_METHODS:
        raise InputError(f"unknown tone method {method!r}; choose one of {', '.join(TONE_METHODS)}")
    if not 0 < frequency_hz < sample_rate / 2:
        raise InputError(
            f"tone frequency {frequency_hz} Hz must be > 0 and below half the sample rate ({sample_rate} Hz)"
        )
    if method == "exact":
        start_phase = 0.0 if rng is None else rng.uniform(0.0, 2 * np.pi)
        time_seconds = np.arange(frames, dtype=np.float64) / sample_rate
        y = TONE_AMPLITUDE * np.sin(2 * np.pi * frequency_hz * time_seconds + start_phase)
        return y.astype(np.float32)
    period_samples = round(sample_rate / frequency_hz)
    rotation_samples = 0 if rng is None else int(rng.integers(period_samples))
    period = TONE_AMPLITUDE * np.sin(2 * np.pi * np.arange(period_samples) / period_samples)
    # Indexing one stored period (rather than evaluating sin on a growing
    # argument) makes the repetition bit-exact.
    return period.astype(np.float32)[(np.arange(frames) + rotation_samples) % period_samples]


def white_noise(duration_seconds: float, *, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian white noise, standard deviation 0.2, clipped to [-1, 1].

    Parameters
    ----------
    duration_seconds : float > 0
        Length, in seconds.
    sample_rate : int > 0
        Samples per second (Hz).
    rng : np.random.Generator
        Source of the samples.

    Returns
    -------
    y : np.ndarray [shape=(round(duration_seconds * sample_rate),), dtype=float32]
        Independent samples; full scale is 5 standard deviations, so the clip
        touches about one sample in two million.
    """
    frames = _frames(duration_seconds, sample_rate)
    return np.clip(rng.normal(0.0, WHITE_NOISE_STD, frames), -1.0, 1.0).astype(np.float32)


def brown_noise(duration_seconds: float, *, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Brown (integrated white) noise, continuous from sample to sample, peak 0.8.

    Parameters
    ----------
    duration_seconds : float > 0
        Length, in seconds.
    sample_rate : int > 0
        Samples per second (Hz).
    rng : np.random.Generator
        Source of the white noise.

    Returns
    -------
    y : np.ndarray [shape=(round(duration_seconds * sample_rate),), dtype=float32]
        Power falls as 1/f^2 above 5 Hz; peak absolute value 0.8.

    Notes
    -----
    The integrator leaks with a pole at 5 Hz (``a = exp(-2 pi 5 / sample_rate)``),
    a stationary AR(1) process that cannot drift off; consecutive samples
    differ by about ``sqrt(2 (1 - a))`` = 0.06 of the signal's standard
    deviation at 16 kHz. That continuity is the point: with zero gaps, the
    edges of adjacent chunks continue each other. The integrator starts from a
    draw of its stationary distribution, so the first samples carry no
    start-up ramp that would mark the beginning of a track.
    """
    frames = _frames(duration_seconds, sample_rate)
    pole = math.exp(-2 * math.pi * BROWN_NOISE_LEAK_HZ / sample_rate)
    stationary_std = 1.0 / math.sqrt(1.0 - pole**2)
    initial_state = [pole * rng.normal(0.0, stationary_std)]
    y, _ = lfilter([1.0], [1.0, -pole], rng.normal(0.0, 1.0, frames), zi=initial_state)
    return (y * (BROWN_NOISE_PEAK / np.max(np.abs(y)))).astype(np.float32)


def music(
    duration_seconds: float, *, sample_rate: int, rng: np.random.Generator, tempo_bpm: float | None = None
) -> np.ndarray:
    """A procedural EDM-like track, different for every draw of ``rng``.

    Each call draws a tempo (90-150 BPM), a key and mode, a four-chord
    progression (one chord per bar), kick, hi-hat and bass rhythms, two
    one-bar melody motifs on the chord tones, and timbres. The track runs
    through sections of 4 or 8 bars, each going somewhere:

    - build-up: swells from -10 dB to 0 dB while the pads and plucks open
      their filters, a riser noise sweeps up, the hi-hats double and the
      snare roll goes from quarters to sixteenths;
    - drop (8 bars): a crash on the first beat, then one layer more every two
      bars: kick and ducked bass, hi-hats, the lead, the snare;
    - breakdown: pads and echoing plucks without drums, fading from 0 dB to
      -9 dB while the filters close and the plucks thin out.

    Parameters
    ----------
    duration_seconds : float > 0
        Length, in seconds.
    sample_rate : int > 0
        Samples per second (Hz).
    rng : np.random.Generator
        Every musical and timbral choice, and every noise sample, comes from it.
    tempo_bpm : float > 0 or None
        Quarter notes per minute; None draws it (90-150). Fixing it makes
        classes that differ only in tempo (``scripts/make_probe_sets.py``).

    Returns
    -------
    y : np.ndarray [shape=(round(duration_seconds * sample_rate),), dtype=float32]
        Mixed to a peak absolute value of 0.8.
    """
    frames = _frames(duration_seconds, sample_rate)
    if tempo_bpm is not None and not (math.isfinite(tempo_bpm) and tempo_bpm > 0):
        raise InputError(f"tempo_bpm must be a positive number, got {tempo_bpm!r}")
    style, sections = _draw_plan(rng, frames, sample_rate=sample_rate, tempo_bpm=tempo_bpm)
    step_samples = style.step_seconds * sample_rate
    bar_samples = 16 * step_samples
    kick = _kick_wave(style, sample_rate)

    drums, bass, pads, lead, effects = (np.zeros(frames) for _ in range(5))
    kick_onsets = []

    def onset(bar: int, step: float) -> int:
        return round((bar * 16 + step) * step_samples)

    for bar, (section, bar_in_section, section_bars) in enumerate(sections):
        chord_degree = style.progression[bar % 4]
        progress = bar_in_section / section_bars
        lead_steps = style.motifs[bar % 2]
        if section == "build":
            # A build-up: everything brightens and the snare roll speeds up toward the drop.
            brightness = 0.1 + 0.9 * progress
            if bar_in_section == 0:
                _add_at(effects, onset(bar, 0), 0.6 * _riser(round(section_bars * bar_samples), sample_rate, rng))
            kick_steps = (0, 4, 8, 12) if progress < 0.5 else ()
            snare_interval = 4 if progress < 0.5 else 2 if progress < 0.75 else 1
            snare_steps = tuple(range(0, 16, snare_interval))
            hat_steps = tuple(range(2, 16, 4)) if progress < 0.5 else tuple(range(0, 16, 2))
            bass_steps = ()
        elif section == "drop":
            # The arrangement builds in layers, one more every quarter of the drop:
            # kick and bass, then hi-hats, then the lead, then the snare.
            layers = int(4 * progress)
            brightness = 1.0
            if bar_in_section == 0:
                _add_at(effects, onset(bar, 0), _crash_wave(sample_rate, rng))
            kick_steps, bass_steps = style.kick_steps, style.bass_steps
            hat_steps = style.hat_steps if layers >= 1 else ()
            lead_steps = lead_steps if layers >= 2 else ()
            snare_steps = (4, 12) if layers >= 3 else ()
        else:  # breakdown
            # The breakdown winds down: the pads close their filter and the lead thins out.
            brightness = 1.0 - 0.85 * progress
            kick_steps, snare_steps, bass_steps, hat_steps = (), (), (), ()
            lead_steps = tuple(note for note in lead_steps if rng.random() < 1.0 - 0.7 * progress)

        for step in kick_steps:
            kick_onsets.append(onset(bar, step))
            _add_at(drums, kick_onsets[-1], kick * rng.uniform(0.9, 1.0))
        for step in snare_steps:
            velocity = (0.25 + 0.75 * (bar_in_section + step / 16) / section_bars) if section == "build" else 1.0
            _add_at(drums, onset(bar, step), 0.5 * velocity * _snare_wave(style, sample_rate, rng))
        for step in hat_steps:
            hat = 0.2 * rng.uniform(0.6, 1.0) * _hat_wave(style, sample_rate, rng)
            _add_at(drums, onset(bar, step + style.swing * (step % 2)), hat)
        for step, length_steps in bass_steps:
            midi = style.bass_midi + _degree_semitones(style.scale, chord_degree)
            _add_at(bass, onset(bar, step), 0.45 * _bass_note(style, midi, length_steps * step_samples, sample_rate))
        chord_midi = [style.pad_midi + _degree_semitones(style.scale, chord_degree + 2 * tone) for tone in range(3)]
        _add_at(pads, onset(bar, 0), 0.12 * _pad_chord(style, chord_midi, bar_samples, brightness, sample_rate))
        for step, chord_tone, passing in lead_steps:
            midi = style.lead_midi + _degree_semitones(style.scale, chord_degree + 2 * chord_tone + passing)
            _add_at(lead, onset(bar, step), 0.3 * _pluck_note(style, midi, brightness, sample_rate))

    ducking = _sidechain_gain(kick_onsets, frames, sample_rate)
    mix = drums + ducking * (bass + pads) + _echo(lead, round(3 * step_samples), sample_rate)
    mix = mix * _section_loudness(sections, frames, bar_samples) + effects
    peak = np.max(np.abs(mix))
    return (mix * (MUSIC_PEAK / peak if peak > 0 else 0.0)).astype(np.float32)


def music_sections(
    duration_seconds: float, *, sample_rate: int, rng: np.random.Generator, tempo_bpm: float | None = None
) -> tuple[list[tuple[str, int, int]], float]:
    """The sections :func:`music` lays out for a track drawn from the same ``rng`` state, and its bar length.

    Parameters
    ----------
    duration_seconds, sample_rate, rng, tempo_bpm
        As for :func:`music`; ``rng`` in the state :func:`music` would get (it is advanced the same way).

    Returns
    -------
    sections : list of (str, int, int)
        Per bar: the section kind ("build", "drop" or "breakdown"), the bar's index in its section and the
        section's length in bars.
    bar_samples : float
        Length of one bar, in samples (not rounded).
    """
    style, sections = _draw_plan(rng, _frames(duration_seconds, sample_rate), sample_rate=sample_rate, tempo_bpm=tempo_bpm)
    return sections, 16 * style.step_seconds * sample_rate


def _draw_plan(rng: np.random.Generator, frames: int, *, sample_rate: int, tempo_bpm: float | None) -> tuple:
    """The style and the sections of a track of ``frames`` samples, drawn in the order :func:`music` draws them."""
    style = _draw_style(rng, tempo_bpm)
    return style, _draw_sections(rng, math.ceil(frames / (16 * style.step_seconds * sample_rate)))


def _section_loudness(sections: list[tuple[str, int, int]], frames: int, bar_samples: float) -> np.ndarray:
    """Gain per sample: a build swells from -10 dB to 0 dB, a breakdown fades from 0 dB to -9 dB, a drop holds 0 dB.

    The ramps run sample by sample across the whole section, so any two moments
    of one build (or breakdown) differ in loudness, however close.
    """
    gain_db = np.zeros(frames)
    section_start = 0
    for bar, (section, bar_in_section, section_bars) in enumerate(sections):
        if bar_in_section == 0:
            section_start = bar
        if section == "drop":
            continue
        first, last = round(bar * bar_samples), min(frames, round((bar + 1) * bar_samples))
        if first >= last:
            break
        progress = (np.arange(first, last) - section_start * bar_samples) / (section_bars * bar_samples)
        gain_db[first:last] = -10.0 * (1.0 - progress) if section == "build" else -9.0 * progress
    return 10.0 ** (gain_db / 20.0)


def _frames(duration_seconds: float, sample_rate: int) -> int:
    if not is_int(sample_rate) or sample_rate <= 0:
        raise InputError(f"sample_rate must be a positive int (Hz), got {sample_rate!r}")
    if not math.isfinite(duration_seconds) or round(duration_seconds * sample_rate) < 1:
        raise InputError(f"duration {duration_seconds!r} s is shorter than one sample at {sample_rate} Hz")
    return round(duration_seconds * sample_rate)


# --- Music: the per-track draw ---------------------------------------------

_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
# Scale degrees (0 = tonic) of the four chords, one per bar.
_PROGRESSIONS = ((0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4), (0, 5, 2, 6), (0, 3, 4, 3), (0, 6, 5, 4))
_KICK_PATTERNS = ((0, 4, 8, 12), (0, 4, 8, 12, 14), (0, 4, 8, 10, 12), (0, 6, 8, 12))
_HAT_PATTERNS = ((2, 6, 10, 14), tuple(range(0, 16, 2)), tuple(range(16)), (2, 3, 6, 7, 10, 11, 14, 15))
# (step, length in steps) of the bass notes in one bar.
_BASS_PATTERNS = (
    tuple((step, 2) for step in (2, 6, 10, 14)),
    tuple((step, 2) for step in range(0, 16, 2)),
    tuple((step, 1) for step in range(16) if step % 4),
    ((0, 3), (3, 3), (6, 2), (8, 3), (11, 3), (14, 2)),
)


@dataclass(frozen=True)
class _Style:
    """The musical and timbral choices of one track."""

    step_seconds: float  # one sixteenth note
    swing: float  # delay of odd sixteenths, in steps
    scale: tuple
    progression: tuple
    bass_midi: int
    pad_midi: int
    lead_midi: int
    kick_steps: tuple
    hat_steps: tuple
    bass_steps: tuple
    motifs: tuple  # two bars of (step, chord tone 0-3, passing degree 0/1)
    kick_start_hz: float
    kick_end_hz: float
    kick_decay_seconds: float
    snare_hz: float
    hat_decay_seconds: float
    bass_square: bool
    bass_cutoff_hz: float
    pad_detune_cents: float
    pluck_ratio: float
    pluck_index: float
    pluck_decay_seconds: float


def _draw_style(rng: np.random.Generator, tempo_bpm: float | None = None) -> _Style:
    tonic = int(rng.integers(12))
    drawn_bpm = rng.uniform(90.0, 150.0)  # drawn either way, so a fixed tempo leaves every other choice alike
    return _Style(
        step_seconds=60.0 / (tempo_bpm or drawn_bpm) / 4,
        swing=float(rng.choice((0.0, 0.0, 0.1, 0.2))),
        scale=_SCALES[rng.choice(tuple(_SCALES))],
        progression=_PROGRESSIONS[rng.integers(len(_PROGRESSIONS))],
        bass_midi=36 + tonic,
        pad_midi=55 + tonic,
        lead_midi=67 + tonic,
        kick_steps=_KICK_PATTERNS[rng.integers(len(_KICK_PATTERNS))],
        hat_steps=_HAT_PATTERNS[rng.integers(len(_HAT_PATTERNS))],
        bass_steps=_BASS_PATTERNS[rng.integers(len(_BASS_PATTERNS))],
        motifs=(_draw_motif(rng), _draw_motif(rng)),
        kick_start_hz=rng.uniform(150.0, 250.0),
        kick_end_hz=rng.uniform(40.0, 60.0),
        kick_decay_seconds=rng.uniform(0.12, 0.25),
        snare_hz=rng.uniform(160.0, 240.0),
        hat_decay_seconds=rng.uniform(0.015, 0.05),
        bass_square=bool(rng.integers(2)),
        bass_cutoff_hz=rng.uniform(200.0, 800.0),
        pad_detune_cents=rng.uniform(5.0, 20.0),
        pluck_ratio=float(rng.choice((0.5, 1.0, 2.0, 3.0))),
        pluck_index=rng.uniform(1.0, 5.0),
        pluck_decay_seconds=rng.uniform(0.08, 0.3),
    )


def _draw_motif(rng: np.random.Generator) -> tuple:
    steps = [0, *np.flatnonzero(rng.random(15) < 0.4) + 1]
    return tuple((int(step), int(rng.integers(4)), int(rng.random() < 0.2)) for step in steps)


def _draw_sections(rng: np.random.Generator, n_bars: int) -> list[tuple[str, int, int]]:
    """Per bar: (section kind, bar index within its section, section length in bars)."""
    cycle = ("build", "drop", "breakdown")
    position = int(rng.integers(len(cycle)))
    bars = []
    while len(bars) < n_bars:
        kind = cycle[position % len(cycle)]
        section_bars = 8 if kind == "drop" else int(rng.choice((4, 8)))
        bars.extend((kind, bar_in_section, section_bars) for bar_in_section in range(section_bars))
        position += 1
    return bars[:n_bars]


# --- Music: instruments (one note or hit each, float64) --------------------


def _midi_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69) / 12)


def _degree_semitones(scale: tuple, degree: int) -> int:
    return 12 * (degree // 7) + scale[degree % 7]


def _seconds(duration_seconds: float, sample_rate: int) -> np.ndarray:
    return np.arange(max(1, round(duration_seconds * sample_rate))) / sample_rate


def _kick_wave(style: _Style, sample_rate: int) -> np.ndarray:
    time_seconds = _seconds(4 * style.kick_decay_seconds, sample_rate)
    pitch_fall_seconds = 0.03
    # Phase is the integral of f(t) = end + (start - end) exp(-t / fall).
    phase = style.kick_end_hz * time_seconds + (style.kick_start_hz - style.kick_end_hz) * pitch_fall_seconds * (
        1 - np.exp(-time_seconds / pitch_fall_seconds)
    )
    return np.sin(2 * np.pi * phase) * np.exp(-time_seconds / style.kick_decay_seconds)


def _snare_wave(style: _Style, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    time_seconds = _seconds(0.25, sample_rate)
    body = 0.5 * np.sin(2 * np.pi * style.snare_hz * time_seconds) * np.exp(-time_seconds / 0.03)
    noise = _highpass(rng.normal(0.0, 0.5, time_seconds.size), 1000.0, sample_rate) * np.exp(-time_seconds / 0.06)
    return body + noise


def _hat_wave(style: _Style, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    time_seconds = _seconds(5 * style.hat_decay_seconds, sample_rate)
    noise = _highpass(_highpass(rng.normal(0.0, 1.0, time_seconds.size), 5000.0, sample_rate), 5000.0, sample_rate)
    return noise * np.exp(-time_seconds / style.hat_decay_seconds)


def _crash_wave(sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    time_seconds = _seconds(2.0, sample_rate)
    return 0.3 * _highpass(rng.normal(0.0, 1.0, time_seconds.size), 3000.0, sample_rate) * np.exp(-time_seconds / 0.5)


def _bass_note(style: _Style, midi: int, length_samples: float, sample_rate: int) -> np.ndarray:
    time_seconds = np.arange(max(1, round(length_samples))) / sample_rate
    cycles = (_midi_hz(midi) * time_seconds) % 1.0
    wave = np.where(cycles < 0.5, 1.0, -1.0) if style.bass_square else 2 * cycles - 1
    filtered = _lowpass(_lowpass(wave, style.bass_cutoff_hz, sample_rate), style.bass_cutoff_hz, sample_rate)
    envelope = _envelope(time_seconds, attack_seconds=0.005, release_seconds=0.02)
    return filtered * envelope * (0.6 + 0.4 * np.exp(-time_seconds / 0.1))


def _pad_chord(
    style: _Style, chord_midi: list, length_samples: float, brightness: float, sample_rate: int
) -> np.ndarray:
    release_seconds = 0.4
    time_seconds = np.arange(round(length_samples + release_seconds * sample_rate)) / sample_rate
    wave = np.zeros(time_seconds.size)
    for midi in chord_midi:
        for detune_cents in (-style.pad_detune_cents, style.pad_detune_cents):
            wave += 2 * ((_midi_hz(midi + detune_cents / 100) * time_seconds) % 1.0) - 1
    held_seconds = length_samples / sample_rate
    attack = np.clip(time_seconds / (0.3 * held_seconds), 0.0, 1.0)
    release = np.clip((held_seconds + release_seconds - time_seconds) / release_seconds, 0.0, 1.0)
    return _lowpass(wave, 300.0 + 2700.0 * brightness, sample_rate) * attack * release


def _pluck_note(style: _Style, midi: int, brightness: float, sample_rate: int) -> np.ndarray:
    time_seconds = _seconds(5 * style.pluck_decay_seconds, sample_rate)
    frequency_hz = _midi_hz(midi)
    # FM whose index decays faster than the amplitude: each note starts bright
    # and turns dull, one of the cues that tell forward from reversed audio.
    index = style.pluck_index * brightness * np.exp(-time_seconds / (0.5 * style.pluck_decay_seconds))
    modulator = np.sin(2 * np.pi * style.pluck_ratio * frequency_hz * time_seconds)
    carrier = np.sin(2 * np.pi * frequency_hz * time_seconds + index * modulator)
    return carrier * _envelope(time_seconds, attack_seconds=0.003, release_seconds=0.0) * np.exp(
        -time_seconds / style.pluck_decay_seconds
    )


def _riser(length_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Noise through a low-pass whose cutoff rises from 200 Hz to 0.45 x the rate, fading in."""
    frame_samples = 512
    hop_samples = frame_samples // 2
    n_frames = length_samples // hop_samples + 2
    progress = np.linspace(0.0, 1.0, n_frames)
    cutoff_hz = 200.0 * (0.45 * sample_rate / 200.0) ** progress
    frequencies_hz = np.fft.rfftfreq(frame_samples, 1.0 / sample_rate)[:, None]
    gain = progress**2 / (1.0 + (frequencies_hz / cutoff_hz) ** 4)
    spectrum = gain * (rng.normal(size=gain.shape) + 1j * rng.normal(size=gain.shape))
    frames = np.fft.irfft(spectrum, n=frame_samples, axis=0) * np.hanning(frame_samples + 1)[:-1, None]
    # Overlap-add at 50 %: each hop is the second half of one frame plus the first half of the next.
    hops = frames[hop_samples:, :-1] + frames[:hop_samples, 1:]
    wave = hops.T.reshape(-1)[:length_samples]
    return wave / max(np.max(np.abs(wave)), 1e-12)


# --- Music: buses ------------------------------------------------------------


def _envelope(time_seconds: np.ndarray, *, attack_seconds: float, release_seconds: float) -> np.ndarray:
    """Linear attack from 0 and linear release to 0 at the end of the note (no clicks)."""
    attack = np.clip(time_seconds / attack_seconds, 0.0, 1.0)
    if release_seconds <= 0:
        return attack
    return attack * np.clip((time_seconds[-1] - time_seconds) / release_seconds, 0.0, 1.0)


def _lowpass(wave: np.ndarray, cutoff_hz: float, sample_rate: int) -> np.ndarray:
    pole = math.exp(-2 * math.pi * min(cutoff_hz, 0.45 * sample_rate) / sample_rate)
    return lfilter([1.0 - pole], [1.0, -pole], wave)


def _highpass(wave: np.ndarray, cutoff_hz: float, sample_rate: int) -> np.ndarray:
    return wave - _lowpass(wave, cutoff_hz, sample_rate)


def _add_at(bus: np.ndarray, onset_samples: int, wave: np.ndarray) -> None:
    end = min(bus.size, onset_samples + wave.size)
    if end > onset_samples:
        bus[onset_samples:end] += wave[: end - onset_samples]


def _echo(bus: np.ndarray, delay_samples: int, sample_rate: int) -> np.ndarray:
    """The bus plus three darker, quieter copies every ``delay_samples``."""
    out = bus.copy()
    repeat = bus
    for k in range(1, 4):
        repeat = 0.35 * _lowpass(repeat, 3000.0, sample_rate)
        if k * delay_samples < bus.size:
            out[k * delay_samples :] += repeat[: bus.size - k * delay_samples]
    return out


def _sidechain_gain(kick_onsets: list[int], frames: int, sample_rate: int) -> np.ndarray:
    """A gain that dips at each kick and recovers over ~0.1 s (the pumping of EDM)."""
    impulses = np.zeros(frames)
    onsets = np.asarray([onset for onset in kick_onsets if onset < frames], dtype=np.int64)
    impulses[onsets] = 1.0
    pole = math.exp(-1.0 / (0.1 * sample_rate))
    return 1.0 - 0.6 * np.minimum(lfilter([1.0], [1.0, -pole], impulses), 1.0)
