"""The layout's never-rules (docs/architecture.md), read off every import statement, deferred ones too."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "audiosort"
EVALUATION_ROOMS = ("baselines", "evaluate", "metrics", "verdicts", "audit", "leaks", "probe")
NETWORK = ("keras", "tensorflow", "jax", "audiosort.models", "audiosort.features")
CODECS_AND_KERAS = ("keras", "tensorflow", "jax", "soundfile", "librosa", "soxr", "audiosort.audio")


def imported(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in ``path`` names, with ``from audiosort import x`` as ``audiosort.x``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def breaking(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(name for name in imported(path) if any(name == f or name.startswith(f + ".") for f in forbidden))


def modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).glob("*.py"))


@pytest.mark.parametrize("path", modules("models"), ids=lambda p: p.name)
def test_models_never_import_an_evaluation_room(path):
    assert breaking(path, tuple(f"audiosort.{room}" for room in EVALUATION_ROOMS)) == []


@pytest.mark.parametrize("path", modules("data"), ids=lambda p: p.name)
def test_data_never_imports_a_network(path):
    assert breaking(path, NETWORK) == []


@pytest.mark.parametrize("name", ["spectra.py", "pcm.py"])
def test_the_ground_floor_imports_no_keras_and_no_codec(name):
    assert breaking(PACKAGE / name, CODECS_AND_KERAS) == []


def test_audio_decodes_without_data_or_a_network():
    assert breaking(PACKAGE / "audio.py", ("keras", "tensorflow", "jax", "audiosort.data", *NETWORK)) == []


def test_spectra_imports_numpy_alone():
    assert {name.split(".")[0] for name in imported(PACKAGE / "spectra.py")} <= {"__future__", "functools", "numpy"}


@pytest.mark.parametrize("path", [p for p in sorted(PACKAGE.rglob("*.py")) if p.name != "cli.py"], ids=lambda p: p.name)
def test_nothing_imports_the_command_line(path):
    assert breaking(path, ("audiosort.cli",)) == []


def test_the_scan_sees_a_deferred_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from audiosort import baselines\n    import keras.ops\n")
    assert breaking(module, ("audiosort.baselines", "keras")) == ["audiosort.baselines", "keras.ops"]


def test_config_heads_and_spectra_import_without_keras():
    script = (
        "import sys, audiosort.config, audiosort.heads, audiosort.spectra; "
        "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'librosa', 'soundfile') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_readme_and_docs_link_only_files_inside_the_repository():
    root = PACKAGE.parent
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.exists() or root.resolve() not in path.parents:
                broken.append(f"{page.name}: {target}")
    assert broken == []
    assert "../" not in (root / "README.md").read_text()  # a user of the project has nothing beside it
