"""``audiosort listen``: hear one puzzle cut from a file, shuffled and as the model sorts it.

The seed's demo as a command. One puzzle is cut from the file with the run's
puzzle settings (chunk length, number of chunks, gaps drawn as in training),
the run's model scores it, and its Hungarian decoding gives the model's order.
Three 16-bit wavs at the run's sample rate are written, each atomically::

    original.wav   the chunks in their true temporal order
    shuffled.wav   the chunks in slot order: what the model was given
    sorted.wav     the chunks in the order the model predicts

In all three the gaps between the chunks in the file are left out, and a
fixed silence of :data:`BOUNDARY_SILENCE_SECONDS` separates consecutive chunks
so that the boundaries are audible; when the model is right, ``sorted.wav`` is
``original.wav`` sample for sample.

Orders follow the labels' convention: ``order[i]`` is the temporal position
(0 = earliest) of the chunk in slot i.

Example
-------
>>> result = listen("runs/demo", "song.flac", out="listen/", start_seconds=30.0)  # doctest: +SKIP
>>> print("\\n".join(result.lines()))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiosort import _files, audio, decoding
from audiosort.data.puzzles import PuzzleSpec, TrackTable, cut_chunks, draw_starts
from audiosort.errors import DecodeError, InputError
from audiosort.predict import position_scores
from audiosort.run import AUDIOSORT_FOLDERS, load_run_config, load_run_model

BOUNDARY_SILENCE_SECONDS = 0.05
OUTPUT_NAMES = ("original.wav", "shuffled.wav", "sorted.wav")


@dataclass
class ListenResult:
    """One puzzle and the model's answer.

    Attributes
    ----------
    source : str
        The audio file the puzzle was cut from.
    start_seconds : float
        Start of the earliest chunk in the file, in seconds.
    chunk_seconds : float
        Length of each chunk, in seconds.
    gaps_seconds : np.ndarray [shape=(n - 1,), dtype=float64]
        Gaps between consecutive chunks in the file, in seconds.
    order : np.ndarray [shape=(n,), dtype=int64]
        True temporal position of the chunk in each slot.
    predicted : np.ndarray [shape=(n,), dtype=int64]
        The model's position for each slot (Hungarian decoding).
    out : Path
        Folder holding original.wav, shuffled.wav and sorted.wav.
    """

    source: str
    start_seconds: float
    chunk_seconds: float
    gaps_seconds: np.ndarray
    order: np.ndarray
    predicted: np.ndarray
    out: Path

    @property
    def correct(self) -> bool:
        """Whether the model put every chunk in its place."""
        return bool(np.array_equal(self.order, self.predicted))

    def lines(self) -> list[str]:
        """What ``audiosort listen`` prints."""
        n_chunks = len(self.order)
        right = int(np.sum(self.order == self.predicted))
        gaps = ", ".join(f"{gap:.3f}" for gap in self.gaps_seconds)
        verdict = "right" if self.correct else f"wrong ({right} of {n_chunks} chunks in place)"
        return [
            f"puzzle: {n_chunks} chunks of {self.chunk_seconds:.3f} s from {self.source} at {self.start_seconds:.3f} s "
            f"(gaps {gaps} s)",
            f"true order:      {self.order.tolist()}  (temporal position of the chunk in each slot)",
            f"predicted order: {self.predicted.tolist()}  -> {verdict}",
            f"wrote original.wav, shuffled.wav, sorted.wav in {self.out}",
        ]


def _read_window(source: str | Path, *, sample_rate: int, first: int, count: int) -> tuple[np.ndarray, int]:
    """Samples ``[first, first + count)`` of ``source`` at ``sample_rate``, int16, decoding no further than needed.

    Returns
    -------
    window : np.ndarray [shape=(<= count,), dtype=int16]
        Shorter than ``count`` where the file ends first.
    length : int
        Samples decoded: the file's length when ``window`` is short.
    """
    pieces, decoded, kept = [], 0, 0
    for block in audio.stream(source, sample_rate=sample_rate):
        begin, end = max(first - decoded, 0), min(first + count - decoded, len(block))
        if begin < end:
            pieces.append(audio.to_int16(block[begin:end]))
            kept += end - begin
        decoded += len(block)
        if kept == count:
            break
    return (np.concatenate(pieces) if pieces else np.empty(0, np.int16)), decoded


def listen(
    run_dir: str | Path, source: str | Path, *, out: str | Path, start_seconds: float | None = None, seed: int = 0
) -> ListenResult:
    """Cut one puzzle from ``source``, sort it with the run's model and write the three wavs.

    Parameters
    ----------
    run_dir : str or Path
        Run folder of ``audiosort train`` (``config.yaml``, ``model.keras``).
    source : str or Path
        Audio file, decoded at the run's sample rate.
    out : str or Path, keyword-only
        Folder for original.wav, shuffled.wav and sorted.wav (created if
        missing); those three files are replaced, never ``source`` or a file
        of the run folder. All three are written, or none.
    start_seconds : float >= 0, optional, keyword-only
        Where the earliest chunk starts, rounded to the nearest sample; there
        must be room for the puzzle's longest span (its chunks and largest
        gaps) from there. Default a random start.
    seed : int, keyword-only
        Seeds the gaps, the random start and the shuffle.

    Returns
    -------
    ListenResult

    Raises
    ------
    InputError, DecodeError
        A bad run folder, an undecodable file, a file shorter than the puzzle,
        or a start that leaves too little audio for it.
    """
    run_dir = Path(run_dir)
    if start_seconds is not None and not math.isfinite(start_seconds):
        raise InputError(f"start_seconds = {start_seconds} is not a number of seconds")
    config = load_run_config(run_dir)
    sample_rate = config.data.sample_rate
    spec = PuzzleSpec.from_config(config.puzzle, sample_rate=sample_rate)
    out = Path(out)
    targets = _files.check_files_into(
        out, OUTPUT_NAMES, what="out path", keep=(source, run_dir, config.data.corpus), folders=AUDIOSORT_FOLDERS
    )
    # The puzzle is drawn as training draws one (puzzles.draw_starts), inside the window of its
    # longest span that starts at --start (the puzzle is then moved to start there) or at random.
    # Only that window is kept: a recording of hours is decoded block by block, never held whole.
    window = spec.max_span_samples
    rng = np.random.default_rng(seed)
    try:
        if start_seconds is None:
            length = sum(len(block) for block in audio.stream(source, sample_rate=sample_rate))
            if length < window:
                raise InputError(
                    f"{source} is {length / sample_rate:.3f} s long, shorter than one puzzle of this run "
                    f"({window / sample_rate:.3f} s: {spec.n_chunks} chunks of {spec.chunk_samples / sample_rate:.3f} s "
                    "and their longest gaps)"
                )
            first = int(rng.integers(0, length - window + 1))
        else:
            # Far past any file's end (2**62 samples is 9 million years at 16 kHz): the read below finds no room.
            first = round(start_seconds * sample_rate) if 0 <= start_seconds * sample_rate < 2**62 else 2**62
        pcm, length = _read_window(source, sample_rate=sample_rate, first=first, count=window)
    except DecodeError as error:
        raise DecodeError(f"cannot read {source}: {error}") from None
    if start_seconds is not None and (start_seconds < 0 or len(pcm) < window):
        raise InputError(
            f"start_seconds = {start_seconds} s does not leave room for one puzzle ({window / sample_rate:.3f} s) "
            f"in {source} ({length / sample_rate:.3f} s long)"
        )
    table = TrackTable.from_arrays([pcm])
    drawn = draw_starts(table, spec, 1, rng=rng)
    starts = drawn.starts[0] - (drawn.starts[0].min() if start_seconds is not None else 0)
    chunks = cut_chunks(table, drawn.rows, starts[None], chunk_samples=spec.chunk_samples)[0]
    order = drawn.order[0].astype(np.int64)
    in_time = np.sort(starts)
    gaps = np.diff(in_time) - spec.chunk_samples
    start = first + int(in_time[0])

    model = load_run_model(run_dir, spec)
    scores = position_scores(model, chunks[None], what=audio.printable(source))
    predicted = decoding.decode(scores, method="hungarian")[0]

    silence = np.zeros(round(BOUNDARY_SILENCE_SECONDS * sample_rate), dtype=np.int16)
    slot_orders = (np.argsort(order), np.arange(spec.n_chunks), np.argsort(predicted))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create out folder {out}: {e.strerror or e}") from None
    # All three or none: each is written to a temporary file, and renamed into place only once all are written.
    with contextlib.ExitStack() as stack:
        temporaries = [stack.enter_context(_files.replacing(target)) for target in targets]
        for tmp, slots in zip(temporaries, slot_orders):
            pieces = [part for slot in slots for part in (chunks[slot], silence)][:-1]
            audio.write_wav(tmp, np.concatenate(pieces), sample_rate=sample_rate)
    return ListenResult(
        source=audio.printable(source),
        start_seconds=start / sample_rate,
        chunk_seconds=spec.chunk_samples / sample_rate,
        gaps_seconds=gaps / sample_rate,
        order=order,
        predicted=predicted,
        out=out,
    )
