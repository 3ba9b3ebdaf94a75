"""scripts/plot_study.py: reads the numbers of eval.json and probe.json, draws the figure, fails in one line."""

import json
import runpy
from pathlib import Path

import pytest

from audiosort.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
PLOT = runpy.run_path(str(ROOT / "scripts" / "plot_study.py"))


def _scores(exact):
    scored = {"exact_accuracy": {"value": exact, "low": exact - 0.02, "high": exact + 0.02},
              "position_accuracy": {"value": 0.5}, "kendall_tau": {"value": 0.1}}
    return {"hungarian": scored, "chance": {"exact_accuracy": 1 / 6, "position_accuracy": 1 / 3}, "n_puzzles": 100,
            "n_chunks": 3}


def _eval_entry(exact, continuity):
    return {**_scores(exact), "baselines": {"continuity": _scores(continuity)}}


def _write_eval(path, datasets):
    path.write_text(json.dumps({"run": "r", "verdict_decoding": "hungarian", "datasets": datasets}))
    return path


def _write_probe(path):
    task = {
        "accuracy": {"encoder": 0.46, "random_encoder": 0.37, "logmel_stats": 0.47},
        "accuracy_std": {"encoder": 0.12, "random_encoder": 0.09, "logmel_stats": 0.1},
        "chance": 0.125,
    }
    path.write_text(json.dumps({"tasks": {"probe-instruments": task}}))
    return path


def test_reads_the_hungarian_scores_and_draws_a_png(tmp_path):
    both = _write_eval(tmp_path / "a.json", {"test": _eval_entry(0.29, 0.63), "ood": _eval_entry(0.27, 0.66),
                                             "noise": _eval_entry(0.16, 0.17)})
    test_only = _write_eval(tmp_path / "b.json", {"test": _eval_entry(0.5, 0.4)})
    probe = _write_probe(tmp_path / "probe.json")

    scores = PLOT["sorting_scores"](both)
    assert list(scores) == ["test", "ood"]
    assert (scores["ood"].exact, scores["ood"].continuity, scores["ood"].chance) == (0.27, 0.66, 1 / 6)
    assert list(PLOT["sorting_scores"](test_only)) == ["test"]
    instruments = PLOT["probe_scores"](probe)["instruments"]
    assert (instruments.encoder, instruments.random_encoder, instruments.logmel_stats) == (0.46, 0.37, 0.47)

    out = tmp_path / "study.png"
    assert PLOT["main"](["--run", "a", str(both), "--run", "b", str(test_only), "--probe", "a", str(probe),
                         "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_eval_json_without_test_or_ood_is_named(tmp_path):
    val_only = _write_eval(tmp_path / "val.json", {"val": _eval_entry(0.3, 0.6)})
    with pytest.raises(InputError, match="neither a test nor an ood split"):
        PLOT["sorting_scores"](val_only)


def test_a_missing_file_is_one_line_and_exit_2(tmp_path, capsys):
    good = _write_eval(tmp_path / "a.json", {"test": _eval_entry(0.29, 0.63)})
    out = tmp_path / "study.png"
    assert PLOT["main"](["--run", "a", str(good), "--probe", "a", str(tmp_path / "missing.json"),
                         "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read probe.json") and err.count("\n") == 1
    assert not out.exists()
