"""``audiosort eval``: score a run on held-out tracks and on sanity sets.

A sorting accuracy means something only next to chance and next to proof that
the same pipeline cannot sort audio whose order is unknowable (DESIGN.md,
"Leaks to know"). :func:`evaluate` scores a run's model on

- a split of a corpus (``test`` by default: held-out tracks; ``train`` only
  on request, since the model has heard those tracks), or with
  :func:`evaluate_audio` a folder of music decoded straight into memory, and
- sanity sets cut with the run's own puzzle settings (:mod:`audiosort.sanity`:
  white noise, brown noise and a tone rendered on the fly, or a sanity corpus
  folder), each beside its ideal observer,

with the no-learning baselines of :mod:`audiosort.baselines` on the same
puzzles, judges them (:mod:`audiosort.verdicts`: alpha 0.01, Bonferroni over
the datasets, each on its order decoding: hungarian, or path for a successor
head) and writes a report of its own into the run folder, named by what was
scored (:func:`audiosort.run.write_eval`)::

    eval/<label>/eval.json             settings, then one entry per dataset (DESIGN.md, "Eval report"),
                                       each with ``baselines: {"continuity": ...}`` (see reports.entries)
    eval/<label>/eval.md               the same as a table
    eval/<label>/confusion-<name>.png  true x predicted position (order decoding), per dataset
    eval/latest                        the newest <label>

``<label>`` is the split (``test-n5``), the corpus folder and split when the
corpus is not the run's own (``other-test-n5``), or the audio folder
(``my_music-n5``), then ``-n<chunks>``. Asking the same evaluation again
replaces its report; any other evaluation keeps the earlier ones.

The exit code comes from the model's sanity-set verdicts alone: 1 when the
model sorts one above chance.

Example
-------
>>> report = evaluate("runs/demo", sanity=("noise", "brown", "tone"))  # doctest: +SKIP
>>> print("\\n".join(report.lines())); report.exit_code  # doctest: +SKIP
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import keras
import numpy as np

from audiosort import audio, reports, run
from audiosort.config import DEFAULT_PUZZLES, DEFAULT_SANITY, Config
from audiosort.data.corpus import Corpus
from audiosort.data.puzzles import PuzzleSpec, TrackTable, make_puzzle_set
from audiosort.data.splits import ALL_SPLITS, OOD_SPLIT, SPLITS
from audiosort.errors import InputError, check_positive_int
from audiosort.heads import any_n_heads
from audiosort.sanity import SANITY_KINDS, sanity_ideal_observer, sanity_puzzles
from audiosort.verdicts import ALPHA, DatasetResult, Verdicts, score_dataset


@dataclass
class EvalReport(Verdicts):
    """The datasets of one evaluation and the verdicts that follow from them.

    Attributes
    ----------
    run_dir : Path
        The run evaluated.
    datasets : list of DatasetResult
        In evaluation order (the corpus split or audio folder first).
    label : str
        What was scored and at what n (``test-n5``): the report's folder name.
    settings : dict
        What was asked for (:func:`eval_settings`); the same settings, the same puzzles.
    alpha : float in (0, 1)
        Family-wise false-positive rate, split over the datasets (Bonferroni).
    folder : Path or None
        Where :meth:`write` put the report (``run_dir/eval/<label>``, or
        ``<label>-2``... beside an earlier evaluation of other settings).
    model : dict
        Which model was scored (:func:`audiosort.run.model_identity`): ``eval.json``'s ``model``.
    """

    run_dir: Path
    datasets: list[DatasetResult]
    label: str = "eval"
    settings: dict = field(default_factory=dict)
    alpha: float = ALPHA
    folder: Path | None = None
    model: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """``eval.json`` less its settings: one entry per dataset with a verdict per decoding and its baselines.

        ``datasets[name]["baselines"]["continuity"]`` holds the continuity
        baseline's scores on that dataset's puzzles in the model's layout (under
        ``"path"``: it is decoded by path search), and the paired comparison (Wilcoxon on tau, McNemar)
        (see :func:`audiosort.reports.entries`); read it back typed with
        :func:`audiosort.run.read_eval`. ``verdict_decoding`` names the model's
        order decoding: ``hungarian``, or ``path`` for a successor head.
        """
        return {
            "run": str(self.run_dir),
            "model": self.model,
            "alpha": self.alpha,
            "n_tests": self.n_tests,
            "verdict_decoding": self.datasets[0].scores.order_decoding,
            "datasets": reports.entries(self),
        }

    def lines(self) -> list[str]:
        """What ``audiosort eval`` prints on stdout: the table and what it means (problems go to stderr)."""
        puzzles = ", ".join(f"{r.name} {r.scores.n_puzzles}" for r in self.datasets)
        return [f"eval of {self.run_dir} (puzzles: {puzzles})", "", *reports.table(self), "", *reports.notes(self)]

    def write(self) -> Path:
        """Write ``eval.json``, ``eval.md`` and a confusion PNG per dataset under ``run_dir/eval/``; return the folder."""
        lines = self.lines()
        self.folder = run.write_eval(
            self.run_dir, self.label, self.settings, report=self.to_dict(),
            markdown="\n".join([f"# {lines[0]}", *lines[1:], *self.problems()]) + "\n",
            confusions={r.name: (lambda path, r=r: reports.save_confusion(path, r)) for r in self.datasets},
        )
        return self.folder


def eval_settings(
    *,
    corpus: str | Path | None = None,
    split: str = "test",
    audio: tuple = (),
    sanity: tuple = DEFAULT_SANITY,
    n_puzzles: int = DEFAULT_PUZZLES,
    seed: int = 0,
    n_chunks: int,
) -> dict:
    """What an evaluation is asked for, as ``eval.json`` stores it: equal settings score the same puzzles.

    Parameters
    ----------
    corpus : str or Path, optional
        The corpus scored (the run's ``data.corpus`` when the user gave none);
        None with ``audio``.
    split : str
        The split scored (``test`` with ``audio``).
    audio : sequence of str or Path
        The files and folders ``eval --audio`` scored.
    sanity, n_puzzles, seed
        As for :func:`evaluate`.
    n_chunks : int >= 2
        Chunks per puzzle scored (the run's ``puzzle.n_chunks`` unless ``--n-chunks`` said otherwise).

    Returns
    -------
    dict
        JSON-ready; paths resolved, so the same folder given two ways is one evaluation.
    """
    return {
        "corpus": None if corpus is None else str(Path(corpus).resolve()),
        "split": split,
        "audio": [str(Path(path).resolve()) for path in audio],
        "sanity": [entry if entry in SANITY_KINDS else str(Path(entry).resolve()) for entry in sanity],
        "n_puzzles": n_puzzles,
        "seed": seed,
        "n_chunks": n_chunks,
    }


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
        Also written to ``run_dir/eval/<label>/`` (see :meth:`EvalReport.write`).
        Every dataset carries the baselines of :data:`audiosort.baselines.BASELINES`
        scored on its puzzles.

    Raises
    ------
    InputError
        No run folder or model, ``split="train"`` without ``allow_train``, an
        unknown sanity name, or a corpus whose sample rate or chunk length
        does not match the model.
    """
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if split == "train" and not allow_train:
        raise InputError(
            "split='train' scores puzzles from the tracks the model was trained on, which inflates accuracy; "
            "use val or test, or pass allow_train=True"
        )
    asked = _Asked.check(run_dir, sanity, n_puzzles, n_chunks)
    sample_rate = asked.config.data.sample_rate
    own = Path(asked.config.data.corpus)
    path = Path(corpus) if corpus is not None else own
    # Every input is checked before the model loads, so a usage error costs no time.
    main_corpus = _open_corpus(path, sample_rate)
    sanity_corpora = {entry: _open_corpus(entry, sample_rate) for entry in asked.sanity if entry not in SANITY_KINDS}
    model, scored_model = asked.load_model()
    spec = asked.spec
    main_sets = []
    for name in (split, OOD_SPLIT) if split == "test" else (split,):
        # The ood split: music of sources never trained on (prepare --test-sources), scored beside test.
        if name == OOD_SPLIT and not any(t["split"] == OOD_SPLIT for t in main_corpus.track_entries):
            continue
        puzzles, fixed = main_corpus.puzzles_for(name, spec, n_puzzles=n_puzzles, seed=seed)
        source = {"kind": "corpus", "corpus": str(main_corpus.path), "split": name, "fixed_set": fixed}
        main_sets.append((name, puzzles, source))
    scored = split if path.resolve() == own.resolve() else f"{_label_part(path)}-{split}"
    settings = eval_settings(
        corpus=path, split=split, sanity=asked.sanity, n_puzzles=n_puzzles, seed=seed, n_chunks=spec.n_chunks
    )
    return _score(asked, model, scored_model, main_sets, sanity_corpora, f"{scored}-n{spec.n_chunks}", settings, seed=seed)


@dataclass(frozen=True)
class AudioSummary:
    """What ``eval --audio`` scored.

    Attributes
    ----------
    name : str
        The dataset's name in the report: the folder's (names joined by ``+`` for several).
    tracks : int
        Tracks decoded and used.
    hours : float
        Their audio, in hours.
    skipped : list of dict
        ``{"source", "reason"}`` per file left out.
    """

    name: str
    tracks: int
    hours: float
    skipped: list


def evaluate_audio(
    run_dir: str | Path,
    audio_paths: list[str | Path],
    *,
    sanity: tuple = DEFAULT_SANITY,
    n_puzzles: int = DEFAULT_PUZZLES,
    seed: int = 0,
    n_chunks: int | None = None,
) -> tuple[EvalReport, AudioSummary]:
    """Score a run on a folder of music, every track of it held out.

    The files are decoded into memory at the run's sample rate (as ``prepare``
    decodes them; nothing is written but the report), ``n_puzzles`` puzzles
    are cut with the run's puzzle settings, and they are scored as
    :func:`evaluate` scores a test split, with the baselines beside the model.
    The dataset is named after the folder given (``my_music``), and the
    report's source records the paths given.

    Parameters
    ----------
    run_dir : str or Path
        Run folder of ``audiosort train``.
    audio_paths : list of str or Path
        Audio files and folders (see :func:`audiosort.audio.decode_tracks`).
    sanity, n_puzzles, seed, n_chunks
        As for :func:`evaluate`; ``n_puzzles`` puzzles are cut from the music.

    Returns
    -------
    report : EvalReport
        Also written to ``run_dir/eval/<folder>-n<chunks>/``.
    summary : AudioSummary
        Tracks and hours used, and the files skipped with their reasons.
    """
    asked = _Asked.check(run_dir, sanity, n_puzzles, n_chunks)
    if not audio_paths:
        raise InputError("audio_paths: give at least one audio file or folder")
    sample_rate = asked.config.data.sample_rate
    sanity_corpora = {entry: _open_corpus(entry, sample_rate) for entry in asked.sanity if entry not in SANITY_KINDS}
    decoded = audio.decode_tracks(audio_paths, sample_rate=sample_rate, min_frames=asked.spec.max_span_samples)
    model, scored_model = asked.load_model()
    name = "+".join(_label_part(Path(path)) for path in audio_paths)
    # The stream a corpus prepared with --split test gives its test set, so the puzzles are those of before.
    rng = np.random.default_rng([seed, ALL_SPLITS.index("test")])
    puzzles = make_puzzle_set(TrackTable.from_arrays(decoded.tracks), asked.spec, n_puzzles, rng=rng)
    source = {"kind": "audio", "audio": [str(path) for path in audio_paths], "split": "test", "fixed_set": False}
    settings = eval_settings(
        audio=audio_paths, sanity=asked.sanity, n_puzzles=n_puzzles, seed=seed, n_chunks=asked.spec.n_chunks
    )
    label = f"{name}-n{asked.spec.n_chunks}"
    report = _score(asked, model, scored_model, [(name, puzzles, source)], sanity_corpora, label, settings, seed=seed)
    summary = AudioSummary(name, len(decoded.tracks), decoded.hours, decoded.skipped)
    return report, summary


@dataclass(frozen=True)
class _Asked:
    """A run and the checked settings of one evaluation of it."""

    run_dir: Path
    config: Config
    run_spec: PuzzleSpec
    spec: PuzzleSpec
    sanity: tuple
    n_puzzles: int

    @classmethod
    def check(cls, run_dir, sanity, n_puzzles, n_chunks) -> _Asked:
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise InputError(f"no run folder at {run_dir}")
        check_positive_int(n_puzzles, "n_puzzles")
        sanity = tuple(sanity)
        for entry in sanity:
            if entry not in SANITY_KINDS and not Path(entry).is_dir():
                raise InputError(
                    f"sanity={entry!r} is neither a sanity kind ({', '.join(SANITY_KINDS)}) nor a corpus folder"
                )
        config = run.load_run_config(run_dir)
        sample_rate = config.data.sample_rate
        run_spec = PuzzleSpec.from_config(config.puzzle, sample_rate=sample_rate)
        spec = run_spec
        if n_chunks is not None:
            check_positive_int(n_chunks, "n_chunks")
            if n_chunks < 2:
                raise InputError(f"n_chunks = {n_chunks}: a puzzle needs at least 2 chunks")
            spec = PuzzleSpec.from_config(replace(config.puzzle, n_chunks=n_chunks), sample_rate=sample_rate)
        return cls(run_dir, config, run_spec, spec, sanity, n_puzzles)

    def load_model(self) -> tuple[keras.Model, dict]:
        """The run's model, and which model it is (:func:`audiosort.run.model_identity`, taken before loading it)."""
        identity = run.model_identity(self.run_dir)
        model = run.load_run_model(self.run_dir, self.run_spec)
        if model.input_shape[1] not in (None, self.spec.n_chunks):
            raise InputError(
                f"n_chunks = {self.spec.n_chunks}: this run's model sorts only {model.input_shape[1]} chunks; a model "
                f"for any n comes from a run with train.n_chunks_schedule and a {' or '.join(any_n_heads())} head"
            )
        return model, identity


def _score(
    asked: _Asked, model: keras.Model, scored_model: dict, main_sets: list, sanity_corpora: dict, label: str, settings: dict, *, seed: int
) -> EvalReport:
    """Score the main sets, then every sanity set; write the report."""
    spec, sample_rate = asked.spec, asked.config.data.sample_rate
    scoring = {"batch_size": asked.config.train.batch_size, "sample_rate": sample_rate}
    results = [
        score_dataset(puzzles, model, name=name, sanity=False, source=source, **scoring)
        for name, puzzles, source in main_sets
    ]
    for entry in asked.sanity:
        if entry in SANITY_KINDS:
            name = entry
            puzzles, source = sanity_puzzles(entry, spec, sample_rate=sample_rate, n_puzzles=asked.n_puzzles, seed=seed)
            ideal = sanity_ideal_observer(entry, puzzles, spec, sample_rate)
        else:
            folder = sanity_corpora[entry]
            name = _label_part(folder.path)
            present = {t["split"] for t in folder.track_entries}
            folder_split = next((s for s in ("test", "val", "train") if s in present), "test")
            puzzles, fixed = folder.puzzles_for(folder_split, spec, n_puzzles=asked.n_puzzles, seed=seed)
            source = {"kind": "corpus", "corpus": str(folder.path), "split": folder_split, "fixed_set": fixed}
            ideal = None
        if name in {r.name for r in results}:
            raise InputError(f"sanity names {name!r} twice (or it clashes with the set scored); give each set once")
        results.append(score_dataset(puzzles, model, name=name, sanity=True, source=source, ideal=ideal, **scoring))
    report = EvalReport(run_dir=asked.run_dir, datasets=results, label=label, settings=settings, model=scored_model)
    report.write()
    return report


def _label_part(path: Path) -> str:
    """A folder's name as a dataset name and part of a folder name: letters, digits, ``_.-`` only."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", path.resolve().name)
    return "_" + name[1:] if name.startswith(".") else name


def _open_corpus(path: str | Path, sample_rate: int) -> Corpus:
    corpus = Corpus(path)
    if corpus.sample_rate != sample_rate:
        raise InputError(
            f"corpus {corpus.path} is {corpus.sample_rate} Hz but the run's model was trained at {sample_rate} Hz "
            "(data.sample_rate); prepare the corpus at the run's rate"
        )
    return corpus
