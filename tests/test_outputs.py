"""Issue 22 §1: an output never replaces what the user did not name (audiosort._files.check_output, every command).

Each case runs through the CLI and compares a checksum of everything in a
workspace (corpus, config, audio, a run, the working folder, a FIFO, symlinks)
before and after: only the named output may change.
"""

import hashlib
import os
import shutil
import stat
from pathlib import Path

import pytest
import yaml

from audiosort.run import run_in_use
from conftest import TINY_TRAIN, assert_one_line_error, run, write_music_files


def snapshot(root: Path, *, leave_out=()) -> dict:
    """Every path under ``root`` (not following links): a file's sha256, a link's target, 'dir', 'fifo'.

    Paths in ``leave_out`` (and what lies under them) are the named outputs, free to change.
    """
    leave_out = {os.path.abspath(path) for path in leave_out}
    state = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if any(path == out or path.startswith(out + os.sep) for out in leave_out):
                continue
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                state[path] = "link:" + os.readlink(path)
            elif stat.S_ISDIR(mode):
                state[path] = "dir"
            elif stat.S_ISREG(mode):
                with open(path, "rb") as f:
                    state[path] = hashlib.sha256(f.read()).hexdigest()
            else:
                state[path] = f"special:{stat.S_IFMT(mode)}"
    return state


@pytest.fixture
def workspace(tmp_path, music_corpus, tiny_run, monkeypatch):
    """tmp/ws: work/ (the working folder), data/music (a corpus), configs/tiny.yaml (trains on it), songs/song00.flac,
    runs/tiny (a finished run), fifo, and links/ with a symlink to each."""
    ws = tmp_path / "ws"
    (ws / "work").mkdir(parents=True)
    (ws / "work" / "notes.txt").write_text("the user's own file")
    shutil.copytree(music_corpus, ws / "data" / "music")
    (ws / "configs").mkdir()
    raw = {"name": "tiny", "data": {"corpus": str(ws / "data" / "music")}}
    (ws / "configs" / "tiny.yaml").write_text(yaml.safe_dump(raw))
    write_music_files(ws / "songs", 1, seconds=3.0)
    shutil.copytree(tiny_run, ws / "runs" / "tiny")
    os.mkfifo(ws / "fifo")
    (ws / "links").mkdir()
    for target in targets(ws, links=False):
        (ws / "links" / f"to-{target.name}").symlink_to(target)
    monkeypatch.chdir(ws / "work")
    return ws


def targets(ws: Path, *, links: bool = True) -> list[Path]:
    """Hostile values for an output: the working folder and above, inputs, a device-like node, a run's files."""
    plain = [
        ws / "work", ws, ws / "data" / "music", ws / "data", ws / "configs", ws / "configs" / "tiny.yaml",
        ws / "songs" / "song00.flac", ws / "songs", ws / "fifo", ws / "runs" / "tiny", ws / "runs" / "tiny" / "model.keras",
    ]
    return plain + (sorted((ws / "links").iterdir()) if links else [])


def tiny_sets():
    return [a for s in TINY_TRAIN for a in ("--set", s)]


def assert_only_changed(ws, before, named):
    after = snapshot(ws, leave_out=named)
    before = {path: value for path, value in before.items() if path in after or not any(
        path == os.path.abspath(out) or path.startswith(os.path.abspath(out) + os.sep) for out in named)}
    assert after == before


def test_train_overwrite_replaces_no_folder_but_a_run(workspace):
    ws = workspace
    cases = [t for t in targets(ws) if t.name not in ("tiny", "to-tiny")]  # the run itself is the one legal target
    for target in cases:
        before = snapshot(ws)
        result = run("train", "--config", ws / "configs" / "tiny.yaml", *tiny_sets(), "--runs-dir", target.parent,
                     "--set", f"name={target.name}", "--overwrite", "--quiet")
        assert result.exit_code == 2, (target, result.output)
        assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert snapshot(ws) == before, target
    for runs_dir in (ws / "data" / "music", ws / "songs" / "song00.flac", ws / "fifo", ws / "links" / "to-music"):
        before = snapshot(ws)
        result = run("train", "--config", ws / "configs" / "tiny.yaml", *tiny_sets(), "--runs-dir", runs_dir, "--overwrite")
        assert result.exit_code == 2 and "Traceback" not in result.output, (runs_dir, result.output)
        assert snapshot(ws) == before, runs_dir


def test_the_cases_of_the_issue_are_refused_naming_why(workspace):
    ws = workspace
    config = ws / "configs" / "tiny.yaml"
    before = snapshot(ws)
    # cd X/sub; train --runs-dir .. --set name=sub --overwrite
    result = run("train", "--config", config, *tiny_sets(), "--runs-dir", "..", "--set", "name=work", "--overwrite")
    assert_one_line_error(result, "working folder")
    # --runs-dir <the corpus's parent> --set name=<corpus>
    result = run("train", "--config", config, *tiny_sets(), "--runs-dir", ws / "data", "--set", "name=music", "--overwrite")
    assert_one_line_error(result, "overlaps input")
    # a user's folder in runs/
    (ws / "runs" / "userdata").mkdir()
    (ws / "runs" / "userdata" / "thesis.tex").write_text("years of work")
    before = snapshot(ws)
    result = run("train", "--config", config, *tiny_sets(), "--runs-dir", ws / "runs", "--set", "name=userdata", "--overwrite")
    assert_one_line_error(result, "is not a run folder (no config.yaml, checkpoints)")
    # retraining from a run's own config.yaml would delete the config in use
    result = run("train", "--config", ws / "runs" / "tiny" / "config.yaml", "--set", f"data.corpus={ws / 'data' / 'music'}",
                 "--runs-dir", ws / "runs", "--overwrite")
    assert_one_line_error(result, "overlaps input")
    assert snapshot(ws) == before


def test_embed_out_never_replaces_an_input_the_run_or_a_device(workspace):
    ws = workspace
    song = ws / "songs" / "song00.flac"
    for target in targets(ws):
        before = snapshot(ws)
        result = run("embed", ws / "runs" / "tiny", song, "--out", target, "--overwrite")
        regular_file_named = target in (ws / "configs" / "tiny.yaml", ws / "links" / "to-tiny.yaml")
        assert result.exit_code == (0 if regular_file_named else 2), (target, result.output)
        assert "Traceback" not in result.output
        assert_only_changed(ws, before, [target] if regular_file_named else [])


def test_embed_refuses_an_existing_out_without_overwrite_and_replaces_it_with(workspace):
    ws = workspace
    out = ws / "work" / "emb.npz"
    out.write_bytes(b"an older file")
    args = ["embed", ws / "runs" / "tiny", ws / "songs" / "song00.flac", "--out", out]
    assert_one_line_error(run(*args), "already exists; pass --overwrite")
    assert out.read_bytes() == b"an older file"
    before = snapshot(ws)
    assert run(*args, "--overwrite").exit_code == 0
    assert out.read_bytes()[:2] == b"PK"
    assert_only_changed(ws, before, [out])


def test_listen_writes_only_its_three_wavs_and_never_its_input(workspace):
    ws = workspace
    names = ("original.wav", "shuffled.wav", "sorted.wav")
    for target in targets(ws):
        before = snapshot(ws)
        result = run("listen", ws / "runs" / "tiny", ws / "songs" / "song00.flac", "--out", target)
        assert "Traceback" not in result.output and result.exit_code in (0, 2), (target, result.output)
        if target.resolve() == (ws / "runs" / "tiny").resolve() or not target.is_dir():
            assert result.exit_code == 2, (target, result.output)
        assert_only_changed(ws, before, [target / name for name in names])
    # the input lies in --out under a name listen writes
    (ws / "clips").mkdir()
    shutil.copy(ws / "songs" / "song00.flac", ws / "clips" / "original.wav")
    before = snapshot(ws)
    assert_one_line_error(run("listen", ws / "runs" / "tiny", ws / "clips" / "original.wav", "--out", ws / "clips"), "overlaps input")
    assert snapshot(ws) == before


def test_train_overwrite_is_refused_while_an_eval_holds_the_run(workspace):
    ws = workspace
    before = snapshot(ws)
    with run_in_use(ws / "runs" / "tiny"):  # what `audiosort eval` holds from start to end
        result = run("train", "--config", ws / "configs" / "tiny.yaml", *tiny_sets(), "--runs-dir", ws / "runs", "--overwrite")
    assert_one_line_error(result, "is in use")
    assert snapshot(ws) == before


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/escaped-sweep", "a/b", ".hidden"])
def test_a_sweep_name_stays_one_folder_under_runs_dir(workspace, name):
    ws = workspace
    sweep = ws / "configs" / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"name": name, "base": "tiny.yaml", "grid": {"train.epochs": [1]}}))
    before = snapshot(ws)
    assert_one_line_error(run("sweep", "--config", sweep, "--runs-dir", ws / "runs"), "must be one folder name")
    assert snapshot(ws, leave_out=[sweep]) == {k: v for k, v in before.items() if k != str(sweep)}
    assert not Path("/tmp/escaped-sweep").exists()


def test_sweep_never_writes_into_its_own_sweep_file_a_corpus_or_a_users_folder(workspace):
    ws = workspace
    # the sweep file lies in the folder the sweep would write
    (ws / "runs" / "mine").mkdir()
    sweep = ws / "runs" / "mine" / "sweep.yaml"
    sweep.write_text(f"# my notes\nname: mine\nbase: {ws / 'configs' / 'tiny.yaml'}\ngrid:\n  train.epochs: [1]\n")
    before = snapshot(ws)
    assert_one_line_error(run("sweep", "--config", sweep, "--runs-dir", ws / "runs"), "overlaps input")
    # a sweep named like its corpus, another corpus or a folder of the user's, or one inside a corpus
    shutil.copytree(ws / "data" / "music", ws / "data" / "other")
    for name, runs_dir, fragment in (("music", ws / "data", "overlaps input"), ("work", ws, "working folder"),
                                     ("songs", ws, "is not a sweep folder"), ("other", ws / "data", "is not a sweep folder"),
                                     ("x", ws / "data" / "other", "would lie inside")):
        other = ws / "configs" / f"sweep-{name}.yaml"
        other.write_text(yaml.safe_dump({"name": name, "base": "tiny.yaml", "grid": {"train.epochs": [1]}}))
        before = snapshot(ws, leave_out=[other])
        assert_one_line_error(run("sweep", "--config", other, "--runs-dir", runs_dir), fragment)
        assert snapshot(ws, leave_out=[other]) == before, name
    assert sweep.read_text().startswith("# my notes")


@pytest.mark.parametrize("out, fragment", [
    (".", "working folder"), ("..", "working folder"), ("../data/music", "lies in corpus"),
    ("../runs/tiny", "lies in run folder"), ("../runs/tiny/eval", "lies in run folder"), ("../fifo", "cannot create"),
])
def test_audit_out_is_a_folder_of_the_users_own(workspace, out, fragment):
    ws = workspace
    before = snapshot(ws)
    result = run("audit", "--config", ws / "configs" / "tiny.yaml", "--steps", 1, "--puzzles", 10, "--out", out)
    assert_one_line_error(result, fragment)
    assert result.stdout == ""  # refused before any training
    assert snapshot(ws) == before


@pytest.mark.parametrize("out, fragment", [
    (".", "working folder"), ("../data/music", "lies in corpus"), ("../data/music/audio", "lies in corpus"),
])
def test_listen_out_is_a_folder_of_the_users_own(workspace, out, fragment):
    ws = workspace
    before = snapshot(ws)
    assert_one_line_error(run("listen", ws / "runs" / "tiny", ws / "songs" / "song00.flac", "--out", out), fragment)
    assert snapshot(ws) == before
