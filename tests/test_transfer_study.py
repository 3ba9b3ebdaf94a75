"""scripts/transfer_study.py, docs/transfer.md's "How to reproduce": it makes every report the study figure reads."""

import runpy
from pathlib import Path

import yaml

from audiosort.config import load_config

ROOT = Path(__file__).resolve().parents[1]
STUDY = runpy.run_path(str(ROOT / "scripts" / "transfer_study.py"))


def made_by_the_study(monkeypatch):
    """Run names, eval reports (``RUN/eval/<split>-n<chunks>``) and probed runs that the study's commands make."""
    monkeypatch.chdir(ROOT)
    steps = [command for command, _ in STUDY["commands"](Path("/tmp/music"))]
    trained = {}
    for command in steps:
        if command[:2] == ["audiosort", "train"]:
            sets = [command[k + 1] for k, arg in enumerate(command) if arg == "--set"]
            config = load_config(command[command.index("--config") + 1], sets)
            trained[config.name] = config.puzzle.n_chunks
    reports, probed = set(), set()
    for command in steps:
        if command[:2] == ["audiosort", "eval"]:
            run = Path(command[2])
            assert run.parent == Path("runs") and run.name in trained, command
            split = command[command.index("--split") + 1] if "--split" in command else "test"
            n_chunks = int(command[command.index("--n-chunks") + 1]) if "--n-chunks" in command else trained[run.name]
            reports.add(f"{run.name}/eval/{split}-n{n_chunks}")
        if command[:2] == ["audiosort", "probe"]:
            probed.add(Path(command[2]).name)
    return steps, trained, reports, probed


def test_the_study_makes_every_report_and_probe_the_figure_reads(monkeypatch):
    steps, trained, reports, probed = made_by_the_study(monkeypatch)
    figure = yaml.safe_load((ROOT / "docs" / "transfer-study.yaml").read_text())
    read, probes_read = set(), set()
    for panel in figure["panels"]:
        if "probe" in panel:
            probes_read.add(panel["probe"])
        for paths in panel.get("runs", {}).values():
            read.update([paths] if isinstance(paths, str) else paths)
    assert read and read <= reports, sorted(read - reports)
    assert probes_read and probes_read <= probed, probes_read - probed
    plots = [command for command in steps if command[:2] == ["python", "scripts/plot_study.py"]]
    assert plots == [steps[-1]] and plots[0][2:] == ["docs/transfer-study.yaml", "--runs-dir", "runs", "--out", "docs/transfer-study.png"]
    # Every run the study trains is read by the figure or the seed table, with its test report.
    assert {name for name in trained} == {path.split("/")[0] for path in read}


def test_transfer_md_reproduces_with_the_script():
    text = (ROOT / "docs" / "transfer.md").read_text()
    block = text.split("## How to reproduce", 1)[1].split("```", 2)[1]
    assert "python scripts/transfer_study.py" in block
    assert "audiosort train" not in block  # the runs are named in one place: the script


def test_a_run_the_study_left_unfinished_is_resumed(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    steps = STUDY["commands"](Path("/tmp/music"))
    monkeypatch.chdir(tmp_path)  # the study's runs/ is relative: here, one run started and left unfinished
    (tmp_path / "runs" / "short-s0").mkdir(parents=True)
    (tmp_path / "runs" / "short-s0" / "config.yaml").write_text("name: short-s0\n")
    trains = [STUDY["_resuming"](command) for command, _ in steps if command[1] == "train"]
    resumed = [command for command in trains if command[-1] == "--resume"]
    assert [command[command.index("--set") + 1] for command in resumed] == ["name=short-s0"]
