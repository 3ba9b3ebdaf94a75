"""The ``audiosort`` command line: parse, call one library function, print.

Exit codes: 0 success; 1 a check ran and found a problem; 2 bad usage, config
or input (one line on stderr, no traceback); 130 interrupted (Ctrl-C). Only
this module turns :class:`audiosort.errors.AudiosortError` into exit code 2.

Keras and TensorFlow are imported only once a command's arguments have
parsed (:class:`_KerasCommand`), so ``--help`` and usage errors stay fast.
"""

from __future__ import annotations

import math
import os
import re
import signal
import sys

import click

from audiosort.config import DEFAULT_PUZZLES, DEFAULT_SANITY, SEED_RULE, is_valid_seed
from audiosort.errors import AudiosortError, InputError


class UserError(click.ClickException):
    """An AudiosortError shown as ``Error: <message>`` with exit code 2."""

    exit_code = 2


class Interrupted(click.ClickException):
    """Ctrl-C: exit 130, the shell's code for SIGINT, not 1 (which means a check found a problem)."""

    exit_code = 128 + signal.SIGINT

    def __init__(self):
        super().__init__("interrupted")


class SeedType(click.ParamType):
    """``--seed``: an integer from 0 to 2**32 - 1, the same rule as a config's ``seed``."""

    name = "integer"

    def convert(self, value, param, ctx):
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = value
        if not is_valid_seed(number):
            self.fail(f"{value!r} {SEED_RULE}", param, ctx)
        return number


SEED = SeedType()


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange that also refuses NaN and inf, which its comparisons let through."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


# The ranges every numeric flag is checked against here, at the edge; the library checks its
# parameters again under their own names (n_puzzles, not --puzzles).
AT_LEAST_ONE = click.IntRange(min=1)
SECONDS = FiniteFloatRange(min=0)
POSITIVE_SECONDS = FiniteFloatRange(min=0, min_open=True)
FRACTION = FiniteFloatRange(min=0, max=1, max_open=True)


class _KerasCommand(click.Command):
    """A command that needs Keras: import it, with native start-up notes silenced, after parsing."""

    def invoke(self, ctx):
        _import_keras_quietly()
        return super().invoke(ctx)


def _import_keras_quietly() -> None:
    # TensorFlow prints C++ notes (oneDNN, "could not find cuda drivers", "failed call to cuInit"
    # when it first looks for a GPU) before its log level applies; they would break the promise
    # of one line on stderr. Under JAX, nothing here imports TensorFlow.
    from audiosort._stderr import native_stderr_silenced, quiet_tensorflow_logs

    quiet_tensorflow_logs()
    try:
        with native_stderr_silenced():
            import keras

            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                tf.config.list_physical_devices("GPU")
    except ImportError as e:
        missing = (e.name or "").partition(".")[0]
        if missing not in _BACKEND_EXTRAS:
            raise
        raise UserError(_BACKEND_EXTRAS[missing]) from None


# The one line a missing Keras backend gets: which extra installs it (pyproject.toml).
_BACKEND_EXTRAS = {
    "tensorflow": "Keras's backend is TensorFlow (KERAS_BACKEND unset or tensorflow), which is not installed: "
    "pip install 'audiosort[tf]' (or '[cuda]'), or pip install 'audiosort[jax]' and set KERAS_BACKEND=jax",
    "jax": "KERAS_BACKEND=jax, but JAX is not installed: pip install 'audiosort[jax]' (or '[jax-cuda]')",
}


class _Group(click.Group):
    command_class = _KerasCommand

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:  # a mistake before the command name: `audiosort --bogus`
            raise _one_line(e) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except AudiosortError as e:
            raise UserError(as_flags(str(e))) from None
        except click.UsageError as e:
            raise _one_line(e) from None
        except KeyboardInterrupt:
            raise Interrupted() from None


# Library errors name parameters as Python spells them (resume=True, n_puzzles); on the command line
# they are flags. Keys with "=" also match before a value ("out=runs/x" -> "--out runs/x").
PARAMETER_FLAGS = {
    "resume=True": "--resume",
    "overwrite=True": "--overwrite",
    "allow_train=True": "--allow-train",
    "split='train'": "--split train",
    "overrides": "--set",
    "sanity=": "--sanity ",
    "audio_paths": "--audio",
    "out=": "--out ",
    "out folder": "--out folder",
    "out path": "--out",
    "n_puzzles": "--puzzles",
    "test_sources=": "--test-sources ",
    "group_pattern=": "--group-pattern ",
    "track_seconds=": "--track-seconds ",
    "track_seconds": "--track-seconds",
    "duration_seconds": "--duration",
    "hop_seconds=": "--hop-seconds ",
    "n_splits": "--splits",
    "runs_dir": "--runs-dir",
    "plot=": "--plot ",
}
_NAME_ENDS = r"(?![\w/=-]|\.\w)"  # not part of a longer name, path or file name
_PARAMETER = re.compile(
    "|".join(r"(?<![\w./=-])" + re.escape(name) + ("" if name.endswith("=") else _NAME_ENDS) for name in PARAMETER_FLAGS)
)


def as_flags(message: str) -> str:
    """``message`` with the parameters it names spelled as the flags that set them (:data:`PARAMETER_FLAGS`)."""
    return _PARAMETER.sub(lambda match: PARAMETER_FLAGS[match.group()], message)


def _one_line(error: click.UsageError) -> UserError:
    """One line, like every other mistake, instead of click's usage block."""
    if error.ctx is None:
        hint = ""
    elif error.ctx.parent is None:  # the group itself, whatever name it was run by
        hint = " (see 'audiosort --help')"
    else:
        hint = f" (see 'audiosort {error.ctx.info_name} --help')"
    return UserError(error.format_message().rstrip(".") + hint)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="audiosort")
def main():
    """Learn audio representations without labels by sorting shuffled audio chunks."""
    # SIGTERM unwinds like an exception, so partial files and folders are cleaned up on the way out.
    if os.name == "posix":
        signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


@main.command(cls=click.Command)
@click.argument("sources", nargs=-1, type=click.Path(path_type=str))
@click.option("--out", required=True, type=click.Path(path_type=str), help="Corpus folder to create.")
@click.option(
    "--synthetic",
    type=click.Choice(["music", "noise", "brown", "tone"]),
    help="Render a synthetic corpus instead of reading SOURCES.",
)
@click.option(
    "--duration",
    help="Synthetic audio in total: seconds, or with s/m/h [default: 2h, as the seed's sanity sets; "
    "a 20m music corpus was too few tracks to generalise]",
)
@click.option("--track-seconds", type=POSITIVE_SECONDS, default=60.0, show_default=True, help="Synthetic track length.")
@click.option("--tone-method", type=click.Choice(["tiled", "exact"]), default="tiled", show_default=True)
@click.option("--sample-rate", type=click.IntRange(1, 192000), default=16000, show_default=True, help="Corpus sample rate, Hz.")
@click.option("--val-fraction", type=FRACTION, default=0.1, show_default=True)
@click.option("--test-fraction", type=FRACTION, default=0.1, show_default=True)
@click.option(
    "--puzzles", "n_puzzles", type=click.IntRange(min=0), default=DEFAULT_PUZZLES, show_default=True,
    help="Puzzles per fixed val/test set.",
)
@click.option("--config", "config_path", type=click.Path(path_type=str), help="Take puzzle settings and seed from this config.")
@click.option("--n-chunks", type=click.IntRange(min=2))
@click.option("--chunk-seconds", type=POSITIVE_SECONDS)
@click.option("--pad-min-seconds", type=SECONDS)
@click.option("--pad-max-seconds", type=SECONDS)
@click.option("--pad-mode", type=click.Choice(["per_gap", "shared", "fixed"]))
@click.option("--min-rms", type=FiniteFloatRange(min=0))
@click.option("--align", type=click.Choice(["none", "beats"]), help="beats: also track the train split's beats (puzzle.align).")
@click.option("--seed", type=SEED, help="Seeds synthetic audio and the fixed puzzle sets (default: the config's).")
@click.option("--jobs", type=AT_LEAST_ONE, help="Files decoded at once (default: all cores).")
@click.option(
    "--shard-mb", type=FiniteFloatRange(min=0, min_open=True), default=1024, show_default=True, help="Largest shard, MiB."
)
@click.option(
    "--group-pattern",
    help="Regex removed from paths before the split hash, so versions of a piece share a split (e.g. '_enhanced').",
)
@click.option(
    "--split",
    type=click.Choice(["train", "val", "test"]),
    help="Put every track in this split instead of hashing (test: score a run on a whole folder).",
)
@click.option(
    "--test-sources",
    multiple=True,
    metavar="PATTERN",
    help="Glob on the path relative to SOURCES ('*' crosses '/'): matching tracks go to an out-of-domain "
    "split 'ood', never trained on (repeatable).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing corpus at --out (never a source folder).")
@click.option("--quiet", is_flag=True, help="No progress bar (there is none when stderr is not a terminal).")
def prepare(sources, out, synthetic, duration, track_seconds, tone_method, config_path, seed, quiet, shard_mb, **opts):
    """Turn audio files (or synthetic audio) into a corpus with fixed puzzle sets.

    SOURCES are audio files and folders (wav, flac, ogg, opus, mp3, ...).
    Tracks are split into train/val/test by a hash of their path, or all into
    --split; --test-sources holds whole sources out as 'ood'.
    """
    from audiosort.config import load_config
    from audiosort.data.prepare import prepare as prepare_corpus, prepare_synthetic

    flags = ("n_chunks", "chunk_seconds", "pad_min_seconds", "pad_max_seconds", "pad_mode", "min_rms", "align")
    values = {name: opts.pop(name) for name in flags}
    overrides = [f"puzzle.{name}={value}" for name, value in values.items() if value is not None]
    config = load_config(config_path, overrides)
    common = dict(
        puzzle=config.puzzle,
        seed=config.seed if seed is None else seed,
        shard_bytes=max(2, int(shard_mb * 2**20)),
        progress=not quiet,
        **opts,
    )
    if synthetic:
        if sources:
            raise UserError("give either SOURCES or --synthetic, not both")
        summary = prepare_synthetic(
            synthetic,
            out,
            duration_seconds=parse_duration(duration or "2h"),
            track_seconds=track_seconds,
            tone_method=tone_method,
            **common,
        )
    else:
        if not sources:
            raise UserError("give audio files or folders, or --synthetic KIND")
        if duration:
            raise UserError("--duration applies only to --synthetic")
        summary = prepare_corpus(sources, out, **common)
    click.echo("\n".join(summary.lines()))
    for warning in summary.warnings():
        click.echo(warning, err=True)


def parse_duration(text: str) -> float:
    """Seconds from ``"90"``, ``"90s"``, ``"30m"`` or ``"2h"`` (``prepare --duration``).

    Raises
    ------
    InputError
        Not a positive number with an optional s/m/h suffix.
    """
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    text = str(text).strip().lower()
    scale = units.get(text[-1:], None)
    number = text[:-1] if scale else text
    try:
        seconds = float(number) * (scale or 1.0)
    except ValueError:
        raise InputError(f"duration {text!r} is not a number of seconds or a number with s/m/h") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise InputError(f"duration {text!r} must be > 0")
    return seconds


@main.command(name="config", cls=click.Command)
@click.argument("config_path", required=False, metavar="[CONFIG]", type=click.Path(path_type=str))
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE", help="Override a config key (repeatable).")
def config_command(config_path, overrides):
    """Print CONFIG with every key resolved (defaults, base:, --set) as YAML; without CONFIG, the defaults.

    A key that differs from its default says the default in a comment. What
    each key means: docs/config-keys.md. The output is a valid config.
    """
    from audiosort.config import describe_config, load_config

    click.echo(describe_config(load_config(config_path, overrides)), nl=False)


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(path_type=str), help="YAML config.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE", help="Override a config key (repeatable).")
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(path_type=str))
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last finished epoch.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run folder of the same name.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(config_path, overrides, runs_dir, resume, overwrite, quiet):
    """Train a sorter on fresh puzzles from a corpus; write the run folder.

    Config keys: 'audiosort config CONFIG' prints every key resolved;
    docs/config-keys.md says what each means.

    --resume of a run that already finished changes nothing: it says so in one
    line and exits 0.
    """
    from pathlib import Path

    from audiosort.config import load_config
    from audiosort.run import load_run_config, read_metrics, stage_done
    from audiosort.train import train as train_run

    config = load_config(config_path, overrides)
    if resume and stage_done(Path(runs_dir) / config.name, "train"):
        if load_run_config(Path(runs_dir) / config.name) != config:
            raise UserError(
                f"run {Path(runs_dir) / config.name} already finished, with another config than this one; "
                "--overwrite trains it afresh, or name another run"
            )
        click.echo(f"run {Path(runs_dir) / config.name} already finished; nothing to resume (--overwrite trains it afresh)")
        return
    # A progress bar only on a terminal; a log gets one line per epoch.
    verbose = 0 if quiet else ("auto" if sys.stdout.isatty() else 2)
    run_dir = train_run(
        config, runs_dir=runs_dir, resume=resume, overwrite=overwrite, verbose=verbose, echo=click.echo, keep=(config_path,)
    )
    click.echo(f"run: {run_dir}")
    click.echo(_score_line("val", read_metrics(run_dir).val))


def _score_line(name: str, scores) -> str:
    """'val (hungarian, 2000 puzzles): exact 0.712 (chance 0.167), position 0.80 (chance 0.333), tau 0.70'."""
    best, chance = scores.order_scores, scores.chance
    return (
        f"{name} ({scores.order_decoding}, {scores.n_puzzles} puzzles of {scores.n_chunks}): "
        f"exact {best.exact_accuracy.value:.3f} (chance {chance.exact_accuracy:.3f}), "
        f"position {best.position_accuracy.value:.3f} (chance {chance.position_accuracy:.3f}), "
        f"Kendall tau {best.kendall_tau.value:.3f} (chance 0)"
    )


@main.command(name="eval")
@click.argument("run_dir", type=click.Path(path_type=str))
@click.option("--corpus", type=click.Path(path_type=str), help="Corpus to score (default: the run's data.corpus).")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True)
@click.option(
    "--sanity",
    default=",".join(DEFAULT_SANITY),
    show_default=True,
    help="Comma-separated sets that must stay at chance: noise, brown, tone, tone-exact or corpus folders ('' for none).",
)
@click.option(
    "--puzzles",
    "n_puzzles",
    type=AT_LEAST_ONE,
    default=DEFAULT_PUZZLES,
    show_default=True,
    help="Puzzles per sanity set (and for the split when its fixed set has other settings).",
)
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seeds sanity audio and new puzzles.")
@click.option("--allow-train", is_flag=True, help="Permit --split train (training tracks inflate scores).")
@click.option(
    "--audio",
    "audio_paths",
    multiple=True,
    type=click.Path(path_type=str),
    help="Score on these audio files or folders instead of a corpus, every track a test track (repeatable).",
)
@click.option(
    "--n-chunks",
    type=click.IntRange(min=2),
    help="Score puzzles of this many chunks instead of the run's (a model trained with train.n_chunks_schedule sorts any n).",
)
def eval_command(run_dir, corpus, split, sanity, n_puzzles, seed, allow_train, audio_paths, n_chunks):
    """Score a run on held-out tracks and sanity sets against chance.

    With --audio, any folder of music is decoded at the run's sample rate and
    cut with its puzzle settings, all of it held out, and scored as a set named
    after the folder. The corpus's 'ood' split (prepare --test-sources) is
    scored beside test. Each evaluation writes its own report into
    RUN_DIR/eval/<what was scored>-n<chunks>/ (eval.json, eval.md,
    confusion-<set>.png), and RUN_DIR/eval/latest names the newest; asking the
    same evaluation again replaces its report. Exit 0 when every sanity set is
    at chance, 1 naming each set sorted above chance.
    """
    from audiosort.evaluate import evaluate, evaluate_audio
    from audiosort.run import run_in_use

    # Held until the command ends: a `train --overwrite` of this run is refused meanwhile, so the report lands in it.
    click.get_current_context().with_resource(run_in_use(run_dir))
    names = tuple(name.strip() for name in sanity.split(",") if name.strip())
    if audio_paths:
        if corpus is not None or split != "test":
            raise UserError("--audio scores its own tracks as test; leave out --corpus and --split")
        report, summary = evaluate_audio(
            run_dir, list(audio_paths), sanity=names, n_puzzles=n_puzzles, seed=seed, n_chunks=n_chunks
        )
        used = f"{summary.tracks} tracks, {summary.hours:.3f} h"
        click.echo(f"audio: {', '.join(audio_paths)} as {summary.name!r} ({used}; {len(summary.skipped)} file(s) skipped)")
        for skipped in summary.skipped:
            click.echo(f"warning: skipped {skipped['source']}: {skipped['reason']}", err=True)
    else:
        report = evaluate(
            run_dir, corpus=corpus, split=split, sanity=names, n_puzzles=n_puzzles, seed=seed, allow_train=allow_train,
            n_chunks=n_chunks,
        )
    click.echo("\n".join(report.lines()))
    click.echo(f"wrote eval.json, eval.md and confusion-<set>.png in {report.folder}")
    for problem in report.problems():
        click.echo(problem, err=True)
    click.get_current_context().exit(report.exit_code)


@main.command(name="audit")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=str), help="YAML config to audit.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE", help="Override a config key (repeatable).")
@click.option("--steps", type=AT_LEAST_ONE, help="Training steps per sanity set (default 400).")
@click.option("--puzzles", "n_puzzles", type=AT_LEAST_ONE, help="Held-out puzzles scored per sanity set (default 1000).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seeds the sanity audio and puzzles.")
@click.option(
    "--sanity", default=",".join(DEFAULT_SANITY), show_default=True, help="Comma-separated sets: noise, brown, tone, tone-exact."
)
@click.option("--out", type=click.Path(path_type=str), help="Folder to write audit.json into (default: write nothing).")
def audit_command(config_path, overrides, steps, n_puzzles, seed, sanity, out):
    """Train the config's model from scratch on noise, brown noise and a tone; check they stay at chance.

    Audio whose order is unknowable can only be sorted through a leak in how
    puzzles are cut (fixed or shared gaps, gaps too short). Exit 0 when every
    set is at chance, 1 with one line of diagnosis per set sorted above chance.
    """
    from audiosort.audit import audit, writable_folder
    from audiosort.config import load_config

    config = load_config(config_path, overrides)
    if out:
        writable_folder(out, config)
    budget = {name: value for name, value in (("steps", steps), ("n_puzzles", n_puzzles)) if value is not None}
    names = tuple(name.strip() for name in sanity.split(",") if name.strip())
    report = audit(config, seed=seed, sanity=names, **budget)
    click.echo("\n".join(report.lines()))
    if out:
        click.echo(f"wrote {report.write(out)}")
    for problem in report.problems():
        click.echo(problem, err=True)
    click.get_current_context().exit(report.exit_code)


@main.command()
@click.option("--config", "sweep_path", required=True, type=click.Path(path_type=str), help="Sweep YAML (base, set, grid).")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE", help="Override a key in every run (repeatable).")
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(path_type=str))
@click.option("--jobs", type=AT_LEAST_ONE, default=1, show_default=True, help="Runs at once, each in its own process.")
@click.option("--plot", help="Two grid keys for the heatmap, 'x,y' (default: the first two axes).")
def sweep(sweep_path, overrides, runs_dir, jobs, plot):
    """Train, evaluate and probe every config of a grid; write results.csv, results.md and plots.

    Each run executes in its own process (no memory carried between runs).
    Re-running skips every stage already done; a failed run is recorded with
    its error and the others go on. Exit 1 when any run failed.
    """
    from audiosort.sweep import load_sweep, run_sweep

    axes = None
    if plot:
        axes = tuple(part.strip() for part in plot.split(",") if part.strip())
        if len(axes) != 2:
            raise UserError(f"--plot {plot!r}: give two grid keys as x,y")
    grid = load_sweep(sweep_path, overrides)
    report = run_sweep(grid, runs_dir=runs_dir, jobs=jobs, plot=axes, echo=click.echo, keep=(sweep_path,))
    click.echo("\n".join(report.markdown()[2:]))
    click.echo(f"wrote results.csv, results.md and plots in {report.folder}")
    for row in report.failed:
        click.echo(f"run {row['run']} failed: {row.get('error', '')} (log: {report.folder}/logs/{row['run']}.log)", err=True)
    click.get_current_context().exit(report.exit_code)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=str))
@click.argument("audio", nargs=-1, type=click.Path(path_type=str))
@click.option("--out", required=True, type=click.Path(path_type=str), help="The .npz to write.")
@click.option("--hop-seconds", type=POSITIVE_SECONDS, help="Time between frame starts (default: the run's chunk length).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file (never an input or a file in the run folder).")
def embed(run_dir, audio, out, hop_seconds, overwrite):
    """Embed audio files with a run's encoder, frame by frame, into one .npz.

    AUDIO are files and folders (their audio files). Each file is decoded at the
    run's sample rate and cut into frames of the run's chunk length (the last
    partial frame dropped). The .npz holds: files (F,) and clip (F, D), the
    mean frame embedding per file; embeddings_<k> (frames, D) and
    timestamps_<k> (frames,), frame centers in seconds, for files[k]; skipped
    and skipped_reasons; sample_rate, chunk_samples, hop_samples. A file that
    is missing, undecodable or shorter than one chunk is skipped with a
    warning; exit 2 when none is left.
    """
    from audiosort.embed import embed_files

    report = embed_files(run_dir, audio, out=out, hop_seconds=hop_seconds, overwrite=overwrite)
    for name, reason in report.skipped:
        click.echo(f"warning: skipped {name}: {reason}", err=True)
    click.echo("\n".join(report.lines()))


@main.command(name="probe")
@click.argument("run_dir", type=click.Path(path_type=str))
@click.option(
    "--data", "data_dirs", required=True, multiple=True, type=click.Path(path_type=str),
    help="Labelled folder to probe on (one task each); repeat for a suite.",
)
@click.option(
    "--seed", type=SEED, default=0, show_default=True,
    help="Seeds the random encoder, the log-mel projection and the supervised reference; the first probe seed.",
)
@click.option("--splits", "n_splits", type=click.IntRange(min=2), default=5, show_default=True, help="Train/test splits (group folds) per task.")
@click.option(
    "--probe-seeds", "n_probe_seeds", type=click.IntRange(min=1), default=3, show_default=True,
    help="Seeds SEED, SEED+1, ... each dealing the folds and fitting the classifiers anew (features computed once).",
)
@click.option(
    "--supervised-steps", type=click.IntRange(min=0), default=300, show_default=True,
    help="Training steps per split of the supervised reference (the architecture trained on the labels); 0 skips it.",
)
def probe_command(run_dir, data_dirs, seed, n_splits, n_probe_seeds, supervised_steps):
    """Linear-probe the run's frozen encoder on labelled clips, beside baselines of equal size.

    Each --data holds one sub-folder of audio files per class, or a labels.csv
    with path,label[,group] (paths relative to it). Each file is one clip; the
    clips of one group (a recording, an instrument) never straddle a split.
    Every row is read under one protocol: per-frame features pooled over the
    clip by mean, std and max, at most 192 values per source (PCA fit on the
    train part beyond that), a scaler fit on the train part, and a logistic
    regression whose L2 strength is chosen by cross-validation on the train
    part, scored on the test part of --splits group folds, under --probe-seeds
    deals of the folds. Rows: the run's encoder (its embeddings), every layer of
    it concatenated, the same two with random weights, log-mel statistics (64
    bands), HEAR's random projection of log-mel, a tempogram, the encoder (or
    random encoder) beside the statistics; and the architecture trained end to
    end on each train part as a supervised reference. Prints the mean over
    seeds, the spread over splits and over seeds, and paired tests over groups
    (trained > random, encoder + stats > stats). Writes probe.json and probe.md
    into RUN_DIR, keeping the tasks of other folders of this protocol.
    """
    from audiosort.probe import probe
    from audiosort.run import run_in_use

    click.get_current_context().with_resource(run_in_use(run_dir))
    report = probe(
        run_dir, data_dirs, seed=seed, n_splits=n_splits, n_probe_seeds=n_probe_seeds, supervised_steps=supervised_steps
    )
    click.echo("\n".join(report.lines()))
    click.echo(f"wrote probe.json and probe.md in {report.run_dir}")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=str))
@click.argument("audio", type=click.Path(path_type=str))
@click.option("--out", required=True, type=click.Path(path_type=str), help="Folder for the three wavs.")
@click.option("--start", "start_seconds", type=SECONDS, help="Start of the puzzle in the file, seconds (default: random).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seeds the gaps, the random start and the shuffle.")
def listen(run_dir, audio, out, start_seconds, seed):
    """Cut one puzzle from AUDIO, sort it with the run's model, and write it to hear.

    Writes original.wav (true order), shuffled.wav (as given to the model) and
    sorted.wav (the model's order, Hungarian decoding) into --out, with the
    gaps left out and 50 ms of silence between chunks; prints both orders.
    """
    from audiosort.listen import listen as listen_to

    result = listen_to(run_dir, audio, out=out, start_seconds=start_seconds, seed=seed)
    click.echo("\n".join(result.lines()))


def _dream_defaults() -> dict:
    """dream.py's ``DEFAULT_*`` constants, read from its source: importing it loads Keras, which --help must not."""
    import ast
    from importlib.util import find_spec
    from pathlib import Path

    tree = ast.parse(Path(find_spec("audiosort.dream").origin).read_text())
    return {
        target.id: ast.literal_eval(node.value)
        for node in tree.body if isinstance(node, ast.Assign)
        for target in node.targets if isinstance(target, ast.Name) and target.id.startswith("DEFAULT_")
    }


class _DreamDefaultOption(click.Option):
    """An option whose help names a dream.py default (``{DEFAULT_STEPS}``), filled in when the help is shown.

    The dream options default to None so that :func:`audiosort.dream.dream` picks
    its own defaults (the length of a continue dream is one chunk, not
    ``DEFAULT_SECONDS``); the help reads the same constants.
    """

    def get_help_record(self, ctx):
        template = self.help
        self.help = template.format_map(_dream_defaults())
        try:
            return super().get_help_record(ctx)
        finally:
            self.help = template


@main.command(name="dream")
@click.argument("run_dir", type=click.Path(path_type=str))
@click.option("--out", required=True, type=click.Path(path_type=str), help="Folder for the wavs, the PNG and dream.json.")
@click.option("--mode", type=click.Choice(["unit", "amplify", "continue"]), default="unit", show_default=True)
@click.option("--audio", "source", type=click.Path(path_type=str),
              help="unit: start from it instead of noise; amplify: the audio; continue: where chunk A is cut.")
@click.option("--start", "start_seconds", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Where in --audio the clip (or chunk A) starts, seconds.")
@click.option("--init-start", "init_seconds", type=click.FloatRange(min=0),
              help="continue: start B from the chunk of --audio at this time, seconds (default: noise).")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True, max=600), cls=_DreamDefaultOption,
              help="Length of the dream, seconds, at least one chunk (default {DEFAULT_SECONDS:g}; not for continue).")
@click.option("--layer", help="Encoder layer to dream with (default: the embedding); a wrong name lists them.")
@click.option("--unit", type=click.IntRange(min=0), default=0, show_default=True, help="unit: the channel of --layer.")
@click.option("--steps", type=click.IntRange(1, 100_000), cls=_DreamDefaultOption,
              help="Gradient steps per octave (default {DEFAULT_STEPS}).")
@click.option("--octaves", type=click.IntRange(1, 12), cls=_DreamDefaultOption, help="Coarse-to-fine stages (default {DEFAULT_OCTAVES}).")
@click.option("--step-size", type=click.FloatRange(0, 1, min_open=True), cls=_DreamDefaultOption,
              help="Each update's RMS, at most 1, as a fraction of the waveform's (default {DEFAULT_STEP_SIZE:g}).")
@click.option("--tv-weight", type=click.FloatRange(0, 1, max_open=True), cls=_DreamDefaultOption,
              help="Share of each step spent lowering total variation (default {DEFAULT_TV_WEIGHT:g}).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seeds the starting noise and the jitter.")
@click.option("--quiet", is_flag=True, help="No progress bar or per-octave lines.")
def dream_command(run_dir, out, quiet, **options):
    """Follow the gradient of the run's network back to the waveform, to hear what it learned.

    unit: from quiet noise (or --audio), maximise one unit of an encoder layer.
    amplify: raise whatever --layer already hears in --audio (deep dream).
    continue: change a chunk B until the run's sorter is sure B comes right
    after chunk A of --audio (a pairwise or successor head). Writes
    before.wav, dream.wav (16-bit, the run's rate), spectrogram.png and
    dream.json (settings, seed, objective per step) into --out.
    """
    from audiosort.dream import dream

    given = {name: value for name, value in options.items() if value is not None}
    result = dream(run_dir, out=out, progress=not quiet, log=None if quiet else lambda line: click.echo(line, err=True), **given)
    click.echo("\n".join(result.lines()))


if __name__ == "__main__":
    main()
