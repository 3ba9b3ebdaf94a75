"""audiosort dream: gradient ascent on the waveform through a trained run's network (issue 23)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import textwrap

import numpy as np
import pytest
import soundfile as sf

from audiosort import audio, decoding
from audiosort.config import load_config
from audiosort.config import SorterConfig
from audiosort.dream import AMPLITUDE_BOUND, dream
from audiosort.heads import HEADS
from audiosort.models import build_sorter
from audiosort.models.sorters import JOIN_SCORE_LAYERS
from audiosort.predict import position_scores
from audiosort.run import load_run_model
from audiosort.train import train
from conftest import SAMPLE_RATE, TINY_TRAIN, assert_one_line_error, run, run_under_jax
from test_outputs import snapshot

CHUNK_SAMPLES = 800  # the tiny runs' 0.05 s chunks at 16 kHz
# Enough steps that the rise beats the jitter's step-to-step noise, few enough to stay fast.
STEPS, OCTAVES = 12, 2


@pytest.fixture(scope="module")
def pairwise_run(music_corpus, tmp_path_factory):
    """A tiny log-mel encoder with the pairwise head (join scores), trained on `music_corpus`; read-only."""
    config = load_config(None, [
        "name=tiny_pairwise", f"data.corpus={music_corpus}", *TINY_TRAIN,
        "model.encoder.type=logmel", "model.encoder.filters=8", "model.encoder.blocks=2", "model.encoder.n_mels=16",
        "model.sorter.type=pairwise", "train.epochs=3",
    ])
    return train(config, runs_dir=tmp_path_factory.mktemp("runs"), verbose=0)


@pytest.fixture(scope="module")
def seam_run(music_corpus, tmp_path_factory):
    """A pairwise head with the seam and mismatch terms, as configs/recipe-small-gaps.yaml; read-only."""
    config = load_config(None, [
        "name=tiny_seam", f"data.corpus={music_corpus}", *TINY_TRAIN, "model.sorter.type=pairwise",
        "model.sorter.seam=true", "model.sorter.mismatch=true", "train.epochs=1",
    ])
    return train(config, runs_dir=tmp_path_factory.mktemp("runs"), verbose=0)


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    """8 s of synthetic music at the runs' rate, as a wav."""
    from audiosort.data import synthetic

    path = tmp_path_factory.mktemp("songs") / "song.wav"
    audio.write_wav(path, synthetic.music(8.0, sample_rate=SAMPLE_RATE, rng=np.random.default_rng(5)), sample_rate=SAMPLE_RATE)
    return path


def read_wav(path):
    samples, rate = sf.read(path, dtype="float32")
    assert rate == SAMPLE_RATE and sf.info(path).subtype == "PCM_16"
    return samples


MODES = {
    "unit": dict(mode="unit", unit=1, seconds=0.2),
    "amplify": dict(mode="amplify", layer="block_0_relu", seconds=0.2, start_seconds=1.0),
    "continue": dict(mode="continue", start_seconds=2.0),
}


@pytest.mark.parametrize("mode", MODES)
def test_the_objective_rises_and_the_dream_stays_finite_and_within_the_bound(pairwise_run, song, tmp_path, mode):
    options = {**MODES[mode], "source": None if mode == "unit" else song}
    result = dream(pairwise_run, out=tmp_path, steps=STEPS, octaves=OCTAVES, seed=0, progress=False, **options)
    assert len(result.objective) == STEPS * OCTAVES
    assert result.objective[-1] > result.objective[0], result.objective
    before, dreamed = read_wav(tmp_path / "before.wav"), read_wav(tmp_path / "dream.wav")
    assert np.all(np.isfinite(dreamed)) and len(dreamed) == len(before)
    # int16 cannot leave [-1, 1); the bound below full scale is what keeps the dream from clipping.
    assert np.max(np.abs(dreamed)) <= AMPLITUDE_BOUND + 1 / 32768
    assert not np.array_equal(before, dreamed)
    report = json.loads((tmp_path / "dream.json").read_text())
    assert report["objective"] == result.objective and report["seed"] == 0 and report["mode"] == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["before.wav", "dream.json", "dream.wav", "spectrogram.png"]
    if mode == "continue":
        # A is written unchanged before B.
        a = audio.load(song, sample_rate=SAMPLE_RATE)[2 * SAMPLE_RATE : 2 * SAMPLE_RATE + CHUNK_SAMPLES]
        np.testing.assert_allclose(dreamed[:CHUNK_SAMPLES], a, atol=1 / 32768)
        assert len(dreamed) == 2 * CHUNK_SAMPLES


def test_the_same_seed_gives_the_same_wav_and_another_seed_another(tiny_run, tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        dream(tiny_run, out=tmp_path / name, mode="unit", seconds=0.1, steps=5, octaves=2, seed=seed, progress=False)
    first, again, other = (read_wav(tmp_path / name / "dream.wav") for name in "abc")
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_continue_makes_the_runs_sorter_put_b_after_a_at_least_as_often_as_a_random_chunk(pairwise_run, song, tmp_path):
    model = load_run_model(pairwise_run)
    pcm = audio.to_int16(audio.load(song, sample_rate=SAMPLE_RATE))
    rng = np.random.default_rng(0)
    a_starts = np.linspace(0.5, 7.0, 6)
    dreamed, random = [], []
    for k, start in enumerate(a_starts):
        out = tmp_path / f"a{k}"
        dream(pairwise_run, out=out, mode="continue", source=song, start_seconds=float(start), steps=10, octaves=1,
              seed=k, progress=False)
        pair = audio.to_int16(read_wav(out / "dream.wav"))
        third, other = (pcm[s : s + CHUNK_SAMPLES] for s in rng.integers(0, len(pcm) - CHUNK_SAMPLES, size=2))
        dreamed.append(np.stack([pair[:CHUNK_SAMPLES], pair[CHUNK_SAMPLES:], third]))
        random.append(np.stack([pair[:CHUNK_SAMPLES], other, third]))
    rates = []
    for puzzles in (dreamed, random):
        positions = decoding.decode(position_scores(model, np.stack(puzzles)), method="hungarian")
        rates.append(np.mean(positions[:, 1] == positions[:, 0] + 1))
    assert rates[0] >= rates[1], rates
    assert rates[0] > 0.5, rates  # chance is 1/3: the dreamed B is placed after A, not merely as often as noise would be


@pytest.mark.parametrize("head", sorted(HEADS))
def test_the_heads_said_to_have_join_scores_are_the_heads_that_build_them(head):
    sorter = build_sorter(SorterConfig(type=head, hidden_units=8), n_chunks=3, embedding_dim=4)
    names = {layer.name for layer in sorter.layers}
    assert set(JOIN_SCORE_LAYERS) <= names if HEADS[head].join_scores else not set(JOIN_SCORE_LAYERS) & names


def test_writes_nothing_outside_out(tiny_run, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    run_files = sorted(p.relative_to(tiny_run) for p in tiny_run.rglob("*"))
    result = run("dream", tiny_run, "--out", work / "deep" / "out", "--seconds", "0.1", "--steps", "2", "--octaves", "1")
    assert result.exit_code == 0, result.output
    written = {"deep", "deep/out", *(f"deep/out/{name}" for name in ("before.wav", "dream.json", "dream.wav", "spectrogram.png"))}
    assert {p.relative_to(work).as_posix() for p in work.rglob("*")} == written
    assert sorted(p.relative_to(tiny_run) for p in tiny_run.rglob("*")) == run_files
    assert "went from" in result.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--mode", "continue", "--audio", "SONG"], "join scores"),  # the tiny run's mlp head
        (["--layer", "nope"], "is not a layer of this encoder"),
        (["--unit", "99"], "is not a unit of layer"),
        (["--steps", "0"], "--steps"),
        (["--seconds", "0"], "--seconds"),
        (["--seconds", "0.01"], "shorter than one chunk"),
        (["--mode", "amplify"], "amplify needs audio"),
        (["--mode", "sing"], "--mode"),
        (["--tv-weight", "1"], "--tv-weight"),
        # Issue 29: a step beyond the waveform's own level turns the dream into a square wave.
        (["--step-size", "inf"], "--step-size"),
        (["--step-size", "1e308"], "--step-size"),
        (["--step-size", "nan"], "step_size = nan"),
        (["--start", "nan"], "start_seconds = nan"),
        (["--start", "inf"], "start_seconds = inf"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(tiny_run, song, tmp_path, args, fragment):
    args = [str(song) if a == "SONG" else a for a in args]
    result = run("dream", tiny_run, "--out", tmp_path / "out", *args)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "out").exists()


def test_a_run_without_an_encoder_is_one_line_and_exit_2(tiny_run, tmp_path):
    broken = tmp_path / "run"
    shutil.copytree(tiny_run, broken)
    (broken / "encoder.keras").unlink()
    assert_one_line_error(run("dream", broken, "--out", tmp_path / "out"), "no encoder.keras")


_JAX_CHECK = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import keras
    import numpy as np
    from audiosort.dream import dream
    assert keras.backend.backend() == "jax", keras.backend.backend()
    run_dir, song, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    for mode, options in (("unit", dict(unit=1, seconds=0.2)), ("continue", dict(source=song, start_seconds=2.0))):
        results = [dream(run_dir, out=out / f"{mode}{k}", mode=mode, steps=12, octaves=2, seed=0, progress=False, **options)
                   for k in range(2)]
        assert results[0].objective[-1] > results[0].objective[0], results[0].objective
        assert (out / f"{mode}0" / "dream.wav").read_bytes() == (out / f"{mode}1" / "dream.wav").read_bytes()
    print("ok")
    """
)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_dreams_rise_and_repeat_under_jax(pairwise_run, song, tmp_path):
    arguments = f"import sys\nsys.argv = ['-', {str(pairwise_run)!r}, {str(song)!r}, {str(tmp_path)!r}]\n"
    assert run_under_jax(arguments + _JAX_CHECK).strip().endswith("ok")


def test_continue_on_a_head_with_seam_and_mismatch_raises_the_log_odds(seam_run, song, tmp_path):
    """Issue 29: the recommended real-music head (two sorter inputs) failed with a TypeError."""
    result = dream(seam_run, out=tmp_path / "out", mode="continue", source=song, start_seconds=2.0, steps=STEPS,
                   octaves=OCTAVES, seed=0, progress=False)
    assert result.objective[-1] > result.objective[0], result.objective
    assert len(read_wav(tmp_path / "out" / "dream.wav")) == 2 * CHUNK_SAMPLES


@pytest.fixture
def workspace(tiny_run, music_corpus, song, tmp_path, monkeypatch):
    """A working folder two levels down holding a copy of `song`, as the working folder of each command."""
    work = tmp_path / "home" / "work"
    (work / "out").mkdir(parents=True)
    shutil.copy(song, work / "out" / "before.wav")
    (work / "notes").mkdir()
    (work / "notes" / "thesis.txt").write_text("precious\n")
    monkeypatch.chdir(work)
    return work


@pytest.mark.parametrize(
    "out, source, fragment",
    [
        ("out", "out/before.wav", "overlaps input"),  # issue 29: a 30 s input replaced by a 2 s clip
        (".", None, "working folder"),
        ("..", None, "working folder"),
        ("RUN", None, "overlaps input"),
        ("RUN/dream", None, "overlaps input"),
        ("CORPUS", None, "overlaps input"),
        ("CORPUS/audio", None, "overlaps input"),
        ("notes", None, "holds files and no dream.json"),
        ("notes/thesis.txt", None, "exists and is not a folder"),
    ],
)
def test_dream_replaces_nothing_but_its_own_output(tiny_run, music_corpus, workspace, out, source, fragment):
    out = out.replace("RUN", str(tiny_run)).replace("CORPUS", str(music_corpus))
    roots = (workspace.parent, tiny_run, music_corpus)
    before = [snapshot(root) for root in roots]
    args = ["--out", out, "--seconds", "0.1", "--steps", "1", "--octaves", "1"]
    result = run("dream", tiny_run, *args, *(["--audio", source] if source else []))
    assert_one_line_error(result, fragment)
    assert [snapshot(root) for root in roots] == before


def test_a_dream_is_written_as_a_whole_set_or_not_at_all(tiny_run, workspace, monkeypatch):
    import audiosort.dream

    settings = dict(mode="unit", seconds=0.1, steps=2, octaves=1, progress=False)
    dream(tiny_run, out="dreams", seed=1, **settings)
    first = snapshot(workspace)

    def killed(path, *args, **kwargs):  # SIGTERM as the command line turns it, after both wavs are written
        raise SystemExit(143)

    monkeypatch.setattr(audiosort.dream, "save_spectrograms", killed)
    with pytest.raises(SystemExit):
        dream(tiny_run, out="dreams", seed=2, **settings)
    assert snapshot(workspace) == first
    monkeypatch.undo()
    monkeypatch.chdir(workspace)
    dream(tiny_run, out="dreams", seed=2, **settings)
    assert json.loads((workspace / "dreams" / "dream.json").read_text())["seed"] == 2
    assert sorted(p.name for p in (workspace / "dreams").iterdir()) == ["before.wav", "dream.json", "dream.wav", "spectrogram.png"]
