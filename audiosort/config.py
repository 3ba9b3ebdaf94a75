"""Typed run configuration: frozen dataclasses, strict YAML loading, ``--set``.

A config is a tree of frozen dataclasses, one per YAML section. Defaults live
here; files in ``configs/`` state only what they change. Loading is strict,
because the seed lost days to a silent typo (``pad_lengths`` for
``pad_length``): an unknown key is an error naming the closest valid key, a
value of the wrong type or out of range is an error naming the value.

Example
-------
>>> cfg = load_config("configs/demo.yaml", overrides=["puzzle.n_chunks=4"])
>>> cfg.puzzle.n_chunks
4
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from audiosort import _files
from audiosort.errors import ConfigError, InputError
from audiosort.heads import HEAD_KEYS, HEADS, heads_reading

PAD_MODES = ("per_gap", "shared", "fixed")
# none: chunk starts anywhere; beats: training chunks start on beats tracked in the train split (audiosort.data.beats).
ALIGNS = ("none", "beats")
# raw: every step computes the log-mel front end from the int16 chunks; cached: training reads it from
# the corpus's feature cache (audiosort.features), puzzles cut on its grid of hop / 4 samples.
FEATURE_SOURCES = ("raw", "cached")
POOLINGS = ("global", "flatten", "time", "stats")
ENCODER_TYPES = ("mlp", "conv1d", "logmel", "logmel_resnet", "logmel1d")
NORMALIZATIONS = ("softmax", "sinkhorn")
SORTER_LOSSES = ("rows", "orders")
LR_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
KEEP_CHOICES = ("last", "val_loss", "online_probe")  # train.keep; the best ones are audiosort.run.BEST_CHECKPOINTS
# numpy's legacy global seed, which keras.utils.set_random_seed sets, takes 0 <= seed < 2**32.
MAX_SEED = 2**32 - 1
# Puzzles in a scored set (fixed val/test sets, eval's sanity sets): the 95% interval of an
# exact-order accuracy near 0.5 is then about +-0.022.
DEFAULT_PUZZLES = 2000
# One training batch of int16 audio at most; the model's activations are many times more.
MAX_BATCH_BYTES = 2 * 2**30
# Nodes a YAML file may expand to through aliases (*name): a config has about 60 keys; this
# refuses a "billion laughs" file, which expands a few lines into gigabytes.
MAX_YAML_NODES = 100_000
# Bytes a config file may hold (the largest in configs/ is under 4 KiB); /dev/zero would never end.
MAX_CONFIG_BYTES = 1 << 20
# Files a chain of ``base:`` keys may pass through (configs/ uses at most 2).
MAX_BASE_DEPTH = 32
# The highest sample rate a run may have, as audio.MAX_SAMPLE_RATE (which config cannot import: it loads codecs).
MAX_SAMPLE_RATE = 192_000
# Characters of a value an error message shows: a value may be megabytes long.
_SHOWN_CHARS = 80
# The sanity sets eval and audit score unless told otherwise (audiosort.sanity.SANITY_KINDS has them all).
DEFAULT_SANITY = ("noise", "brown", "tone")


@dataclass(frozen=True)
class DataConfig:
    """Where the training data lives."""

    corpus: str = "data/demo"  # a corpus folder made by `audiosort prepare`
    sample_rate: int = 16000  # Hz; must match the corpus (the model's front end depends on it)
    val_puzzles: int = DEFAULT_PUZZLES  # size of the validation set when the corpus's fixed one has other settings
    # raw: the model computes its log-mel front end every step; cached: training reads it from a feature
    # cache built once beside the corpus (docs/training.md, "Feature cache"); logmel* encoders only.
    features: str = "raw"

    def __post_init__(self):
        _check(self.features in FEATURE_SOURCES, "data.features", self.features, f"must be one of {FEATURE_SOURCES}")
        _check(0 < self.sample_rate <= MAX_SAMPLE_RATE, "data.sample_rate", self.sample_rate, f"must be in [1, {MAX_SAMPLE_RATE}] (Hz)")
        _check(self.val_puzzles > 0, "data.val_puzzles", self.val_puzzles, "must be > 0")


@dataclass(frozen=True)
class PuzzleConfig:
    """How a chunk set is cut from a track (all lengths in seconds)."""

    n_chunks: int = 3  # chunks per puzzle (n); chance of the exact order is 1/n!
    chunk_seconds: float = 0.2  # length of each chunk
    # Gaps of 0.5-1.0 s: the gap study (configs/sweep-gaps.yaml, docs/gap-study.md) found the encoders
    # probed best after training with these, and nothing sorts brown noise or a tone across them.
    pad_min_seconds: float = 0.5
    pad_max_seconds: float = 1.0  # gaps between consecutive chunks are drawn from [pad_min_seconds, pad_max_seconds]
    # per_gap: every gap drawn independently (the only leak-free mode);
    # shared: one random gap for all gaps of a set (the seed's first attempt, leaks for n >= 3);
    # fixed: every gap is pad_max_seconds (leaks the tone's phase step).
    pad_mode: str = "per_gap"
    # Reject chunk sets with any chunk quieter than this RMS (full scale = 1.0); 0 disables.
    min_rms: float = 0.0
    # Training puzzles only (issue 27): none | beats, every chunk starts on a beat tracked in the train split
    # (CORPUS/beats/train.npz, built by prepare or on the first run), so the gaps are whole beat distances in
    # [pad_min_seconds, pad_max_seconds]; needs pad_mode per_gap. Val, test and eval puzzles stay unaligned.
    align: str = "none"

    def __post_init__(self):
        _check(self.n_chunks >= 2, "puzzle.n_chunks", self.n_chunks, "must be >= 2")
        _check(self.chunk_seconds > 0, "puzzle.chunk_seconds", self.chunk_seconds, "must be > 0")
        _check(self.pad_min_seconds >= 0, "puzzle.pad_min_seconds", self.pad_min_seconds, "must be >= 0")
        _check(
            self.pad_max_seconds >= self.pad_min_seconds,
            "puzzle.pad_max_seconds",
            self.pad_max_seconds,
            f"must be >= pad_min_seconds ({self.pad_min_seconds})",
        )
        _check(self.pad_mode in PAD_MODES, "puzzle.pad_mode", self.pad_mode, f"must be one of {PAD_MODES}")
        _check(self.min_rms >= 0, "puzzle.min_rms", self.min_rms, "must be >= 0")
        _check(self.align in ALIGNS, "puzzle.align", self.align, f"must be one of {ALIGNS}")
        _check(
            self.align == "none" or self.pad_mode == "per_gap", "puzzle.align", self.align,
            f"needs puzzle.pad_mode per_gap (the beats set every gap), not {self.pad_mode!r}",
        )


@dataclass(frozen=True)
class AugmentConfig:
    """Training-only changes to the sampled chunks (:mod:`audiosort.data.augment`); off by default.

    The model memorized its 22 warzone tracks (train exact 0.85 against val 0.52). Every draw
    is per chunk or per puzzle and independent of the chunk's temporal position, so none can
    carry order (tests/test_augment.py). A magnitude of 0 turns that one change off.
    """

    enabled: bool = False  # apply the changes below to training batches (never to val, test or eval)
    gain_db: float = 6.0  # per chunk: attenuation drawn uniformly in [-gain_db, 0] dB (never louder: no clipping)
    tilt_db_per_octave: float = 3.0  # per puzzle: spectral tilt around 1 kHz, drawn in [-x, x] dB per octave
    eq_db: float = 6.0  # per puzzle: one bell band (1 octave wide, centre 100 Hz-6 kHz) of gain in [-eq_db, eq_db] dB
    # per chunk: white noise whose RMS is drawn uniformly in [noise_min_dbfs, noise_max_dbfs] dB full scale.
    noise_min_dbfs: float = -70.0
    noise_max_dbfs: float = -45.0
    # false: the per-puzzle EQ only. Gain and noise drawn per chunk change the two sides of a seam differently
    # (issue 19: gain alone costs continuity 0.04 at 0-50 ms gaps); a per-puzzle EQ changes both alike.
    per_chunk: bool = True

    def __post_init__(self):
        for name in ("gain_db", "tilt_db_per_octave", "eq_db"):
            _check(getattr(self, name) >= 0, f"augment.{name}", getattr(self, name), "must be >= 0")
        _check(self.noise_max_dbfs <= 0, "augment.noise_max_dbfs", self.noise_max_dbfs, "must be <= 0 (full scale)")
        _check(
            self.noise_min_dbfs <= self.noise_max_dbfs,
            "augment.noise_min_dbfs",
            self.noise_min_dbfs,
            f"must be <= noise_max_dbfs ({self.noise_max_dbfs})",
        )


@dataclass(frozen=True)
class EncoderConfig:
    """The chunk encoder: int16 chunk of L samples -> embedding_dim floats."""

    # mlp | conv1d | logmel | logmel_resnet (a 2-D ResNet on log-mel, sized for a GPU) | logmel1d (1-D convs over
    # time with the mel bands as channels: a fraction of logmel's CPU time)
    type: str = "mlp"
    embedding_dim: int = 64  # length of one chunk's embedding (what embed, probe and HEAR give)
    hidden_units: int = 1000  # mlp: width of its two hidden layers (the seed's 1000)
    filters: int = 32  # conv1d, logmel, logmel_resnet: channels of the first block, doubled every other block (width)
    blocks: int = 4  # conv1d, logmel, logmel_resnet: number of residual / conv blocks (depth)
    n_mels: int = 64  # logmel, logmel_resnet: mel bands
    frame_seconds: float = 0.025  # logmel, logmel_resnet: STFT window length
    hop_seconds: float = 0.010  # logmel, logmel_resnet: STFT hop
    # conv1d, logmel, logmel_resnet: how the last feature map becomes one vector. global: average and max over
    # time (and frequency), which forgets where in the chunk things happen; flatten: keep the
    # coarse time-frequency layout (start vs end of the chunk) and project it with one Dense; stats: mean and
    # standard deviation over time of every (frequency, channel) feature, which keeps where in frequency it is.
    pooling: str = "global"
    # conv1d, logmel, logmel_resnet: dropout rate on the pooled features before the embedding layer.
    dropout: float = 0.0

    def __post_init__(self):
        _check(0.0 <= self.dropout < 1.0, "model.encoder.dropout", self.dropout, "must be in [0, 1)")
        _check(self.pooling in POOLINGS, "model.encoder.pooling", self.pooling, f"must be one of {POOLINGS}")
        _check(self.type in ENCODER_TYPES, "model.encoder.type", self.type, f"must be one of {ENCODER_TYPES}")
        for name in ("embedding_dim", "hidden_units", "filters", "blocks", "n_mels"):
            _check(getattr(self, name) > 0, f"model.encoder.{name}", getattr(self, name), "must be > 0")
        _check(self.frame_seconds > 0, "model.encoder.frame_seconds", self.frame_seconds, "must be > 0")
        _check(self.hop_seconds > 0, "model.encoder.hop_seconds", self.hop_seconds, "must be > 0")


@dataclass(frozen=True)
class SorterConfig:
    """The sorter head: n embeddings -> n x n matrix, row i = position of slot i."""

    type: str = "mlp"  # mlp | attention (n <= 7) | pairwise (n <= 7) | precedence | rank, successor (any n, softmax only)
    normalization: str = "softmax"  # softmax (each row) | sinkhorn (doubly stochastic)
    hidden_units: int = 1000  # mlp: width of its two wide layers (the seed's 1000); pairwise, precedence: their width
    attention_layers: int = 2  # attention, rank: self-attention blocks over the n embeddings
    attention_heads: int = 4  # attention, rank: heads per block
    sinkhorn_iterations: int = 20  # normalization sinkhorn: row and column normalizations (log space)
    # pairwise, successor: add a learned seam term, a per-band distance between the log-mel spectra of one
    # chunk's last and the next one's first 15 ms, initialised to the continuity baseline (docs/transfer.md).
    seam: bool = False
    # pairwise: also feed the pair MLP the learned tail/head mismatch (the successor head always has it).
    mismatch: bool = False
    # pairwise: rows (cross-entropy of each slot's position marginal) | orders (-log P(true order) under the
    # softmax over all n! orders the head enumerates: the whole order's likelihood, not each slot's).
    loss: str = "rows"
    # pairwise, successor with seam: in training, drop the seam term of this share of the puzzles, so that on
    # those the embeddings alone must sort (issue 27, docs/transfer.md); eval always keeps it.
    seam_dropout: float = 0.0
    # pairwise: the pair MLP also reads a small conv net over the cosine similarities of the two chunks'
    # frames (the encoder's last feature map, frames_i x frames_j): how their rhythm and harmony line up,
    # a cue for chunks that do not touch (issue 27 lever 5). Needs an encoder with frames (not mlp).
    cross_similarity: bool = False

    def __post_init__(self):
        _check(self.type in HEADS, "model.sorter.type", self.type, f"must be one of {tuple(HEADS)}")
        _check(0 <= self.seam_dropout < 1, "model.sorter.seam_dropout", self.seam_dropout, "must be in [0, 1)")
        _check(not self.seam_dropout or self.seam, "model.sorter.seam_dropout", self.seam_dropout, "needs model.sorter.seam: true")
        _check(self.loss in SORTER_LOSSES, "model.sorter.loss", self.loss, f"must be one of {SORTER_LOSSES}")
        defaults = {each.name: each.default for each in dataclasses.fields(self)}
        for key in HEAD_KEYS:
            value, readers = getattr(self, key), " or ".join(map(repr, heads_reading(key)))
            _check(value == defaults[key] or key in HEADS[self.type].keys, f"model.sorter.{key}", value, f"needs model.sorter.type {readers}")
        _check(
            self.normalization in NORMALIZATIONS,
            "model.sorter.normalization",
            self.normalization,
            f"must be one of {NORMALIZATIONS}",
        )
        _check(
            not HEADS[self.type].softmax_only or self.normalization == "softmax",
            "model.sorter.normalization", self.normalization, f"must be softmax for model.sorter.type {self.type!r}",
        )
        for name in ("hidden_units", "attention_layers", "attention_heads", "sinkhorn_iterations"):
            _check(getattr(self, name) > 0, f"model.sorter.{name}", getattr(self, name), "must be > 0")


@dataclass(frozen=True)
class ContrastiveConfig:
    """A training-only auxiliary loss on the encoder's embeddings (issue 19 §6, docs/training.md).

    The chunks of one puzzle come from one track: each chunk's embedding is pulled towards the other chunks
    of its puzzle and pushed from every chunk of the batch's other puzzles (supervised contrastive, in-batch
    negatives). Eval, predict, embed and HEAR never compute it: the saved model's outputs are unchanged.
    """

    # added to the sorting loss with this factor; 0 = off (the model is built exactly as without it)
    weight: float = 0.0
    # of the softmax over cosine similarities (1 / temperature scales them); 0.1 as in Khosla et al. 2020
    temperature: float = 0.1
    # width of a two-layer projection head the loss compares instead of the embeddings (SimCLR); 0 = none
    projection_units: int = 0
    # training batches take each track at most once, so two puzzles of one track are never each other's
    # negatives; needs train.batch_size train tracks that hold a chunk set (audit's 8 sanity tracks: ignored)
    distinct_tracks: bool = False

    def __post_init__(self):
        _check(self.weight >= 0, "model.contrastive.weight", self.weight, "must be >= 0")
        _check(
            not self.distinct_tracks or self.weight > 0, "model.contrastive.distinct_tracks", self.distinct_tracks,
            "needs model.contrastive.weight > 0",
        )
        _check(self.projection_units >= 0, "model.contrastive.projection_units", self.projection_units, "must be >= 0")
        _check(self.temperature > 0, "model.contrastive.temperature", self.temperature, "must be > 0")


@dataclass(frozen=True)
class SpectralTargetsConfig:
    """A training-only auxiliary loss: predict each chunk's chroma, spectral envelope and tempogram from its embedding.

    Sorting rewards what changes along a track and ignores what stays (key, register, timbre, tempo); this asks
    the encoder to keep them (issue 27, :mod:`audiosort.models.auxiliary`). Computed from the chunk's own audio,
    no labels; eval, predict, embed and HEAR never compute it.
    """

    # chroma and envelope: added to the sorting loss with this factor; 0 = off (with tempogram_weight also 0,
    # the model is built exactly as without it)
    weight: float = 0.0
    hidden_units: int = 128  # width of the predictor's hidden layer
    # the chunk's onset autocorrelation at 40-350 ms lags (a local tempogram, issue 27 lever 5): added with this
    # factor; 0 = off, and the predictor is exactly as without it. Either weight may be on alone. Its values are
    # about 100 times smaller in variance than the chroma's (0.012 vs 1.5 per value on the recipe's train audio),
    # so a like share of the loss needs about 100 times the weight.
    tempogram_weight: float = 0.0

    def __post_init__(self):
        _check(self.weight >= 0, "model.spectral_targets.weight", self.weight, "must be >= 0")
        _check(self.tempogram_weight >= 0, "model.spectral_targets.tempogram_weight", self.tempogram_weight, "must be >= 0")
        _check(self.hidden_units > 0, "model.spectral_targets.hidden_units", self.hidden_units, "must be > 0")


@dataclass(frozen=True)
class GapRegressionConfig:
    """A training-only auxiliary loss: predict the gap between two chunks consecutive in time from their embeddings.

    TemporalGap (Jenni et al. 2020, "Video representation learning by recognizing temporal transformations";
    the temporal-distance pretext): the gaps are random, so only what the music does between two chunks (a
    phrase moving on, a beat's phase) tells a wide gap from a narrow one (issue 27, lever 5,
    :mod:`audiosort.models.auxiliary`). The targets come from the training puzzles' starts through a
    training twin of the model; val, eval, predict, embed and HEAR never see them, and model.keras is the
    model built without it.
    """

    weight: float = 0.0  # added to the sorting loss with this factor; 0 = off (the model is built exactly as without it)
    hidden_units: int = 128  # width of the gap head's hidden layer

    def __post_init__(self):
        _check(self.weight >= 0, "model.gap_regression.weight", self.weight, "must be >= 0")
        _check(self.hidden_units > 0, "model.gap_regression.hidden_units", self.hidden_units, "must be > 0")


@dataclass(frozen=True)
class EmbeddingsOnlyConfig:
    """A training-only loss: the pairwise seam head sorts every puzzle a second time with its seam muted.

    The seam term (``model.sorter.seam``) gives the sorter the chunks' edges for free, and the encoder learns
    what the seam leaves over, not how to sort (issue 27, lever 2: "make the encoder carry order on its own").
    This adds ``weight`` times the row cross-entropy of the same head's order marginals computed from the
    embeddings alone (the head's join scores without the seam, :func:`audiosort.models.sorters.join_scores`),
    on every training puzzle: what ``scripts/mute_seam.py`` scores after training is what this trains.
    ``stop_gradient`` goes further: the seam model's own loss no longer reaches the encoder, which learns
    sorting from the embeddings-only loss alone (and from the other auxiliary losses), while the head learns
    from both. The labels reach the loss through a training twin of the model; model.keras is built without it.
    """

    weight: float = 0.0  # added to the sorting loss with this factor; 0 = off (the model is built exactly as without it)
    # the seam model's loss trains the head but not the encoder (a stop-gradient on the embeddings it reads)
    stop_gradient: bool = False

    def __post_init__(self):
        _check(self.weight >= 0, "model.embeddings_only.weight", self.weight, "must be >= 0")
        _check(
            not self.stop_gradient or self.weight > 0, "model.embeddings_only.stop_gradient", self.stop_gradient,
            "needs model.embeddings_only.weight > 0 (else no sorting loss would reach the encoder)",
        )


@dataclass(frozen=True)
class ViewsConfig:
    """Each chunk under its own view on the encoder's path only (issue 27, :mod:`audiosort.models.views`); off by default.

    The seam term keeps reading the raw edges; the encoder gets each chunk with an independent gain, tilt and
    shift in training, and with its outer ``edge_mask_seconds`` silenced always, so that it cannot sort by
    matching edges and must learn what the chunks hold. Draws are per chunk and i.i.d.: none carries order.
    """

    enabled: bool = False
    gain_db: float = 6.0  # per chunk: attenuation drawn uniformly in [-gain_db, 0] dB
    tilt_db_per_octave: float = 3.0  # per chunk: spectral tilt around 1 kHz, drawn in [-x, x] dB per octave
    shift_seconds: float = 0.02  # per chunk: a time shift drawn in [-x, x] s; inside the mask, so no edge shows
    # always, in training and inference: the first and last this many seconds of each chunk are set to zero
    edge_mask_seconds: float = 0.04

    def __post_init__(self):
        for name in ("gain_db", "tilt_db_per_octave", "shift_seconds", "edge_mask_seconds"):
            _check(getattr(self, name) >= 0, f"model.views.{name}", getattr(self, name), "must be >= 0")


@dataclass(frozen=True)
class ModelConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    sorter: SorterConfig = field(default_factory=SorterConfig)
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    views: ViewsConfig = field(default_factory=ViewsConfig)
    spectral_targets: SpectralTargetsConfig = field(default_factory=SpectralTargetsConfig)
    gap_regression: GapRegressionConfig = field(default_factory=GapRegressionConfig)
    embeddings_only: EmbeddingsOnlyConfig = field(default_factory=EmbeddingsOnlyConfig)

    def __post_init__(self):
        if self.embeddings_only.weight > 0:
            _check(
                self.sorter.type == "pairwise" and self.sorter.seam and not self.sorter.cross_similarity,
                "model.embeddings_only.weight", self.embeddings_only.weight,
                "needs model.sorter.type 'pairwise' with model.sorter.seam: true and without cross_similarity",
            )
        _check(
            not self.sorter.cross_similarity or self.encoder.type != "mlp", "model.sorter.cross_similarity", True,
            "needs an encoder with frames, not model.encoder.type 'mlp'",
        )

    @property
    def training_twin(self) -> bool:
        """Whether ``fit`` trains a twin of the model fed each chunk's offset (gap regression, the embeddings-only loss)."""
        return self.gap_regression.weight > 0 or self.embeddings_only.weight > 0


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation. One epoch = steps_per_epoch batches of fresh puzzles."""

    batch_size: int = 256  # puzzles per step, over all devices and workers
    epochs: int = 20
    steps_per_epoch: int = 500  # batches per epoch (the puzzles are fresh every step)
    learning_rate: float = 0.001  # Adam's (the peak of the cosine schedule)
    lr_schedule: str = "constant"  # constant | cosine (decay to 0 over all steps)
    early_stopping_patience: int = 0  # epochs without val improvement before stopping; 0 = never
    mixed_precision: str = "auto"  # auto (bf16 on GPU, float32 on CPU) | float32 | mixed_bfloat16 | mixed_float16
    jit_compile: bool | str = "auto"  # true | false | auto (Keras decides)
    # Curriculum: "epoch:n,epoch:n,...", train on n chunks from that epoch on (e.g. "0:5,4:10,8:20"); it must
    # start at epoch 0 and end at puzzle.n_chunks (the n of val/test). Empty: puzzle.n_chunks throughout.
    # Needs a sorter with no weight sized by n (a head with any_n in audiosort.heads: rank, successor).
    n_chunks_schedule: str = ""
    # A labelled folder of validation clips (the layout `audiosort probe` reads): after every epoch the encoder
    # being trained embeds them (no gradient) and the probe's linear classifier, fit on 3 group folds, logs its
    # mean accuracy as online_probe in history.csv. Never test material: it is read every epoch. Empty: off.
    online_probe: str = ""
    # Which epoch's weights the finished run saves as model.keras and encoder.keras: last | val_loss (the
    # lowest) | online_probe (the highest: the encoder chosen by what it knows of audio, on validation clips).
    keep: str = "last"

    def __post_init__(self):
        for name in ("batch_size", "epochs", "steps_per_epoch"):
            _check(getattr(self, name) > 0, f"train.{name}", getattr(self, name), "must be > 0")
        _check(self.learning_rate > 0, "train.learning_rate", self.learning_rate, "must be > 0")
        _check(self.lr_schedule in LR_SCHEDULES, "train.lr_schedule", self.lr_schedule, f"must be one of {LR_SCHEDULES}")
        _check(self.early_stopping_patience >= 0, "train.early_stopping_patience", self.early_stopping_patience, "must be >= 0")
        _check(
            self.mixed_precision in PRECISIONS, "train.mixed_precision", self.mixed_precision, f"must be one of {PRECISIONS}"
        )
        _check(self.jit_compile in (True, False, "auto"), "train.jit_compile", self.jit_compile, "must be true, false or auto")
        _check(self.keep in KEEP_CHOICES, "train.keep", self.keep, f"must be one of {KEEP_CHOICES}")
        _check(
            self.keep != "online_probe" or self.online_probe, "train.keep", self.keep,
            "needs train.online_probe: a labelled folder of validation clips",
        )
        n_chunks_schedule(self)


def n_chunks_schedule(train: TrainConfig) -> list[tuple[int, int]]:
    """``train.n_chunks_schedule`` parsed: ``[(first_epoch, n_chunks), ...]``, epochs rising from 0; [] when empty."""
    if not train.n_chunks_schedule.strip():
        return []
    try:
        steps = [tuple(int(x) for x in item.split(":")) for item in train.n_chunks_schedule.split(",")]
    except ValueError:
        steps = []
    epochs = [step[0] for step in steps if len(step) == 2]
    _check(
        bool(steps) and all(len(step) == 2 and step[1] >= 2 for step in steps) and epochs[0] == 0
        and all(a < b < train.epochs for a, b in zip(epochs, epochs[1:])),
        "train.n_chunks_schedule", train.n_chunks_schedule,
        f"must read 'epoch:n,epoch:n,...' with epochs rising from 0 below train.epochs ({train.epochs}) and n >= 2",
    )
    return steps


@dataclass(frozen=True)
class Config:
    """A whole run: its name, seed and one dataclass per YAML section."""

    name: str = "default"  # the run folder's name under --runs-dir
    seed: int = 0  # seeds the weights, the puzzle stream and the fixed sets; 0 to 2**32 - 1
    data: DataConfig = field(default_factory=DataConfig)
    puzzle: PuzzleConfig = field(default_factory=PuzzleConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        # The name is the run folder's name under --runs-dir: anything that could reach outside it
        # ("", ".", "..", "a/b", "/abs") would let --overwrite delete another folder.
        _check(is_folder_name(self.name), "name", self.name, RUN_NAME_RULE)
        check_seed(self.seed, "seed")
        chunk_samples = self.puzzle.chunk_seconds * self.data.sample_rate
        batch_bytes = self.train.batch_size * self.puzzle.n_chunks * chunk_samples * 2
        _check(
            batch_bytes <= MAX_BATCH_BYTES, "train.batch_size", self.train.batch_size,
            f"makes batches of {batch_bytes / 2**30:.3g} GiB of int16 audio ({self.puzzle.n_chunks} chunks of "
            f"{chunk_samples:.0f} samples a puzzle); the limit is {MAX_BATCH_BYTES // 2**30} GiB: lower train.batch_size",
        )
        views = self.model.views
        _check(
            not views.enabled or 2 * views.edge_mask_seconds < self.puzzle.chunk_seconds,
            "model.views.edge_mask_seconds", views.edge_mask_seconds,
            f"masks the whole chunk at both ends: must be under half of puzzle.chunk_seconds ({self.puzzle.chunk_seconds})",
        )
        _check(
            self.puzzle.align == "none" or not self.model.contrastive.distinct_tracks,
            "model.contrastive.distinct_tracks", self.model.contrastive.distinct_tracks,
            "is not built for puzzle.align = 'beats' (which draws its own tracks): turn one off",
        )
        gaps = self.model.gap_regression
        if gaps.weight > 0:
            _check(
                self.puzzle.pad_mode != "fixed" and self.puzzle.pad_max_seconds > self.puzzle.pad_min_seconds,
                "model.gap_regression.weight", gaps.weight,
                "needs gaps that vary: puzzle.pad_max_seconds > pad_min_seconds and a pad_mode other than fixed",
            )
            _check(
                self.data.features == "raw", "model.gap_regression.weight", gaps.weight,
                "needs data.features = 'raw' (the cached feature stream carries no chunk starts)",
            )
        _check(
            self.model.embeddings_only.weight == 0 or self.data.features == "raw", "model.embeddings_only.weight",
            self.model.embeddings_only.weight, "needs data.features = 'raw' (its training twin reads the audio)",
        )


RUN_NAME_RULE = (
    "must be one folder name: not empty, no '/' or '\\', not starting with '.', UTF-8, at most 255 bytes"
)


def is_folder_name(name: str) -> bool:
    """Whether ``name`` is a single, visible path component (so ``parent / name`` stays in ``parent``) a filesystem takes."""
    if not isinstance(name, str) or not name or name.startswith(".") or any(c in name for c in "/\\\0"):
        return False
    try:
        return len(name.encode("utf-8")) <= 255
    except UnicodeEncodeError:  # an undecodable byte from the command line
        return False


SEED_RULE = f"must be an integer from 0 to {MAX_SEED}"


def is_valid_seed(seed) -> bool:
    """Whether ``seed`` is an int in [0, 2**32 - 1] (a config's ``seed`` and every ``--seed``)."""
    return isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= MAX_SEED


def check_seed(seed, key: str) -> int:
    """``seed`` if :func:`is_valid_seed`; else a :class:`ConfigError` naming ``key``."""
    _check(is_valid_seed(seed), key, seed, SEED_RULE)
    return seed


class _BadValue(ConfigError):
    """A value that failed its section's check; ``key`` is its dotted key, to say where it came from."""

    def __init__(self, message: str, key: str):
        super().__init__(message)
        self.key = key


def _check(ok: bool, key: str, value, why: str) -> None:
    if not ok:
        raise _BadValue(f"{key} = {_shown(value)} {why}", key)


def _shown(value) -> str:
    """``repr(value)``, cut to :data:`_SHOWN_CHARS` characters: a message stays one short line."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else f"{text[:_SHOWN_CHARS]}... ({len(text):,} characters)"


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Read a YAML config, apply ``section.key=value`` overrides, validate.

    Parameters
    ----------
    path : str or Path, optional
        YAML file; its keys must exist in :class:`Config`, besides ``base:``
        (see :func:`read_config_file`). None starts from the defaults.
    overrides : sequence of str
        Each ``dotted.key=value``; the value is parsed as a YAML scalar and must
        have the key's type.

    Returns
    -------
    Config
        The validated, frozen config.

    Raises
    ------
    ConfigError
        Unknown key (naming the closest valid one), wrong type or bad value.
    """
    raw: dict = {}
    where = "overrides"
    if path is not None:
        path = Path(path)
        where = str(path)
        raw = read_config_file(path)
    overridden = set()
    for override in overrides:
        overridden.add(apply_override(raw, override, where=where))
    return from_dict(raw, where=where, overridden=frozenset(overridden))


def read_config_file(path: str | Path, *, _including: tuple = ()) -> dict:
    """A config file's raw mapping, with the file named by its ``base:`` key merged in underneath.

    ``base: shared/warzone.yaml`` (relative to the file) lets settings shared
    by several configs, such as a corpus and the puzzles its fixed sets were
    cut with, live in one file: the base's mapping is read first (it may have
    a base of its own), then this file's keys replace its keys, section by
    section.

    Raises
    ------
    ConfigError
        An unreadable file, invalid YAML, a file that is not a mapping, a
        cycle of bases, or a chain of more than :data:`MAX_BASE_DEPTH`.
    """
    path = Path(path)
    if path.resolve() in _including:
        raise ConfigError(f"{path} is its own base (through {', '.join(str(p) for p in _including)})")
    if len(_including) >= MAX_BASE_DEPTH:
        raise ConfigError(
            f"{_including[0]} reaches {path} through {len(_including)} base: files; the limit is {MAX_BASE_DEPTH}"
        )
    raw = _read_yaml(path)
    if "base" not in raw:
        return raw
    base = raw.pop("base")
    if not isinstance(base, str) or not base:
        raise ConfigError(f"base in {path} must name a config file, got {base!r}")
    return _merged(read_config_file(path.parent / base, _including=(*_including, path.resolve())), raw)


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"key {key!r} appears twice in {loader.name} (line {key_node.start_mark.line + 1})")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def _read_yaml(path: Path) -> dict:
    """The mapping a YAML config file holds (see :func:`read_yaml`)."""
    raw = read_yaml(path, what="config")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, got {type(raw).__name__}")
    return raw


def read_yaml(path: str | Path, *, what: str):
    """The data a YAML file holds (None for an empty file), read strictly: the one YAML reader of audiosort.

    Parameters
    ----------
    path : str or Path
    what : str, keyword-only
        Names the file in messages ("config", "sweep").

    Raises
    ------
    ConfigError
        An unreadable file, not UTF-8, invalid YAML, a key given twice in one
        mapping, or aliases that expand past :data:`MAX_YAML_NODES` nodes.
    """
    path = Path(path)
    try:
        data = _files.read_regular(path, what, max_bytes=MAX_CONFIG_BYTES)
    except InputError as e:
        raise ConfigError(str(e)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {e.start} is {data[e.start]:#04x})") from None
    try:
        return _parse_yaml(text, f"{what} {path}", name=str(path))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None


def _parse_yaml(text: str, what: str, *, name: str):
    """The data of YAML ``text``, read strictly and within :data:`MAX_YAML_NODES`; ``what`` names it in messages.

    Invalid YAML raises ``yaml.YAMLError``, for the caller to word.
    """
    loader = _StrictLoader(text)
    loader.name = name
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > MAX_YAML_NODES:
            raise ConfigError(
                f"{what} expands to {size:.3g} values through its aliases (*name); "
                f"the limit is {MAX_YAML_NODES}: write the values out"
            )
        return loader.construct_document(node)
    except RecursionError:
        raise ConfigError(f"{what} nests its values too deeply") from None
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict) -> int:
    """Nodes in ``node`` with every alias written out; each distinct node is counted once, so this is fast however large."""
    if id(node) in sizes:
        return sizes[id(node)]
    sizes[id(node)] = 1  # a recursive alias (&a [*a]) counts once instead of looping
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(child, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(key, sizes) + _expanded_size(value, sizes) for key, value in node.value)
    else:
        size = 1
    sizes[id(node)] = size
    return size


def _merged(base: dict, top: dict) -> dict:
    """``top`` over ``base``: mappings merge key by key, anything else in ``top`` replaces ``base``'s."""
    out = dict(base)
    for key, value in top.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def apply_override(raw: dict, override: str, *, where: str = "config") -> str:
    """Set ``dotted.key=value`` in a raw config dict, in place; the key must exist. Returns the dotted key.

    ``where`` names the file ``raw`` came from, to blame it for a section that is not a mapping.
    """
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"overrides {override!r}: expected section.key=value")
    parts = key.split(".")
    cls = Config
    node = raw
    for i, part in enumerate(parts):
        names = {f.name: f for f in dataclasses.fields(cls)}
        if part not in names:
            raise ConfigError(_unknown_key_message(".".join(parts[: i + 1]), cls, where="overrides"))
        hint = _field_types(cls)[part]
        last = i == len(parts) - 1
        if dataclasses.is_dataclass(hint):
            if last:
                raise ConfigError(f"overrides {key}: '{key}' is a section; set one of its keys")
            parent, node = node, node.get(part)
            if node is None:  # absent, or an empty YAML section
                node = parent[part] = {}
            if not isinstance(node, dict):
                section = ".".join(parts[: i + 1])
                raise ConfigError(f"{section} in {where} must be a mapping of keys, got {node!r}")
            cls = hint
        else:
            if not last:
                raise ConfigError(f"overrides {key}: '{'.'.join(parts[: i + 1])}' is a value, not a section")
            try:
                value = _parse_yaml(text, f"overrides {key}", name="overrides") if text.strip() else ""
            except yaml.YAMLError:
                value = text
            _check_yaml11_reading(key, text, value, hint)
            node[part] = value
    return key


# YAML 1.1 (PyYAML) reads 1:30 as the base-60 number 90.
_SEXAGESIMAL = re.compile(r"[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?")


def _check_yaml11_reading(key: str, text: str, value, hint) -> None:
    """Refuse an unquoted ``--set`` value that YAML 1.1 reads as something other than what it looks like.

    ``name=yes`` is the bool True, ``name=null`` is None and ``x=1:3`` the
    base-60 number 63: a user who meant the text (or the numbers) is told to quote it.
    """
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    stripped = text.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and _SEXAGESIMAL.fullmatch(stripped):
        remedy = f"quote it: overrides {key}='\"{_shown_text(stripped)}\"'" if str in allowed else "write the number you mean"
        raise ConfigError(f"overrides {key}={_shown_text(stripped)}: YAML reads {stripped} as the base-60 number {value}; {remedy}")
    if str in allowed and value is not None and not isinstance(value, (str, dict, list)) and type(value) not in allowed:
        kind = "a bool" if isinstance(value, bool) else f"the {type(value).__name__} {value!r}"
        raise ConfigError(
            f"overrides {key}={_shown_text(stripped)}: YAML reads {stripped} as {kind}, and {key} takes text; "
            f"quote it: overrides {key}='\"{_shown_text(stripped)}\"'"
        )
    if value is None and type(None) not in allowed and str in allowed:
        raise ConfigError(
            f"overrides {key}={_shown_text(stripped)}: YAML reads {stripped or 'nothing'} as null, and {key} takes text; "
            f"quote it: overrides {key}='\"{_shown_text(stripped)}\"'"
        )


def _shown_text(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else f"{text[:_SHOWN_CHARS]}..."


def from_dict(
    raw: dict, *, where: str = "config", cls: type = Config, prefix: str = "", overridden: frozenset = frozenset()
):
    """Build a dataclass tree from nested dicts, strictly.

    Parameters
    ----------
    raw : dict
        Nested mapping, as read from YAML.
    where : str
        Where the mapping came from (a file name), for error messages.
    cls : dataclass type
        The dataclass to build; nested dataclass fields recurse.
    prefix : str
        Dotted path of ``cls`` inside the root, for error messages.
    overridden : frozenset of str
        Dotted keys set by ``--set``: an error in one of them blames ``--set``, not ``where``.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} in {where} must be a mapping, got {raw!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            raise ConfigError(_unknown_key_message(prefix + str(key), cls, where=where))
    hints = _field_types(cls)
    values = {}
    for key, value in raw.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            values[key] = from_dict(
                value if value is not None else {}, where=where, cls=hint, prefix=f"{prefix}{key}.", overridden=overridden
            )
        else:
            dotted = f"{prefix}{key}"
            values[key] = _coerce(value, hint, dotted, "overrides" if dotted in overridden else where)
    try:
        return cls(**values)
    except _BadValue as e:
        if e.key in overridden:
            source = "overrides"
        elif overridden:  # a rule across keys, broken by the file's values and the overrides together
            source = f"{where} with overrides {', '.join(sorted(overridden))}"
        else:
            source = where
        raise ConfigError(f"{e} (in {source})") from None


def to_dict(cfg) -> dict:
    """The config as plain nested dicts (what ``config.yaml`` of a run holds)."""
    return dataclasses.asdict(cfg)


def dump_config(cfg: Config) -> str:
    """The fully resolved config as YAML text, sections in definition order."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def describe_config(cfg: Config) -> str:
    """The resolved config as YAML: every key, in definition order; one that differs from its default says it.

    ``load_config`` reads the text back to ``cfg``. Example line: ``n_chunks: 20  # default: 3``.
    """
    lines = []

    def walk(node, default, indent: str) -> None:
        for f in dataclasses.fields(node):
            value, default_value = getattr(node, f.name), getattr(default, f.name)
            if dataclasses.is_dataclass(value):
                lines.append(f"{indent}{f.name}:")
                walk(value, default_value, indent + "  ")
            else:
                changed = "" if value == default_value else f"  # default: {_yaml_scalar(default_value)}"
                lines.append(f"{indent}{f.name}: {_yaml_scalar(value)}{changed}")

    walk(cfg, Config(), "")
    return "\n".join(lines) + "\n"


def _yaml_scalar(value) -> str:
    """``value`` as one YAML scalar, quoted where YAML would read it as something else."""
    return yaml.safe_dump(value, default_flow_style=True, width=math.inf).removesuffix("\n...\n").strip()


def _field_types(cls) -> dict:
    return typing.get_type_hints(cls)


def _coerce(value, hint, key: str, where: str):
    """Check ``value`` against a type hint; ints widen to float, numeric strings like 1e-3 parse."""
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for kind in allowed:
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                break
            return float(value)
        if kind is str and isinstance(value, str):
            return value
    if float in allowed and isinstance(value, str):
        # YAML 1.1 reads 1e-3 (no dot) as a string.
        try:
            number = float(value)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return number
    expected = " or ".join(k.__name__ for k in allowed)
    raise ConfigError(f"{key} = {_shown(value)} in {where} must be {expected}")


def _all_keys(cls, prefix: str = "") -> list[str]:
    keys = []
    for f, hint in zip(dataclasses.fields(cls), _field_types(cls).values()):
        if dataclasses.is_dataclass(hint):
            keys += _all_keys(hint, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def closest_key(key: str, valid: typing.Sequence[str]) -> str | None:
    """The entry of ``valid`` most like ``key`` (difflib), or None when ``valid`` is empty.

    Every "did you mean" of audiosort comes from here: config keys, sweep keys, plot axes.
    """
    close = difflib.get_close_matches(str(key), list(valid), n=1, cutoff=0.0)
    return close[0] if close else None


def _unknown_key_message(dotted: str, cls, *, where: str) -> str:
    """'unknown key 'puzzle.pad_lengths' in X; did you mean 'pad_max_seconds'?'"""
    leaf = dotted.rsplit(".", 1)[-1]
    local = [f.name for f in dataclasses.fields(cls)]
    message = f"unknown key '{dotted}' in {where}"
    elsewhere = [k for k in _all_keys(Config) if k.rsplit(".", 1)[-1] == leaf]
    if elsewhere:
        return f"{message}; did you mean '{elsewhere[0]}'?"
    close = closest_key(leaf, local)
    if close:
        message += f"; did you mean '{close}'?"
    section = dotted.rsplit(".", 1)[0] if "." in dotted else "top-level"
    return f"{message} ({section} keys: {', '.join(local)})"
