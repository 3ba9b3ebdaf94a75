"""The Keras backend is an extra (issue 21 §5): a missing one is one line; TensorFlow's chatter stays off stderr."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _blocking(tmp_path, module):
    """An environment in which `import module` fails, as on a machine without it (sitecustomize runs at start-up)."""
    shim = tmp_path / f"no-{module}"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(f"import sys\nsys.modules[{module!r}] = None\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), str(REPO)])}


@pytest.mark.parametrize(
    "backend, missing, extra",
    [("tensorflow", "tensorflow", "pip install 'audiosort[tf]'"), ("jax", "jax", "pip install 'audiosort[jax]'")],
)
def test_a_missing_backend_is_one_line_naming_the_extra_to_install(tmp_path, backend, missing, extra):
    env = {**_blocking(tmp_path, missing), "KERAS_BACKEND": backend}
    result = subprocess.run(
        [sys.executable, "-m", "audiosort.cli", "train", "--config", str(REPO / "configs" / "tiny.yaml")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and extra in lines[0] and "Traceback" not in result.stderr, result.stderr[-2000:]


# At n = 20 the successor loss runs Keras's TensorFlow take_along_axis (int64 indices), whose first call
# logs "E0000 ... oneDNN supports DT_INT64 only on platforms with AVX-512"; a tf.function traced for
# eight shapes logs "triggered tf.function retracing" twice, as the audit's fresh model per sanity set did.
NOISY = """
from audiosort.cli import _import_keras_quietly
_import_keras_quietly()
import numpy as np, tensorflow as tf
from audiosort.heads import get_head
rng = np.random.default_rng(0)
order = np.stack([rng.permutation(20) for _ in range(8)]).astype(np.int32)
get_head("successor").loss()(order, rng.normal(size=(8, 21, 21)).astype(np.float32))
double = tf.function(lambda x: 2 * x)
for k in range(1, 9):
    double(tf.zeros((k,)))
print("done")
"""


@pytest.mark.slow
def test_the_cli_keeps_tensorflows_notes_and_retracing_warnings_off_stderr():
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(KERAS_BACKEND="tensorflow", PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-c", NOISY], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0 and result.stdout == "done\n", result.stderr[-2000:]
    assert result.stderr == ""


def _closure(requirements, extras_of=None):
    """Canonical names of every distribution that ``requirements`` pull in, read from the installed metadata.

    The resolution pip does, without a download: each requirement whose marker holds on this machine
    (with its extras), then the requirements of the installed distribution it names, recursively.
    """
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen = set()
    pending = [(Requirement(text), ("",)) for text in requirements]
    while pending:
        requirement, extras = pending.pop()
        if requirement.marker and not any(requirement.marker.evaluate({"extra": extra}) for extra in extras):
            continue
        name = canonicalize_name(requirement.name)
        if (name, tuple(sorted(requirement.extras))) in seen:
            continue
        seen.add((name, tuple(sorted(requirement.extras))))
        # A requirement not installed here cannot be inspected: fail rather than call the closure clean.
        distribution = metadata.distribution(name)
        pending += [(Requirement(text), ("", *requirement.extras)) for text in distribution.requires or ()]
    return {name for name, _ in seen}


def test_installing_the_jax_extra_pulls_in_no_tensorflow():
    # The fresh-venv proof (pip install -e '.[jax]', then prepare/train/eval, `import tensorflow` failing) is
    # scripts/check_jax_install.sh: minutes of installing, too slow for the suite. This is its resolution step.
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base, extras = project["dependencies"], project["optional-dependencies"]
    jax = _closure([*base, *extras["jax"]])
    assert {"jax", "jaxlib", "keras", "librosa"} <= jax
    assert not {name for name in jax if name.startswith(("tensorflow", "tf-"))}, sorted(jax)
    # The walk does find TensorFlow where it is pulled in, and Keras's TensorBoard callback needs tensorboard.
    assert {"tensorflow", "tensorboard"} <= _closure([*base, *extras["tf"]])
    assert extras["test"][0] == "audiosort[tf,jax]"  # the suite needs both backends
