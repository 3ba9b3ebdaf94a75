"""Under KERAS_BACKEND=jax every command runs on a machine without TensorFlow (issue 12 §2)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_music_files

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_prepare_train_eval_and_embed_run_under_jax_with_tensorflow_unimportable(tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    # Python imports sitecustomize at start-up; a None in sys.modules makes `import tensorflow` fail.
    (shim / "sitecustomize.py").write_text("import sys\nsys.modules['tensorflow'] = None\n")
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": os.pathsep.join([str(shim), str(REPO)])}

    def audiosort(*args):
        result = subprocess.run(
            [sys.executable, "-m", "audiosort.cli", *map(str, args)], capture_output=True, text=True, env=env, timeout=300
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    probe = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True, text=True, env=env)
    assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr  # the shim works

    corpus, runs = tmp_path / "corpus", tmp_path / "runs"
    tiny = REPO / "configs" / "tiny.yaml"
    audiosort("prepare", "--synthetic", "music", "--out", corpus, "--duration", "3m", "--track-seconds", "15",
              "--puzzles", "100", "--config", tiny, "--quiet")
    out = audiosort("train", "--config", tiny, "--set", f"data.corpus={corpus}", "--runs-dir", runs, "--quiet")
    assert out.splitlines()[0] == "training on jax, CPU: no GPU visible to jax, precision float32"
    run_dir = runs / "tiny"
    report = json.loads((run_dir / "metrics.json").read_text())
    assert (report["backend"], report["device"]) == ("jax", "CPU: no GPU visible to jax")
    if importlib.util.find_spec("tensorboardX") is not None:
        assert list((run_dir / "logs" / "validation").glob("events.out.tfevents.*"))
    audiosort("eval", run_dir, "--sanity", "noise", "--puzzles", "50")
    assert json.loads((run_dir / "eval" / "test-n3" / "eval.json").read_text())["datasets"]["test"]
    song = write_music_files(tmp_path / "songs", 1, seconds=2.0)[0]
    audiosort("embed", run_dir, song, "--out", tmp_path / "e.npz")
    assert (tmp_path / "e.npz").exists()
