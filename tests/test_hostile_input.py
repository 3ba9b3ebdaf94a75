"""Issue 22 §2-4: stops that stop, sizes checked up front, and one line (exit 2, nothing left behind) for hostile values."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from audiosort import _files
from audiosort.errors import InputError
from audiosort.sweep import grid as sweep_grid
from audiosort.sweep import load_sweep
from audiosort.sweep.report import collect_row, pending_stages
from conftest import TINY_TRAIN, assert_one_line_error, run, write_music_files

PUZZLE_FLAGS = ["--n-chunks", "3", "--chunk-seconds", "0.05", "--pad-min-seconds", "0", "--pad-max-seconds", "0.01"]
BILLION_LAUGHS = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi")]
)


def tiny_sets():
    return [a for s in TINY_TRAIN for a in ("--set", s)]


# §2 ---------------------------------------------------------------------------------------------------------------


def test_prepare_skips_a_fifo_and_a_device_instead_of_hanging(tmp_path):
    write_music_files(tmp_path / "src", 2, seconds=3.0)
    os.mkfifo(tmp_path / "src" / "pipe.wav")
    (tmp_path / "src" / "zero.wav").symlink_to("/dev/zero")
    result = subprocess.run(
        [sys.executable, "-m", "audiosort.cli", "prepare", tmp_path / "src", "--out", tmp_path / "corpus", "--split", "test",
         "--puzzles", "10", *PUZZLE_FLAGS], capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    skipped = json.loads((tmp_path / "corpus" / "manifest.json").read_text())["skipped"]
    assert {entry["source"]: entry["reason"] for entry in skipped} == {
        "pipe.wav": "not a regular file (a FIFO, device or socket)",
        "zero.wav": "not a regular file (a FIFO, device or socket)",
    }


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_prepare_while_a_worker_is_blocked_for_ever(tmp_path, signum):
    # A loader that never returns (a hung network file): the signal must still end the process, with its code.
    code = textwrap.dedent(f"""
        import faulthandler, signal, sys, threading
        faulthandler.dump_traceback_later(40, exit=True)  # a hang shows where, and fails the test below
        import numpy as np
        from audiosort import cli
        from audiosort.config import PuzzleConfig
        from audiosort.data import prepare as corpus
        signal.signal(signal.SIGTERM, cli._exit_on_sigterm)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        def blocked():
            print("blocked", flush=True)
            threading.Event().wait()
        try:
            corpus._build_corpus([("a", blocked)], {str(tmp_path / "corpus")!r}, corpus.CorpusSettings(puzzle=PuzzleConfig()),
                                 jobs=1, overwrite=False, progress=False)
        except KeyboardInterrupt:
            sys.exit(130)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            restore_signals=True)
    try:
        assert proc.stdout.readline().strip() == "blocked"
        proc.send_signal(signum)
        code = proc.wait(timeout=120)
        assert code == 128 + signum, proc.stderr.read()[-3000:]
    finally:
        proc.kill()
        proc.wait()
    assert os.listdir(tmp_path) == []  # no .partial folder


# §3 ---------------------------------------------------------------------------------------------------------------


def test_huge_puzzle_counts_are_refused_before_any_work(tmp_path, tiny_run):
    result = run("prepare", "--synthetic", "noise", "--duration", "30s", "--track-seconds", "10", "--out", tmp_path / "c",
                 "--puzzles", "10000000", *PUZZLE_FLAGS)
    assert_one_line_error(result, "limit is 4 GiB a puzzle set: ask for fewer (--puzzles)")
    assert os.listdir(tmp_path) == []
    result = run("eval", tiny_run, "--puzzles", "10000000", "--sanity", "noise")
    assert_one_line_error(result, "(--puzzles)")


def test_a_huge_batch_is_refused_naming_the_key_and_leaves_no_run(tmp_path, music_corpus):
    result = run("train", "--config", "configs/tiny.yaml", "--set", f"data.corpus={music_corpus}", *tiny_sets(),
                 "--set", "train.batch_size=100000000", "--runs-dir", tmp_path)
    assert_one_line_error(result, "train.batch_size = 100000000 makes batches of")
    assert os.listdir(tmp_path) == []


def test_a_sweep_of_a_million_runs_is_refused_at_once(tmp_path, monkeypatch):
    (tmp_path / "base.yaml").write_text("name: x\n")
    grid = {f"train.{key}": list(range(1, 11)) for key in ("epochs", "steps_per_epoch", "batch_size")}
    grid.update({"seed": list(range(1000))})
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"base": "base.yaml", "grid": grid}))
    # At once: counted, never expanded.
    monkeypatch.setattr(sweep_grid, "itertools", SimpleNamespace(product=lambda *axes: pytest.fail("the grid was expanded")))
    assert_one_line_error(run("sweep", "--config", tmp_path / "sweep.yaml", "--runs-dir", tmp_path / "runs"),
                          "makes 1000000 runs; the limit is 1000")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("seconds", ["1e-300", "1e-5", "nan", "inf", "-1"])
def test_a_track_length_below_one_puzzle_or_not_a_number_is_refused(tmp_path, seconds):
    result = run("prepare", "--synthetic", "noise", "--duration", "30s", "--track-seconds", seconds, "--out", tmp_path / "c",
                 *PUZZLE_FLAGS)
    assert_one_line_error(result, "--track-seconds")
    assert os.listdir(tmp_path) == []


def test_a_yaml_alias_bomb_is_refused_in_a_config_a_sweep_and_a_run(tmp_path, tiny_run):
    (tmp_path / "bomb.yaml").write_text(BILLION_LAUGHS + "\n")
    assert_one_line_error(run("train", "--config", tmp_path / "bomb.yaml", "--runs-dir", tmp_path), "through its aliases")
    assert_one_line_error(run("sweep", "--config", tmp_path / "bomb.yaml", "--runs-dir", tmp_path), "through its aliases")
    bombed = tmp_path / "run"
    shutil.copytree(tiny_run, bombed)
    (bombed / "config.yaml").write_text(BILLION_LAUGHS + "\n" + (bombed / "config.yaml").read_text())
    # The shared tiny run may already hold other tests' eval reports: the refused eval adds none.
    before = sorted(str(p.relative_to(bombed)) for p in bombed.rglob("*"))
    assert_one_line_error(run("eval", bombed, "--sanity", ""), "through its aliases")
    assert sorted(str(p.relative_to(bombed)) for p in bombed.rglob("*")) == before


# §4 ---------------------------------------------------------------------------------------------------------------


def test_a_failed_write_whose_clean_up_fails_too_is_one_input_error(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(InputError, match="cannot write"):  # unlinking the temporary file fails with ENOTDIR as well
        _files.write_text(tmp_path / "a-file" / "report.json", "{}")


@pytest.mark.parametrize("name", ["a" * 256, "\udcff-not-utf8"])
def test_a_run_name_too_long_or_not_utf8_is_one_line_and_leaves_nothing(tmp_path, music_corpus, name):
    result = run("train", "--config", "configs/tiny.yaml", "--set", f"data.corpus={music_corpus}", *tiny_sets(),
                 "--set", f"name={name}", "--runs-dir", tmp_path)
    assert_one_line_error(result, "must be one folder name")
    assert os.listdir(tmp_path) == []


def test_out_names_of_255_bytes_work_and_256_say_why(tmp_path, tiny_run):
    song = write_music_files(tmp_path / "songs", 1, seconds=2.0)[0]
    longest = tmp_path / ("e" * 251 + ".npz")
    assert run("embed", tiny_run, song, "--out", longest).exit_code == 0
    assert sorted(os.listdir(tmp_path)) == sorted(["songs", longest.name])  # no temporary left
    assert_one_line_error(run("embed", tiny_run, song, "--out", tmp_path / ("e" * 252 + ".npz")), "at most 255")
    deep = tmp_path / "/".join(["d" * 200] * 20) / "emb.npz"
    assert_one_line_error(run("embed", tiny_run, song, "--out", deep), "bytes long; keep it under")
    assert sorted(os.listdir(tmp_path)) == sorted(["songs", longest.name])


@pytest.mark.parametrize("hop", ["inf", "nan", "1e308", "-inf"])
def test_a_hop_that_is_not_a_finite_number_of_seconds_is_one_line(tmp_path, tiny_run, hop):
    song = write_music_files(tmp_path / "songs", 1, seconds=2.0)[0]
    assert_one_line_error(run("embed", tiny_run, song, "--out", tmp_path / "e.npz", "--hop-seconds", hop),
                          "--hop-seconds")
    assert not (tmp_path / "e.npz").exists()


# Not a finite number of seconds >= 0: refused at the edge, naming the flag; finite but past the file's end:
# refused by listen itself, naming its parameter.
@pytest.mark.parametrize(
    "start, fragment", [("1e308", "start_seconds = 1e+308"), ("inf", "'--start'"), ("nan", "'--start'"), ("-1e308", "'--start'")]
)
def test_a_listen_start_out_of_any_file_is_one_line(tmp_path, tiny_run, start, fragment):
    song = write_music_files(tmp_path / "songs", 1, seconds=2.0)[0]
    assert_one_line_error(run("listen", tiny_run, song, "--out", tmp_path / "o", "--start", start), fragment)
    assert not (tmp_path / "o").exists()


def test_listen_writes_all_three_wavs_or_none(tmp_path, tiny_run, monkeypatch):
    song = write_music_files(tmp_path / "songs", 1, seconds=2.0)[0]
    from audiosort import audio

    real_write = audio.write_wav
    calls = []

    def full_disk_on_the_third(path, y, *, sample_rate):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real_write(path, y, sample_rate=sample_rate)

    monkeypatch.setattr(audio, "write_wav", full_disk_on_the_third)
    assert_one_line_error(run("listen", tiny_run, song, "--out", tmp_path / "o"), "No space left on device")
    assert os.listdir(tmp_path / "o") == []


def test_listen_out_that_cannot_be_created_is_one_line(tmp_path, tiny_run):
    song = write_music_files(tmp_path / "songs", 1, seconds=2.0)[0]
    (tmp_path / "a-file").write_text("x")
    assert_one_line_error(run("listen", tiny_run, song, "--out", tmp_path / "a-file" / "o"), "cannot create --out folder")


def test_a_sweep_file_that_is_not_utf8_is_one_line(tmp_path):
    (tmp_path / "sweep.yaml").write_bytes(b"name: caf\xe9\nbase: x.yaml\n")
    assert_one_line_error(run("sweep", "--config", tmp_path / "sweep.yaml"), "is not UTF-8 text")


def test_a_duplicated_key_in_a_sweep_file_is_refused(tmp_path):
    (tmp_path / "base.yaml").write_text("name: x\n")
    (tmp_path / "sweep.yaml").write_text("base: base.yaml\ngrid:\n  seed: [1]\ngrid:\n  seed: [2]\n")
    assert_one_line_error(run("sweep", "--config", tmp_path / "sweep.yaml"), "key 'grid' appears twice")


def test_sweep_eval_settings_are_checked_before_training(tmp_path):
    (tmp_path / "base.yaml").write_text("name: x\n")
    (tmp_path / "sweep.yaml").write_text("base: base.yaml\ngrid:\n  seed: [1]\neval:\n  puzzles: many\n")
    assert_one_line_error(run("sweep", "--config", tmp_path / "sweep.yaml", "--runs-dir", tmp_path / "runs"),
                          "eval.puzzles = 'many'")
    assert not (tmp_path / "runs").exists()


def _sweep_with_a_finished_run(tmp_path, corpus, steps):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({"name": "x", "data": {"corpus": str(corpus)}}))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(
        {"name": "s", "base": "base.yaml", "set": {"train.steps_per_epoch": steps}, "grid": {"seed": [1]}}
    ))
    sweep = load_sweep(tmp_path / "sweep.yaml")
    ((only, config),) = sweep.configs()
    return sweep, only, config


def test_a_sweep_run_counts_as_done_only_for_the_config_it_would_train(tmp_path, tiny_run, music_corpus):
    from audiosort.config import dump_config

    old, only, old_config = _sweep_with_a_finished_run(tmp_path, music_corpus, 40)
    run_dir = tmp_path / "runs" / "s" / only.name
    shutil.copytree(tiny_run, run_dir)
    (run_dir / "config.yaml").write_text(dump_config(old_config))
    assert pending_stages(run_dir, old, old_config) == ["eval"]
    assert "val_exact_accuracy" in collect_row(tmp_path / "runs" / "s", only, old)
    new, only, new_config = _sweep_with_a_finished_run(tmp_path, music_corpus, 150)  # `set:` changed since
    assert pending_stages(run_dir, new, new_config) == ["train", "eval"]
    row = collect_row(tmp_path / "runs" / "s", only, new)
    assert row["status"] == "pending" and "val_exact_accuracy" not in row


@pytest.mark.parametrize("damage", [b"\xff\xfe not utf-8", b"[1, 2]", b'{"val": 3}', b"{"])
def test_a_damaged_report_in_a_sweep_run_is_no_traceback(tmp_path, music_corpus, damage):
    from audiosort.config import dump_config

    sweep, only, config = _sweep_with_a_finished_run(tmp_path, music_corpus, 40)
    run_dir = tmp_path / "runs" / "s" / only.name
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(dump_config(config))
    (run_dir / "metrics.json").write_bytes(damage)
    row = collect_row(tmp_path / "runs" / "s", only, sweep)
    assert row["status"] == "pending" and "val_exact_accuracy" not in row


@pytest.mark.parametrize(
    "puzzles, fragment",
    [("drop", "puzzles.n_chunks = None"), ("string", "puzzles.n_chunks = '3'"), ("latin1", "not UTF-8 text")],
)
def test_a_manifest_with_bad_puzzle_settings_is_one_line(tmp_path, music_corpus, puzzles, fragment):
    corpus = tmp_path / "corpus"
    shutil.copytree(music_corpus, corpus)
    manifest = json.loads((corpus / "manifest.json").read_text())
    if puzzles == "drop":
        del manifest["puzzles"]["n_chunks"]
    elif puzzles == "string":
        manifest["puzzles"]["n_chunks"] = "3"
    text = json.dumps(manifest).encode()
    (corpus / "manifest.json").write_bytes(text.replace(b'"format"', b'"caf\xe9": 1, "format"') if puzzles == "latin1" else text)
    result = run("train", "--config", "configs/tiny.yaml", "--set", f"data.corpus={corpus}", *tiny_sets(),
                 "--runs-dir", tmp_path / "runs")
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "runs").exists()


def test_a_runs_dir_too_long_for_the_system_is_one_line_and_leaves_nothing(tmp_path, music_corpus):
    runs_dir = tmp_path / "/".join(["r" * 200] * 20)
    for _ in range(2):  # nothing left that would block the next try
        result = run("train", "--config", "configs/tiny.yaml", "--set", f"data.corpus={music_corpus}", *tiny_sets(),
                     "--runs-dir", runs_dir)
        assert_one_line_error(result, "bytes long; keep it under")
    assert os.listdir(tmp_path) == []


# §3: long files are decoded in blocks ------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [16000, 22050])
def test_streamed_blocks_are_the_decoded_file_sample_for_sample(tmp_path, rate):
    from audiosort import audio

    path = write_music_files(tmp_path, 1, seconds=3.3, sample_rate=rate)[0]
    whole = audio.load(path, sample_rate=16000)
    blocks = list(audio.stream(path, sample_rate=16000, block_frames=4000))
    assert len(blocks) > 10
    np.testing.assert_array_equal(np.concatenate(blocks), whole)


@pytest.mark.parametrize("hop", [None, "0.031", "0.5"])
def test_embed_in_blocks_gives_the_frames_of_the_whole_file(tmp_path, tiny_run, monkeypatch, hop):
    from audiosort import audio
    from audiosort.embed import frame
    from audiosort.run import load_encoder

    song = write_music_files(tmp_path / "songs", 1, seconds=4.0)[0]
    monkeypatch.setattr(audio, "STREAM_BLOCK_FRAMES", 3001)  # blocks shorter than a frame and not a multiple of the hop
    extra = [] if hop is None else ["--hop-seconds", hop]
    assert run("embed", tiny_run, song, "--out", tmp_path / "e.npz", *extra).exit_code == 0
    encoder = load_encoder(tiny_run)
    hop_samples = encoder.chunk_samples if hop is None else round(float(hop) * encoder.sample_rate)
    pcm = audio.to_int16(audio.load(song, sample_rate=encoder.sample_rate))
    expected = encoder.embed(frame(pcm, chunk_samples=encoder.chunk_samples, hop_samples=hop_samples))
    with np.load(tmp_path / "e.npz") as saved:
        np.testing.assert_allclose(saved["embeddings_0"], expected, rtol=1e-5, atol=1e-6)


# §5 ---------------------------------------------------------------------------------------------------------------


def test_resuming_a_finished_run_with_another_config_says_so(tiny_run):
    result = run("train", "--config", tiny_run / "config.yaml", "--set", "train.epochs=3", "--runs-dir", tiny_run.parent,
                 "--resume")
    assert_one_line_error(result, "already finished, with another config")


def test_embed_and_listen_print_a_non_utf8_file_name(tmp_path, tiny_run):
    song = write_music_files(tmp_path, 1, seconds=2.0)[0]
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.flac"))
    song.rename(odd)
    result = run("embed", tiny_run, odd, "--out", tmp_path / "e.npz")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "e.npz") as saved:
        assert saved["files"].tolist() == [f"{tmp_path}/caf\\xe9.flac"]
    result = run("listen", tiny_run, odd, "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "caf\\xe9.flac" in result.stdout


# Issue 29 §2 --------------------------------------------------------------------------------------------------------


@pytest.fixture
def fifo(tmp_path):
    """Make FIFOs; should a reader block on one, a watchdog opens it for writing after a while, so the test fails, not hangs."""
    made, done = [], threading.Event()

    def make(path):
        os.mkfifo(path)
        made.append(path)
        return path

    def watchdog():
        if done.wait(120):
            return
        for path in made:
            with contextlib.suppress(OSError):
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))

    thread = threading.Thread(target=watchdog, daemon=True)
    thread.start()
    yield make
    done.set()


def test_a_fifo_or_a_device_as_a_config_is_one_line(tmp_path, fifo):
    pipe = fifo(tmp_path / "fifo.yaml")
    for path in (pipe, "/dev/zero"):
        assert_one_line_error(run("config", path), "is not a regular file")
        assert_one_line_error(run("train", "--config", path, "--runs-dir", tmp_path / "runs"), "is not a regular file")
    assert not (tmp_path / "runs").exists()


def test_a_config_file_over_its_size_limit_is_one_line(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 200_000)
    assert_one_line_error(run("config", big), "larger than 1,048,576 bytes")


@pytest.mark.parametrize("where", ["shard", "puzzles", "run config"])
def test_a_fifo_inside_a_corpus_or_a_run_is_one_line(tmp_path, music_corpus, tiny_run, fifo, where):
    corpus, run_dir = tmp_path / "music", tmp_path / "tiny"
    shutil.copytree(music_corpus, corpus)
    shutil.copytree(tiny_run, run_dir)
    if where == "shard":
        shard = next((corpus / "audio").glob("test-*.npy"))
        shard.unlink()
        fifo(shard)
        result = run("eval", run_dir, "--corpus", corpus, "--puzzles", 20, "--sanity", "noise", "--n-chunks", 4)
    elif where == "puzzles":
        (corpus / "puzzles" / "test.npz").unlink()
        fifo(corpus / "puzzles" / "test.npz")
        result = run("eval", run_dir, "--corpus", corpus, "--puzzles", 20, "--sanity", "noise")
    else:
        (run_dir / "config.yaml").unlink()
        fifo(run_dir / "config.yaml")
        result = run("eval", run_dir, "--puzzles", 20)
    assert_one_line_error(result, "is not a regular file")


def test_a_fifo_among_the_clips_of_a_probe_folder_is_one_line(tmp_path, fifo):
    from audiosort.probe import read_labelled

    for label in ("a", "b"):
        write_music_files(tmp_path / "set" / label, 2, seconds=1.0, seed=ord(label))
    fifo(tmp_path / "set" / "a" / "pipe.wav")
    with pytest.raises(InputError, match="is not a regular file"):
        read_labelled(tmp_path / "set")


def test_a_set_value_gets_the_yaml_node_limit_and_a_short_message(tmp_path):
    bomb = "{" + BILLION_LAUGHS.replace("\n", ", ") + "}"
    result = run("config", "--set", f"name={bomb}")
    assert_one_line_error(result, "the limit is 100000")
    long_list = "[" + ", ".join(["1"] * 50_000) + "]"
    result = run("config", "--set", f"name={long_list}")
    assert_one_line_error(result, "characters)")
    assert len(result.stderr) < 400


@pytest.mark.parametrize("value, fragment", [
    ("yes", "YAML reads yes as a bool, and name takes text; quote it"),
    ("null", "YAML reads null as null, and name takes text; quote it"),
    ("1:3", "YAML reads 1:3 as the base-60 number 63; quote it"),
])
def test_a_set_value_yaml_reads_as_something_else_says_to_quote_it(value, fragment):
    assert_one_line_error(run("config", "--set", f"name={value}"), fragment)


def test_a_set_number_in_base_60_is_refused():
    assert_one_line_error(run("config", "--set", "train.epochs=1:3"), "base-60 number 63; write the number you mean")


def test_a_cross_key_rule_broken_by_set_blames_the_file_with_set(tmp_path):
    config = tmp_path / "big.yaml"
    config.write_text("train:\n  batch_size: 4096\n")
    result = run("config", config, "--set", "puzzle.chunk_seconds=30")
    assert_one_line_error(result, f"(in {config} with --set puzzle.chunk_seconds)")


def test_a_long_chain_of_base_files_names_its_limit(tmp_path):
    for k in range(2000):
        (tmp_path / f"c{k}.yaml").write_text(f"base: c{k + 1}.yaml\n" if k < 1999 else "name: end\n")
    assert_one_line_error(run("config", tmp_path / "c0.yaml"), "base: files; the limit is 32")


def test_a_synthetic_track_too_long_and_a_sample_rate_too_high_are_one_line(tmp_path, music_corpus):
    result = run("prepare", "--synthetic", "noise", "--track-seconds", 360000, "--out", tmp_path / "c", *PUZZLE_FLAGS)
    assert_one_line_error(result, "the limit is 67,108,864")
    config = tmp_path / "c.yaml"
    config.write_text("name: x\n")
    result = run("audit", "--config", config, "--set", "data.sample_rate=100000000", "--steps", 1)
    assert_one_line_error(result, "data.sample_rate = 100000000 must be in [1, 192000] (Hz)")
    assert not (tmp_path / "c").exists()


def test_prepare_warns_of_a_corpus_without_val_or_test_tracks(tmp_path):
    result = run("prepare", "--synthetic", "noise", "--duration", 2, "--track-seconds", 1, "--puzzles", 0,
                 "--out", tmp_path / "c", *PUZZLE_FLAGS)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    missing = [split for split in ("val", "test") if f"has no {split} tracks" in result.stderr]
    assert missing and len(warnings) == len(missing), result.stderr
    result = run("prepare", "--synthetic", "noise", "--duration", 2, "--track-seconds", 1, "--puzzles", 0,
                 "--split", "test", "--out", tmp_path / "d", *PUZZLE_FLAGS)
    assert result.exit_code == 0 and "warning" not in result.stderr, result.output
