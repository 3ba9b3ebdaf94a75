"""Parse a sweep file into validated runs: grid expansion, names, overrides.

See :mod:`audiosort.sweep` for the file format.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import yaml

from audiosort.config import (
    DEFAULT_PUZZLES, DEFAULT_SANITY, RUN_NAME_RULE, Config, closest_key, is_folder_name, load_config, read_yaml,
)
from audiosort.errors import ConfigError

SWEEP_KEYS = ("name", "base", "set", "grid", "eval", "probe")
EVAL_KEYS = ("split", "puzzles", "sanity")
# Runs one sweep may hold: each is validated up front, and each is a training run.
MAX_RUNS = 1000
EVAL_DEFAULTS = {"split": "test", "puzzles": DEFAULT_PUZZLES, "sanity": list(DEFAULT_SANITY)}


@dataclasses.dataclass(frozen=True)
class SweepRun:
    """One run of a sweep.

    Attributes
    ----------
    name : str
        Run folder name, from the varied values: ``chunk_seconds=0.2_n_chunks=3``.
    values : dict
        Grid key (as written in the sweep file) -> this run's value.
    overrides : tuple of str
        ``section.key=value`` strings applied to the base config, name last.
    """

    name: str
    values: dict
    overrides: tuple


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A parsed sweep file (see the module docstring).

    Attributes
    ----------
    name : str
        The sweep's folder name under the runs folder.
    base : Path
        The base config file.
    fixed : tuple of str
        ``section.key=value`` overrides for every run (the file's ``set:``, then ``--set``).
    axes : tuple of (tuple of str, list)
        Grid axes in file order: the keys varied together, and their values
        (one value per key when several keys share an axis).
    eval : dict
        ``split``, ``puzzles`` and ``sanity`` for ``audiosort eval``.
    probe : tuple of str
        Labelled folders each run's encoder is probed on.
    """

    name: str
    base: Path
    fixed: tuple
    axes: tuple
    eval: dict
    probe: tuple

    def runs(self) -> list[SweepRun]:
        """Every combination of the axes' values, in grid order (the last axis varies fastest)."""
        labels = _axis_labels(self.axes)
        runs = []
        for combo in itertools.product(*(values for _, values in self.axes)):
            values, overrides, parts = {}, list(self.fixed), []
            for (keys, _), value, label in zip(self.axes, combo, labels):
                values[", ".join(keys)] = value
                per_key = value if len(keys) > 1 else [value]
                for key, key_label, item in zip(keys, label, per_key):
                    overrides.append(f"{key}={yaml_scalar(item)}")
                    # A value that is a path (data.corpus) stays one folder name.
                    parts.append(f"{key_label}={yaml_scalar(item)}".replace("/", "-").replace("\\", "-"))
            name = "_".join(parts) or "base"
            runs.append(SweepRun(name=name, values=values, overrides=(*overrides, f"name={name}")))
        return runs

    def configs(self) -> list[tuple[SweepRun, Config]]:
        """Each run with its validated config; a bad value fails here, naming the run."""
        out = []
        for run in self.runs():
            try:
                out.append((run, load_config(self.base, run.overrides)))
            except ConfigError as e:
                raise ConfigError(f"sweep run {run.name}: {e}") from None
        return out


def load_sweep(path: str | Path, overrides: tuple = ()) -> Sweep:
    """Read and validate a sweep file.

    Parameters
    ----------
    path : str or Path
        The sweep YAML.
    overrides : sequence of str
        ``section.key=value`` applied to every run after the file's ``set:``;
        a key the grid varies is refused.

    Returns
    -------
    Sweep

    Raises
    ------
    ConfigError
        An unreadable file, an unknown key (naming the closest valid one), a
        grid axis without values, keys and values of different lengths, or a
        run whose config does not validate.
    """
    path = Path(path)
    raw = read_yaml(path, what="sweep") or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping with base: and grid:")
    _check_keys(raw, SWEEP_KEYS, "", path)
    if "base" not in raw:
        raise ConfigError(f"{path} has no base: (the config file every run starts from)")
    base = path.parent / str(raw["base"])
    if not base.is_file():
        raise ConfigError(f"base config {base} (from {path}) does not exist")

    fixed = [f"{key}={yaml_scalar(value)}" for key, value in _mapping(raw, "set", path).items()]
    axes = []
    for joined, values in _mapping(raw, "grid", path).items():
        keys = tuple(key.strip() for key in str(joined).split(","))
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid.{joined} in {path} must be a non-empty list of values")
        if len(keys) > 1 and any(not isinstance(v, list) or len(v) != len(keys) for v in values):
            raise ConfigError(f"grid.{joined} in {path}: every value must be a list of {len(keys)} ({', '.join(keys)})")
        axes.append((keys, values))
    count = math.prod(len(values) for _, values in axes)
    if count > MAX_RUNS:
        raise ConfigError(
            f"the grid in {path} makes {count} runs; the limit is {MAX_RUNS} runs a sweep: split it into several sweeps"
        )
    varied = {key for keys, _ in axes for key in keys}
    for override in overrides:
        key = override.partition("=")[0].strip()
        if key in varied:
            raise ConfigError(f"overrides {key}: the sweep's grid varies this key; change the grid instead")
    fixed += list(overrides)

    evaluation = dict(EVAL_DEFAULTS)
    given = _mapping(raw, "eval", path)
    _check_keys(given, EVAL_KEYS, "eval.", path)
    evaluation.update(given)
    if isinstance(evaluation["sanity"], str):
        evaluation["sanity"] = [s.strip() for s in evaluation["sanity"].split(",") if s.strip()]
    _check_eval(evaluation, path)
    probe = raw.get("probe") or []
    if not isinstance(probe, list):
        raise ConfigError(f"probe in {path} must be a list of labelled folders")

    name = str(raw.get("name") or path.stem)
    if not is_folder_name(name):
        raise ConfigError(f"name = {name!r} in {path} {RUN_NAME_RULE} (the sweep's folder under runs_dir)")
    sweep = Sweep(
        name=name,
        base=base,
        fixed=tuple(fixed),
        axes=tuple(axes),
        eval=evaluation,
        probe=tuple(str(p) for p in probe),
    )
    names = [run.name for run, _ in sweep.configs()]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: two runs of the grid get the same name; give each axis distinct values")
    return sweep


def _check_eval(evaluation: dict, path: Path) -> None:
    """Check ``eval:`` before anything trains, as ``audiosort eval`` would check its flags."""
    if evaluation["split"] not in ("val", "test"):
        raise ConfigError(f"eval.split = {evaluation['split']!r} in {path} must be one of val, test")
    puzzles = evaluation["puzzles"]
    if isinstance(puzzles, bool) or not isinstance(puzzles, int) or puzzles < 1:
        raise ConfigError(f"eval.puzzles = {puzzles!r} in {path} must be an int >= 1")
    sanity = evaluation["sanity"]
    if not isinstance(sanity, list) or not all(isinstance(name, str) and name for name in sanity):
        raise ConfigError(f"eval.sanity = {sanity!r} in {path} must be a list of sanity set names")


def _axis_labels(axes) -> list[list[str]]:
    """Short names for each grid key: the last part, or more parts where two keys would clash."""
    keys = [key for key_group, _ in axes for key in key_group]

    def short(key):
        parts = key.split(".")
        for k in range(1, len(parts) + 1):
            label = ".".join(parts[-k:])
            if sum(other.split(".")[-k:] == parts[-k:] for other in keys) == 1:
                return label
        return key

    return [[short(key) for key in key_group] for key_group, _ in axes]


def _check_keys(raw: dict, valid: tuple, prefix: str, path: Path) -> None:
    for key in raw:
        if key not in valid:
            close = closest_key(key, valid)
            hint = f"; did you mean '{prefix}{close}'?" if close else ""
            raise ConfigError(f"unknown key '{prefix}{key}' in sweep {path}{hint}")


def _mapping(raw: dict, key: str, path: Path) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key} in {path} must be a mapping of section.key: value")
    return value


def sweep_dict(sweep: Sweep) -> dict:
    """The sweep as it resolved, for ``sweep.yaml`` in its folder."""
    return {
        "name": sweep.name,
        "base": str(sweep.base),
        "set": list(sweep.fixed),
        "grid": {", ".join(keys): values for keys, values in sweep.axes},
        "eval": sweep.eval,
        "probe": list(sweep.probe),
    }


def yaml_scalar(value) -> str:
    """A value as --set reads it back (YAML flow style, no trailing newline)."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()
