"""audiosort probe: labelled folders, group folds, C chosen on the train part, like-for-like rows (mean and std of
per-frame descriptors within one budget), the tempogram, the supervised reference, paired tests, probe.json merging,
one-line errors; and the probe sets of scripts/make_probe_sets.py."""

import csv
import json
import runpy
import shutil
from pathlib import Path

import keras
import librosa
import numpy as np
import pytest
import soundfile as sf

from audiosort import audio
from audiosort.data import synthetic
from audiosort.data.corpus import Corpus
from audiosort.embed import frame
from audiosort import probe as probe_module
from audiosort.config import EncoderConfig
from audiosort.models.encoders import build_encoder
from audiosort.probe import (
    C_GRID,
    COMPARISONS,
    LINEAR,
    LOGMEL_BANDS,
    encoder_layer_statistics,
    feature_map_layers,
    fit_and_predict,
    group_folds,
    layer_reader,
    log_mel,
    logmel_projection,
    paired_group_p_value,
    probe,
    random_encoder,
    random_projection,
    read_labelled,
    tempogram,
    time_statistics,
)
from audiosort.run import RunEncoder
from audiosort.run import read_probe
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


def write_labels(folder, rows, header="path,label,group"):
    folder.mkdir(parents=True, exist_ok=True)
    lines = [header, *(",".join(row) for row in rows)]
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder



def test_logmel_stats_tell_tone_white_and_brown_noise_apart_on_every_split(run_dir, sounds):
    result = run("probe", run_dir, "--data", sounds, "--supervised-steps", "0")
    assert result.exit_code == 0, result.output
    assert f"| {sounds.name} | 3 | 30 / 30 | 5 x 3 | 0.333 |" in result.stdout
    entry = json.loads((run_dir / "probe.json").read_text())["tasks"][sounds.name]
    assert entry["accuracy"]["logmel_stats"] == 1.0 and entry["accuracy_per_split"]["logmel_stats"] == [[1.0] * 5] * 3
    assert entry["accuracy_std"]["logmel_stats"] == 0.0 and entry["pooled"]["logmel_stats"] == 1.0
    assert entry["accuracy_per_seed"]["logmel_stats"] == [1.0] * 3 and entry["seed_spread"]["logmel_stats"] == 0.0
    assert entry["probe_seeds"] == [0, 1, 2] and entry["pooling"] == ["mean", "std", "max"]
    assert entry["chance"] == pytest.approx(1 / 3)
    assert (entry["n_clips"], entry["n_groups"], entry["n_splits"], entry["classes"]) == (30, 30, 5, ["brown", "noise", "tone"])
    assert entry["labels_from"] == "sub-folders" and entry["grouped_by"] == "file"
    # Mean, std and max of the 16-value embedding; of the tiny encoder's two ReLUs of 32 and its embedding; of the
    # 64 bands and of their projection to 128; the concatenations hold both sources.
    assert entry["feature_dims"] == {
        "encoder": 48, "random_encoder": 48, "encoder_layers": 240, "random_encoder_layers": 240, "logmel_stats": 192,
        "logmel_projection": 384, "tempogram": 128, "encoder_stats": 240, "random_encoder_stats": 240,
    }
    assert entry["dimension_budget"] == 192
    assert "supervised" not in entry["accuracy"] and entry["supervised_steps"] == 0
    for name in LINEAR:
        low, high = entry["interval"][name]
        assert low <= entry["pooled"][name] <= high
        assert [len(splits) for splits in entry["accuracy_per_split"][name]] == [5] * 3
        assert {c for per_seed in entry["chosen_c"][name] for c in per_seed} <= set(C_GRID)
        assert entry["accuracy_per_seed"][name] == pytest.approx(np.mean(entry["accuracy_per_split"][name], axis=1))
        assert entry["accuracy"][name] == pytest.approx(np.mean(entry["accuracy_per_split"][name]))
    assert set(entry["p_better"]) == {f"{a}>{b}" for a, b in COMPARISONS} == set(entry["difference"])
    assert read_probe(run_dir)[sounds.name].p_better == entry["p_better"]
    # The statistics alone are perfect, so the encoder beside them cannot be shown to add anything.
    assert entry["p_better"]["encoder_stats>logmel_stats"] == 1.0


def test_encoder_features_pool_every_relu_and_the_embedding_over_frames_every_quarter_chunk(run_dir):
    model = random_encoder(run_dir, seed=0)
    pcm = audio.to_int16(synthetic.white_noise(0.5, sample_rate=SAMPLE_RATE, rng=np.random.default_rng(0)))
    frames = frame(pcm, chunk_samples=model.chunk_samples, hop_samples=model.chunk_samples // 4)
    embeddings = model.embed(frames)
    assert len(embeddings) == (len(pcm) - model.chunk_samples) // (model.chunk_samples // 4) + 1
    assert feature_map_layers(model.encoder) == ["relu_0", "relu_1", "embedding"]
    features = encoder_layer_statistics(layer_reader(model), model, pcm)
    relus = keras.Model(model.encoder.inputs, [model.encoder.get_layer(name).output for name in ("relu_0", "relu_1")])
    expected = [time_statistics(np.asarray(x)) for x in relus.predict_on_batch(np.ascontiguousarray(frames))]
    expected.append(np.concatenate([embeddings.mean(axis=0), embeddings.std(axis=0), embeddings.max(axis=0)]))
    np.testing.assert_allclose(features, np.concatenate(expected), rtol=1e-4, atol=1e-5)


def test_a_convolutional_layer_is_pooled_over_its_positions_in_every_frame():
    # A 1-D conv map (time, channels): the clip's mean, std and max run over every time step of every frame.
    config = EncoderConfig(type="logmel1d", embedding_dim=8, filters=4, blocks=2, n_mels=16)
    chunk_samples = SAMPLE_RATE // 10
    keras.utils.set_random_seed(0)
    encoder = build_encoder(config, chunk_samples=chunk_samples, sample_rate=SAMPLE_RATE)
    model = RunEncoder(encoder, SAMPLE_RATE, chunk_samples, Path("encoder.keras"))
    pcm = audio.to_int16(synthetic.brown_noise(0.3, sample_rate=SAMPLE_RATE, rng=np.random.default_rng(1)))
    features = encoder_layer_statistics(layer_reader(model), model, pcm)
    names = feature_map_layers(encoder)
    assert names == ["block_0_relu", "block_1_relu", "embedding"]
    maps = keras.Model(encoder.inputs, [encoder.get_layer(name).output for name in names[:2]])
    frames = np.ascontiguousarray(frame(pcm, chunk_samples=chunk_samples, hop_samples=chunk_samples // 4))
    expected = [time_statistics(np.asarray(x).reshape(-1, x.shape[-1])) for x in maps.predict_on_batch(frames)]
    assert features.shape == (3 * (4 + 4 + 8),)  # two blocks of 4 channels (doubled every other block), D = 8
    np.testing.assert_allclose(features[: 3 * (4 + 4)], np.concatenate(expected), rtol=1e-4, atol=1e-5)


def test_logmel_projection_is_one_seeded_random_projection_of_the_log_mel_frames():
    y = synthetic.white_noise(0.5, sample_rate=SAMPLE_RATE, rng=np.random.default_rng(0))
    projection = random_projection(seed=0)
    assert projection.shape == (128, LOGMEL_BANDS)
    np.testing.assert_array_equal(random_projection(seed=0), projection)
    assert not np.allclose(random_projection(seed=1), projection)
    features = logmel_projection(log_mel(y, sample_rate=SAMPLE_RATE), projection)
    frames = log_mel(y, sample_rate=SAMPLE_RATE).T @ projection.T
    assert features.shape == (384,)
    np.testing.assert_allclose(features, np.concatenate([frames.mean(0), frames.std(0), frames.max(0)]), rtol=1e-5, atol=1e-4)


def test_tempogram_peaks_at_the_beat_period():
    # A click every 0.25 s (240 BPM) for 2 s: the onset autocorrelation peaks at 25 hops and its multiples.
    y = np.zeros(2 * SAMPLE_RATE, dtype=np.float32)
    for start in range(0, len(y), SAMPLE_RATE // 4):
        y[start : start + 80] = np.hanning(80)
    features = tempogram(log_mel(y, sample_rate=SAMPLE_RATE), sample_rate=SAMPLE_RATE)
    assert features.shape == (128,) and np.all(np.abs(features) <= 1.0)
    assert int(np.argmax(features[5:40])) + 5 + 1 == 25  # features[k] is lag k + 1
    assert features[24] > features[11] + 0.3  # half the period falls between clicks
    louder = tempogram(log_mel(4 * y, sample_rate=SAMPLE_RATE), sample_rate=SAMPLE_RATE)
    np.testing.assert_allclose(louder, features, atol=0.05)
    assert not np.any(tempogram(log_mel(np.zeros(SAMPLE_RATE, dtype=np.float32), sample_rate=SAMPLE_RATE), sample_rate=SAMPLE_RATE))


def test_supervised_reference_learns_the_labels_on_its_train_parts(run_dir, sounds):
    entry = probe(run_dir, sounds, supervised_steps=60, n_probe_seeds=2).tasks[sounds.name]
    # Trained on the splits of the first probe seed only: one training per split, whatever the seeds.
    assert entry["supervised_steps"] == 60 and [len(s) for s in entry["accuracy_per_split"]["supervised"]] == [5]
    assert entry["accuracy_per_seed"]["supervised"] == [entry["accuracy"]["supervised"]]
    assert entry["accuracy"]["supervised"] >= 0.8, entry["accuracy"]
    table = (run_dir / "probe.md").read_text()
    assert f"{entry['accuracy']['supervised']:.3f} ± {entry['accuracy_std']['supervised']:.3f}" in table


def test_projection_to_the_budget_is_fit_on_the_train_clips_only():
    rng = np.random.default_rng(0)
    labels = np.array(["a", "b"])[rng.integers(0, 2, 60)]
    features = rng.normal(size=(60, 40)) + (labels == "a")[:, None] * 0.5
    groups = np.arange(60).astype(str)
    test_features = rng.normal(size=(10, 40)) + 0.25
    predicted, _ = fit_and_predict(features, labels, groups, test_features, seed=0, max_dims=8)
    more, _ = fit_and_predict(features, labels, groups, np.vstack([test_features, 50 * test_features]), seed=0, max_dims=8)
    np.testing.assert_array_equal(more[:10], predicted)
    # Eight components of forty noisy values do not all carry the label direction: the answers change.
    # One test set for both: two random sets would give different answers with or without the projection.
    probe_set = rng.normal(size=(200, 40))
    full, _ = fit_and_predict(features, labels, groups, probe_set, seed=0)
    projected, _ = fit_and_predict(features, labels, groups, probe_set, seed=0, max_dims=1)
    assert np.any(full != projected)


def test_two_classes_of_four_clips_take_two_splits(run_dir, sounds, tmp_path):
    """Issue 29: the inner folds counted groups over all classes, so 2 x 4 clips with --splits 2 asked for 3 folds of 2."""
    data = tmp_path / "small"
    for label in ("tone", "noise"):
        shutil.copytree(sounds / label, data / label, ignore=lambda folder, names: [n for n in names if n[-5] not in "0123"])
    result = run("probe", run_dir, "--data", data, "--splits", "2", "--supervised-steps", "0", "--probe-seeds", "1")
    assert result.exit_code == 0, result.output
    assert read_probe(run_dir)["small"].entry["accuracy_per_split"]["logmel_stats"][0] == [1.0, 1.0]


def test_a_labels_csv_from_a_spreadsheet_with_a_byte_order_mark_is_read(sounds, tmp_path):
    rows = [(str(sounds / label / f"{label}-{k}.wav"), label, f"{label}{k}") for label in ("tone", "noise") for k in range(3)]
    folder = write_labels(tmp_path / "excel", rows)
    (folder / "labels.csv").write_bytes(b"\xef\xbb\xbf" + (folder / "labels.csv").read_bytes())
    labelled = read_labelled(folder)
    assert labelled.labels_from == "labels.csv" and labelled.grouped_by == "group column"
    assert labelled.labels == ("tone",) * 3 + ("noise",) * 3


def tone_groups(folder, *, grouped):
    """10 groups, each a tone of its own frequency in 4 clips; labels a/b alternate over groups, unrelated to sound."""
    rng = np.random.default_rng(0)
    rows = []
    for group, frequency in enumerate(np.geomspace(200, 4000, 10)):
        for k in range(4):
            y = synthetic.tone(CLIP_SECONDS, sample_rate=SAMPLE_RATE, frequency_hz=float(frequency), method="exact", rng=rng)
            path = f"g{group}/{k}.wav"
            audio.write_wav(folder / path, (y + rng.normal(0, 0.01, len(y))).astype(np.float32), sample_rate=SAMPLE_RATE)
            rows.append((path, "ab"[group % 2], f"g{group}"))
    return write_labels(folder, rows if grouped else [row[:2] for row in rows], header="path,label,group" if grouped else "path,label")


def test_group_folds_keep_a_recording_on_one_side(run_dir, tmp_path):
    # Labels that only the recording tells: split by file, the probe recognises the recording and
    # scores near 1; split by group, it must hear the label in sounds it never trained on, and cannot.
    by_file = probe(run_dir, tone_groups(tmp_path / "by-file", grouped=False), supervised_steps=0, n_probe_seeds=1).tasks["by-file"]
    by_group = probe(run_dir, tone_groups(tmp_path / "by-group", grouped=True), supervised_steps=0, n_probe_seeds=1).tasks["by-group"]
    assert by_file["accuracy"]["logmel_stats"] >= 0.9 and by_file["grouped_by"] == "file"
    assert by_group["accuracy"]["logmel_stats"] <= 0.7 and by_group["grouped_by"] == "group column"
    assert by_group["n_groups"] == 10 and by_group["labels_from"] == "labels.csv"


def test_group_folds_are_seeded_stratified_and_never_split_a_group(tmp_path):
    data = tone_groups(tmp_path / "tones", grouped=True)
    labelled = read_labelled(data)
    fold = group_folds(labelled, n_splits=5, seed=0)
    groups, labels = np.array(labelled.groups), np.array(labelled.labels)
    for group in set(labelled.groups):
        assert len(set(fold[groups == group].tolist())) == 1
    for k in range(5):
        assert set(labels[fold == k].tolist()) == {"a", "b"}  # 5 groups per class: one of each in every fold
    np.testing.assert_array_equal(group_folds(labelled, n_splits=5, seed=0), fold)
    assert any(not np.array_equal(group_folds(labelled, n_splits=5, seed=seed), fold) for seed in range(1, 5))


def test_regularization_is_chosen_without_seeing_the_test_clips():
    rng = np.random.default_rng(0)
    labels = np.array(["a", "b"])[rng.integers(0, 2, 40)]
    features = rng.normal(size=(40, 20)) + (labels == "a")[:, None] * 0.5
    groups = np.arange(40).astype(str)
    test_features = rng.normal(size=(10, 20))
    predicted, chosen = fit_and_predict(features, labels, groups, test_features, seed=0)
    other_predicted, other_chosen = fit_and_predict(features, labels, groups, np.vstack([test_features, 100 + test_features]), seed=0)
    assert chosen in C_GRID and other_chosen == chosen
    np.testing.assert_array_equal(other_predicted[:10], predicted)


def test_paired_group_test_sees_which_side_is_better():
    groups = np.repeat(np.arange(12), 3)
    better, worse = np.ones(36, dtype=bool), np.zeros(36, dtype=bool)
    assert paired_group_p_value(better, worse, groups) < 0.001
    assert paired_group_p_value(worse, better, groups) > 0.99
    assert paired_group_p_value(better, better, groups) == 1.0
    # Right on one more clip in each of 3 groups out of 12 is weak evidence: not significant.
    slightly = better.copy()
    slightly[[0, 3, 6]] = False
    assert 0.05 < paired_group_p_value(better, slightly, groups) < 1.0


def test_one_call_probes_a_suite_and_keeps_earlier_tasks(run_dir, sounds, tmp_path):
    other = tmp_path / "two-kinds"
    for label in ("tone", "brown"):
        shutil.copytree(sounds / label, other / label)
    first = probe(run_dir, sounds, supervised_steps=0, n_probe_seeds=1).tasks[sounds.name]
    report = probe(run_dir, [other, tone_groups(tmp_path / "tones", grouped=True)], seed=1, supervised_steps=2, n_probe_seeds=1)
    tasks = json.loads((run_dir / "probe.json").read_text())["tasks"]
    assert list(tasks) == [sounds.name, "two-kinds", "tones"] and tasks == report.tasks and report.probed == ["two-kinds", "tones"]
    assert tasks[sounds.name] == first and tasks["two-kinds"]["seed"] == 1
    table = (run_dir / "probe.md").read_text()
    assert f"| {sounds.name} | 3 |" in table and "| two-kinds | 2 | 20 / 20 | 5 x 1 |" in table and "| tones | 2 | 40 / 10 | 5 x 1 |" in table
    # The first task ran without the supervised reference: a dash in its cell, a number in the others'.
    assert table.count(" | - | ") == 1 and "supervised" in tasks["tones"]["accuracy"]

    result = run("probe", run_dir, "--data", other, "--seed", "2", "--splits", "2", "--supervised-steps", "0", "--probe-seeds", "1")
    assert result.exit_code == 0, result.output
    tasks = json.loads((run_dir / "probe.json").read_text())["tasks"]
    assert list(tasks) == [sounds.name, "two-kinds", "tones"] and tasks["two-kinds"]["n_splits"] == 2


def test_probe_seeds_refit_the_classifiers_on_features_computed_once(run_dir, tmp_path, monkeypatch):
    data = tone_groups(tmp_path / "tones", grouped=True)
    passes = []
    read_layers = probe_module.encoder_layer_statistics
    monkeypatch.setattr(probe_module, "encoder_layer_statistics", lambda *args: passes.append(1) or read_layers(*args))
    entry = probe(run_dir, data, supervised_steps=0, n_splits=2, n_probe_seeds=3).tasks["tones"]
    assert len(passes) == 2 * 40  # the trained and the random encoder, once per clip, whatever the seeds
    assert entry["probe_seeds"] == [0, 1, 2] and entry["n_splits"] == 2
    labelled = read_labelled(data)
    # Each seed deals its own folds.
    assert len({tuple(group_folds(labelled, n_splits=2, seed=seed)) for seed in entry["probe_seeds"]}) > 1
    for name in LINEAR:
        per_seed = entry["accuracy_per_seed"][name]
        assert entry["accuracy"][name] == pytest.approx(np.mean(per_seed))
        assert entry["seed_spread"][name] == pytest.approx(max(per_seed) - min(per_seed))


def test_repeating_a_seed_does_not_sharpen_the_paired_test(run_dir, tmp_path, monkeypatch):
    # Three probe seeds that deal the same folds and fit the same classifiers repeat one measurement of each
    # group: averaged within groups, they leave every p-value as one seed gives it; counted as new groups, they would shrink it.
    data = tone_groups(tmp_path / "tones", grouped=True)
    deal, fit = probe_module.group_folds, probe_module.fit_and_predict
    monkeypatch.setattr(probe_module, "group_folds", lambda labelled, *, n_splits, seed: deal(labelled, n_splits=n_splits, seed=0))
    monkeypatch.setattr(probe_module, "fit_and_predict", lambda *args, seed, max_dims: fit(*args, seed=seed % 2, max_dims=max_dims))
    one = probe(run_dir, data, supervised_steps=0, n_splits=2, n_probe_seeds=1).tasks["tones"]
    three = probe(run_dir, data, supervised_steps=0, n_splits=2, n_probe_seeds=3).tasks["tones"]
    assert three["accuracy_per_seed"]["encoder"] == [one["accuracy"]["encoder"]] * 3
    assert three["p_better"] == pytest.approx(one["p_better"])
    assert min(one["p_better"].values()) < 1.0  # some comparison has evidence to sharpen


def test_entries_of_earlier_probes_are_dropped(run_dir, sounds):
    one_split = {"accuracy": {"encoder": 0.5}}
    mean_pooled = {"accuracy": {"encoder": 0.5}, "n_splits": 5, "p_encoder_better": {"logmel_stats": 0.5}}
    # Mean and std pooling, one probe seed: before issue 27's protocol.
    one_seed = {"accuracy": {"encoder": 0.5}, "n_splits": 5, "p_better": {"encoder>random_encoder": 0.5}}
    tasks = {"old": one_split, "mean-pooled": mean_pooled, "one-seed": one_seed}
    (run_dir / "probe.json").write_text(json.dumps({"tasks": tasks}))
    assert list(probe(run_dir, sounds, supervised_steps=0, n_probe_seeds=1).tasks) == [sounds.name]


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("missing", "no labelled folder"),
        ("empty", "neither labels.csv nor class sub-folders"),
        ("class without audio", "holds no audio files"),
        ("loose files", "outside class sub-folders"),
        ("one class", "a probe needs at least 2"),
        ("listed twice", "is listed twice (lines 2 and 4)"),
        ("unknown file", "no such file 'nowhere/x.wav'"),
        ("split column", "the probe draws its own splits: give a group column"),
        ("empty group", "empty group for"),
        ("no label column", "needs the header path,label[,group]"),
        ("copy", "hold the same bytes"),
        ("too few groups", "class 'a' has 3 groups; 5 splits need at least 5"),
        ("too short", "less than one chunk of the run"),
        ("symlink loop", "no labelled folder"),
        ("one group per class to train on", "trains on one file per class"),
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
    elif case == "listed twice":
        write_labels(data, [(str(tone), "a", "1"), (str(noise), "b", "2"), (str(tone), "a", "3")])
    elif case == "unknown file":
        write_labels(data, [(str(tone), "a", "1"), ("nowhere/x.wav", "b", "2")])
    elif case == "split column":
        write_labels(data, [(str(tone), "a", "train"), (str(noise), "b", "test")], header="path,label,split")
    elif case == "empty group":
        write_labels(data, [(str(tone), "a", "1"), (str(noise), "b", "")])
    elif case == "no label column":
        write_labels(data, [(str(tone), "a")], header="path,class")
    elif case == "copy":
        shutil.copytree(sounds / "tone", data / "tone")
        shutil.copytree(sounds / "noise", data / "noise")
        shutil.copy(tone, data / "noise" / "renamed.wav")
    elif case == "too few groups":
        rows = [(str(sounds / "tone" / f"tone-{k}.wav"), "a", str(k % 3)) for k in range(10)]
        write_labels(data, rows + [(str(sounds / "noise" / f"noise-{k}.wav"), "b", f"n{k}") for k in range(10)])
    elif case == "too short":
        for index, label in enumerate(("a", "b")):
            (data / label).mkdir(parents=True)
            for k in range(5):
                level = 0.05 * (5 * index + k + 1)  # distinct bytes in every file
                sf.write(data / label / f"{k}.wav", np.full(320, level, dtype=np.float32), SAMPLE_RATE)  # 0.02 s < 0.05 s
    elif case == "symlink loop":
        data.symlink_to(data)
    elif case == "one group per class to train on":
        shutil.copytree(sounds / "tone", data / "tone", ignore=lambda folder, names: [n for n in names if n[-5] not in "01"])
        shutil.copytree(sounds / "noise", data / "noise", ignore=lambda folder, names: [n for n in names if n[-5] not in "01"])
        assert_one_line_error(run("probe", run_dir, "--data", data, "--splits", "2"), fragment)
        return
    assert_one_line_error(run("probe", run_dir, "--data", data), fragment)
    assert not (run_dir / "probe.json").exists()


def test_one_split_and_missing_run_exit_2(run_dir, sounds, tmp_path):
    assert_one_line_error(run("probe", run_dir, "--data", sounds, "--splits", "1"), "'--splits': 1 is not in the range x>=2")
    assert_one_line_error(run("probe", tmp_path / "no-run", "--data", sounds), "no run folder")
    assert_one_line_error(run("probe", run_dir, "--data", sounds, "--data", sounds), "both named")
    assert_one_line_error(run("probe", run_dir, "--data", sounds, "--supervised-steps", "-1"), "'--supervised-steps': -1 is not in the range x>=0")
    assert_one_line_error(run("probe", run_dir, "--data", sounds, "--probe-seeds", "0"), "'--probe-seeds': 0 is not in the range x>=1")


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


def test_tracks_probe_set_cuts_stretches_apart_and_groups_by_stretch(music_corpus, tmp_path):
    out = tmp_path / "tracks"
    args = ["tracks", str(music_corpus), "--out", str(out), "--clip-seconds", "1.0", "--clips-per-track", "10", "--blocks", "2"]
    assert SCRIPT["main"](args) == 0
    corpus = Corpus(music_corpus)
    held_out = {Path(t["source"]).stem: t for t in corpus.track_entries if t["split"] in ("val", "test")}
    with open(out / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {row["label"] for row in rows} == set(held_out) and len(held_out) >= 2
    for label, track in held_out.items():
        clips = [row for row in rows if row["label"] == label]
        stretches = [
            [(float(r["start_seconds"]), float(r["end_seconds"])) for r in clips if r["group"] == f"{label}#{block}"]
            for block in range(2)
        ]
        assert all(stretches) and sum(map(len, stretches)) == len(clips) <= 10
        assert max(end for _, end in stretches[0]) + 2.0 <= min(start for start, _ in stretches[1])  # the 2 s gap
        for row in clips:
            start = round(float(row["start_seconds"]) * SAMPLE_RATE)
            pcm = audio.to_int16(audio.load(out / row["path"], sample_rate=SAMPLE_RATE))
            np.testing.assert_array_equal(pcm, corpus.track_audio(track["id"])[start : start + SAMPLE_RATE])
    labelled = read_labelled(out)
    assert labelled.labels_from == "labels.csv" and labelled.grouped_by == "group column"


def test_midi_variable_length_quantities_match_the_standard():
    # The examples of the Standard MIDI File specification.
    for value, encoded in [(0, "00"), (0x7F, "7F"), (0x80, "81 00"), (0x2000, "C0 00"), (0x3FFF, "FF 7F"), (0x4000, "81 80 00"), (0x0FFFFFFF, "FF FF FF 7F")]:
        assert SCRIPT["_variable_length"](value) == bytes.fromhex(encoded)
    midi = SCRIPT["midi_file"]([(0.5, bytes([0x90, 60, 100])), (0.0, bytes([0xC0, 5]))])
    assert midi[:14] == bytes.fromhex("4d546864 00000006 0000 0001 03e8")
    # Tempo, program change at 0, note-on 500 ms (= 500 ticks, 83 74) later, end of track.
    assert midi[22:] == bytes.fromhex("00ff51030f4240 00c005 8374903c64 00ff2f00")


FLUIDSYNTH = shutil.which("fluidsynth") is not None and Path(SCRIPT["DEFAULT_SOUNDFONT"]).is_file()
needs_fluidsynth = pytest.mark.skipif(not FLUIDSYNTH, reason="needs fluidsynth and fluid-soundfont-gm (apt-get install)")


@needs_fluidsynth
def test_pitch_set_sounds_the_pitch_class_it_names(tmp_path):
    out = tmp_path / "pitch"
    assert SCRIPT["main"](["pitch", "--out", str(out), "--programs", "0,40", "--clips-per-class", "1", "--clip-seconds", "1.0"]) == 0
    labelled = read_labelled(out)
    assert len(labelled.files) == 24 and set(labelled.groups) == {"program000", "program040"}
    names = [name.replace("#", "sharp") for name in SCRIPT["PITCH_CLASSES"]]
    for file, label in zip(labelled.files, labelled.labels):
        y = audio.load(file, sample_rate=SAMPLE_RATE)
        assert len(y) == SAMPLE_RATE and 0.29 < np.max(np.abs(y)) < 0.81
        chroma = librosa.feature.chroma_cqt(y=y, sr=SAMPLE_RATE).mean(axis=1)
        assert names[int(chroma.argmax())] == label


@needs_fluidsynth
def test_instrument_set_groups_clips_by_program(tmp_path):
    out = tmp_path / "instruments"
    args = ["instruments", "--out", str(out), "--families", "piano,bass", "--programs-per-family", "2", "--clips-per-program", "2"]
    assert SCRIPT["main"](args) == 0
    labelled = read_labelled(out)
    assert sorted(labelled.labels) == ["bass"] * 4 + ["piano"] * 4
    assert set(labelled.groups) == {"program000", "program001", "program032", "program033"}
    spectra = {}
    for file, label in zip(labelled.files, labelled.labels):
        y = audio.load(file, sample_rate=SAMPLE_RATE)
        spectra.setdefault(label, []).append(librosa.feature.spectral_centroid(y=y, sr=SAMPLE_RATE).mean())
    assert max(spectra["bass"]) < min(spectra["piano"])  # bass melodies sit two octaves lower


def test_rendering_without_fluidsynth_exits_2_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert SCRIPT["main"](["pitch", "--out", str(tmp_path / "p")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "apt-get install fluidsynth" in error
