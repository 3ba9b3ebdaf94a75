"""Copy a trained seam run with its seam term muted, so `audiosort eval` scores what the embeddings alone sort.

Issue 27's goal 4 asks whether the encoder carries order on its own: a head
that sees only pooled chunk embeddings, no seam and no raw edges. A seam
model trained with ``model.sorter.seam_dropout`` has sorted such puzzles all
along (the dropped ones); muting the seam (its scale set to ~1e-35, so its
scores are 0 for any distance a log-mel edge can have) makes every puzzle one
of them, with the same weights. The copy is a complete run folder (no
checkpoints), evaluated as any other:

    python scripts/mute_seam.py runs/views-small-s0 runs/views-small-s0-muted
    audiosort eval runs/views-small-s0-muted
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

from audiosort import run

MUTED_LOG_SCALE = -80.0


def mute_seam(run_dir: Path, out_dir: Path) -> None:
    """Write ``out_dir``, a copy of the finished run ``run_dir`` whose model's seam scores are zero.

    Raises
    ------
    SystemExit
        ``out_dir`` exists, ``run_dir`` is not finished, or its model has no seam term.
    """
    if out_dir.exists():
        sys.exit(f"error: {out_dir} exists; choose a new folder")
    if not run.stage_done(run_dir, "train"):
        sys.exit(f"error: {run_dir} is not a finished run")
    model = run.load_run_model(run_dir)
    seam = [layer for layer in model.get_layer("sorter").layers if layer.name == "seam"]
    if not seam:
        sys.exit(f"error: the model of {run_dir} has no seam term (model.sorter.seam is false)")
    band_weight, _ = seam[0].get_weights()
    seam[0].set_weights([band_weight, np.asarray(MUTED_LOG_SCALE, dtype=np.float32)])
    shutil.copytree(run_dir, out_dir, ignore=shutil.ignore_patterns("checkpoints", "eval", "logs"))
    run.save_keras(model, run.model_path(out_dir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished run folder whose model has a seam term")
    parser.add_argument("out_dir", type=Path, help="the new run folder (must not exist)")
    args = parser.parse_args()
    mute_seam(args.run_dir, args.out_dir)
    print(f"wrote {args.out_dir}: the model of {args.run_dir} with its seam muted")


if __name__ == "__main__":
    main()
