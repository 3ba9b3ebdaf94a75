"""scripts/plot_study.py: reads eval.json and probe.json numbers through a figure spec, draws it, fails in one line."""

import json
import runpy
from pathlib import Path

import pytest

from audiosort.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
PLOT = runpy.run_path(str(ROOT / "scripts" / "plot_study.py"))


def _estimate(value):
    return {"value": value, "low": value - 0.02, "high": value + 0.02}


def _scores(exact, tau):
    scored = {"exact_accuracy": _estimate(exact), "position_accuracy": _estimate(0.5), "kendall_tau": _estimate(tau),
              "exact_correct_count": round(100 * exact), "p_value": 0.01}
    return {"hungarian": scored, "chance": {"exact_accuracy": 1 / 6, "position_accuracy": 1 / 3}, "n_puzzles": 100,
            "n_chunks": 3, "verdict": "above_chance"}


def _eval_entry(exact, continuity, tau=0.1, continuity_tau=0.05):
    return {**_scores(exact, tau), "baselines": {"continuity": _scores(continuity, continuity_tau)}}


def _write_eval(path, datasets):
    path.write_text(json.dumps({"run": "r", "verdict_decoding": "hungarian", "datasets": datasets}))
    return path


def _write_probe(path, rows=None):
    rows = rows or {"encoder": 0.46, "random_encoder": 0.37, "logmel_stats": 0.47}
    task = {"accuracy": rows, "accuracy_std": {row: 0.1 for row in rows}, "chance": 0.125}
    path.write_text(json.dumps({"tasks": {"probe-instruments": task}}))
    return path


def test_reads_each_metric_of_both_splits(tmp_path):
    both = _write_eval(tmp_path / "a.json", {"test": _eval_entry(0.29, 0.63, 0.4, 0.3), "ood": _eval_entry(0.27, 0.66),
                                             "noise": _eval_entry(0.16, 0.17)})
    exact = PLOT["sorting_scores"](both)
    assert list(exact) == ["test", "ood"]
    assert (exact["ood"].value, exact["ood"].continuity, exact["ood"].chance) == (0.27, 0.66, 1 / 6)
    tau = PLOT["sorting_scores"](both, "tau")["test"]
    assert (tau.value, tau.continuity, tau.chance) == (0.4, 0.3, 0.0)
    test_only = _write_eval(tmp_path / "b.json", {"test": _eval_entry(0.5, 0.4)})
    assert list(PLOT["sorting_scores"](test_only)) == ["test"]


def test_probe_rows_are_those_the_file_holds(tmp_path):
    probe = _write_probe(tmp_path / "p.json", {"encoder": 0.5, "logmel_stats": 0.6, "supervised": 0.9})
    instruments = PLOT["probe_scores"](probe)["instruments"]
    assert list(instruments) == ["encoder", "logmel_stats", "supervised", "chance"]
    assert instruments["supervised"] == (0.9, 0.1) and instruments["chance"] == (0.125, 0.0)


def test_a_spec_with_seeds_and_a_probe_draws_a_png(tmp_path):
    for seed, exact in enumerate((0.70, 0.72, 0.75)):
        _write_eval(tmp_path / f"s{seed}.json", {"test": _eval_entry(exact, 0.63), "ood": _eval_entry(exact - 0.02, 0.66)})
    _write_probe(tmp_path / "probe.json")
    spec = tmp_path / "figure.yaml"
    spec.write_text(
        "headline: the learned sorter beats continuity\n"
        "panels:\n"
        "  - {title: small gaps, metric: exact, runs: {seam: [s0.json, s1.json, s2.json], one seed: s0.json}}\n"
        "  - {title: n = 10, metric: tau, runs: {seam: [s1.json]}}\n"
        "  - {title: probes, probe: probe.json}\n"
    )
    headline, panels = PLOT["read_spec"](spec, tmp_path)
    assert headline == "the learned sorter beats continuity"
    assert [score["test"].value for score in panels[0]["runs"]["seam"]] == [0.70, 0.72, 0.75]
    assert len(panels[0]["runs"]["one seed"]) == 1 and panels[1]["metric"] == "tau"
    out = tmp_path / "study.png"
    assert PLOT["main"]([str(spec), "--runs-dir", str(tmp_path), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_eval_json_without_test_or_ood_is_named(tmp_path):
    val_only = _write_eval(tmp_path / "val.json", {"val": _eval_entry(0.3, 0.6)})
    with pytest.raises(InputError, match="neither a test nor an ood split"):
        PLOT["sorting_scores"](val_only)


@pytest.mark.parametrize("panels, message", [
    ("[]", "non-empty list 'panels'"),
    ("[{title: t, runs: {a: a.json}, probe: missing.json}]", "one of 'runs', 'probe'"),
    ("[{title: t, metric: accuracy, runs: {a: a.json}}]", "metric one of"),
    ("[{title: t, probe: missing.json}]", "cannot read probe.json"),
])
def test_a_bad_spec_is_one_line_and_exit_2(tmp_path, capsys, panels, message):
    _write_eval(tmp_path / "a.json", {"test": _eval_entry(0.29, 0.63)})
    spec = tmp_path / "figure.yaml"
    spec.write_text(f"headline: h\npanels: {panels}\n")
    out = tmp_path / "study.png"
    assert PLOT["main"]([str(spec), "--runs-dir", str(tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists()
