"""Build labelled folders for `audiosort probe RUN_DIR --data OUT`: tasks that have nothing to do with order.

    python scripts/make_probe_sets.py tracks data/warzone --out data/probe-tracks
    python scripts/make_probe_sets.py synthetic --out data/probe-synthetic

``tracks CORPUS``: which track does a 2 s clip come from? Only the corpus's
held-out tracks (splits val and test: no run trained on this corpus heard them)
are used, one class each. Each track is cut into non-overlapping clips, end to
end; the first 70 % of its time gives train clips and the last 30 % test clips,
with 2 s left out between the two, so no audio, and no pair of adjacent clips,
is on both sides. Near-silent clips (RMS under -60 dB full scale) are dropped
and at most 60 clips per track kept, evenly spaced over each part. OUT holds
``<track>/<start>s.wav`` and ``labels.csv`` with path,label,split and where
each clip was cut (source, start_seconds, end_seconds).

``synthetic``: how fast is the procedural music (``audiosort.data.synthetic``)?
Four classes of tempo (90, 110, 130 and 150 BPM); every clip is cut from its
own freshly drawn track (key, chords, rhythms, timbres and sections drawn as
for any track, so only the tempo tells the classes apart) at a random start,
with a random level. Tempo is rhythm, which a sorter must hear to order
chunks, and which band-energy statistics see only indirectly. Every clip is
rendered on its own, so a stratified split of files is fair: OUT holds one
sub-folder per class.

Both write into a temporary folder beside OUT and rename it into place; OUT
also gets ``probe-set.json`` with the settings and counts. Exit 2 with one line
on bad input.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
from pathlib import Path

import numpy as np

from audiosort import _files, audio
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


def track_clips(
    pcm: np.ndarray, *, clip_samples: int, gap_samples: int, test_share: float, max_clips: int
) -> tuple[np.ndarray, np.ndarray]:
    """Where to cut the train and test clips of one track.

    Parameters
    ----------
    pcm : np.ndarray [shape=(n_samples,), dtype=int16]
        The track.
    clip_samples : int > 0, keyword-only
        Clip length, in samples.
    gap_samples : int >= 0, keyword-only
        Samples left out between the train part and the test part.
    test_share : float in (0, 1), keyword-only
        The last ``round(test_share * n_samples)`` samples form the test part.
    max_clips : int >= 2, keyword-only
        Clips kept at most, ``round(max_clips * test_share)`` (at least 1) of
        them test clips.

    Returns
    -------
    train_starts, test_starts : np.ndarray [shape=(k,), dtype=int64]
        First sample of each clip, ascending. Clips lie end to end within
        their part (the train part starts at 0, the test part ``gap_samples``
        after the train part's end), skipping near-silent ones and keeping an
        evenly spaced subset where there are more than allowed.
    """
    boundary = len(pcm) - round(test_share * len(pcm))
    n_test_kept = max(1, round(max_clips * test_share))
    parts = (
        (np.arange(0, boundary - clip_samples + 1, clip_samples, dtype=np.int64), max_clips - n_test_kept),
        (np.arange(boundary + gap_samples, len(pcm) - clip_samples + 1, clip_samples, dtype=np.int64), n_test_kept),
    )
    kept = []
    for starts, allowed in parts:
        rms = np.array([np.sqrt(np.mean(audio.from_int16(pcm[start : start + clip_samples]) ** 2)) for start in starts])
        starts = starts[rms >= QUIET_RMS] if len(starts) else starts
        if len(starts) > allowed:
            starts = starts[np.unique(np.round(np.linspace(0, len(starts) - 1, allowed)).astype(np.int64))]
        kept.append(starts)
    return kept[0], kept[1]


def make_tracks(
    corpus_dir: str | Path,
    out: str | Path,
    *,
    clip_seconds: float = 2.0,
    test_share: float = 0.3,
    gap_seconds: float = 2.0,
    clips_per_track: int = 60,
    overwrite: bool = False,
) -> list[str]:
    """Write the "which track" set of a corpus's held-out tracks (module docstring); return summary lines."""
    corpus = Corpus(corpus_dir)
    sample_rate = corpus.sample_rate
    clip_samples = round(clip_seconds * sample_rate)
    if clip_samples < 1 or gap_seconds < 0 or not 0 < test_share < 1 or clips_per_track < 2:
        raise InputError(
            f"need --clip-seconds > 0, --gap-seconds >= 0, 0 < --test-share < 1 and --clips-per-track >= 2; got "
            f"{clip_seconds}, {gap_seconds}, {test_share}, {clips_per_track}"
        )
    entries = [entry for entry in corpus.track_entries if entry["split"] in HELD_OUT_SPLITS]
    if not entries:
        raise InputError(f"corpus {corpus.path} has no val or test tracks")
    rows, tracks, skipped, labels = [], [], [], set()
    with _files.new_folder(out, overwrite=overwrite, what="probe set") as tmp:
        for entry in entries:
            pcm = corpus.track_audio(entry["id"])
            train_starts, test_starts = track_clips(
                pcm,
                clip_samples=clip_samples,
                gap_samples=round(gap_seconds * sample_rate),
                test_share=test_share,
                max_clips=clips_per_track,
            )
            if not len(train_starts) or not len(test_starts):
                skipped.append(f"{entry['source']} ({len(pcm) / sample_rate:.1f} s: too short or too quiet)")
                continue
            label = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(entry["source"]).stem)
            label = label if label not in labels else f"{label}-{entry['id']}"
            labels.add(label)
            for split, starts in (("train", train_starts), ("test", test_starts)):
                for start in starts:
                    path = f"{label}/{start / sample_rate:08.3f}s.wav"
                    audio.write_wav(tmp / path, np.asarray(pcm[start : start + clip_samples]), sample_rate=sample_rate)
                    rows.append([path, label, split, entry["source"], start / sample_rate, (start + clip_samples) / sample_rate])
            tracks.append(
                {"label": label, "source": entry["source"], "corpus_split": entry["split"],
                 "train_clips": len(train_starts), "test_clips": len(test_starts)}
            )
        if len(tracks) < 2:
            raise InputError(f"corpus {corpus.path} has {len(tracks)} held-out track long enough; a probe needs 2")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["path", "label", "split", "source", "start_seconds", "end_seconds"])
        writer.writerows(rows)
        (tmp / "labels.csv").write_text(buffer.getvalue())
        settings = {
            "kind": "tracks", "corpus": str(corpus.path.resolve()), "splits": list(HELD_OUT_SPLITS),
            "sample_rate": sample_rate, "clip_seconds": clip_seconds, "test_share": test_share,
            "gap_seconds": gap_seconds, "clips_per_track": clips_per_track, "quiet_rms": QUIET_RMS,
            "tracks": tracks, "skipped": skipped,
        }
        (tmp / "probe-set.json").write_text(json.dumps(settings, indent=1) + "\n")
    n_train = sum(track["train_clips"] for track in tracks)
    n_test = sum(track["test_clips"] for track in tracks)
    return [
        f"{len(tracks)} held-out tracks of {corpus.path}: {n_train} train and {n_test} test clips of {clip_seconds} s",
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
    return (clip * (rng.uniform(0.3, 0.8) / peak if peak > 0 else 0.0)).astype(np.float32)


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
    tracks.add_argument("--test-share", type=float, default=0.3, help="share of each track's time (its end) for test")
    tracks.add_argument("--gap-seconds", type=float, default=2.0, help="left out between a track's train and test parts")
    tracks.add_argument("--clips-per-track", type=int, default=60)
    synthetic_parser = commands.add_parser("synthetic", help="which tempo the synthetic music has")
    synthetic_parser.add_argument("--clips-per-class", type=int, default=100)
    synthetic_parser.add_argument("--clip-seconds", type=float, default=2.0)
    synthetic_parser.add_argument("--sample-rate", type=int, default=16000, help="Hz")
    synthetic_parser.add_argument("--seed", type=int, default=0)
    for sub in (tracks, synthetic_parser):
        sub.add_argument("--out", required=True, help="the labelled folder to create")
        sub.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = vars(parser.parse_args(argv))
    command = args.pop("command")
    try:
        if command == "tracks":
            lines = make_tracks(args.pop("corpus"), args.pop("out"), **args)
        else:
            lines = make_synthetic(args.pop("out"), **args)
    except AudiosortError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
