"""Peak memory of `audiosort embed` and `audiosort listen` on one long recording (issue 22 §3).

    python scripts/bench_long_file_memory.py RUN_DIR [--minutes 120] [--sample-rate 44100]

Writes a stereo 16-bit WAV of synthetic noise of the given length into a
temporary folder, runs each command on it in a fresh process, and prints one
markdown row per command: wall seconds and peak resident memory (the child's
``ru_maxrss``). Both decode the file block by block (``audiosort.audio.stream``),
so the peak should not grow with the file's length: compare ``--minutes 8``
with ``--minutes 120``. The baseline, a Python process that only imports
audiosort and Keras, is printed too.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile


def write_long_wav(path: Path, minutes: float, sample_rate: int) -> None:
    """Noise in blocks of 10 s, so this script's own memory stays small."""
    rng = np.random.default_rng(0)
    frames = int(minutes * 60 * sample_rate)
    with soundfile.SoundFile(path, "w", samplerate=sample_rate, channels=2, subtype="PCM_16") as file:
        for start in range(0, frames, 10 * sample_rate):
            count = min(10 * sample_rate, frames - start)
            file.write((0.1 * rng.standard_normal((count, 2))).astype(np.float32))


def peak_of(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of a child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(command)} failed: {process.stderr.read().decode()[-500:]}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--minutes", type=float, default=120.0)
    parser.add_argument("--sample-rate", type=int, default=44100)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "audiosort.cli"]
    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "long.wav"
        write_long_wav(wav, args.minutes, args.sample_rate)
        rows = [
            ("import only", [sys.executable, "-c", "import audiosort.cli, keras"]),
            ("embed", [*cli, "embed", args.run_dir, str(wav), "--out", str(Path(folder) / "e.npz")]),
            ("listen", [*cli, "listen", args.run_dir, str(wav), "--out", str(Path(folder) / "listen")]),
        ]
        print(f"| command | {args.minutes:g} min WAV, {wav.stat().st_size / 2**20:.0f} MiB | wall s | peak RSS MiB |")
        print("|---|---|---|---|")
        for name, command in rows:
            seconds, peak = peak_of(command)
            print(f"| {name} | | {seconds:.1f} | {peak:.0f} |")


if __name__ == "__main__":
    main()
