"""audiosort probe: labelled folders, given and stratified splits, three features against chance, probe.json
merging, one-line errors; and the probe sets of scripts/make_probe_sets.py."""

import csv
import json
import runpy
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiosort import audio
from audiosort.data import synthetic
from audiosort.data.corpus import Corpus
from audiosort.probe import FEATURES, probe, read_labelled
from conftest import SAMPLE_RATE, assert_one_line_error, run

SCRIPT = runpy.run_path(str(Path(__file__).parents[1] / "scripts" / "make_probe_sets.py"))
CLIP_SECONDS = 0.5
RENDER = {
    # An exact tone with a random phase: every clip differs in its bytes, none in its spectrum.
    "tone": lambda rng: synthetic.tone(CLIP_SECONDS, sample_rate=SAMPLE_RATE, frequency_hz=220.0, method="exact", rng=rng),
    "noise": lambda rng: synthetic.white_noise(CLIP_SECONDS, sample_rate=SAMPLE_RATE, rng=rng),
    "brown": lambda rng: synthetic.brown_noise(CLIP_SECONDS, sample_rate=SAMPLE_RATE, rng=rng),
}


@pytest.fixture(scope="module")
def sounds(tmp_path_factory):
    """One sub-folder per class, 10 clips of 0.5 s each: a 220 Hz tone, white noise, brown noise."""
    folder = tmp_path_factory.mktemp("sounds")
    rng = np.random.default_rng(0)
    for label, render in RENDER.items():
        for k in range(10):
            audio.write_wav(folder / label / f"{label}-{k}.wav", render(rng), sample_rate=SAMPLE_RATE)
    return folder


@pytest.fixture
def run_dir(tiny_run, tmp_path):
    """A copy of the session's tiny run, so probes may write into it."""
    return Path(shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoints", "logs")))


def write_labels(folder, rows, header="path,label,split"):
    folder.mkdir(parents=True, exist_ok=True)
    lines = [header, *(",".join(row) for row in rows)]
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_logmel_stats_tell_tone_white_and_brown_noise_apart(run_dir, sounds):
    result = run("probe", run_dir, "--data", sounds)
    assert result.exit_code == 0, result.output
    assert f"| {sounds.name} | 3 | 21 / 9 |" in result.stdout
    entry = json.loads((run_dir / "probe.json").read_text())["tasks"][sounds.name]
    assert entry["accuracy"]["logmel_stats"] == 1.0
    assert entry["chance"] == pytest.approx(1 / 3)  # 3 test clips per class, stratified
    assert (entry["n_train"], entry["n_test"], entry["classes"]) == (21, 9, ["brown", "noise", "tone"])
    assert entry["labels_from"] == "sub-folders" and entry["split"].startswith("stratified")
    assert entry["feature_dims"] == {"encoder": 16, "random_encoder": 16, "logmel_stats": 128}
    for name in FEATURES:
        low, high = entry["interval"][name]
        assert low <= entry["accuracy"][name] <= high
        assert entry["correct"][name] == round(entry["accuracy"][name] * 9)
    assert set(entry["p_encoder_better"]) == {"random_encoder", "logmel_stats"}


def test_given_split_is_used_as_is(run_dir, sounds, tmp_path):
    # Train calls tones "a" and noise "b", test the other way round: every feature that hears
    # the difference scores 0, which a split of its own (mixing both sides) never would.
    rows = [(f"{sounds}/tone/tone-{k}.wav", "a", "train") for k in range(6)]
    rows += [(f"{sounds}/noise/noise-{k}.wav", "b", "train") for k in range(6)]
    rows += [(f"{sounds}/noise/noise-{k}.wav", "a", "test") for k in range(6, 10)]
    rows += [(f"{sounds}/tone/tone-{k}.wav", "b", "test") for k in range(6, 8)]
    data = write_labels(tmp_path / "swapped", rows)
    report = probe(run_dir, data)
    entry = report.tasks["swapped"]
    assert (entry["n_train"], entry["n_test"], entry["split"], entry["labels_from"]) == (12, 6, "given", "labels.csv")
    assert entry["accuracy"]["logmel_stats"] == 0.0
    assert entry["chance"] == pytest.approx(4 / 6)


def test_probing_a_second_folder_adds_a_task_and_keeps_the_first(run_dir, sounds, tmp_path):
    other = tmp_path / "two-kinds"
    for label in ("tone", "brown"):
        shutil.copytree(sounds / label, other / label)
    first = probe(run_dir, sounds).tasks[sounds.name]
    report = probe(run_dir, other, seed=1)
    tasks = json.loads((run_dir / "probe.json").read_text())["tasks"]
    assert list(tasks) == [sounds.name, "two-kinds"] and tasks == report.tasks
    assert tasks[sounds.name] == first and tasks["two-kinds"]["seed"] == 1
    table = (run_dir / "probe.md").read_text()
    assert f"| {sounds.name} | 3 |" in table and "| two-kinds | 2 |" in table

    probe(run_dir, other, seed=2)
    tasks = json.loads((run_dir / "probe.json").read_text())["tasks"]
    assert list(tasks) == [sounds.name, "two-kinds"] and tasks["two-kinds"]["seed"] == 2


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("missing", "no labelled folder"),
        ("empty", "neither labels.csv nor class sub-folders"),
        ("class without audio", "holds no audio files"),
        ("loose files", "outside class sub-folders"),
        ("one class", "a probe needs at least 2"),
        ("both sides", "listed in both train and test"),
        ("unknown file", "no such file 'nowhere/x.wav'"),
        ("bad split", "split 'dev' is not one of train, test"),
        ("no label column", "needs the header path,label[,split]"),
        ("copy", "hold the same bytes"),
        ("test only class", "class 'b' has test clips but no train clips"),
        ("too short", "less than one chunk of the run"),
    ],
)
def test_bad_labelled_folder_exits_2_with_one_line(case, fragment, run_dir, sounds, tmp_path):
    data = tmp_path / "data"
    tone, noise = sounds / "tone" / "tone-0.wav", sounds / "noise" / "noise-0.wav"
    if case == "empty":
        data.mkdir()
    elif case == "class without audio":
        shutil.copytree(sounds / "tone", data / "tone")
        (data / "noise").mkdir()
    elif case == "loose files":
        shutil.copytree(sounds / "tone", data / "tone")
        shutil.copy(noise, data)
    elif case == "one class":
        shutil.copytree(sounds / "tone", data / "tone")
    elif case == "both sides":
        write_labels(data, [(str(tone), "a", "train"), (str(noise), "b", "train"), (str(tone), "a", "test")])
    elif case == "unknown file":
        write_labels(data, [(str(tone), "a", "train"), ("nowhere/x.wav", "b", "test")])
    elif case == "bad split":
        write_labels(data, [(str(tone), "a", "train"), (str(noise), "b", "dev")])
    elif case == "no label column":
        write_labels(data, [(str(tone), "a")], header="path,class")
    elif case == "copy":
        shutil.copytree(sounds / "tone", data / "tone")
        shutil.copytree(sounds / "noise", data / "noise")
        shutil.copy(tone, data / "noise" / "renamed.wav")
    elif case == "test only class":
        write_labels(data, [(str(tone), "a", "train"), (str(noise), "b", "test")])
    elif case == "too short":
        for index, label in enumerate(("a", "b")):
            (data / label).mkdir(parents=True)
            for k in range(2):
                level = 0.1 * (2 * index + k + 1)  # distinct bytes in every file
                sf.write(data / label / f"{k}.wav", np.full(320, level, dtype=np.float32), SAMPLE_RATE)  # 0.02 s < 0.05 s
    assert_one_line_error(run("probe", run_dir, "--data", data), fragment)
    assert not (run_dir / "probe.json").exists()


def test_test_fraction_outside_0_1_and_missing_run_exit_2(run_dir, sounds, tmp_path):
    assert_one_line_error(run("probe", run_dir, "--data", sounds, "--test-fraction", "1.0"), "strictly between 0 and 1")
    assert_one_line_error(run("probe", tmp_path / "no-run", "--data", sounds), "no run folder")


def test_synthetic_probe_set_has_one_folder_per_tempo_and_is_seeded(tmp_path, capsys):
    args = ["synthetic", "--clips-per-class", "3", "--clip-seconds", "0.5"]
    assert SCRIPT["main"]([*args, "--out", str(tmp_path / "a")]) == 0
    assert SCRIPT["main"]([*args, "--out", str(tmp_path / "b")]) == 0
    labelled = read_labelled(tmp_path / "a")
    assert sorted(set(labelled.labels)) == ["110bpm", "130bpm", "150bpm", "90bpm"] and len(labelled.files) == 12
    for file in labelled.files:
        y = audio.load(file, sample_rate=SAMPLE_RATE)
        assert len(y) == 8000 and 0.29 < np.max(np.abs(y)) < 0.81
        assert (tmp_path / "b" / file.relative_to(tmp_path / "a")).read_bytes() == file.read_bytes()
    capsys.readouterr()
    assert SCRIPT["main"]([*args, "--out", str(tmp_path / "a")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "already exists; pass --overwrite" in error
    assert not list(tmp_path.glob(".a.partial-*"))


def test_tracks_probe_set_cuts_held_out_tracks_with_no_audio_on_both_sides(music_corpus, tmp_path):
    out = tmp_path / "tracks"
    args = ["tracks", str(music_corpus), "--out", str(out), "--clip-seconds", "1.0", "--clips-per-track", "8"]
    assert SCRIPT["main"](args) == 0
    corpus = Corpus(music_corpus)
    held_out = {Path(t["source"]).stem: t for t in corpus.track_entries if t["split"] in ("val", "test")}
    with open(out / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {row["label"] for row in rows} == set(held_out) and len(held_out) >= 2
    for label, track in held_out.items():
        clips = [row for row in rows if row["label"] == label]
        train = [(float(r["start_seconds"]), float(r["end_seconds"])) for r in clips if r["split"] == "train"]
        test = [(float(r["start_seconds"]), float(r["end_seconds"])) for r in clips if r["split"] == "test"]
        assert train and test and len(train) + len(test) <= 8 and len(test) <= 2
        assert max(end for _, end in train) + 2.0 <= min(start for start, _ in test)  # the 2 s gap
        for row in clips:
            start = round(float(row["start_seconds"]) * SAMPLE_RATE)
            pcm = audio.to_int16(audio.load(out / row["path"], sample_rate=SAMPLE_RATE))
            np.testing.assert_array_equal(pcm, corpus.track_audio(track["id"])[start : start + SAMPLE_RATE])
    labelled = read_labelled(out)
    assert labelled.labels_from == "labels.csv" and set(labelled.splits) == {"train", "test"}
