"""The feature cache: it equals the model's front end, its twin model equals the full model, training on it works."""

from __future__ import annotations

import json
import os
import shutil

import keras
import numpy as np
import pytest

from audiosort.config import load_config
from audiosort import features
from audiosort.data.corpus import Corpus
from audiosort.data.prepare import prepare_synthetic
from audiosort import leaks
from audiosort.data.puzzles import PuzzleSpec, TrackTable, cut_chunks, draw_starts
from audiosort.errors import ConfigError
from audiosort.models import build_feature_model, build_model
from audiosort.models.front_end import front_end_inputs
from audiosort.train import compiled_model, train
from conftest import TINY_PUZZLE, assert_one_line_error, latest_eval, run

# 3 chunks of 0.05 s (800 samples: 5 hops of 10 ms at 16 kHz, three 25 ms frames), gaps 0-10 ms, a tiny logmel1d seam model.
CACHED = [
    "puzzle.chunk_seconds=0.05",
    "puzzle.pad_min_seconds=0.0",
    "puzzle.pad_max_seconds=0.01",
    "model.encoder.type=logmel1d",
    "model.encoder.filters=8",
    "model.encoder.blocks=1",
    "model.encoder.pooling=time",
    "model.encoder.embedding_dim=16",
    "model.sorter.type=pairwise",
    "model.sorter.hidden_units=16",
    "model.sorter.seam=true",
    "model.sorter.mismatch=true",
    "data.features=cached",
    "train.batch_size=16",
    "train.epochs=2",
    "train.steps_per_epoch=5",
    "data.val_puzzles=64",
]


@pytest.fixture(scope="module")
def corpus_path(tmp_path_factory):
    """40 s of synthetic music in 4 s tracks (its own, as the cache is written beside it)."""
    out = tmp_path_factory.mktemp("features") / "music"
    prepare_synthetic("music", out, duration_seconds=40, track_seconds=4, puzzle=TINY_PUZZLE, n_puzzles=64, progress=False)
    return out


def cached_config(corpus_path, *overrides):
    return load_config(None, ["name=cached", f"data.corpus={corpus_path}", *CACHED, *overrides])


def test_cached_rows_equal_the_model_front_end_at_any_grid_step(corpus_path):
    config = cached_config(corpus_path)
    front = features.FrontEnd.from_config(config)
    corpus = Corpus(corpus_path)
    cache = features.open_feature_cache(corpus, "train", front)
    model, encoder = build_model(config.model, n_chunks=3, chunk_samples=800, sample_rate=16000)
    tracks = corpus.tracks("train")
    rng = np.random.default_rng(1)
    rows = rng.integers(0, len(tracks), size=8)
    # Any 40-sample grid step (all four phases of the 160-sample hop) the chunk fits at, the last one included.
    assert front.grid_samples == 40
    starts = np.stack([rng.integers(0, tracks.frames[r] // 40 - 20 + 1, size=3) for r in rows])
    starts[0, 0] = tracks.frames[rows[0]] // 40 - 20
    starts[1] = [1, 6, 11]  # phases 1, 2 and 3 of the hop
    starts *= 40
    chunks = cut_chunks(tracks, rows, starts, chunk_samples=800)
    expected_frames, expected_edges = front_end_inputs(model, encoder, chunks, batch_size=4)
    frames, edges = cache.gather(rows, starts, chunk_samples=800)
    assert frames.shape == expected_frames.shape == (8, 3, 3, 64)
    assert edges.shape == expected_edges.shape == (8, 3, 2, 40)
    np.testing.assert_allclose(frames, expected_frames, rtol=2e-3, atol=2e-3)  # float16: 11 bits of mantissa
    np.testing.assert_allclose(edges, expected_edges, rtol=2e-3, atol=2e-3)
    # The tail is the chunk's end, the head its start: swapping them is far off.
    assert np.abs(edges[:, :, 0] - expected_edges[:, :, 1]).max() > 0.5


def test_the_feature_model_equals_the_full_model_on_grid_puzzles(corpus_path):
    config = cached_config(corpus_path)
    front = features.FrontEnd.from_config(config)
    corpus = Corpus(corpus_path)
    cache = features.open_feature_cache(corpus, "train", front)
    keras.utils.set_random_seed(0)
    model, encoder = build_model(config.model, n_chunks=3, chunk_samples=800, sample_rate=16000)
    twin = build_feature_model(model, encoder)
    assert twin.name == model.name and [w.path for w in twin.trainable_weights] and len(twin.weights) == len(model.weights)
    assert {id(w) for w in twin.weights} == {id(w) for w in model.weights}  # shared, not copied
    spec = front.grid_spec(PuzzleSpec.from_config(config.puzzle, sample_rate=16000))
    drawn = draw_starts(cache.tracks, spec, 32, rng=np.random.default_rng(2))
    chunks = cut_chunks(cache.tracks, drawn.rows, drawn.starts, chunk_samples=800)
    # Move every weight off its initial value, so that a twin reading other layers could not agree by chance.
    for weight in model.trainable_weights:
        weight.assign(weight + np.random.default_rng(3).normal(0, 0.05, weight.shape).astype("float32"))
    full = keras.ops.convert_to_numpy(model(chunks, training=False))
    cached = keras.ops.convert_to_numpy(twin(list(cache.gather(drawn.rows, drawn.starts, chunk_samples=800)), training=False))
    np.testing.assert_allclose(cached, full, atol=0.02)
    assert np.abs(full - full[::-1]).max() > 0.1  # the outputs differ from puzzle to puzzle: the comparison means something


def test_training_on_the_cache_trains_and_the_saved_full_model_evaluates(corpus_path, tmp_path):
    config = cached_config(corpus_path)
    lines = []
    run_dir = train(config, runs_dir=tmp_path, verbose=0, echo=lines.append)
    history = (run_dir / "history.csv").read_text().splitlines()
    assert len(history) == 3 and "val_loss" in history[0]
    assert (features.cache_folder(Corpus(corpus_path), features.FrontEnd.from_config(config)) / "train.json").exists()
    model = keras.saving.load_model(run_dir / "model.keras")
    assert model.input_shape == (None, 3, 800)  # the model file takes audio, as every other run's
    # The run's own starting weights (train seeds and builds them this way), not another random draw.
    spec = PuzzleSpec.from_config(config.puzzle, sample_rate=16000)
    start, _ = compiled_model(config, spec, sample_rate=16000, total_steps=1, compile=False)
    trained_weights = {w.path: keras.ops.convert_to_numpy(w) for w in model.trainable_weights}
    start_weights = {w.path: keras.ops.convert_to_numpy(w) for w in start.trainable_weights}
    assert trained_weights.keys() == start_weights.keys()
    assert any(not np.allclose(trained_weights[path], value) for path, value in start_weights.items())
    result = run("eval", run_dir, "--sanity", "")
    assert result.exit_code == 0, result.output
    assert "test" in json.loads((latest_eval(run_dir) / "eval.json").read_text())["datasets"]
    assert json.loads((run_dir / "metrics.json").read_text())["val"]


def test_a_stale_cache_is_rebuilt(corpus_path):
    config = cached_config(corpus_path)
    front = features.FrontEnd.from_config(config)
    corpus = Corpus(corpus_path)
    features.open_feature_cache(corpus, "val", front)
    lines = []
    first = features.open_feature_cache(corpus, "val", front, echo=lines.append)
    assert lines == []  # reused
    frames = first.frames.copy()
    folder = features.cache_folder(corpus, front)
    np.lib.format.open_memmap(folder / "val-frames.npy", mode="r+")[:] = 0  # damaged in place: same shape, so not noticed
    shard = corpus_path / "audio" / corpus.track_entries[first.tracks.track_id[0]]["shard"]
    os.utime(shard, ns=(shard.stat().st_atime_ns, shard.stat().st_mtime_ns + 10**9))  # the corpus changed
    again = features.open_feature_cache(Corpus(corpus_path), "val", front, echo=lines.append)
    assert any("stale (corpus changed)" in line for line in lines), lines
    np.testing.assert_array_equal(again.frames, frames)
    (folder / "val-edges.npy").write_bytes(b"not an array")
    lines.clear()
    features.open_feature_cache(Corpus(corpus_path), "val", front, echo=lines.append)
    assert any("edges unreadable" in line for line in lines), lines


def test_other_settings_are_another_cache(corpus_path):
    config = cached_config(corpus_path)
    other = cached_config(corpus_path, "model.encoder.n_mels=32")
    assert features.FrontEnd.from_config(config).key != features.FrontEnd.from_config(other).key
    assert features.FrontEnd.from_config(config).key == features.FrontEnd.from_config(cached_config(corpus_path, "model.encoder.filters=4")).key


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("puzzle.chunk_seconds=0.0505", "cuts chunks on a grid of 40 samples (model.encoder.hop_seconds / 4)"),
        ("model.encoder.hop_seconds=0.0100625", "(161 samples) must be a multiple of 4 samples"),
        ("model.encoder.type=conv1d", "needs a log-mel encoder"),
        ("augment.enabled=true", "cannot augment"),
        ("data.features=cahced", "data.features = 'cahced' must be one of ('raw', 'cached')"),
        ("data.feature=cached", "did you mean 'features'"),
    ],
)
def test_a_bad_setting_is_one_clear_error(corpus_path, tmp_path, override, fragment):
    sets = [arg for item in [f"data.corpus={corpus_path}", *CACHED, override] for arg in ("--set", item)]
    result = run("train", "--config", "configs/tiny.yaml", *sets, "--runs-dir", tmp_path)
    assert_one_line_error(result, fragment)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("features_path", ["a file", "a link to itself"])
def test_a_features_path_that_is_not_a_folder_is_one_line(corpus_path, tmp_path, features_path):
    corpus = tmp_path / "music"
    shutil.copytree(corpus_path, corpus, ignore=shutil.ignore_patterns("features"))
    if features_path == "a file":
        (corpus / "features").write_text("not a cache\n")
    else:
        (corpus / "features").symlink_to(corpus / "features")
    sets = [arg for item in [f"data.corpus={corpus}", *CACHED] for arg in ("--set", item)]
    result = run("train", "--config", "configs/tiny.yaml", *sets, "--runs-dir", tmp_path / "runs")
    assert_one_line_error(result, "cannot create the feature cache")


def test_gaps_without_a_grid_step_are_refused(corpus_path):
    with pytest.raises(ConfigError, match="hold no multiple of 40 samples"):
        features.FrontEnd.from_config(cached_config(corpus_path, "puzzle.pad_min_seconds=0.001", "puzzle.pad_max_seconds=0.002"))


def test_grid_puzzles_start_and_gap_on_whole_grid_steps_within_the_bounds():
    spec = PuzzleSpec(n_chunks=3, chunk_samples=800, pad_min_samples=100, pad_max_samples=500)
    front = features.FrontEnd(16000, 400, 160, 512, 64, 240, phases=1)
    grid = front.grid_spec(spec)
    assert (grid.pad_min_samples, grid.pad_max_samples, grid.grid_samples) == (160, 480, 160)
    tracks = TrackTable.from_arrays([np.zeros(20000, np.int16), np.zeros(9000, np.int16)])
    drawn = draw_starts(tracks, grid, 4000, rng=np.random.default_rng(0))
    assert np.all(drawn.starts % 160 == 0)
    ordered = np.sort(drawn.starts, axis=1)
    gaps = np.diff(ordered, axis=1) - 800
    assert set(np.unique(gaps)) == {160, 320, 480}  # every grid step in the bounds, and only those
    four = features.FrontEnd(16000, 400, 160, 512, 64, 240).grid_spec(spec)
    assert (four.pad_min_samples, four.pad_max_samples, four.grid_samples) == (120, 480, 40)
    assert np.all(ordered[:, -1] + 800 <= tracks.frames[drawn.rows])
    # Both tracks, all their room: the last start that fits is drawn too.
    assert set(np.unique(drawn.rows)) == {0, 1}
    # The ideal observers know the gaps are whole grid steps: a 36-sample tone steps its phase by 16 samples a hop,
    # so three gap values leave three phase steps whose reverses are three others, and it sorts.
    assert leaks.ideal_tone_accuracy(grid, sample_rate=16000, frequency_hz=440).exact_accuracy > 0.9
    assert leaks.ideal_tone_accuracy(spec, sample_rate=16000, frequency_hz=440).exact_accuracy < 0.18


def test_the_in_memory_cache_equals_the_file_cache(corpus_path):
    config = cached_config(corpus_path)
    front = features.FrontEnd.from_config(config)
    corpus = Corpus(corpus_path)
    on_disk = features.open_feature_cache(corpus, "val", front)
    in_memory = features.FeatureCache.in_memory(corpus.tracks("val"), front)
    np.testing.assert_array_equal(in_memory.frames, on_disk.frames)
    np.testing.assert_array_equal(in_memory.edges, on_disk.edges)
    np.testing.assert_array_equal(in_memory.first_row, on_disk.first_row)


def test_audit_of_a_cached_config_at_wide_gaps_trains_on_the_cached_stream_and_passes_the_tone(corpus_path):
    from audiosort.audit import audit

    report = audit(cached_config(corpus_path, "puzzle.pad_min_seconds=0.5", "puzzle.pad_max_seconds=1.0"), steps=3, n_puzzles=60, sanity=("tone",))
    # On the hop grid alone (1 phase) the tone's ideal observer sorts these puzzles at 0.182 and the audit fails;
    # on 4 phases it is at 0.171, as the raw path's own at 0-50 ms.
    assert not report.ideal_leaking() and report.exit_code == 0
    assert report.datasets[0].ideal.exact_accuracy == pytest.approx(0.171, abs=0.001)
    assert report.spec.grid_samples == 40 and (report.spec.pad_min_samples, report.spec.pad_max_samples) == (8000, 16000)
    assert "(per_gap; on the 40-sample grid of cached features)" in report.lines()[0]
    assert report.datasets[0].scores.n_puzzles == 60


def test_the_tone_diagnosis_on_the_grid_names_the_gap_count_that_fixes_it():
    from audiosort.audit import _tone_diagnosis
    from audiosort.verdicts import ideal_sorts

    # 0.5-1.0 s on the 10 ms grid: 51 gap values; a 36-sample tone's phase steps repeat every 9 (gcd(160, 36) = 4).
    wide = PuzzleSpec(n_chunks=3, chunk_samples=8000, pad_min_samples=8000, pad_max_samples=16000, grid_samples=160)
    ideal = leaks.ideal_tone_accuracy(wide, sample_rate=16000, frequency_hz=440)
    assert ideal_sorts(ideal)
    assert "a multiple of 9" in _tone_diagnosis(wide, 16000, "tiled", ideal)
    # 0-50 ms on the cache's 40-sample grid: 21 values; the fix's range is 9 steps of 2.5 ms, not rounded to 22 ms.
    small = PuzzleSpec(n_chunks=3, chunk_samples=8000, pad_min_samples=0, pad_max_samples=800, grid_samples=40)
    assert "+ 0.0025 s = k x 22.5 ms" in _tone_diagnosis(small, 16000, "tiled", leaks.ideal_tone_accuracy(small, sample_rate=16000))
    fixed = PuzzleSpec(n_chunks=3, chunk_samples=8000, pad_min_samples=8000, pad_max_samples=15040, grid_samples=160)  # 45 values
    assert not ideal_sorts(leaks.ideal_tone_accuracy(fixed, sample_rate=16000, frequency_hz=440))


def test_a_model_without_seam_trains_on_frames_alone(corpus_path):
    from audiosort.train import compiled_feature_model, compiled_model, fit

    config = cached_config(corpus_path, "model.sorter.seam=false", "model.sorter.mismatch=false")
    spec = PuzzleSpec.from_config(config.puzzle, sample_rate=16000)
    model, encoder = compiled_model(config, spec, sample_rate=16000, total_steps=2, compile=False)
    twin = compiled_feature_model(model, encoder, config, total_steps=2)
    assert [tuple(i.shape) for i in twin.inputs] == [(None, 3, 3, 64)]
    cache = features.open_feature_cache(Corpus(corpus_path), "train", features.FrontEnd.from_config(config))
    batches = features.cached_puzzle_batches(cache, spec, 8, rng=np.random.default_rng(0), edges=False)
    (frames,), order = next(batches)
    assert frames.shape == (8, 3, 3, 64) and order.shape == (8, 3)
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
    fit(twin, batches, batch_size=8, epochs=1, steps_per_epoch=2)
    batches.close()
    assert any(not np.array_equal(b, keras.ops.convert_to_numpy(w)) for b, w in zip(before, model.trainable_weights))


class _StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt  # as a kill between epochs: the first epoch's checkpoint is on disk


def test_a_cached_run_resumes_from_its_checkpoint(corpus_path, tmp_path):
    config = cached_config(corpus_path)
    with pytest.raises(KeyboardInterrupt):
        train(config, runs_dir=tmp_path, verbose=0, callbacks=[_StopAfterFirstEpoch()])
    run_dir = tmp_path / "cached"
    assert not (run_dir / "metrics.json").exists() and len((run_dir / "history.csv").read_text().splitlines()) == 2
    train(config, runs_dir=tmp_path, verbose=0, resume=True)
    assert len((run_dir / "history.csv").read_text().splitlines()) == 3
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 2
