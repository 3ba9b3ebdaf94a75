"""scripts/seed_table.py: mean and range over seeds, continuity's mean, the largest McNemar p, the worst sanity set."""

import runpy
from pathlib import Path

from test_plot_study import _eval_entry, _write_eval

ROOT = Path(__file__).resolve().parents[1]
TABLE = runpy.run_path(str(ROOT / "scripts" / "seed_table.py"))


def _seed(path, test, ood, p, noise):
    test_entry = _eval_entry(test, 0.63)
    test_entry["baselines"]["continuity"]["model_better_p_value"] = p
    noise_entry = {**_eval_entry(noise, 0.17), "sanity": True}
    return _write_eval(path, {"test": test_entry, "ood": _eval_entry(ood, 0.66), "noise": noise_entry})


def test_a_row_over_three_seeds(tmp_path, capsys):
    paths = [_seed(tmp_path / f"s{i}.json", test, ood, p, noise)
             for i, (test, ood, p, noise) in enumerate([(0.70, 0.68, 1e-9, 0.15), (0.72, 0.71, 1e-3, 0.19), (0.74, 0.69, 1e-12, 0.17)])]
    assert TABLE["main"](["--row", "seam", *map(str, paths), "--row", "one", str(paths[0])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| run | test | ood | sanity sets, exact |"
    assert lines[2] == ("| seam | 0.720 [0.700, 0.740] (3 seeds); continuity 0.630, p ≤ 0.001 | "
                        "0.693 [0.680, 0.710] (3 seeds); continuity 0.660 | ≤ 0.190 |")
    assert lines[3].startswith("| one | 0.700 [0.680, 0.720] (1 seed); continuity 0.630, p ≤ 1e-09 |")


def test_tau_and_a_missing_report(tmp_path, capsys):
    path = _write_eval(tmp_path / "a.json", {"test": _eval_entry(0.5, 0.4, tau=0.35, continuity_tau=0.1)})
    assert TABLE["main"](["--row", "n10", str(path), "--metric", "tau"]) == 0
    assert "| n10 | 0.350 [0.330, 0.370] (1 seed); continuity 0.100 | – |" in capsys.readouterr().out
    assert TABLE["main"](["--row", "x", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
