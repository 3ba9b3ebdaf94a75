"""`audiosort prepare` through the CLI: bad input is skipped or refused, never a traceback."""

import hashlib
import json
import os
import wave

import numpy as np
import pytest
import soundfile as sf

from conftest import assert_one_line_error, run, write_music_files

PUZZLE_FLAGS = ["--chunk-seconds", "0.05", "--pad-min-seconds", "0", "--pad-max-seconds", "0.01", "--puzzles", "20", "--quiet"]




def test_bad_files_are_skipped_and_reported_and_good_ones_kept(tmp_path):
    src = tmp_path / "src"
    good = write_music_files(src, 4, seconds=1.0)
    (src / "corrupt.wav").write_bytes(b"RIFF" + np.random.default_rng(0).bytes(3000))
    (src / "empty.flac").write_bytes(b"")
    (src / "notes.mp3").write_text("this is a text file, not audio\n")
    sf.write(src / "silent.wav", np.zeros(16000, np.float32), 16000)
    sf.write(src / "short.wav", np.random.default_rng(1).standard_normal(800).astype(np.float32) * 0.1, 16000)
    full = src / "full.ogg"
    sf.write(full, np.random.default_rng(2).standard_normal(48000).astype(np.float32) * 0.1, 48000, format="OGG")
    (src / "truncated.ogg").write_bytes(full.read_bytes()[:200])
    with wave.open(str(src / "headeronly.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)

    result = run("prepare", src, "--out", tmp_path / "corpus", *PUZZLE_FLAGS)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "corpus" / "manifest.json").read_text())
    reasons = {s["source"]: s["reason"] for s in manifest["skipped"]}
    assert set(reasons) == {
        "corrupt.wav", "empty.flac", "notes.mp3", "silent.wav", "short.wav", "truncated.ogg", "headeronly.wav"
    }
    assert "silent" in reasons["silent.wav"] and "too short" in reasons["short.wav"]
    assert reasons["empty.flac"] == "empty file"
    kept = {t["source"] for t in manifest["tracks"]}
    assert kept == {p.name for p in good} | {"full.ogg"}
    assert "skipped 7 file(s)" in result.stdout and "corrupt.wav" in result.stdout


def test_summary_reports_tracks_and_hours_per_split(tmp_path):
    src = tmp_path / "src"
    write_music_files(src, 5, seconds=1.0)
    result = run("prepare", src, "--out", tmp_path / "corpus", *PUZZLE_FLAGS)
    assert result.exit_code == 0, result.output
    for split in ("train", "val", "test"):
        assert split in result.stdout
    assert str(tmp_path / "corpus") in result.stdout


def test_nothing_usable_is_exit_2_with_one_line(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.wav").write_bytes(b"garbage")
    result = run("prepare", src, "--out", tmp_path / "corpus", *PUZZLE_FLAGS)
    assert_one_line_error(result, "no usable audio")
    assert not (tmp_path / "corpus").exists()


def test_missing_source_is_exit_2(tmp_path):
    result = run("prepare", tmp_path / "nope", "--out", tmp_path / "corpus", *PUZZLE_FLAGS)
    assert_one_line_error(result, "no such file or folder")


def test_folder_without_audio_is_exit_2(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "readme.txt").write_text("hi")
    result = run("prepare", tmp_path / "src", "--out", tmp_path / "corpus", *PUZZLE_FLAGS)
    assert_one_line_error(result, "no audio files found")


def test_unwritable_out_is_exit_2(tmp_path):
    src = tmp_path / "src"
    write_music_files(src, 3, seconds=1.0)
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    result = run("prepare", src, "--out", blocker / "corpus", *PUZZLE_FLAGS)
    assert_one_line_error(result, "cannot write corpus")


def test_existing_out_needs_overwrite(tmp_path):
    out = tmp_path / "corpus"
    args = ["prepare", "--synthetic", "tone", "--duration", "30s", "--track-seconds", "10", "--out", out, *PUZZLE_FLAGS]
    assert run(*args).exit_code == 0
    assert_one_line_error(run(*args), "already exists")
    assert run(*args, "--overwrite").exit_code == 0


def test_synthetic_corpus_through_the_cli(tmp_path):
    out = tmp_path / "brown"
    result = run("prepare", "--synthetic", "brown", "--duration", "1m", "--track-seconds", "20", "--out", out, *PUZZLE_FLAGS)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["tracks"]) == 3 and all(t["frames"] == 320000 for t in manifest["tracks"])


def test_puzzle_settings_come_from_config_and_flags_override(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("seed: 5\npuzzle: {n_chunks: 4, chunk_seconds: 0.04, pad_mode: shared}\n")
    out = tmp_path / "t"
    result = run(
        "prepare", "--synthetic", "noise", "--duration", "30s", "--track-seconds", "10", "--out", out,
        "--config", config, "--n-chunks", "5", "--puzzles", "7", "--quiet",
    )
    assert result.exit_code == 0, result.output
    settings = json.loads((out / "manifest.json").read_text())["puzzles"]
    assert (settings["n_chunks"], settings["chunk_seconds"], settings["pad_mode"], settings["seed"]) == (5, 0.04, "shared", 5)
    assert np.load(out / "puzzles" / "test.npz")["chunks"].shape == (7, 5, 640)


def test_config_typo_in_prepare_is_exit_2(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("puzzle: {pad_lengths: 0.01}\n")
    result = run("prepare", "--synthetic", "noise", "--duration", "30s", "--out", tmp_path / "x", "--config", config)
    assert_one_line_error(result, "unknown key 'puzzle.pad_lengths'")


def test_bad_duration_is_exit_2(tmp_path):
    result = run("prepare", "--synthetic", "noise", "--duration", "5x", "--out", tmp_path / "x")
    assert_one_line_error(result, "duration")


def _snapshot(folder):
    """Every path under `folder` with its bytes (files) or None (folders, links by target)."""
    state = {}
    for path in sorted(folder.rglob("*")):
        key = path.relative_to(folder).as_posix()
        if path.is_symlink():
            state[key] = ("link", str(path.readlink()))
        elif path.is_file():
            state[key] = path.read_bytes()
        else:
            state[key] = None
    return state


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """tmp/root/{here (the working folder), src (audio, with src/inner holding audio too), corpus (a corpus)}."""
    root = tmp_path / "root"
    write_music_files(root / "src", 3, seconds=1.0)
    write_music_files(root / "src" / "inner", 2, seconds=1.0, prefix="inner")
    (root / "here").mkdir()
    (root / "here" / "notes.txt").write_text("the user's own file")
    (root / "link-to-src").symlink_to(root / "src")
    monkeypatch.chdir(root / "here")
    return root


@pytest.mark.parametrize(
    "out",
    ["", ".", "..", "{root}/src", "{root}", "{root}/src/inner", "{root}/link-to-src", "{root}/link-to-src/inner",
     "../src", "../src/../src/inner"],
)
def test_overwrite_never_deletes_the_source_or_the_working_folder(workspace, out):
    before = _snapshot(workspace)
    result = run("prepare", workspace / "src", "--out", out.format(root=workspace), "--overwrite", *PUZZLE_FLAGS)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert _snapshot(workspace) == before


def test_overwrite_refuses_a_folder_holding_a_source_given_through_a_symlink(workspace):
    before = _snapshot(workspace)
    result = run("prepare", workspace / "link-to-src" / "inner", "--out", workspace / "src", "--overwrite", *PUZZLE_FLAGS)
    assert_one_line_error(result, "overlaps input")
    assert _snapshot(workspace) == before


def test_overwrite_refuses_the_folder_of_a_source_file_given_directly(workspace):
    before = _snapshot(workspace)
    result = run("prepare", workspace / "src" / "song00.flac", "--out", workspace / "src", "--overwrite", *PUZZLE_FLAGS)
    assert_one_line_error(result, "overlaps input")
    assert _snapshot(workspace) == before


def test_overwrite_refuses_a_folder_that_is_not_a_corpus(workspace):
    (workspace / "other").mkdir()
    (workspace / "other" / "thesis.tex").write_text("years of work")
    before = _snapshot(workspace)
    result = run("prepare", workspace / "src", "--out", workspace / "other", "--overwrite", *PUZZLE_FLAGS)
    assert_one_line_error(result, "not a corpus")
    (workspace / "file").write_text("a file")
    result = run("prepare", workspace / "src", "--out", workspace / "file", "--overwrite", *PUZZLE_FLAGS)
    assert_one_line_error(result, "not a folder")
    assert _snapshot(workspace) == before | {"file": b"a file"}


def test_relative_out_outside_the_working_folder_changes_only_itself(workspace):
    before = _snapshot(workspace)
    for attempt in range(2):
        result = run("prepare", workspace / "src", "--out", "../x", "--overwrite", *PUZZLE_FLAGS)
        assert result.exit_code == 0, result.output
        after = _snapshot(workspace)
        assert {k: v for k, v in after.items() if k != "x" and not k.startswith("x/")} == before
        assert "x/manifest.json" in after


def test_overwrite_of_a_symlinked_corpus_replaces_the_link_not_its_target(workspace):
    assert run("prepare", workspace / "src", "--out", workspace / "real", *PUZZLE_FLAGS).exit_code == 0
    (workspace / "alias").symlink_to(workspace / "real")
    target_before = _snapshot(workspace / "real")
    result = run("prepare", workspace / "src" / "inner", "--out", workspace / "alias", "--overwrite", *PUZZLE_FLAGS)
    assert result.exit_code == 0, result.output
    assert not (workspace / "alias").is_symlink() and (workspace / "alias" / "manifest.json").is_file()
    assert _snapshot(workspace / "real") == target_before


def test_links_are_read_through_wherever_they_point_and_broken_ones_are_skipped(tmp_path):
    src = tmp_path / "src"
    write_music_files(src, 3, seconds=1.0)
    write_music_files(tmp_path / "elsewhere", 1, seconds=1.0, prefix="private")
    (src / "dangling.flac").symlink_to(tmp_path / "gone.flac")
    (src / "outside.flac").symlink_to(tmp_path / "elsewhere" / "private00.flac")
    (src / "loop1.flac").symlink_to(src / "loop2.flac")
    (src / "loop2.flac").symlink_to(src / "loop1.flac")
    (src / "alias.flac").symlink_to(src / "song00.flac")
    result = run("prepare", src, "--out", tmp_path / "corpus", *PUZZLE_FLAGS)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "corpus" / "manifest.json").read_text())
    reasons = {s["source"]: s["reason"] for s in manifest["skipped"]}
    assert set(reasons) == {"dangling.flac", "loop1.flac", "loop2.flac"}
    assert reasons["dangling.flac"].startswith("dangling symlink")
    assert reasons["loop1.flac"] == reasons["loop2.flac"] == "symlink loop"
    # A link to a file inside the folder is that file, listed once (under the first name in sorted order);
    # a link out of it (a playlist of links into a library) is read through, named by the link.
    tracks = {t["source"]: t for t in manifest["tracks"]}
    assert sorted(tracks) == ["alias.flac", "outside.flac", "song01.flac", "song02.flac"]
    private = tmp_path / "elsewhere" / "private00.flac"
    assert tracks["outside.flac"]["sha256"] == hashlib.sha256(private.read_bytes()).hexdigest()


def test_overwrite_never_deletes_a_file_through_a_link(tmp_path):
    src = tmp_path / "playlist"
    src.mkdir()
    library = tmp_path / "library"
    assert run("prepare", "--synthetic", "music", "--duration", "20s", "--out", library, *PUZZLE_FLAGS).exit_code == 0
    # A file a link points to, inside a folder that --overwrite could otherwise replace.
    write_music_files(library, 2, seconds=1.0, prefix="kept")
    for k in range(2):
        (src / f"link{k}.flac").symlink_to(library / f"kept{k:02d}.flac")
    before = _snapshot(library)
    result = run("prepare", src, "--out", library, "--overwrite", *PUZZLE_FLAGS)
    assert_one_line_error(result, "overlaps input")
    assert _snapshot(library) == before


def test_a_non_utf8_file_name_is_skipped_with_a_readable_reason(tmp_path):
    src = tmp_path / "src"
    write_music_files(src, 3, seconds=1.0)
    (src / "song00.flac").rename(os.fsdecode(bytes(src) + b"/caf\xe9.flac"))
    result = run("prepare", src, "--out", tmp_path / "corpus", *PUZZLE_FLAGS)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "corpus" / "manifest.json").read_text())
    assert manifest["skipped"] == [{"source": "caf\\xe9.flac", "reason": "file name is not valid UTF-8 (rename it)"}]


def test_a_wav_holding_a_third_of_its_data_is_skipped(tmp_path):
    src = tmp_path / "src"
    write_music_files(src, 3, seconds=1.0)
    sf.write(src / "cut.wav", np.random.default_rng(0).standard_normal(32000).astype(np.float32) * 0.1, 16000)
    data = (src / "cut.wav").read_bytes()
    (src / "cut.wav").write_bytes(data[: 44 + (len(data) - 44) // 3])
    result = run("prepare", src, "--out", tmp_path / "corpus", *PUZZLE_FLAGS)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "corpus" / "manifest.json").read_text())
    assert [s["source"] for s in manifest["skipped"]] == ["cut.wav"]
    assert manifest["skipped"][0]["reason"].startswith("truncated WAV")


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--puzzles", "-5"], "must be an int >= 0"),
        (["--shard-mb", "nan"], "--shard-mb nan"),
        (["--shard-mb", "inf"], "--shard-mb inf"),
        (["--shard-mb", "-1"], "--shard-mb -1"),
        (["--sample-rate", "100000000"], "above 192000 Hz"),
        (["--sample-rate", "0"], "positive int"),
        (["--seed", "-1"], "'-1' must be an integer from 0"),
        (["--test-sources", "nothing/*"], "matches no track"),
    ],
)
def test_bad_numbers_are_one_line_errors(tmp_path, flags, fragment):
    src = tmp_path / "src"
    write_music_files(src, 3, seconds=1.0)
    result = run("prepare", src, "--out", tmp_path / "corpus", *PUZZLE_FLAGS, *flags)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "corpus").exists()


def test_nothing_usable_without_quiet_prints_only_the_error(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.wav").write_bytes(b"garbage")
    result = run("prepare", src, "--out", tmp_path / "corpus", "--puzzles", "5")
    assert_one_line_error(result, "no usable audio")
    assert result.stdout == ""


def test_puzzle_sets_get_the_same_mode_as_the_other_corpus_files(tmp_path):
    out = tmp_path / "corpus"
    assert run("prepare", "--synthetic", "noise", "--duration", "30s", "--track-seconds", "3", "--out", out, *PUZZLE_FLAGS).exit_code == 0
    modes = {p.relative_to(out).as_posix(): p.stat().st_mode & 0o777 for p in out.rglob("*") if p.is_file()}
    assert set(modes.values()) == {modes["manifest.json"]}, modes
    assert "puzzles/test.npz" in modes


def test_split_test_puts_every_track_in_test(tmp_path):
    src = tmp_path / "src"
    write_music_files(src, 5, seconds=1.0)
    result = run("prepare", src, "--out", tmp_path / "corpus", "--split", "test", *PUZZLE_FLAGS)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "corpus" / "manifest.json").read_text())
    assert [t["split"] for t in manifest["tracks"]] == ["test"] * 5
    assert sorted(p.name for p in (tmp_path / "corpus" / "puzzles").iterdir()) == ["test.npz"]


def test_test_sources_hold_a_whole_source_out_with_its_versions(tmp_path):
    src = tmp_path / "src"
    write_music_files(src / "a", 6, seconds=1.0)
    write_music_files(src / "b", 3, seconds=1.0, seed=1)
    # The pattern names b/song00 only; its _enhanced version must follow it out of the training data.
    write_music_files(src / "b", 1, seconds=1.0, seed=2, prefix="song00_enhanced")
    (src / "b" / "song00_enhanced00.flac").rename(src / "b" / "song00_enhanced.flac")
    result = run(
        "prepare", src, "--out", tmp_path / "corpus", "--test-sources", "b/song00.*", "--group-pattern", "_enhanced",
        *PUZZLE_FLAGS,
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "corpus" / "manifest.json").read_text())
    split_of = {t["source"]: t["split"] for t in manifest["tracks"]}
    assert {s for s, split in split_of.items() if split == "ood"} == {"b/song00.flac", "b/song00_enhanced.flac"}
    assert manifest["test_sources"] == ["b/song00.*"]
    assert "ood" in result.stdout and (tmp_path / "corpus" / "puzzles" / "ood.npz").is_file()
