"""``audiosort audit``: can this config's pipeline sort audio whose order is unknowable?

The seed's protocol for the pipeline itself ("Sorting Audio", 2016,
section "Validation and Problems I Faced"): train the config's model from scratch on
white noise, brown noise and a tone, then score it on held-out tracks of the
same kind. Nothing in that audio tells the order, so a model that sorts it
above chance has found the order in how the puzzles were cut: a fixed gap
steps a tone's phase the same every time, a gap shared by n >= 3 chunks lets
the model infer the step and extend the sine, and gaps too short for brown
noise let its edges continue (DESIGN.md, "Leaks to know").

For each sanity kind, :func:`audit`

1. renders the kind's train tracks and, from an independent stream, its
   held-out tracks (:func:`audiosort.sanity.sanity_tracks`: 8 tracks of 60 s
   each, at ``data.sample_rate``);
2. builds and compiles a fresh model exactly as ``audiosort train`` would
   (:func:`audiosort.train.compiled_model`) and fits it for ``steps`` batches
   of fresh puzzles cut from the train tracks with the config's puzzle
   settings;
3. scores ``n_puzzles`` held-out puzzles with eval's statistics: accuracies with
   95% intervals, the one-sided p-values of Kendall tau and of the
   exact-order count against chance, a verdict at alpha 0.01
   Bonferroni-corrected over the sets audited, on the order decoding
   (hungarian, or path for a successor head), and beside the verdict the
   true neighbours found with their own test at the same threshold; beside
   them the ideal observer's Kendall tau, neighbours and accuracy
   (:mod:`audiosort.leaks`), so that "at chance" can be told from "too weak to
   find the leak".

A leak is a property of the pipeline, not of the model that happens to be
trained on it: a log-mel encoder cannot hear a tone's phase or brown noise's
sample-level edges, so it stays at chance where the puzzles leak. The audit
therefore fails (exit 1) when the trained model **or an ideal observer** sorts
a set above chance, by the verdict or by the neighbours' test
(:meth:`AuditReport.problems` names which, by how much, the likely cause and
its fix).

Example
-------
>>> report = audit(load_config("configs/demo.yaml"), steps=400)  # doctest: +SKIP
>>> print("\\n".join(report.lines())); report.exit_code  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras

from audiosort import _files, features, reports
from audiosort.config import DEFAULT_SANITY, Config, to_dict
from audiosort.data import synthetic
from audiosort.data.puzzles import PuzzleSpec
from audiosort.errors import ConfigError, InputError, check_positive_int
from audiosort.leaks import IdealObserver
from audiosort.run import AUDIOSORT_FOLDERS
from audiosort.sanity import (
    SANITY_KINDS,
    SANITY_TONE_HZ,
    SANITY_TRACK_SECONDS,
    SANITY_TRACKS,
    sanity_ideal_observer,
    sanity_puzzles,
    sanity_tracks,
)
from audiosort.train import compiled_feature_model, compiled_model, compiled_training_twin, fit, train_batches
from audiosort.verdicts import ALPHA, DatasetResult, Verdicts, p_text, neighbours_and_p, score_dataset, tau_and_p

# 400 steps of the config's batch: enough for the small waveform models of the tests to learn
# each leak of DESIGN.md (see tests/test_audit.py), about a minute per set for configs/demo.yaml
# on 2 CPU cores. A larger model may need more: the ideal observer column says what there is to find.
DEFAULT_STEPS = 400
DEFAULT_PUZZLES = 1000
# Brown noise's edges correlate by exp(-2 pi 5 Hz x gap). Its ideal observer (n=3, 20000 puzzles) sorts
# gaps of 0.15 s (correlation 0.009) at 0.172 [0.167, 0.178], of 0.2 s (0.002) at 0.167: chance.
_BROWN_SAFE_CORRELATION = 0.002


@dataclass
class AuditReport(Verdicts):
    """The sanity sets of one audit and the verdicts that follow from them.

    Attributes
    ----------
    config : Config
        The config audited.
    spec : PuzzleSpec
        Its puzzle settings in samples at ``config.data.sample_rate``.
    steps : int
        Training steps per set.
    seed : int
        Seeded the audio and the puzzles.
    datasets : list of DatasetResult
        One per sanity kind, in the order audited.
    train_seconds : dict
        Wall time of each set's training (build, compile and fit), in seconds.
    alpha : float in (0, 1)
        Family-wise false-positive rate, split over the sets (Bonferroni).
    """

    config: Config
    spec: PuzzleSpec
    steps: int
    seed: int
    datasets: list[DatasetResult]
    train_seconds: dict = field(default_factory=dict)
    alpha: float = ALPHA

    def leaking(self) -> list[DatasetResult]:
        """The sanity sets the model sorts above chance by the verdict or by the neighbours' own test."""
        return [r for r in self.datasets if r.sanity and "above_chance" in (self.verdict(r), self.neighbour_verdict(r))]

    def problems(self) -> list[str]:
        """One line per leak: each set the model sorts above chance, then each set only its ideal observer sorts.

        A leak is a property of the pipeline, not of the model trained on it:
        a set whose ideal observer sorts it above chance fails the audit even
        where this config's model stayed at chance, e.g. ``"brown: its ideal
        observer (...) sorts it at Kendall tau 0.637 (chance 0) and 0.695 exact
        (chance 0.167; p < 1e-300) ..."``.
        """
        lines = [f"{r.name} sorted above chance ({self._evidence(r)}): {self.diagnosis(r)}" for r in self.leaking()]
        model_found = {r.name for r in self.leaking()}
        for result in self.ideal_leaking():
            if result.name in model_found:
                continue
            ideal = result.ideal
            tested = "exact" if ideal.p_value is None else p_text(ideal.p_value)
            neighbours_tested = "exact" if ideal.neighbour_p_value is None else p_text(ideal.neighbour_p_value)
            lines.append(
                f"{result.name}: its ideal observer ({ideal.method}) sorts it at Kendall tau {ideal.kendall_tau:.3f} "
                f"(chance 0) and {ideal.exact_accuracy:.3f} exact (chance {ideal.chance:.3g}; {tested}), "
                f"{ideal.neighbour_share:.3f} of true neighbours found (chance {2 / ideal.n_chunks:.3f}; "
                f"{neighbours_tested}), though this model stayed at chance: {self.diagnosis(result)}"
            )
        return lines

    def _evidence(self, result: DatasetResult) -> str:
        """The test that found ``result`` above chance: the verdict's where it did, else the neighbours'."""
        scores = result.scores.order_scores
        if self.verdict(result) == "above_chance":
            return tau_and_p(scores)
        return neighbours_and_p(scores, result.scores.n_chunks)

    @property
    def exit_code(self) -> int:
        """1 if the model or an ideal observer sorts any sanity set above chance (verdict or neighbours), else 0."""
        return 1 if self.leaking() or self.ideal_leaking() else 0

    def diagnosis(self, result: DatasetResult) -> str:
        """Why ``result``'s set could be sorted, given the puzzle settings, and the fix."""
        kind, tone_method = SANITY_KINDS[result.name]
        spec, sample_rate = self.spec, self.config.data.sample_rate
        if kind == "tone":
            return _tone_diagnosis(spec, sample_rate, tone_method, result.ideal if self.ideal_sorts(result) else None)
        if kind == "brown":
            return _brown_diagnosis(spec, sample_rate)
        return "white noise carries no order, so something other than the audio tells it (a bug in the sampler?)"

    def lines(self) -> list[str]:
        """What ``audiosort audit`` prints on stdout: settings, the table and what it means."""
        config, spec, sample_rate = self.config, self.spec, self.config.data.sample_rate
        puzzles = ", ".join(f"{r.name} {r.scores.n_puzzles}" for r in self.datasets)
        seconds = ", ".join(f"{name} {value:.0f} s" for name, value in self.train_seconds.items())
        if spec.pad_mode == "fixed":
            gaps = f"every gap {spec.pad_max_samples / sample_rate:.4g} s (fixed)"
        else:
            low, high = spec.pad_min_samples / sample_rate, spec.pad_max_samples / sample_rate
            grid = f"; on the {spec.grid_samples}-sample grid of cached features" if spec.grid_samples > 1 else ""
            gaps = f"gaps {low:.4g}-{high:.4g} s ({spec.pad_mode}{grid})"
        return [
            f"audit of {config.name}: {spec.n_chunks} chunks of {spec.chunk_samples / sample_rate:.4g} s, {gaps} "
            f"at {sample_rate} Hz",
            f"each set: a fresh {config.model.encoder.type}/{config.model.sorter.type} model trained {self.steps} steps "
            f"of {config.train.batch_size} puzzles on {SANITY_TRACKS} tracks x {SANITY_TRACK_SECONDS:.0f} s, scored on "
            f"held-out tracks (puzzles: {puzzles}; training: {seconds})",
            "",
            *reports.table(self),
            "",
            *reports.notes(self),
        ]

    def to_dict(self) -> dict:
        """``audit.json``: the config, the budget, then one entry per set as in ``eval.json``."""
        entries = reports.entries(self)
        for result in self.datasets:
            if result in self.leaking() or self.ideal_sorts(result):
                entries[result.name]["diagnosis"] = self.diagnosis(result)
        for name, value in self.train_seconds.items():
            entries[name]["train_seconds"] = round(value, 1)
        return {
            "config": to_dict(self.config),
            "steps": self.steps,
            "seed": self.seed,
            "alpha": self.alpha,
            "n_tests": self.n_tests,
            "verdict_decoding": self.datasets[0].scores.order_decoding,
            "datasets": entries,
        }

    def write(self, folder: str | Path) -> Path:
        """Write ``audit.json`` into ``folder`` (created if missing), atomically; return its path."""
        path = writable_folder(folder) / "audit.json"
        _files.write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")
        return path


def writable_folder(folder: str | Path, config: Config | None = None) -> Path:
    """Create ``folder`` if missing and check it can be written, so a bad ``--out`` fails before any training.

    ``folder`` must be a folder of the user's own (see
    :func:`audiosort._files.check_files_into`): not the working folder or one
    above it, not in a corpus, run or sweep folder, nor overlapping the
    corpus of ``config``.

    Raises
    ------
    InputError
        ``folder`` is not such a folder, is a file, cannot be created, or is not writable.
    """
    folder = Path(folder)
    _files.check_files_into(
        folder, ["audit.json"], what="out path", keep=(config.data.corpus,) if config else (), folders=AUDIOSORT_FOLDERS
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create {folder}: {e.strerror or e}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write into {folder}: permission denied")
    return folder


def audit(
    config: Config,
    *,
    steps: int = DEFAULT_STEPS,
    n_puzzles: int = DEFAULT_PUZZLES,
    seed: int = 0,
    sanity: tuple = DEFAULT_SANITY,
) -> AuditReport:
    """Train ``config``'s model from scratch on each sanity kind and score it on held-out tracks.

    Parameters
    ----------
    config : Config
        Validated config: its ``puzzle`` settings, ``data.sample_rate``,
        ``model``, and ``train`` (batch size, learning rate and schedule,
        precision; ``seed`` initializes the weights). ``data.corpus`` is not read.
    steps : int > 0, keyword-only
        Training steps per set, each a batch of ``train.batch_size`` fresh puzzles.
    n_puzzles : int > 0, keyword-only
        Held-out puzzles scored per set.
    seed : int, keyword-only
        Seeds the train and held-out audio and their puzzles.
    sanity : sequence of str, keyword-only
        Keys of :data:`audiosort.sanity.SANITY_KINDS`, each audited once.

    Returns
    -------
    AuditReport
        ``exit_code`` 1 when the trained model or an ideal observer sorts any set
        above chance; nothing is written.

    Raises
    ------
    InputError
        A bad budget or sanity name; training that diverges.
    ConfigError
        Puzzle settings whose chunk set is longer than a sanity track (60 s), or
        ``puzzle.align`` on beats (noise and tones have none to align to).
    """
    check_positive_int(steps, "steps")
    check_positive_int(n_puzzles, "n_puzzles")
    sanity = tuple(sanity)
    if not sanity:
        raise InputError(f"no sanity set to audit; choose from {', '.join(SANITY_KINDS)}")
    for kind in sanity:
        if kind not in SANITY_KINDS:
            raise InputError(f"unknown sanity set {kind!r}; choose from {', '.join(SANITY_KINDS)}")
    if len(set(sanity)) != len(sanity):
        raise InputError(f"sanity={','.join(sanity)} names a set twice")
    if config.puzzle.align != "none":
        # The held-out sets and their ideal observers know gaps drawn uniformly, and the beats a tracker finds
        # in noise are arbitrary (in a steady tone, none): an aligned audit would test something else.
        raise ConfigError(
            f"puzzle.align = {config.puzzle.align!r} cannot be audited on noise and tones, which have no beats; "
            "audit the config with puzzle.align=none (alignment moves only where training chunks start)"
        )
    sample_rate = config.data.sample_rate
    spec = PuzzleSpec.from_config(config.puzzle, sample_rate=sample_rate)
    if config.data.features == "cached":
        # Training then cuts on the cache's grid: so do the held-out puzzles, and the ideal observers know it.
        spec = features.FrontEnd.from_config(config).grid_spec(spec)
    if spec.max_span_samples > SANITY_TRACK_SECONDS * sample_rate:
        raise ConfigError(
            f"a chunk set of these puzzle settings spans {spec.max_span_samples / sample_rate:.3f} s, "
            f"longer than a sanity track ({SANITY_TRACK_SECONDS:.0f} s)"
        )
    results, train_seconds = [], {}
    for kind in sanity:
        # Held-out first: a settings problem surfaces before any training.
        puzzles, source = sanity_puzzles(kind, spec, sample_rate=sample_rate, n_puzzles=n_puzzles, seed=seed)
        ideal = sanity_ideal_observer(kind, puzzles, spec, sample_rate)
        started = time.perf_counter()
        model = _train_on_sanity_audio(config, spec, kind, steps=steps, seed=seed)
        train_seconds[kind] = time.perf_counter() - started
        source = {**source, "train_steps": steps}
        results.append(
            score_dataset(
                puzzles, model, name=kind, sanity=True, source=source, ideal=ideal, batch_size=config.train.batch_size
            )
        )
    return AuditReport(config, spec, steps, seed, results, train_seconds)


def _train_on_sanity_audio(config: Config, spec: PuzzleSpec, kind: str, *, steps: int, seed: int) -> keras.Model:
    """A fresh model of ``config`` fitted for ``steps`` batches of puzzles from the kind's train tracks."""
    tracks, rng, _ = sanity_tracks(kind, sample_rate=config.data.sample_rate, seed=seed, split="train")
    cached, twin = config.data.features == "cached", config.model.training_twin
    model, encoder = compiled_model(
        config, spec, sample_rate=config.data.sample_rate, total_steps=steps, compile=not cached and not twin
    )
    batch_size = config.train.batch_size
    try:
        if cached:
            # The stream train reads: the tracks' cached features (here in memory), fitted by the model's feature twin.
            cache = features.FeatureCache.in_memory(tracks, features.FrontEnd.from_config(config))
            fitted = compiled_feature_model(model, encoder, config, total_steps=steps)
            batches = features.cached_puzzle_batches(cache, spec, batch_size, rng=rng, edges=config.model.sorter.seam)
        else:
            fitted = compiled_training_twin(model, config, spec, total_steps=steps) if twin else model
            # model.contrastive.distinct_tracks is left off: the SANITY_TRACKS tracks are fewer than a batch, and
            # one sanity kind's tracks are draws of one process, with no identity for the loss to tell apart.
            batches = train_batches(
                tracks, spec, batch_size, rng=rng, augment=config.augment, sample_rate=config.data.sample_rate, offsets=twin
            )
        fit(fitted, batches, batch_size=batch_size, epochs=1, steps_per_epoch=steps)
    except InputError as e:
        raise InputError(f"training on {kind}: {e}") from None
    return model


def _tone_diagnosis(spec: PuzzleSpec, sample_rate: int, tone_method: str, sortable: IdealObserver | None) -> str:
    """The tone's leak and fix, by pad_mode and gap range; ``sortable``: its ideal observer where above chance."""
    period_samples = round(sample_rate / SANITY_TONE_HZ) if tone_method == "tiled" else sample_rate / SANITY_TONE_HZ
    period_ms = 1000 * period_samples / sample_rate
    fix = f"use pad_mode per_gap with a range of at least one period ({period_ms:.2f} ms)"
    if spec.pad_mode == "fixed" or spec.pad_min_samples == spec.pad_max_samples:
        gap_ms = 1000 * spec.pad_max_samples / sample_rate
        return (
            f"every gap is {gap_ms:.3g} ms, so the tone's phase steps by the same amount every time and the phases "
            f"tell the order — {fix}"
        )
    if spec.pad_mode == "shared" and spec.n_chunks >= 3:
        return (
            f"one gap shared by all {spec.n_chunks} chunks lets the model infer the phase step and extend the sine "
            f"(the seed's finding) — {fix}"
        )
    gap_values = (spec.pad_max_samples - spec.pad_min_samples) // spec.grid_samples + 1
    # On a grid (cached features) the phase steps repeat every `cycle` gap values, not every period's samples.
    cycle = period_samples // math.gcd(spec.grid_samples, period_samples) if tone_method == "tiled" else period_samples
    if spec.grid_samples > 1 and tone_method == "tiled" and sortable is not None:
        cycle_ms = 1000 * cycle * spec.grid_samples / sample_rate
        return (
            f"on the {spec.grid_samples}-sample grid of cached features the gaps take {gap_values} values, and the "
            f"tone's phase steps repeat every {cycle} of them, so some steps are likelier (ideal observer "
            f"{sortable.exact_accuracy:.3f}) — make the number of gap values a multiple of {cycle} (a range of "
            f"pad_max_seconds - pad_min_seconds + {spec.grid_samples / sample_rate:g} s = k x {cycle_ms:g} ms)"
        )
    if gap_values < period_samples:
        return (
            f"the gaps take {gap_values} values, less than one period, so the phase step barely varies "
            f"and the gaps carry the order — widen pad_max_seconds - pad_min_seconds to at least {period_ms:.2f} ms"
        )
    if tone_method == "exact":
        return (
            "every integer-sample gap steps an exact 440 Hz tone's phase by its own amount, so the gaps carry the "
            "order even per gap (DESIGN.md, 'Leaks to know'); expected of tone-exact, the harder tripwire"
        )
    if sortable is not None:
        return (
            f"the gap range is not a whole number of periods, so some phase steps are likelier "
            f"(ideal observer {sortable.exact_accuracy:.3f}) — make the range of gaps k x {period_ms:.2f} ms"
        )
    return "an ideal observer of the gaps is at chance here, so something else tells the order (a bug in the sampler?)"


def _brown_diagnosis(spec: PuzzleSpec, sample_rate: int) -> str:
    """Brown noise's leak and fix: the correlation of chunk edges across the shortest gap."""
    # Correlation of brown noise's samples g + 1 steps apart: pole ** (g + 1) (leaks.ideal_brown_accuracy).
    rate = 2 * math.pi * synthetic.BROWN_NOISE_LEAK_HZ
    correlation = math.exp(-rate * (spec.pad_min_samples + 1) / sample_rate)
    safe_seconds = math.ceil(100 * math.log(1 / _BROWN_SAFE_CORRELATION) / rate) / 100
    if correlation <= _BROWN_SAFE_CORRELATION:
        return "its edges are too far apart to correlate, so something else tells the order (a bug in the sampler?)"
    return (
        f"its edges continue across gaps this small (correlation {correlation:.2f} across the shortest, "
        f"{spec.pad_min_samples / sample_rate * 1000:.3g} ms) — use larger gaps (pad_min_seconds >= {safe_seconds:.2f} "
        f"puts it below {_BROWN_SAFE_CORRELATION})"
    )
