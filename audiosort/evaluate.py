"""``audiosort eval``: score a run on held-out tracks and on sanity sets.

A sorting accuracy means something only next to chance and next to proof that
the same pipeline cannot sort audio whose order is unknowable (DESIGN.md,
"Leaks to know"). :func:`evaluate` scores a run's model on

- a split of a corpus (``test`` by default: held-out tracks; ``train`` only
  on request, since the model has heard those tracks), and
- sanity sets cut with the run's own puzzle settings (:mod:`audiosort.sanity`:
  white noise, brown noise and a tone rendered on the fly, or a sanity corpus
  folder), each beside its ideal observer,

with the no-learning baselines of :mod:`audiosort.baselines` on the same
puzzles, judges them (:mod:`audiosort.verdicts`: alpha 0.01, Bonferroni over
the datasets, each on its order decoding: hungarian, or path for a successor head) and writes into the run folder
(:mod:`audiosort.reports`)::

    eval.json               one entry per dataset (DESIGN.md, "Eval report"), each with
                            ``baselines: {"continuity": ...}`` (see reports.entries)
    eval.md                 the same as a table
    confusion-<name>.png    true x predicted position (order decoding), per dataset

The exit code comes from the model's sanity-set verdicts alone: 1 when the
model sorts one above chance.

Example
-------
>>> report = evaluate("runs/demo", sanity=("noise", "brown", "tone"))  # doctest: +SKIP
>>> print("\\n".join(report.lines())); report.exit_code  # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from audiosort import _files, reports
from audiosort.config import DEFAULT_PUZZLES, DEFAULT_SANITY
from audiosort.data.corpus import OOD_SPLIT, SPLITS, Corpus, PrepareSummary, prepare
from audiosort.data.puzzles import PuzzleSpec
from audiosort.errors import InputError, check_positive_int
from audiosort.sanity import SANITY_KINDS, sanity_ideal_observer, sanity_puzzles
from audiosort.run import load_run_config, load_run_model
from audiosort.verdicts import ALPHA, DatasetResult, Verdicts, score_dataset


@dataclass
class EvalReport(Verdicts):
    """The datasets of one evaluation and the verdicts that follow from them.

    Attributes
    ----------
    run_dir : Path
        The run evaluated.
    datasets : list of DatasetResult
        In evaluation order (the corpus split first).
    alpha : float in (0, 1)
        Family-wise false-positive rate, split over the datasets (Bonferroni).
    """

    run_dir: Path
    datasets: list[DatasetResult]
    alpha: float = ALPHA

    def to_dict(self) -> dict:
        """``eval.json``: settings, then one entry per dataset with a verdict per decoding and its baselines.

        ``datasets[name]["baselines"]["continuity"]`` holds the continuity
        baseline's scores on that dataset's puzzles in the model's layout (so
        ``["path"]["exact_accuracy"]["value"]`` is its exact-order accuracy:
        it is decoded by path search) and the McNemar comparison (see
        :func:`audiosort.reports.entries`). ``verdict_decoding`` names the
        model's order decoding: ``hungarian``, or ``path`` for a successor head.
        """
        return {
            "run": str(self.run_dir),
            "alpha": self.alpha,
            "n_tests": self.n_tests,
            "verdict_decoding": self.datasets[0].scores.verdict_decoding,
            "datasets": reports.entries(self),
        }

    def lines(self) -> list[str]:
        """What ``audiosort eval`` prints on stdout: the table and what it means (problems go to stderr)."""
        puzzles = ", ".join(f"{r.name} {r.scores.n_puzzles}" for r in self.datasets)
        return [f"eval of {self.run_dir} (puzzles: {puzzles})", "", *reports.table(self), "", *reports.notes(self)]

    def write(self, folder: str | Path) -> None:
        """Write ``eval.json``, ``eval.md`` and one ``confusion-<name>.png`` per dataset, each atomically."""
        folder = Path(folder)
        _files.write_text(folder / "eval.json", json.dumps(self.to_dict(), indent=1) + "\n")
        lines = self.lines()
        _files.write_text(folder / "eval.md", "\n".join([f"# {lines[0]}", *lines[1:], *self.problems()]) + "\n")
        for result in self.datasets:
            reports.save_confusion(folder / f"confusion-{result.name}.png", result)


def evaluate(
    run_dir: str | Path,
    *,
    corpus: str | Path | None = None,
    split: str = "test",
    sanity: tuple = DEFAULT_SANITY,
    n_puzzles: int = DEFAULT_PUZZLES,
    seed: int = 0,
    allow_train: bool = False,
    n_chunks: int | None = None,
) -> EvalReport:
    """Score a run's model on a corpus split and on sanity sets; write the report into the run folder.

    Parameters
    ----------
    run_dir : str or Path
        Run folder of ``audiosort train`` (``config.yaml``, ``model.keras``).
    corpus : str or Path, optional
        Corpus folder to take ``split`` from; default the run's ``data.corpus``.
    split : {"train", "val", "test"}
        Which tracks to score. The corpus's fixed set when it was cut with the
        run's puzzle settings, else ``n_puzzles`` new ones.
    sanity : sequence of str
        Each a key of :data:`audiosort.sanity.SANITY_KINDS` (rendered on the fly: 8 tracks of
        60 s at the run's sample rate) or a corpus folder (its test split, or
        the first split it has).
    n_puzzles : int > 0
        Puzzles per sanity set, and per split when no fixed set fits.
    seed : int
        Seeds the sanity audio and any new puzzles. The default is shared by
        every run, so that runs are scored on the same puzzles (paired tests).
    allow_train : bool
        Permit ``split="train"``.
    n_chunks : int >= 2, optional
        Score puzzles of this many chunks (the run's other puzzle settings
        kept) instead of the run's ``puzzle.n_chunks``; only for a model that
        takes any n (its run grew n, ``train.n_chunks_schedule``).

    Returns
    -------
    EvalReport
        Also written to ``run_dir`` (see :meth:`EvalReport.write`). Every
        dataset carries the baselines of :data:`audiosort.baselines.BASELINES`
        scored on its puzzles.

    Raises
    ------
    InputError
        No run folder or model, ``split="train"`` without ``allow_train``, an
        unknown sanity name, or a corpus whose sample rate or chunk length
        does not match the model.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"no run folder at {run_dir}")
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if split == "train" and not allow_train:
        raise InputError(
            "--split train scores puzzles from the tracks the model was trained on, which inflates accuracy; "
            "use val or test, or pass --allow-train"
        )
    check_positive_int(n_puzzles, "--puzzles")
    sanity = tuple(sanity)
    for entry in sanity:
        if entry not in SANITY_KINDS and not Path(entry).is_dir():
            raise InputError(f"--sanity {entry!r} is neither a sanity kind ({', '.join(SANITY_KINDS)}) nor a corpus folder")
    config = load_run_config(run_dir)
    sample_rate = config.data.sample_rate
    run_spec = PuzzleSpec.from_config(config.puzzle, sample_rate=sample_rate)
    spec = run_spec
    if n_chunks is not None:
        check_positive_int(n_chunks, "--n-chunks")
        if n_chunks < 2:
            raise InputError(f"--n-chunks {n_chunks}: a puzzle needs at least 2 chunks")
        spec = PuzzleSpec.from_config(replace(config.puzzle, n_chunks=n_chunks), sample_rate=sample_rate)
    # Every input is checked before the model loads, so a usage error costs no time.
    main_corpus = _open_corpus(corpus if corpus is not None else config.data.corpus, sample_rate)
    sanity_corpora = {entry: _open_corpus(entry, sample_rate) for entry in sanity if entry not in SANITY_KINDS}
    model = load_run_model(run_dir, run_spec)
    if model.input_shape[1] not in (None, spec.n_chunks):
        raise InputError(
            f"--n-chunks {spec.n_chunks}: this run's model sorts only {model.input_shape[1]} chunks; a model for any n "
            "comes from a run with train.n_chunks_schedule and a rank or successor head"
        )
    batch_size = config.train.batch_size

    puzzles, fixed = main_corpus.puzzles_for(split, spec, n_puzzles=n_puzzles, seed=seed)
    source = {"kind": "corpus", "corpus": str(main_corpus.path), "split": split, "fixed_set": fixed}
    scoring = {"batch_size": batch_size, "sample_rate": sample_rate}
    results = [score_dataset(puzzles, model, name=split, sanity=False, source=source, **scoring)]
    if split == "test" and any(t["split"] == OOD_SPLIT for t in main_corpus.track_entries):
        # Music of sources never trained on (prepare --test-sources), scored beside the in-domain test tracks.
        puzzles, fixed = main_corpus.puzzles_for(OOD_SPLIT, spec, n_puzzles=n_puzzles, seed=seed)
        source = {"kind": "corpus", "corpus": str(main_corpus.path), "split": OOD_SPLIT, "fixed_set": fixed}
        results.append(score_dataset(puzzles, model, name=OOD_SPLIT, sanity=False, source=source, **scoring))
    for entry in sanity:
        if entry in SANITY_KINDS:
            name = entry
            puzzles, source = sanity_puzzles(entry, spec, sample_rate=sample_rate, n_puzzles=n_puzzles, seed=seed)
            ideal = sanity_ideal_observer(entry, puzzles, spec, sample_rate)
        else:
            folder = sanity_corpora[entry]
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", folder.path.resolve().name)
            present = {t["split"] for t in folder.track_entries}
            folder_split = next((s for s in ("test", "val", "train") if s in present), "test")
            puzzles, fixed = folder.puzzles_for(folder_split, spec, n_puzzles=n_puzzles, seed=seed)
            source = {"kind": "corpus", "corpus": str(folder.path), "split": folder_split, "fixed_set": fixed}
            ideal = None
        if name in {r.name for r in results}:
            raise InputError(f"--sanity names {name!r} twice (or it clashes with the split); give each set once")
        results.append(score_dataset(puzzles, model, name=name, sanity=True, source=source, ideal=ideal, **scoring))
    report = EvalReport(run_dir=run_dir, datasets=results)
    report.write(run_dir)
    return report


def evaluate_audio(
    run_dir: str | Path, audio_paths: list[str | Path], *, n_puzzles: int = DEFAULT_PUZZLES, seed: int = 0, **options
) -> tuple[EvalReport, PrepareSummary]:
    """Score a run on a folder of music, every track of it a test track.

    The files are prepared into a temporary corpus (deleted afterwards) at
    the run's sample rate, with the run's puzzle settings and ``split="test"``,
    and scored as :func:`evaluate` scores a test split, with the baselines
    beside the model.

    Parameters
    ----------
    run_dir : str or Path
        Run folder of ``audiosort train``.
    audio_paths : list of str or Path
        Audio files and folders (see :func:`audiosort.data.corpus.prepare`).
    n_puzzles : int > 0
        Puzzles cut from the music, and per sanity set.
    seed : int
        Seeds the puzzles and the sanity audio.
    **options
        ``sanity`` and ``n_chunks`` of :func:`evaluate`.

    Returns
    -------
    report : EvalReport
        Also written to ``run_dir``; its test dataset's source names the
        temporary corpus, and ``summary`` what went into it.
    summary : PrepareSummary
        Tracks and hours used, and the files skipped with their reasons.
    """
    config = load_run_config(Path(run_dir))
    with tempfile.TemporaryDirectory(prefix="audiosort-eval-audio-") as scratch:
        folder = Path(scratch) / "corpus"
        summary = prepare(
            audio_paths, folder, puzzle=config.puzzle, sample_rate=config.data.sample_rate, split="test",
            n_puzzles=n_puzzles, seed=seed, progress=False,
        )
        report = evaluate(run_dir, corpus=folder, split="test", n_puzzles=n_puzzles, seed=seed, **options)
    return report, summary


def _open_corpus(path: str | Path, sample_rate: int) -> Corpus:
    corpus = Corpus(path)
    if corpus.sample_rate != sample_rate:
        raise InputError(
            f"corpus {corpus.path} is {corpus.sample_rate} Hz but the run's model was trained at {sample_rate} Hz "
            "(data.sample_rate); prepare the corpus at the run's rate"
        )
    return corpus
