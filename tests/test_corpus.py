"""prepare: corpus layout, exact puzzle sets, leak-free splits, determinism."""

import filecmp
import json
import runpy
import shutil
from pathlib import Path

import numpy as np
import pytest

from audiosort.config import PuzzleConfig
from audiosort.cli import parse_duration
from audiosort.data.corpus import Corpus
from audiosort.data.prepare import prepare, prepare_synthetic
from audiosort.data.splits import assign_splits
from audiosort.errors import InputError
from conftest import TINY_PUZZLE, write_music_files

verify = runpy.run_path(str(Path(__file__).parents[1] / "scripts" / "verify_corpus.py"))["verify"]


def test_fixed_sets_recut_exactly_from_the_shards(music_corpus):
    problems, counts = verify(music_corpus)
    assert problems == []
    assert counts["puzzles"] == 400 and counts["chunks"] == 1200


def test_verifier_catches_a_wrong_label(music_corpus, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(music_corpus, broken)
    with np.load(broken / "puzzles" / "test.npz") as data:
        arrays = dict(data)
    arrays["order"][0] = arrays["order"][0][::-1]
    np.savez(broken / "puzzles" / "test.npz", **arrays)
    problems, _ = verify(broken)
    assert any("test.npz[0]" in p for p in problems)


def test_manifest_follows_the_contract(music_corpus):
    manifest = json.loads((music_corpus / "manifest.json").read_text())
    assert manifest["format"] == "audiosort-corpus/1" and manifest["dtype"] == "int16"
    assert manifest["sample_rate"] == 16000
    assert manifest["puzzles"]["n_chunks"] == 3 and manifest["puzzles"]["chunk_samples"] == 800
    track = manifest["tracks"][0]
    assert set(track) == {"id", "source", "split", "shard", "offset", "frames", "sha256"}
    assert {t["split"] for t in manifest["tracks"]} == {"train", "val", "test"}
    shard = np.load(music_corpus / "audio" / track["shard"], mmap_mode="r")
    assert isinstance(shard, np.memmap) and shard.dtype == np.int16 and shard.ndim == 1
    assert sorted(p.name for p in (music_corpus / "puzzles").iterdir()) == ["test.npz", "val.npz"]


def test_puzzle_sets_use_only_their_own_split(music_corpus):
    corpus = Corpus(music_corpus)
    split_of = {t["id"]: t["split"] for t in corpus.track_entries}
    for split in ("val", "test"):
        assert {split_of[int(t)] for t in corpus.puzzle_set(split).track} == {split}


def test_splits_are_disjoint_and_stable_when_a_file_is_added(tmp_path):
    src = tmp_path / "src"
    write_music_files(src, 8, seconds=1.0)
    prepare([src], tmp_path / "a", puzzle=TINY_PUZZLE, n_puzzles=10, progress=False)
    write_music_files(src, 1, seconds=1.0, seed=99, prefix="zz-new")
    prepare([src], tmp_path / "b", puzzle=TINY_PUZZLE, n_puzzles=10, progress=False)
    before = {t["source"]: t["split"] for t in Corpus(tmp_path / "a").track_entries}
    after = {t["source"]: t["split"] for t in Corpus(tmp_path / "b").track_entries}
    assert len(after) == 9 and all(after[s] == split for s, split in before.items())


def test_hash_split_is_stable_as_sources_grow():
    sources = [f"album/{k:04d}.flac" for k in range(2000)]
    small = assign_splits(sources[:1000], val_fraction=0.1, test_fraction=0.1)
    large = assign_splits(sources, val_fraction=0.1, test_fraction=0.1)
    assert small == large[:1000]
    assert 0.07 < large.count("test") / 2000 < 0.13 and 0.07 < large.count("val") / 2000 < 0.13


def test_small_corpus_gets_a_track_in_every_split():
    for count in (3, 4, 5):
        splits = assign_splits([f"t{k}.wav" for k in range(count)], val_fraction=0.1, test_fraction=0.1)
        assert set(splits) == {"train", "val", "test"}
    assert set(assign_splits(["a", "b", "c"], val_fraction=0.0, test_fraction=0.2)) == {"train", "test"}


def test_group_pattern_keeps_versions_of_a_piece_in_one_split():
    sources = [f"track{k}.opus" for k in range(40)] + [f"track{k}_enhanced.opus" for k in range(40)]
    splits = assign_splits(sources, val_fraction=0.2, test_fraction=0.2, group_pattern="_enhanced")
    assert splits[:40] == splits[40:]
    with pytest.raises(InputError, match="not a regular expression"):
        assign_splits(sources, val_fraction=0.1, test_fraction=0.1, group_pattern="(")


def test_same_seed_gives_a_byte_identical_corpus(tmp_path):
    src = tmp_path / "src"
    write_music_files(src, 4, seconds=1.0)
    for name in ("a", "b"):
        prepare([src], tmp_path / name, puzzle=TINY_PUZZLE, n_puzzles=50, seed=3, jobs=2, progress=False)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) >= 4
    for rel in files:
        assert filecmp.cmp(tmp_path / "a" / rel, tmp_path / "b" / rel, shallow=False), rel


def test_files_are_resampled_to_mono_int16(tmp_path):
    src = tmp_path / "src"
    write_music_files(src, 3, seconds=2.0, sample_rate=44100)
    prepare([src], tmp_path / "c", puzzle=TINY_PUZZLE, n_puzzles=5, progress=False)
    corpus = Corpus(tmp_path / "c")
    assert all(abs(t["frames"] - 32000) <= 2 for t in corpus.track_entries)
    assert corpus.track_audio(0).dtype == np.int16


def test_small_shards_never_split_a_track(tmp_path):
    prepare_synthetic(
        "noise",
        tmp_path / "n",
        duration_seconds=60,
        track_seconds=5,
        puzzle=TINY_PUZZLE,
        n_puzzles=30,
        shard_bytes=200_000,  # room for one 5 s track (160 kB) per shard
        progress=False,
    )
    train_tracks = [t for t in Corpus(tmp_path / "n").track_entries if t["split"] == "train"]
    assert len(train_tracks) >= 5
    assert len({t["shard"] for t in train_tracks}) == len(train_tracks)  # one 160 kB track per 200 kB shard
    assert len(list((tmp_path / "n" / "audio").glob("train-*.npy"))) == len(train_tracks)
    assert verify(tmp_path / "n")[0] == []


def test_existing_output_is_kept_unless_overwrite(tmp_path):
    out = tmp_path / "c"
    prepare_synthetic("tone", out, duration_seconds=30, track_seconds=10, puzzle=TINY_PUZZLE, n_puzzles=5, progress=False)
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(InputError, match="already exists"):
        prepare_synthetic("noise", out, duration_seconds=30, puzzle=TINY_PUZZLE, progress=False)
    assert (out / "manifest.json").read_bytes() == before
    prepare_synthetic("noise", out, duration_seconds=30, track_seconds=10, puzzle=TINY_PUZZLE, overwrite=True, progress=False)
    assert "noise" in json.loads((out / "manifest.json").read_text())["tracks"][0]["source"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no temporary folders left behind


def test_failed_prepare_leaves_nothing_that_looks_like_a_corpus(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "bad.wav").write_bytes(b"not audio at all")
    with pytest.raises(InputError, match="no usable audio"):
        prepare([src], tmp_path / "out", puzzle=TINY_PUZZLE, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("2.5m", 150), ("2h", 7200)])
def test_durations_accept_units(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "-3m", "0"])
def test_bad_durations_are_errors(text):
    with pytest.raises(InputError, match="duration"):
        parse_duration(text)


def test_tracks_shorter_than_a_puzzle_are_skipped(tmp_path):
    src = tmp_path / "src"
    write_music_files(src, 3, seconds=1.0)
    write_music_files(src, 1, seconds=0.1, prefix="tiny")
    long_puzzle = PuzzleConfig(n_chunks=3, chunk_seconds=0.05, pad_min_seconds=0.0, pad_max_seconds=0.01)
    prepare([src], tmp_path / "c", puzzle=long_puzzle, n_puzzles=5, progress=False)
    skipped = Corpus(tmp_path / "c").manifest["skipped"]
    assert [s["source"] for s in skipped] == ["tiny00.flac"] and "too short" in skipped[0]["reason"]
