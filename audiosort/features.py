"""The feature cache: a model's fixed front end computed once per corpus split, so training skips it.

A ``logmel*`` encoder starts with a fixed log-mel spectrogram (no weights),
and the seam term with the fixed spectra of each chunk's flush 15 ms edges;
every raw-audio training step recomputes both from the int16 chunks.
With ``data.features: cached``, :func:`open_feature_cache` computes them once
per track, with the model's own layers
(:func:`audiosort.models.encoders.log_mel_layer`,
:class:`audiosort.models.layers.EdgeLogMel`), and training gathers each
puzzle's frames and edges from memory-mapped files
(:func:`cached_puzzle_batches`).

Rows lie on a grid of ``g = hop / PHASES`` samples (40 samples, 2.5 ms, for
the 10 ms hop): :data:`PHASES` interleaved copies of the hop-spaced frames,
each offset by ``g``. Row t of a track:

- ``frames[t]``: the log-mel frame of samples ``[t * g, t * g + frame)``;
- ``edges[t, 0]``: the edge spectrum of the ``edge`` samples ending at
  ``t * g`` (the tail of a chunk that ends there);
- ``edges[t, 1]``: that of the ``edge`` samples starting at ``t * g`` (the
  head of a chunk that starts there);

for t = 0 .. samples // g, with zeros where a window reaches past the
track (rows no chunk inside the track reads). A chunk of L samples starting
at row s is then frames ``s, s + P, .., s + (T - 1) P`` (P = PHASES, T = 1 +
(L - frame) // hop, what the layer gives on the chunk), tail
``edges[s + L / g, 0]`` and head ``edges[s, 1]``: the chunk's length, start
and gaps must be whole multiples of g (:meth:`FrontEnd.grid_spec`).

Why phases: what the grid leaks
-------------------------------
Whatever a model is fed, its inputs are computed from audio at positions on
the grid, so the distance between two chunks' inputs is a multiple of g and
a tone of period p samples steps its phase from chunk to chunk by
``(L + gap) mod p``, on the subgroup of ``m = p / gcd(g, p)`` residues. Gaps
drawn uniformly among G grid values hit those residues equally only where G
is a multiple of m; otherwise ``G mod m`` residues get one draw more, a
non-uniformity of about ``m / G``, which an ideal observer of the phases
turns into order. For the audit's tiled tone (p = 36 at 16 kHz) on the hop
grid alone (g = 160, m = 9) the gaps of 0.5-1.0 s take 51 values and its
observer sorts n = 3 at 0.182 exact (chance 0.167), failing the audit; the
excess halves with each doubling of the phases (more gap values, the same
m): 2 phases, 101 values, 0.175; 4 phases, 201 values, 0.171 (tau 0.003),
the raw path's own figure at 0-50 ms (801 values, 0.171) and within the
audit's 0.01; reaching the raw path's 0.167 at 0.5-1.0 s would take about 40
phases. The other designs do not remove the grid: a per-chunk sub-hop
"phase" or chunk-length jitter drawn on top of frames on one grid leaves
every input's position, and so every phase step, on that grid (the model
cannot see a sample offset it is never shown), and computing a chunk's
boundary hops live does not help because an off-grid start moves every
frame of the chunk. Four phases cost four times the memory and build time
of the hop grid alone (the recipe corpus's 8.8 h train split: about 3.5 GiB,
built once per corpus and front end, reused by every run after).

Layout, beside the corpus (``<key>`` names the front-end settings, :attr:`FrontEnd.key`)::

    CORPUS/features/<key>/<split>-frames.npy   float16 [shape=(rows, n_mels)]
    CORPUS/features/<key>/<split>-edges.npy    float16 [shape=(rows, 2, edge_mels)]
    CORPUS/features/<key>/<split>.json         settings, corpus fingerprint, rows per track (written last)

Each file is written atomically and the index last, so an interrupted build
leaves no index and is redone; a cache whose settings, corpus (manifest and
shard files) or files do not match its index is stale and rebuilt. float16
halves the files at a log-mel error under 0.01 (log units); memory maps keep
a corpus larger than memory trainable.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from audiosort import _files
from audiosort.config import Config
from audiosort.data.corpus import Corpus
from audiosort.data.pipeline import keep_freed_memory
from audiosort.data.puzzles import PuzzleSpec, TrackTable, draw_starts
from audiosort.errors import ConfigError, InputError
from audiosort.pcm import INT16_SCALE
from audiosort.spectra import EDGE_SECONDS

FORMAT = "audiosort-features/2"
# Copies of the hop-spaced rows, each offset by hop / PHASES samples: chunk starts and gaps on a grid that fine
# (module docstring, "Why phases").
PHASES = 4
# Encoders whose first layer is the fixed log-mel front end ("log_mel") the cache replaces.
CACHED_ENCODERS = ("logmel", "logmel1d", "logmel_resnet")
# Hop rows computed per layer call while building: a few MB of activations.
_BLOCK_ROWS = 4096


@dataclass(frozen=True)
class FrontEnd:
    """The settings of a model's fixed front end, in samples: what a feature cache is keyed by.

    Attributes
    ----------
    sample_rate : int > 0
        Hz.
    frame_samples, hop_samples, fft_length : int > 0
        The log-mel layer's window, hop and DFT length, in samples.
    n_mels : int > 0
        Log-mel bands of a frame.
    edge_samples : int > 0
        Length of each seam edge, in samples (the continuity baseline's 15 ms).
    phases : int > 0
        Copies of the hop-spaced rows, each offset by ``hop_samples / phases``
        (:data:`PHASES`; ``hop_samples`` a multiple of it).
    """

    sample_rate: int
    frame_samples: int
    hop_samples: int
    fft_length: int
    n_mels: int
    edge_samples: int
    phases: int = PHASES

    @property
    def grid_samples(self) -> int:
        """Samples between rows: chunk lengths, starts and gaps are whole multiples of it."""
        return self.hop_samples // self.phases

    @classmethod
    def from_config(cls, config: Config) -> FrontEnd:
        """The front end of ``config``'s model, checked for training on cached features.

        Raises
        ------
        ConfigError
            An encoder without the log-mel front end, a hop that is not a
            multiple of :data:`PHASES` samples, a chunk that is not a whole
            number of grid steps, augmentation or ``puzzle.min_rms`` (both
            need the audio), ``puzzle.align`` on beats, or gaps that hold no grid step.
        """
        from audiosort.models.encoders import log_mel_layer

        encoder, sample_rate = config.model.encoder, config.data.sample_rate
        if encoder.type not in CACHED_ENCODERS:
            raise ConfigError(
                f"data.features = 'cached' needs a log-mel encoder ({', '.join(CACHED_ENCODERS)}), "
                f"not model.encoder.type = {encoder.type!r}"
            )
        if config.augment.enabled:
            raise ConfigError("data.features = 'cached' cannot augment (augmentation changes the audio): set augment.enabled=false")
        if config.puzzle.align != "none":
            raise ConfigError(f"data.features = 'cached' cuts chunks on the hop grid, not on beats: set puzzle.align=none (not {config.puzzle.align!r})")
        if config.puzzle.min_rms > 0:
            raise ConfigError(f"data.features = 'cached' cannot reject quiet chunks: set puzzle.min_rms=0 (not {config.puzzle.min_rms})")
        chunk_samples = round(config.puzzle.chunk_seconds * sample_rate)
        layer = log_mel_layer(encoder, chunk_samples=chunk_samples, sample_rate=sample_rate)
        front = cls(
            sample_rate=sample_rate,
            frame_samples=layer.frame_length,
            hop_samples=layer.frame_step,
            fft_length=layer.fft_length,
            n_mels=layer.n_mels,
            edge_samples=min(round(EDGE_SECONDS * sample_rate), chunk_samples),
        )
        if front.hop_samples % front.phases:
            raise ConfigError(
                f"data.features = 'cached' caches {front.phases} phases of the hop: model.encoder.hop_seconds = "
                f"{encoder.hop_seconds} ({front.hop_samples} samples) must be a multiple of {front.phases} samples"
            )
        if chunk_samples % front.grid_samples or chunk_samples < max(front.frame_samples, front.edge_samples):
            raise ConfigError(
                f"data.features = 'cached' cuts chunks on a grid of {front.grid_samples} samples "
                f"(model.encoder.hop_seconds / {front.phases}): puzzle.chunk_seconds = {config.puzzle.chunk_seconds} "
                f"({chunk_samples} samples) must be a whole number of them, and at least one frame"
            )
        front.grid_spec(PuzzleSpec.from_config(config.puzzle, sample_rate=sample_rate))  # gaps on the grid, or the error now
        return front

    @property
    def key(self) -> str:
        """The cache folder's name: a short hash of the settings and the format."""
        text = json.dumps({"format": FORMAT, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def chunk_frames(self, chunk_samples: int) -> int:
        """Log-mel frames of one chunk of ``chunk_samples`` samples (what the layer gives on it)."""
        return 1 + (chunk_samples - self.frame_samples) // self.hop_samples

    def grid_spec(self, spec: PuzzleSpec) -> PuzzleSpec:
        """``spec`` on the cache's grid: starts and gaps whole grid steps, the gap bounds rounded inwards (so they stay within the config's).

        Raises
        ------
        ConfigError
            A chunk that is not a whole number of grid steps, or gap bounds with no grid step between them.
        """
        grid = self.grid_samples
        if spec.chunk_samples % grid:
            raise ConfigError(f"a chunk of {spec.chunk_samples} samples is not a whole number of {grid}-sample grid steps")
        pad_min, pad_max = math.ceil(spec.pad_min_samples / grid) * grid, spec.pad_max_samples // grid * grid
        if pad_min > pad_max:
            raise ConfigError(
                f"gaps of {spec.pad_min_samples}-{spec.pad_max_samples} samples hold no multiple of {grid} samples: "
                f"data.features = 'cached' cuts gaps on a {grid}-sample grid; widen puzzle.pad_max_seconds"
            )
        return dataclasses.replace(spec, pad_min_samples=pad_min, pad_max_samples=pad_max, grid_samples=grid)


def track_features(audio: np.ndarray, front: FrontEnd) -> tuple[np.ndarray, np.ndarray]:
    """One track's cached rows, computed by the model's own front-end layers.

    Parameters
    ----------
    audio : np.ndarray [shape=(samples,), dtype=int16]
        The track.
    front : FrontEnd
        The settings.

    Returns
    -------
    frames : np.ndarray [shape=(samples // g + 1, n_mels), dtype=float32]
        ``frames[t]``: the log-mel frame starting at sample ``t * g``, g =
        ``front.grid_samples``.
    edges : np.ndarray [shape=(samples // g + 1, 2, edge_mels), dtype=float32]
        ``edges[t, 0]``: the edge spectrum of the samples ending at ``t *
        g``; ``edges[t, 1]``: of those starting there. Audio outside the
        track counts as silence.
    """
    import keras

    from audiosort.models.layers import EdgeLogMel, LogMelSpectrogram

    # The layer log_mel_layer builds for the model, with the same settings (FrontEnd.from_config read them off it)
    # but a frame every grid step: the model's frames of a chunk starting at any row are every phases-th row.
    grid, edge = front.grid_samples, front.edge_samples
    log_mel = LogMelSpectrogram(front.sample_rate, front.frame_samples, grid, front.fft_length, front.n_mels, dtype="float32")
    edge_log_mel = EdgeLogMel(front.sample_rate, front.edge_samples)
    rows = len(audio) // grid + 1
    frames = np.empty((rows, front.n_mels), np.float32)
    edges = None
    for first in range(0, rows, _BLOCK_ROWS):
        last = min(rows, first + _BLOCK_ROWS)
        count = last - first
        block = _to_float(_samples(audio, first * grid, (last - 1) * grid + front.frame_samples))
        frames[first:last] = keras.ops.convert_to_numpy(log_mel(block[None]))[0]
        tails = sliding_window_view(_samples(audio, first * grid - edge, (last - 1) * grid), edge)[::grid]
        heads = sliding_window_view(_samples(audio, first * grid, (last - 1) * grid + edge), edge)[::grid]
        # A window exactly one edge long is its own tail and head: row 0 of the layer's output.
        spectra = keras.ops.convert_to_numpy(edge_log_mel(_to_float(np.concatenate([tails, heads]))))[:, 0]
        if edges is None:
            edges = np.empty((rows, 2, spectra.shape[-1]), np.float32)
        edges[first:last, 0], edges[first:last, 1] = spectra[:count], spectra[count:]
    return frames, edges


def _samples(audio: np.ndarray, first: int, last: int) -> np.ndarray:
    """``audio[first:last]`` as int16, with zeros where the range passes either end."""
    out = np.zeros(last - first, np.int16)
    lo, hi = max(first, 0), min(last, len(audio))
    if hi > lo:
        out[lo - first : hi - first] = audio[lo:hi]
    return out


def _to_float(samples: np.ndarray) -> np.ndarray:
    """int16 -> float32 in [-1, 1), exactly as :class:`audiosort.models.layers.Int16ToFloat` (a power-of-two scale)."""
    return samples.astype(np.float32) * np.float32(1.0 / INT16_SCALE)


@dataclass(frozen=True)
class FeatureCache:
    """One split's cached rows, memory-mapped, with each track's first row (:func:`open_feature_cache`).

    Attributes
    ----------
    front : FrontEnd
    frames : np.ndarray [shape=(rows, n_mels), dtype=float16]
    edges : np.ndarray [shape=(rows, 2, edge_mels), dtype=float16]
    first_row : np.ndarray [shape=(T,), dtype=int64]
        Row of each track's sample 0, in the order of ``tracks``.
    tracks : TrackTable
        The tracks' lengths and ids (their audio need not be there): what
        :func:`audiosort.data.puzzles.draw_starts` draws from with a
        :meth:`FrontEnd.grid_spec`. Rows are ``front.grid_samples`` apart.
    """

    front: FrontEnd
    frames: np.ndarray
    edges: np.ndarray
    first_row: np.ndarray
    tracks: TrackTable

    @classmethod
    def in_memory(cls, tracks: TrackTable, front: FrontEnd) -> FeatureCache:
        """The cache of in-memory ``tracks`` (audit's sanity audio), computed here and held in memory."""
        rows, first_row = _rows(tracks, front)
        computed = [track_features(_track(tracks, index), front) for index in range(len(tracks))]
        frames, edges = (np.concatenate([part[k] for part in computed]).astype(np.float16) for k in (0, 1))
        return cls(front=front, frames=frames, edges=edges, first_row=first_row, tracks=tracks)

    def gather(self, rows: np.ndarray, starts: np.ndarray, *, chunk_samples: int, edges: bool = True) -> tuple[np.ndarray, ...]:
        """The model inputs of puzzles whose chunks start at samples ``starts`` of the tracks ``rows``.

        Parameters
        ----------
        rows : np.ndarray [shape=(B,), dtype=int]
            Row of each puzzle's track in :attr:`tracks`.
        starts : np.ndarray [shape=(B, n), dtype=int64]
            First sample of each chunk within its track: whole grid steps
            (``front.grid_samples``).
        chunk_samples : int > 0
            Chunk length, in samples: whole grid steps.
        edges : bool
            Also gather the seam edges.

        Returns
        -------
        frames : np.ndarray [shape=(B, n, T, n_mels), dtype=float32]
        edges : np.ndarray [shape=(B, n, 2, edge_mels), dtype=float32]
            Row 0 each chunk's tail, row 1 its head (as :class:`EdgeLogMel`); only with ``edges``.
        """
        grid, phases = self.front.grid_samples, self.front.phases
        first = self.first_row[rows][:, None] + starts // grid
        chunk_rows, chunk_frames = chunk_samples // grid, self.front.chunk_frames(chunk_samples)
        frames = self.frames[first[..., None] + phases * np.arange(chunk_frames)].astype(np.float32)
        if not edges:
            return (frames,)
        seams = np.stack([self.edges[first + chunk_rows, 0], self.edges[first, 1]], axis=2).astype(np.float32)
        return frames, seams


def open_feature_cache(corpus: Corpus, split: str, front: FrontEnd, *, echo: Callable[[str], None] | None = None) -> FeatureCache:
    """The feature cache of ``corpus``'s ``split`` for ``front``: opened, or built (again) when missing or stale.

    Parameters
    ----------
    corpus : Corpus
    split : str
        A split with tracks (``train``, ``val``, ...).
    front : FrontEnd
        Names the cache (:attr:`FrontEnd.key`).
    echo : callable or None
        Told one line when the cache is built, and why.

    Returns
    -------
    FeatureCache

    Raises
    ------
    InputError
        A split without tracks, a cache path the filesystem cannot hold, or a
        ``features`` path in the corpus that is not a folder (a file, a link loop).
    """
    echo = echo or (lambda line: None)
    tracks = corpus.tracks(split)
    folder = cache_folder(corpus, front)
    expected = _index(corpus, split, front, tracks)
    why = _stale(folder, split, expected)
    if why:
        echo(f"feature cache {folder / split}: {why}; computing it ({int(expected['rows'])} rows)")
        started = time.perf_counter()
        _build(corpus, split, front, tracks, folder, expected)
        echo(f"feature cache {folder / split}: built in {time.perf_counter() - started:.1f} s, {_size(folder, split) / 2**20:.1f} MiB")
    frames, edges = (np.asarray(np.load(folder / f"{split}-{part}.npy", mmap_mode="r")) for part in ("frames", "edges"))
    return FeatureCache(front=front, frames=frames, edges=edges, first_row=_rows(tracks, front)[1], tracks=tracks)


def cache_folder(corpus: Corpus, front: FrontEnd) -> Path:
    """``CORPUS/features/<key>``."""
    return corpus.path / "features" / front.key


def _index(corpus: Corpus, split: str, front: FrontEnd, tracks: TrackTable) -> dict:
    """What the split's index must say: format, settings, the corpus it was computed from, rows per track."""
    rows, first_rows = _rows(tracks, front)
    return {
        "format": FORMAT,
        "front_end": dataclasses.asdict(front),
        # Re-preparing the corpus rewrites its manifest and shards: either change makes the cache stale.
        "corpus": corpus.fingerprint(split),
        "rows": int(rows.sum()),
        "tracks": [
            {"id": int(track), "first_row": int(first), "rows": int(count)}
            for track, first, count in zip(tracks.track_id, first_rows, rows)
        ],
    }


def _rows(tracks: TrackTable, front: FrontEnd) -> tuple[np.ndarray, np.ndarray]:
    """Rows of each track (samples // grid + 1) and the row of its sample 0, tracks laid end to end."""
    rows = tracks.frames // front.grid_samples + 1
    return rows, np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64)


def _track(tracks: TrackTable, index: int) -> np.ndarray:
    """The samples of row ``index`` of ``tracks``."""
    offset = tracks.offset[index]
    return tracks.shards[tracks.shard[index]][offset : offset + tracks.frames[index]]


def _stale(folder: Path, split: str, expected: dict) -> str:
    """Why the cache at ``folder`` cannot be used for ``expected`` ("" when it can)."""
    index_path = folder / f"{split}.json"
    if not index_path.exists():
        return "not built yet"
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"unreadable index ({type(e).__name__})"
    if index != expected:
        changed = [key for key in expected if not isinstance(index, dict) or index.get(key) != expected[key]]
        return f"stale ({', '.join(changed)} changed)"
    n_mels = expected["front_end"]["n_mels"]
    for part, shape in (("frames", (expected["rows"], n_mels)), ("edges", (expected["rows"], 2))):
        try:
            array = np.load(folder / f"{split}-{part}.npy", mmap_mode="r")
        except (OSError, ValueError, EOFError) as e:
            return f"{part} unreadable ({type(e).__name__})"
        if array.dtype != np.float16 or array.shape[: len(shape)] != shape:
            return f"{part} of shape {array.shape} {array.dtype}, not {shape} float16"
    return ""


def _build(corpus: Corpus, split: str, front: FrontEnd, tracks: TrackTable, folder: Path, index: dict) -> None:
    """Compute every track's rows into fresh memory-mapped files, each renamed into place, the index last."""
    _files.check_name(folder / f"{split}-frames.npy", "feature cache")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # CORPUS/features is a file, a link to itself, or read-only
        raise InputError(f"cannot create the feature cache {folder}: {e.strerror or e}; "
                         f"{corpus.path / 'features'} must be a folder audiosort may write") from None
    (folder / f"{split}.json").unlink(missing_ok=True)  # no index over half-written files
    edge_mels = track_features(np.zeros(front.frame_samples, np.int16), front)[1].shape[-1]
    shapes = {"frames": (index["rows"], front.n_mels), "edges": (index["rows"], 2, edge_mels)}
    entries = index["tracks"]
    with _files.replacing(folder / f"{split}-frames.npy") as frames_tmp, _files.replacing(folder / f"{split}-edges.npy") as edges_tmp:
        frames = np.lib.format.open_memmap(frames_tmp, mode="w+", dtype=np.float16, shape=shapes["frames"])
        edges = np.lib.format.open_memmap(edges_tmp, mode="w+", dtype=np.float16, shape=shapes["edges"])
        for row, entry in enumerate(entries):
            track_frames, track_edges = track_features(_track(tracks, row), front)
            span = slice(entry["first_row"], entry["first_row"] + entry["rows"])
            frames[span], edges[span] = track_frames, track_edges
        frames.flush()
        edges.flush()
        del frames, edges
    _files.write_text(folder / f"{split}.json", json.dumps(index) + "\n")


def _size(folder: Path, split: str) -> int:
    return sum((folder / f"{split}-{part}.npy").stat().st_size for part in ("frames", "edges"))


def cached_puzzle_batches(
    cache: FeatureCache,
    spec: PuzzleSpec,
    batch_size: int,
    *,
    rng: np.random.Generator,
    edges: bool = True,
    workers: int | None = None,
    prefetch: int | None = None,
    distinct_tracks: bool = False,
) -> Iterator[tuple[tuple[np.ndarray, ...], np.ndarray]]:
    """Endless training batches ``((frames, edges), order)`` on the cache's grid, gathered ahead on threads.

    Every random draw is :func:`~audiosort.data.puzzles.draw_starts` on
    :attr:`FeatureCache.tracks` with ``cache.front.grid_spec(spec)``, on
    the caller's thread and in order, so the stream depends only on ``rng``;
    the gathers from the memory maps (copies during which numpy releases the
    GIL) run on ``workers`` threads, ``prefetch`` batches ahead, as
    :func:`audiosort.data.pipeline.prefetched_puzzle_batches` cuts audio.

    Parameters
    ----------
    cache : FeatureCache
    spec : PuzzleSpec
        The puzzles in samples (chunk length a whole number of grid steps).
    batch_size : int > 0
    rng : np.random.Generator
    edges : bool
        Also gather the seam edges (a model with ``model.sorter.seam``).
    workers, prefetch : int > 0, optional
        Threads, default the usable cores, at most 4; batches in flight, default ``workers + 1``.
    distinct_tracks : bool
        No two puzzles of a batch from one track (:func:`~audiosort.data.puzzles.draw_starts`).

    Yields
    ------
    inputs : tuple of np.ndarray
        ``frames [shape=(B, n, T, n_mels), float32]`` and, with ``edges``,
        ``edges [shape=(B, n, 2, edge_mels), float32]``.
    order : np.ndarray [shape=(B, n), dtype=int32]
    """
    grid_spec = cache.front.grid_spec(spec)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = workers or max(1, min(4, cores))
    prefetch = prefetch or workers + 1
    pool = ThreadPoolExecutor(workers, thread_name_prefix="features")
    pending: collections.deque = collections.deque()

    def gathered(drawn):
        return cache.gather(drawn.rows, drawn.starts, chunk_samples=spec.chunk_samples, edges=edges), drawn.order

    try:
        while True:
            while len(pending) <= prefetch:
                drawn = draw_starts(cache.tracks, grid_spec, batch_size, rng=rng, distinct_tracks=distinct_tracks)
                pending.append(pool.submit(gathered, drawn))
            keep_freed_memory()
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
