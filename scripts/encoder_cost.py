"""Parameters and forward FLOPs per chunk of the encoders of some configs, counted from layer shapes.

    python scripts/encoder_cost.py configs/logmel.yaml configs/resnet.yaml configs/resnet-gpu.yaml

Prints one markdown row per config: encoder type, width (``filters``) and
depth (``blocks``), chunk length, parameters (all, and trainable), and the
multiply-adds (MACs) and FLOPs (2 per MAC) of one chunk's forward pass. Counted:
every Dense and Conv layer (``kernel.size`` MACs per output position) and the
log-mel front end (its DFT, one strided convolution of ``frame_length x 2 *
bins`` per frame, and its mel projection, ``bins x n_mels`` per frame).
Batch norm, activations, pooling and the residual additions are elementwise
and not counted (well under 1 % of a conv network's work).
"""

from __future__ import annotations

import argparse
import math
import sys

import keras

from audiosort.cli import as_flags
from audiosort.config import load_config
from audiosort.data.puzzles import PuzzleSpec
from audiosort.errors import AudiosortError
from audiosort.models import build_encoder
from audiosort.models.layers import LogMelSpectrogram

COUNTED_LAYERS = (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D)


def forward_macs(encoder: keras.Model) -> int:
    """Multiply-adds of one chunk's forward pass through ``encoder``.

    Parameters
    ----------
    encoder : keras.Model
        A built chunk encoder (:func:`audiosort.models.build_encoder`), input ``(B, L)``.

    Returns
    -------
    int
        MACs per chunk of the Dense, Conv and log-mel layers (module docstring).

    Raises
    ------
    ValueError
        A layer with weights that this count does not know (other than batch norm),
        so that a new layer type cannot silently go uncounted.
    """
    macs = 0
    for layer in encoder.layers:
        if isinstance(layer, COUNTED_LAYERS):
            macs += math.prod(layer.kernel.shape) * math.prod(layer.output.shape[1:-1])
        elif isinstance(layer, LogMelSpectrogram):
            frames = layer.output.shape[1]
            bins = layer.fft_length // 2 + 1
            macs += frames * (layer.frame_length * 2 * bins + bins * layer.n_mels)
        elif layer.weights and not isinstance(layer, keras.layers.BatchNormalization):
            raise ValueError(f"forward_macs does not know how to count layer {layer.name!r} ({type(layer).__name__})")
    return macs


def cost_row(config_path: str) -> list[str]:
    """The table cells of one config's encoder."""
    config = load_config(config_path)
    spec = PuzzleSpec.from_config(config.puzzle, sample_rate=config.data.sample_rate)
    cfg = config.model.encoder
    encoder = build_encoder(cfg, chunk_samples=spec.chunk_samples, sample_rate=config.data.sample_rate)
    trainable = sum(math.prod(weight.shape) for weight in encoder.trainable_weights)
    macs = forward_macs(encoder)
    return [
        config_path, cfg.type, str(cfg.filters), str(cfg.blocks), cfg.pooling, f"{config.puzzle.chunk_seconds:g}",
        f"{encoder.count_params():,}", f"{trainable:,}", f"{macs / 1e6:,.1f}", f"{2 * macs / 1e9:.3f}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+", help="config files whose encoders to count")
    args = parser.parse_args(argv)
    header = ["config", "encoder", "filters", "blocks", "pooling", "chunk s", "parameters", "trainable", "MMAC / chunk", "GFLOP / chunk"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    try:
        lines += ["| " + " | ".join(cost_row(path)) + " |" for path in args.configs]
    except AudiosortError as error:
        print(f"error: {as_flags(str(error))}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
