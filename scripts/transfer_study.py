"""Reproduce docs/transfer.md: the recipe corpus, every run, report and probe that docs/transfer-study.yaml reads, and the figure.

    python scripts/transfer_study.py --music /tmp/music            # hours on 2 CPU cores
    python scripts/transfer_study.py --music /tmp/music --dry-run  # print the commands only

Run from the repository root. The commands run in order and stop at the first
that fails; a step whose output is already there (the prepared corpus, a run
with ``metrics.json``, an eval report, a probe set) is skipped, so an
interrupted study goes on where it stopped (a run it left unfinished is resumed). The instrument and pitch probe sets
need fluidsynth and a General MIDI sound font (``apt-get install fluidsynth
fluid-soundfont-gm``, as root).

:func:`runs` names every run and its settings, :func:`commands` lists the
steps; tests/test_transfer_study.py checks that they make every report the
figure reads.
"""

from __future__ import annotations

import argparse
import functools
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from audiosort import run as run_folder

RUNS_DIR = Path("runs")
CORPUS = Path("data/recipe")
PROBE_SETS = Path("data/probe")
SEEDS = (0, 1, 2)
# The 4,000-step rows: 20 epochs of the config's 200 steps, no augmentation.
SHORT = ("train.epochs=20", "augment.enabled=false")
# The run whose encoder the probe panel reads (4,000 steps, seed 0).
PROBED_RUN = "short-s0"
# Kendall tau at 10 chunks, beside exact accuracy at 3: recipe-many is trained up to 8 and scored at any n.
MANY_CHUNKS_SCORED = (3, 10)


def runs() -> list[tuple[str, str, tuple[str, ...]]]:
    """Every run of the study: (name, config file, ``--set`` overrides besides the name)."""
    seeded = []
    for seed in SEEDS:
        seeded += [
            (f"recipe-small-gaps-s{seed}", "configs/recipe-small-gaps.yaml", (f"seed={seed}",)),
            (f"short-s{seed}", "configs/recipe-small-gaps.yaml", (f"seed={seed}", *SHORT)),
            (f"noseam-s{seed}", "configs/recipe-small-gaps.yaml", (f"seed={seed}", *SHORT, "model.sorter.seam=false")),
            (f"recipe-wide-gaps-s{seed}", "configs/recipe-wide-gaps.yaml", (f"seed={seed}",)),
        ]
    return seeded + [
        # §3, encoders at equal CPU: the 2-D log-mel CNN for 2,000 steps (1.15x the 1-D run's CPU).
        ("small-2d", "configs/recipe-small-gaps.yaml",
         ("seed=0", "train.epochs=10", "augment.enabled=false", "model.encoder.type=logmel", "model.encoder.filters=16")),
        ("recipe-wide-gaps-8000", "configs/recipe-wide-gaps.yaml", ("seed=0", "train.epochs=40")),
        ("recipe-many", "configs/recipe-many.yaml", ()),
    ]


def _exists(path: Path) -> Callable[[], bool]:
    return path.exists


def commands(music: Path) -> list[tuple[list[str], Callable[[], bool] | None]]:
    """The study's steps in order: (command, whether it is done already, or None to always run)."""
    steps = [
        (["bash", "scripts/fetch_music.sh", str(music)], _exists(CORPUS / "manifest.json")),
        (["audiosort", "prepare", str(music), "--out", str(CORPUS), "--config", "configs/logmel.yaml",
          "--group-pattern", _group_pattern(), "--test-sources", "supertux/*", "--jobs", "2"],
         _exists(CORPUS / "manifest.json")),
    ]
    for name, config, sets in runs():
        overrides = [arg for value in (f"name={name}", *sets) for arg in ("--set", value)]
        steps.append((["audiosort", "train", "--config", config, *overrides, "--runs-dir", str(RUNS_DIR)],
                      functools.partial(run_folder.stage_done, RUNS_DIR / name, "train")))
    for name, _, _ in runs():
        run = RUNS_DIR / name
        if name == "recipe-many":
            steps += [(["audiosort", "eval", str(run), "--n-chunks", str(n)],
                       _exists(run_folder.eval_report_folder(run, f"test-n{n}"))) for n in MANY_CHUNKS_SCORED]
            continue
        steps += [
            (["audiosort", "eval", str(run), "--split", "val", "--sanity", ""],
             _exists(run_folder.eval_report_folder(run, "val-n3"))),
            (["audiosort", "eval", str(run)], _exists(run_folder.eval_report_folder(run, "test-n3"))),
        ]
    table = ["python", "scripts/seed_table.py"]
    for label, prefix in (("recipe-small-gaps", "recipe-small-gaps"), ("4,000 steps", "short"),
                          ("no seam", "noseam"), ("recipe-wide-gaps", "recipe-wide-gaps")):
        table += ["--row", label, *(str(run_folder.eval_report_folder(RUNS_DIR / f"{prefix}-s{seed}", "test-n3")) for seed in SEEDS)]
    steps += [
        (table, None),
        (["audiosort", "audit", "--config", "configs/recipe-wide-gaps.yaml", "--steps", "150", "--puzzles", "1000"], None),
        (["python", "scripts/make_probe_sets.py", "tracks", str(CORPUS), "--clips-per-track", "20",
          "--out", str(PROBE_SETS / "tracks")], _exists(PROBE_SETS / "tracks")),
        (["python", "scripts/make_probe_sets.py", "synthetic", "--out", str(PROBE_SETS / "tempo")], _exists(PROBE_SETS / "tempo")),
        (["python", "scripts/make_probe_sets.py", "instruments", "--out", str(PROBE_SETS / "instruments")],
         _exists(PROBE_SETS / "instruments")),
        (["python", "scripts/make_probe_sets.py", "pitch", "--out", str(PROBE_SETS / "pitch")], _exists(PROBE_SETS / "pitch")),
        (["audiosort", "probe", str(RUNS_DIR / PROBED_RUN),
          *(arg for task in ("tracks", "tempo", "instruments", "pitch") for arg in ("--data", str(PROBE_SETS / task))),
          "--supervised-steps", "600"], functools.partial(run_folder.stage_done, RUNS_DIR / PROBED_RUN, "probe")),
        (["python", "scripts/plot_study.py", "docs/transfer-study.yaml", "--runs-dir", str(RUNS_DIR),
          "--out", "docs/transfer-study.png"], None),
    ]
    return steps


def _group_pattern() -> str:
    """fetch_music.sh's pattern for the soundtracks' alternate takes, one group per piece."""
    if not Path("scripts/fetch_music.sh").exists():
        raise SystemExit("run from the repository root")
    return subprocess.run(["bash", "scripts/fetch_music.sh", "--group-pattern"], capture_output=True, text=True,
                          check=True).stdout.strip()


def _resuming(command: list[str]) -> list[str]:
    """A training whose run folder an interrupted study left started but unfinished continues: ``--resume``."""
    if command[:2] != ["audiosort", "train"]:
        return command
    name = next(arg.removeprefix("name=") for arg in command if arg.startswith("name="))
    started = run_folder.config_path(RUNS_DIR / name).exists() and not run_folder.stage_done(RUNS_DIR / name, "train")
    return [*command, "--resume"] if started else command


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--music", type=Path, default=Path("/tmp/music"), help="Where fetch_music.sh puts the soundtracks.")
    parser.add_argument("--dry-run", action="store_true", help="Print the commands, run nothing.")
    args = parser.parse_args(argv)
    for command, done in commands(args.music):
        command = _resuming(command)
        line = shlex.join(command)
        if done is not None and done():
            print(f"# done: {line}", flush=True)
            continue
        print(line, flush=True)
        if not args.dry_run and subprocess.run(command).returncode:
            print(f"transfer_study: stopped, this step failed: {line}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
