"""Build labelled folders for `audiosort probe RUN_DIR --data OUT ...`: tasks that have nothing to do with order.

    python scripts/make_probe_sets.py tracks data/warzone --out data/probe-tracks
    python scripts/make_probe_sets.py instruments --out data/probe-instruments
    python scripts/make_probe_sets.py pitch --out data/probe-pitch
    python scripts/make_probe_sets.py synthetic --out data/probe-tempo

``tracks CORPUS``: which track does a 2 s clip come from? Only the corpus's
held-out tracks (splits val and test: no run trained on this corpus heard them)
are used, one class each. Each track is cut into ``--blocks`` (5) equal
stretches with 2 s left out between neighbours; each stretch is one group (the
probe never puts clips of one group on both sides of a split, so no audio and
no pair of adjacent clips is shared by train and test). Clips lie end to end
within a stretch; near-silent ones (RMS under -60 dB full scale) are dropped
and at most 60 clips per track kept, evenly spaced. A track with a stretch
left empty is skipped.

``instruments``: which General MIDI instrument family plays a 2 s melody?
Eight families (piano, chromatic percussion, organ, guitar, bass, strings,
brass, reed) of eight GM programs each, a few clips per program, each a fresh
random melody in the family's range. Rendered by fluidsynth with a GM
soundfont (Debian: ``apt-get install fluidsynth fluid-soundfont-gm``), reverb
and chorus off. The group is the program, so the probe is tested on
instruments it never trained on: it must hear the family, not the preset.

``pitch``: which pitch class (C, C#, ..., B) is a 2 s clip? Two notes of the
class in random octaves (MIDI 48-83), on one of 16 GM programs spread over the
melodic families; grouped by program, as above.

``synthetic``: how fast is the procedural music (``audiosort.data.synthetic``)?
Four classes of tempo (90, 110, 130 and 150 BPM); every clip is cut from its
own freshly drawn track (key, chords, rhythms, timbres and sections drawn as
for any track, so only the tempo tells the classes apart) at a random start.
Every clip is rendered on its own, so each file is its own group: OUT holds one
sub-folder per class.

Every clip's peak level is drawn uniformly in [0.3, 0.8] (except in ``tracks``,
which keeps the music as it is), so loudness says nothing about the class.
Each command writes into a temporary folder beside OUT and renames it into
place; OUT gets ``labels.csv`` (path,label,group and where the clip came from)
or class sub-folders, and ``probe-set.json`` with the settings and counts.
Exit 2 with one line on bad input.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from audiosort import _files, audio
from audiosort.cli import as_flags
from audiosort.data import synthetic
from audiosort.data.corpus import Corpus
from audiosort.errors import AudiosortError, InputError

HELD_OUT_SPLITS = ("val", "test")
# -60 dB full scale: fade-ins, fade-outs and pauses say nothing about which track plays.
QUIET_RMS = 1e-3
# Tempo classes (BPM) of the synthetic task, spanning the generator's range; and how much longer than a
# clip each rendered track is (its start is drawn in there, so clips fall in builds, drops and breakdowns).
TEMPI_BPM = (90, 110, 130, 150)
TRACK_SECONDS = 8.0
PEAK_RANGE = (0.3, 0.8)

DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
# First program (0-based) of each General MIDI family of eight, and the MIDI notes its melodies use.
GM_FAMILIES = {
    "piano": (0, (48, 84)),
    "chromatic_percussion": (8, (60, 96)),
    "organ": (16, (48, 84)),
    "guitar": (24, (40, 76)),
    "bass": (32, (28, 55)),
    "strings": (40, (48, 84)),
    "brass": (56, (48, 79)),
    "reed": (64, (55, 84)),
}
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Pitch task: every fifth program of the melodic families 0-79, and the notes its clips use.
PITCH_PROGRAMS = tuple(range(0, 80, 5))
PITCH_NOTES = (48, 83)
# Silence rendered after each clip, so that a note's release never reaches the next clip.
RENDER_TAIL_SECONDS = 1.0
MIDI_TICKS_PER_SECOND = 1000  # division 1000 ticks per quarter at 60 BPM: one tick per millisecond


def midi_file(events: list[tuple[float, bytes]]) -> bytes:
    """A standard MIDI file (format 0, one track) holding ``events``.

    Parameters
    ----------
    events : list of (float, bytes)
        Time in seconds from the start and one channel message each (status
        byte and data bytes), e.g. ``bytes([0x90, 60, 100])`` for note-on C4.

    Returns
    -------
    bytes
        Header chunk, then one track: a tempo of 60 BPM, the events in time
        order (stable for equal times) with millisecond delta times, end of track.
    """
    track = bytearray(b"\x00\xff\x51\x03" + (1_000_000).to_bytes(3, "big"))
    now = 0
    for seconds, message in sorted(events, key=lambda event: event[0]):
        tick = round(seconds * MIDI_TICKS_PER_SECOND)
        track += _variable_length(tick - now) + message
        now = tick
    track += b"\x00\xff\x2f\x00"
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, MIDI_TICKS_PER_SECOND) + b"MTrk" + struct.pack(">I", len(track)) + track


def _variable_length(value: int) -> bytes:
    """MIDI's variable-length quantity: 7 bits a byte, most significant first, high bit set on all but the last."""
    groups = [value & 0x7F]
    value >>= 7
    while value:
        groups.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(groups))


def render_clips(
    clips: list[tuple[int, list[tuple[float, float, int, int]]]],
    *,
    clip_seconds: float,
    sample_rate: int,
    soundfont: str | Path,
) -> list[np.ndarray]:
    """Render General MIDI clips with fluidsynth, all in one pass, and cut them apart.

    Parameters
    ----------
    clips : list of (int, list of (float, float, int, int))
        Per clip: the GM program (0-127) and its notes as (start, duration in
        seconds from the clip's start, MIDI note, velocity 1-127), on channel 1
        (never the drum channel).
    clip_seconds : float > 0, keyword-only
        Length of every clip; notes should end before it.
    sample_rate : int > 0, keyword-only
        Hz, the rendering rate.
    soundfont : str or Path, keyword-only
        A General MIDI ``.sf2``.

    Returns
    -------
    list of np.ndarray [shape=(round(clip_seconds * sample_rate),), dtype=float32]
        Mono, as rendered (mean of the two channels).

    Raises
    ------
    InputError
        No fluidsynth on the PATH, no such soundfont, or fluidsynth failing.
    """
    if shutil.which("fluidsynth") is None:
        raise InputError("fluidsynth is not installed (Debian: apt-get install fluidsynth fluid-soundfont-gm)")
    if not Path(soundfont).is_file():
        raise InputError(f"no soundfont at {soundfont} (Debian: apt-get install fluid-soundfont-gm, or pass --soundfont)")
    slot_seconds = clip_seconds + RENDER_TAIL_SECONDS
    events = []
    for k, (program, notes) in enumerate(clips):
        start = k * slot_seconds
        events.append((start, bytes([0xC0, program])))
        for onset, duration, note, velocity in notes:
            events.append((start + onset, bytes([0x90, note, velocity])))
            events.append((start + onset + duration, bytes([0x80, note, 0])))
    with tempfile.TemporaryDirectory(prefix="audiosort-midi-") as scratch:
        midi_path, wav_path = Path(scratch) / "clips.mid", Path(scratch) / "clips.wav"
        midi_path.write_bytes(midi_file(events))
        command = [
            "fluidsynth", "-n", "-i", "-q", "-R", "0", "-C", "0", "-g", "0.5", "-r", str(sample_rate),
            "-T", "wav", "-F", str(wav_path), str(soundfont), str(midi_path),
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0 or not wav_path.is_file():
            reason = (result.stderr or result.stdout).strip().splitlines()
            raise InputError(f"fluidsynth failed: {reason[-1] if reason else f'exit {result.returncode}'}")
        rendered = audio.load(wav_path, sample_rate=sample_rate)
    clip_samples = round(clip_seconds * sample_rate)
    rendered = np.pad(rendered, (0, max(0, round(len(clips) * slot_seconds * sample_rate) - len(rendered))))
    return [rendered[round(k * slot_seconds * sample_rate) :][:clip_samples] for k in range(len(clips))]


def melody(note_range: tuple[int, int], clip_seconds: float, *, rng: np.random.Generator) -> list[tuple[float, float, int, int]]:
    """A random melody: notes of 0.2-0.6 s one after another, each in ``note_range`` (inclusive), ending before the clip."""
    notes, onset = [], 0.0
    while True:
        duration = float(rng.uniform(0.2, 0.6))
        if onset + duration > clip_seconds - 0.1:
            return notes
        notes.append((onset, duration, int(rng.integers(note_range[0], note_range[1] + 1)), int(rng.integers(60, 111))))
        onset += duration


def pitch_notes(pitch_class: int, clip_seconds: float, *, rng: np.random.Generator) -> list[tuple[float, float, int, int]]:
    """Two notes of one pitch class (0 = C) in random octaves within ``PITCH_NOTES``, filling the clip."""
    candidates = [note for note in range(PITCH_NOTES[0], PITCH_NOTES[1] + 1) if note % 12 == pitch_class]
    half = (clip_seconds - 0.1) / 2
    return [(k * half, half - 0.05, int(rng.choice(candidates)), int(rng.integers(60, 111))) for k in range(2)]


def _write_rendered_set(
    out, *, kind: str, clips: list, labels: list[str], groups: list[str], clip_seconds: float, sample_rate: int,
    soundfont: str, seed: int, overwrite: bool, settings: dict,
) -> int:
    """Render ``clips``, give each a random peak level, write wavs, labels.csv and probe-set.json; return clips kept."""
    rendered = render_clips(clips, clip_seconds=clip_seconds, sample_rate=sample_rate, soundfont=soundfont)
    rng = np.random.default_rng([seed, 1])
    rows, silent = [], []
    with _files.new_folder(out, overwrite=overwrite, what="probe set") as tmp:
        for k, (y, label, group, (program, _)) in enumerate(zip(rendered, labels, groups, clips)):
            peak = np.max(np.abs(y))
            if peak < QUIET_RMS:
                silent.append(f"clip {k} (program {program})")
                continue
            path = f"{label}/{k:04d}.wav"
            audio.write_wav(tmp / path, (y * (rng.uniform(*PEAK_RANGE) / peak)).astype(np.float32), sample_rate=sample_rate)
            rows.append([path, label, group, program])
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["path", "label", "group", "program"])
        writer.writerows(rows)
        (tmp / "labels.csv").write_text(buffer.getvalue())
        settings = {
            "kind": kind, **settings, "clip_seconds": clip_seconds, "sample_rate": sample_rate,
            "soundfont": str(soundfont), "seed": seed, "clips": len(rows), "silent_skipped": silent,
        }
        (tmp / "probe-set.json").write_text(json.dumps(settings, indent=1) + "\n")
    return len(rows)


def make_instruments(
    out: str | Path,
    *,
    families: tuple[str, ...] = tuple(GM_FAMILIES),
    programs_per_family: int = 8,
    clips_per_program: int = 6,
    clip_seconds: float = 2.0,
    sample_rate: int = 16000,
    soundfont: str = DEFAULT_SOUNDFONT,
    seed: int = 0,
    overwrite: bool = False,
) -> list[str]:
    """Write the "which instrument family" set (module docstring); return summary lines."""
    unknown = sorted(set(families) - set(GM_FAMILIES))
    if unknown:
        raise InputError(f"unknown family {unknown[0]!r}; choose from {', '.join(GM_FAMILIES)}")
    if not 1 <= programs_per_family <= 8 or clips_per_program < 1 or clip_seconds <= 0.5:
        raise InputError(
            f"need 1 <= --programs-per-family <= 8, --clips-per-program >= 1 and --clip-seconds > 0.5; got "
            f"{programs_per_family}, {clips_per_program}, {clip_seconds}"
        )
    rng = np.random.default_rng([seed, 0])
    clips, labels, groups = [], [], []
    for family in families:
        first, note_range = GM_FAMILIES[family]
        for program in range(first, first + programs_per_family):
            for _ in range(clips_per_program):
                clips.append((program, melody(note_range, clip_seconds, rng=rng)))
                labels.append(family)
                groups.append(f"program{program:03d}")
    kept = _write_rendered_set(
        out, kind="instruments", clips=clips, labels=labels, groups=groups, clip_seconds=clip_seconds,
        sample_rate=sample_rate, soundfont=soundfont, seed=seed, overwrite=overwrite,
        settings={"families": list(families), "programs_per_family": programs_per_family, "clips_per_program": clips_per_program},
    )
    return [f"{len(families)} families x {programs_per_family} programs: {kept} clips of {clip_seconds} s", f"wrote {out}"]


def make_pitch(
    out: str | Path,
    *,
    programs: tuple[int, ...] = PITCH_PROGRAMS,
    clips_per_class: int = 2,
    clip_seconds: float = 2.0,
    sample_rate: int = 16000,
    soundfont: str = DEFAULT_SOUNDFONT,
    seed: int = 0,
    overwrite: bool = False,
) -> list[str]:
    """Write the "which pitch class" set (module docstring); ``clips_per_class`` per program; return summary lines."""
    if not programs or any(not 0 <= program <= 127 for program in programs) or clips_per_class < 1 or clip_seconds <= 0.5:
        raise InputError(
            f"need programs in 0-127, --clips-per-class >= 1 and --clip-seconds > 0.5; got "
            f"{list(programs)}, {clips_per_class}, {clip_seconds}"
        )
    rng = np.random.default_rng([seed, 0])
    clips, labels, groups = [], [], []
    for program in programs:
        for pitch_class, name in enumerate(PITCH_CLASSES):
            for _ in range(clips_per_class):
                clips.append((program, pitch_notes(pitch_class, clip_seconds, rng=rng)))
                labels.append(name.replace("#", "sharp"))
                groups.append(f"program{program:03d}")
    kept = _write_rendered_set(
        out, kind="pitch", clips=clips, labels=labels, groups=groups, clip_seconds=clip_seconds,
        sample_rate=sample_rate, soundfont=soundfont, seed=seed, overwrite=overwrite,
        settings={"programs": list(programs), "clips_per_class": clips_per_class, "notes": list(PITCH_NOTES)},
    )
    return [f"12 pitch classes x {len(programs)} programs: {kept} clips of {clip_seconds} s", f"wrote {out}"]


def block_clips(
    pcm: np.ndarray, *, clip_samples: int, gap_samples: int, n_blocks: int, max_clips: int
) -> list[np.ndarray]:
    """Where to cut the clips of one track, per stretch.

    Parameters
    ----------
    pcm : np.ndarray [shape=(n_samples,), dtype=int16]
        The track.
    clip_samples : int > 0, keyword-only
        Clip length, in samples.
    gap_samples : int >= 0, keyword-only
        Samples left out between consecutive stretches.
    n_blocks : int >= 2, keyword-only
        Equal stretches the track is cut into.
    max_clips : int >= n_blocks, keyword-only
        Clips kept at most, ``max_clips // n_blocks`` per stretch.

    Returns
    -------
    list of np.ndarray [shape=(k_b,), dtype=int64]
        Per stretch, the first sample of each clip, ascending: clips end to
        end from the stretch's start, near-silent ones skipped, an evenly
        spaced subset kept where there are more than allowed. Empty for a
        stretch shorter than one clip or silent.
    """
    block_samples = (len(pcm) - (n_blocks - 1) * gap_samples) // n_blocks
    allowed = max_clips // n_blocks
    kept = []
    for block in range(n_blocks):
        first = block * (block_samples + gap_samples)
        starts = np.arange(first, first + block_samples - clip_samples + 1, clip_samples, dtype=np.int64)
        rms = np.array([np.sqrt(np.mean(audio.from_int16(pcm[start : start + clip_samples]) ** 2)) for start in starts])
        starts = starts[rms >= QUIET_RMS] if len(starts) else starts
        if len(starts) > allowed:
            starts = starts[np.unique(np.round(np.linspace(0, len(starts) - 1, allowed)).astype(np.int64))]
        kept.append(starts)
    return kept


def make_tracks(
    corpus_dir: str | Path,
    out: str | Path,
    *,
    clip_seconds: float = 2.0,
    blocks: int = 5,
    gap_seconds: float = 2.0,
    clips_per_track: int = 60,
    overwrite: bool = False,
) -> list[str]:
    """Write the "which track" set of a corpus's held-out tracks (module docstring); return summary lines."""
    corpus = Corpus(corpus_dir)
    sample_rate = corpus.sample_rate
    clip_samples = round(clip_seconds * sample_rate)
    if clip_samples < 1 or gap_seconds < 0 or blocks < 2 or clips_per_track < blocks:
        raise InputError(
            f"need --clip-seconds > 0, --gap-seconds >= 0, --blocks >= 2 and --clips-per-track >= --blocks; got "
            f"{clip_seconds}, {gap_seconds}, {blocks}, {clips_per_track}"
        )
    entries = [entry for entry in corpus.track_entries if entry["split"] in HELD_OUT_SPLITS]
    if not entries:
        raise InputError(f"corpus {corpus.path} has no val or test tracks")
    rows, tracks, skipped, labels = [], [], [], set()
    with _files.new_folder(out, overwrite=overwrite, what="probe set") as tmp:
        for entry in entries:
            pcm = corpus.track_audio(entry["id"])
            starts_per_block = block_clips(
                pcm, clip_samples=clip_samples, gap_samples=round(gap_seconds * sample_rate), n_blocks=blocks,
                max_clips=clips_per_track,
            )
            if not all(len(starts) for starts in starts_per_block):
                skipped.append(f"{entry['source']} ({len(pcm) / sample_rate:.1f} s: a stretch too short or too quiet)")
                continue
            label = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(entry["source"]).stem)
            label = label if label not in labels else f"{label}-{entry['id']}"
            labels.add(label)
            for block, starts in enumerate(starts_per_block):
                for start in starts:
                    path = f"{label}/{start / sample_rate:08.3f}s.wav"
                    audio.write_wav(tmp / path, np.asarray(pcm[start : start + clip_samples]), sample_rate=sample_rate)
                    rows.append([path, label, f"{label}#{block}", entry["source"], start / sample_rate, (start + clip_samples) / sample_rate])
            tracks.append(
                {"label": label, "source": entry["source"], "corpus_split": entry["split"],
                 "clips_per_block": [len(starts) for starts in starts_per_block]}
            )
        if len(tracks) < 2:
            raise InputError(f"corpus {corpus.path} has {len(tracks)} held-out track long enough; a probe needs 2")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["path", "label", "group", "source", "start_seconds", "end_seconds"])
        writer.writerows(rows)
        (tmp / "labels.csv").write_text(buffer.getvalue())
        settings = {
            "kind": "tracks", "corpus": str(corpus.path.resolve()), "splits": list(HELD_OUT_SPLITS),
            "sample_rate": sample_rate, "clip_seconds": clip_seconds, "blocks": blocks,
            "gap_seconds": gap_seconds, "clips_per_track": clips_per_track, "quiet_rms": QUIET_RMS,
            "tracks": tracks, "skipped": skipped,
        }
        (tmp / "probe-set.json").write_text(json.dumps(settings, indent=1) + "\n")
    return [
        f"{len(tracks)} held-out tracks of {corpus.path}: {len(rows)} clips of {clip_seconds} s in {blocks} stretches each",
        *(f"skipped {name}" for name in skipped),
        f"wrote {out}",
    ]


def tempo_clip(tempo_bpm: float, clip_seconds: float, *, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """One clip of a fresh synthetic track at a fixed tempo.

    Parameters
    ----------
    tempo_bpm : float > 0
        Quarter notes per minute.
    clip_seconds : float > 0
        Length, in seconds.
    sample_rate : int > 0
        Hz.
    rng : np.random.Generator
        Draws the track (key, patterns, timbres, sections, as
        :func:`synthetic.music` does), where in its first bars the clip starts,
        and its level.

    Returns
    -------
    y : np.ndarray [shape=(round(clip_seconds * sample_rate),), dtype=float32]
        Cut at a random start within the first ``TRACK_SECONDS - clip_seconds``
        seconds of the track; peak absolute value drawn uniformly in [0.3, 0.8],
        so that loudness says nothing about the class.
    """
    track = synthetic.music(clip_seconds + TRACK_SECONDS, sample_rate=sample_rate, rng=rng, tempo_bpm=tempo_bpm)
    frames = round(clip_seconds * sample_rate)
    start = int(rng.integers(len(track) - frames + 1))
    clip = track[start : start + frames]
    peak = np.max(np.abs(clip))
    return (clip * (rng.uniform(*PEAK_RANGE) / peak if peak > 0 else 0.0)).astype(np.float32)


def make_synthetic(
    out: str | Path,
    *,
    clips_per_class: int = 100,
    clip_seconds: float = 2.0,
    sample_rate: int = 16000,
    seed: int = 0,
    overwrite: bool = False,
) -> list[str]:
    """Write the "which tempo" set (module docstring); return summary lines."""
    if clips_per_class < 2 or clip_seconds <= 0:
        raise InputError(f"need --clips-per-class >= 2 and --clip-seconds > 0; got {clips_per_class}, {clip_seconds}")
    with _files.new_folder(out, overwrite=overwrite, what="probe set") as tmp:
        for tempo in TEMPI_BPM:
            rng = np.random.default_rng([seed, tempo])
            label = f"{tempo}bpm"
            for k in range(clips_per_class):
                y = tempo_clip(tempo, clip_seconds, sample_rate=sample_rate, rng=rng)
                audio.write_wav(tmp / label / f"{label}-{k:03d}.wav", y, sample_rate=sample_rate)
        settings = {
            "kind": "synthetic", "classes": [f"{tempo}bpm" for tempo in TEMPI_BPM], "clips_per_class": clips_per_class,
            "clip_seconds": clip_seconds, "sample_rate": sample_rate, "seed": seed,
        }
        (tmp / "probe-set.json").write_text(json.dumps(settings, indent=1) + "\n")
    return [f"{len(TEMPI_BPM)} tempi x {clips_per_class} clips of {clip_seconds} s at {sample_rate} Hz", f"wrote {out}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    tracks = commands.add_parser("tracks", help="which held-out track of a corpus a clip comes from")
    tracks.add_argument("corpus", help="a corpus folder of `audiosort prepare`")
    tracks.add_argument("--clip-seconds", type=float, default=2.0)
    tracks.add_argument("--blocks", type=int, default=5, help="stretches (groups) per track")
    tracks.add_argument("--gap-seconds", type=float, default=2.0, help="left out between consecutive stretches")
    tracks.add_argument("--clips-per-track", type=int, default=60)
    instruments = commands.add_parser("instruments", help="which GM instrument family plays (fluidsynth)")
    instruments.add_argument("--families", type=lambda text: tuple(text.split(",")), default=tuple(GM_FAMILIES),
                             help=f"comma-separated, from {','.join(GM_FAMILIES)}")
    instruments.add_argument("--programs-per-family", type=int, default=8)
    instruments.add_argument("--clips-per-program", type=int, default=6)
    pitch = commands.add_parser("pitch", help="which pitch class sounds (fluidsynth)")
    pitch.add_argument("--programs", type=lambda text: tuple(int(p) for p in text.split(",")), default=PITCH_PROGRAMS,
                       help="comma-separated GM programs (0-127)")
    pitch.add_argument("--clips-per-class", type=int, default=2, help="per program")
    synthetic_parser = commands.add_parser("synthetic", help="which tempo the synthetic music has")
    synthetic_parser.add_argument("--clips-per-class", type=int, default=100)
    for sub in (instruments, pitch):
        sub.add_argument("--soundfont", default=DEFAULT_SOUNDFONT, help="a General MIDI .sf2")
    for sub in (instruments, pitch, synthetic_parser):
        sub.add_argument("--clip-seconds", type=float, default=2.0)
        sub.add_argument("--sample-rate", type=int, default=16000, help="Hz")
        sub.add_argument("--seed", type=int, default=0)
    for sub in (tracks, instruments, pitch, synthetic_parser):
        sub.add_argument("--out", required=True, help="the labelled folder to create")
        sub.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = vars(parser.parse_args(argv))
    command = args.pop("command")
    try:
        if command == "tracks":
            lines = make_tracks(args.pop("corpus"), args.pop("out"), **args)
        else:
            make = {"instruments": make_instruments, "pitch": make_pitch, "synthetic": make_synthetic}[command]
            lines = make(args.pop("out"), **args)
    except AudiosortError as error:
        print(f"error: {as_flags(str(error))}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
