"""A damaged corpus is named on open, one line and exit 2, by every command that reads it (train, eval)."""

import json
import pickle
import re
import shutil

import numpy as np
import pytest

from audiosort.data.corpus import Corpus
from audiosort.errors import InputError
from conftest import TINY_TRAIN, assert_one_line_error, run


def _delete_shard(corpus):
    (corpus / "audio" / "train-00000.npy").unlink()
    return "train-00000.npy is missing"


def _truncate_shard(corpus):
    shard = corpus / "audio" / "train-00000.npy"
    shard.write_bytes(shard.read_bytes()[:1000])
    return "train-00000.npy is damaged"


def _garbage_shard(corpus):
    (corpus / "audio" / "train-00000.npy").write_bytes(np.random.default_rng(0).bytes(5000))
    return "train-00000.npy is damaged"


def _pickled_shard(corpus):
    np.save(corpus / "audio" / "train-00000.npy", np.array([{"not": "audio"}], dtype=object), allow_pickle=True)
    return "train-00000.npy is damaged"


def _short_shard(corpus):
    np.save(corpus / "audio" / "train-00000.npy", np.zeros(10, np.int16))
    return "holds 10 samples but the manifest needs"


def _float_shard(corpus):
    np.save(corpus / "audio" / "train-00000.npy", np.zeros(10**6, np.float32))
    return "not a 1-D int16 array"


def _edit_manifest(change):
    def damage(corpus):
        manifest = json.loads((corpus / "manifest.json").read_text())
        fragment = change(manifest)
        (corpus / "manifest.json").write_text(json.dumps(manifest))
        return fragment

    return damage


def _no_tracks(manifest):
    del manifest["tracks"]
    return "lists no tracks"


def _no_frames(manifest):
    del manifest["tracks"][3]["frames"]
    return "tracks[3] lacks 'frames'"


def _bad_offset(manifest):
    manifest["tracks"][0]["offset"] = -4
    return "tracks[0] has a bad id, offset or frames"


def _shard_outside(manifest):
    manifest["tracks"][0]["shard"] = "../../etc/passwd"
    return "not a file in audio/"


def _list_manifest(corpus):
    (corpus / "manifest.json").write_text("[]")
    return "has format 'list'"


DAMAGE = {
    "deleted shard": _delete_shard,
    "truncated shard": _truncate_shard,
    "garbage shard": _garbage_shard,
    "pickled shard": _pickled_shard,
    "shard shorter than the manifest says": _short_shard,
    "float shard": _float_shard,
    "manifest without tracks": _edit_manifest(_no_tracks),
    "manifest without frames": _edit_manifest(_no_frames),
    "negative offset": _edit_manifest(_bad_offset),
    "shard path leaving the corpus": _edit_manifest(_shard_outside),
    "manifest that is a list": _list_manifest,
}


@pytest.fixture
def damaged(music_corpus, tmp_path, request):
    corpus = tmp_path / "corpus"
    shutil.copytree(music_corpus, corpus)
    return corpus, DAMAGE[request.param](corpus)


@pytest.mark.parametrize("damaged", list(DAMAGE), indirect=True)
def test_opening_a_damaged_corpus_names_the_problem(damaged):
    corpus, fragment = damaged
    with pytest.raises(InputError, match=re.escape(fragment)):
        Corpus(corpus)


@pytest.mark.parametrize("damaged", ["deleted shard", "pickled shard", "manifest without frames"], indirect=True)
def test_train_on_a_damaged_corpus_is_one_line_naming_the_file(damaged, tmp_path):
    corpus, fragment = damaged
    args = [f"data.corpus={corpus}", "name=broken", *TINY_TRAIN]
    result = run("train", "--config", "configs/tiny.yaml", "--runs-dir", tmp_path / "runs", *sum((["--set", a] for a in args), []))
    assert_one_line_error(result, fragment)


@pytest.mark.parametrize("damaged", ["truncated shard", "manifest without tracks"], indirect=True)
def test_eval_on_a_damaged_corpus_is_one_line_naming_the_file(damaged, tiny_run):
    corpus, fragment = damaged
    assert_one_line_error(run("eval", tiny_run, "--corpus", corpus, "--sanity", ""), fragment)


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda path: path.write_bytes(b"PK\x03\x04 not really a zip"), "test.npz is not a puzzle set"),
        (lambda path: path.write_bytes(path.read_bytes()[:5000]), "test.npz is not a puzzle set"),
        (lambda path: path.write_bytes(pickle.dumps({"chunks": 1})), "test.npz is not a puzzle set"),
        (lambda path: np.savez(path, chunks=np.zeros((4, 3, 7), np.int16), order=np.zeros((4, 3)),
                               track=np.zeros(4, int), starts=np.zeros((4, 3), int)), "3 chunks of 7 samples"),
        (lambda path: np.savez(path, chunks=np.zeros((4, 3, 800), np.int16), order=np.zeros((4, 3)),
                               track=np.full(4, 10**6), starts=np.zeros((4, 3), int)), "cites tracks outside"),
    ],
)
def test_eval_on_a_bad_puzzle_set_names_the_file(music_corpus, tiny_run, tmp_path, damage, fragment):
    corpus = tmp_path / "corpus"
    shutil.copytree(music_corpus, corpus)
    damage(corpus / "puzzles" / "test.npz")
    assert_one_line_error(run("eval", tiny_run, "--corpus", corpus, "--sanity", ""), fragment)
