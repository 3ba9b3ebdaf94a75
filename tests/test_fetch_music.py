"""scripts/fetch_music.sh without the network: its source tables, group patterns and usage errors."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from audiosort.data import splits

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "fetch_music.sh"
DEFAULT_PATTERN = r"_enhanced(?=\.)|[-_]old(?=\.)|_remix(?=\.)|_sd(?=\.)|(?<![0-9])2(?=\.ogg$)"
DEFAULT_NAMES = [
    "warzone2100", "wesnoth", "widelands", "hedgewars", "supertux",
    "freedroidrpg", "flare", "megaglest", "openclonk", "freecol",
]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def run(*args):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def table(array):
    """The rows of one bash array of the script, as bash itself reads them."""
    text = SCRIPT.read_text()
    block = re.search(rf"^{array}=\(\n.*?^\)$", text, re.M | re.S).group(0)
    out = subprocess.run(
        ["bash", "-c", f'{block}\nprintf "%s\\n" "${{{array}[@]}}"'], capture_output=True, text=True, check=True
    ).stdout
    return [line.split("|") for line in out.splitlines()]


def test_default_group_pattern_is_unchanged():
    result = run("--group-pattern")
    assert result.returncode == 0
    assert result.stdout == DEFAULT_PATTERN + "\n"


def test_more_group_pattern_extends_the_default_and_folds_the_new_versions():
    result = run("--group-pattern", "--more")
    assert result.returncode == 0
    pattern = result.stdout.rstrip("\n")
    assert pattern.startswith(DEFAULT_PATTERN + "|")
    pairs = [
        ("supertuxkart/celtic.ogg", "supertuxkart/celtic_fast.ogg"),
        ("supertuxkart/farm.ogg", "supertuxkart/farm_f.ogg"),
        ("ardentryst/theme1.ogg", "ardentryst/theme1_raw.ogg"),
        ("warzone2100/menu.opus", "warzone2100/menu_enhanced.opus"),
    ]
    for a, b in pairs:
        assert splits._group_keys([a, b], pattern)[0] == splits._group_keys([a, b], pattern)[1], (a, b)
    # Distinct pieces stay apart: a name that merely ends in f or contains "fast".
    keys = splits._group_keys(["x/riff.ogg", "x/ri.ogg", "x/breakfast.ogg", "x/break.ogg"], pattern)
    assert len(set(keys)) == 4


@pytest.mark.parametrize("array", ["SOURCES", "MORE_SOURCES"])
def test_source_rows_are_well_formed(array):
    rows = table(array)
    assert rows
    for row in rows:
        assert len(row) in (4, 5), row
        name, package, pattern, style, *archive = row
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", name), row
        assert re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", package), row
        assert pattern.startswith("*/") and pattern.endswith("*"), row
        assert style.strip() == style and style, row
        if archive:
            assert pattern.startswith("*/unzipped/") and archive[0].startswith("*/"), row
        else:
            assert "unzipped" not in pattern, row


def test_default_list_is_the_ten_and_the_big_recipe_has_at_least_twenty_distinct_sources():
    default, more = table("SOURCES"), table("MORE_SOURCES")
    assert [row[0] for row in default] == DEFAULT_NAMES
    rows = default + more
    assert len({row[0] for row in rows}) == len(rows) >= 20
    assert len({row[1] for row in rows}) == len(rows)


def test_documented_held_out_sources_exist():
    names = {row[0] for row in table("SOURCES") + table("MORE_SOURCES")}
    held = re.findall(r"--test-sources '([a-z0-9-]+)/\*'", SCRIPT.read_text())
    assert "supertux" in held and len(set(held)) >= 3
    assert set(held) <= names


@pytest.mark.parametrize("args", [[], ["--more"], ["dir", "--more", "extra"], ["dir", "--travel"], ["dir", "--bogus"]])
def test_usage_errors_exit_2_before_any_download(args):
    result = run(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("usage:")
    assert "[--more]" in result.stderr
