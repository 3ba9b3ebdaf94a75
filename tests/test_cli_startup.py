"""`import audiosort`, `audiosort --help` and usage errors import neither Keras nor TensorFlow (issue 14, finding 9)."""

import subprocess
import sys

import pytest

CHECK = """
import sys
from audiosort.cli import main
try:
    main({args!r})
except SystemExit as e:
    print(e.code)
heavy = sorted(name for name in ("keras", "tensorflow", "jax") if name in sys.modules)
print(",".join(heavy) or "none")
"""


@pytest.mark.parametrize(
    "args, code",
    [
        (["--help"], 0),
        (["train", "--help"], 0),
        (["dream", "--help"], 0),  # its help reads dream.py's defaults from the source, not by importing it
        (["train"], 2),  # --config missing
        (["eval", "run", "--seed", "-1"], 2),
        (["listen", "run", "a.wav"], 2),  # --out missing
    ],
)
def test_help_and_usage_errors_import_no_keras(args, code):
    result = subprocess.run([sys.executable, "-c", CHECK.format(args=args)], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().splitlines()[-2:] == [str(code), "none"], result.stdout + result.stderr


@pytest.mark.parametrize(
    "args, line",
    [
        (["train", "--bogus"], "Error: No such option '--bogus' (see 'audiosort train --help')"),
        (["--bogus"], "Error: No such option '--bogus' (see 'audiosort --help')"),
        (["bogus"], "Error: No such command 'bogus' (see 'audiosort --help')"),
    ],
)
def test_a_usage_error_is_one_line(args, line):
    result = subprocess.run([sys.executable, "-m", "audiosort.cli", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [line]


def test_importing_the_package_imports_no_keras():
    script = "import sys, audiosort; print(any(m in sys.modules for m in ('keras', 'tensorflow', 'jax')))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr
