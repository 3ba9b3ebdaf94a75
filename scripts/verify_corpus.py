"""Verify a corpus folder against its shards, independently of audiosort.

    python scripts/verify_corpus.py CORPUS_DIR

Uses only json and numpy, and the contract in DESIGN.md: every chunk of every
fixed puzzle set is re-cut from the shards through ``track`` and ``starts``
and compared sample by sample; labels must put the starts in ascending order;
every gap must lie within the manifest's bounds (and be equal within a puzzle
for ``shared``/``fixed`` padding); tracks must lie inside one shard without
overlapping; a puzzle set must only use tracks of its own split.
Exit 0 when everything holds, 1 listing the first problems otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def verify(corpus: Path) -> tuple[list[str], dict]:
    """Return (problems, counts) for the corpus folder."""
    manifest = json.loads((corpus / "manifest.json").read_text())
    problems: list[str] = []
    counts = {"tracks": len(manifest["tracks"]), "puzzles": 0, "chunks": 0}
    if manifest.get("format") != "audiosort-corpus/1":
        problems.append(f"format is {manifest.get('format')!r}")
    shards = {}
    for track in manifest["tracks"]:
        name = track["shard"]
        if name not in shards:
            shards[name] = np.load(corpus / "audio" / name, mmap_mode="r")
            if shards[name].dtype != np.int16 or shards[name].ndim != 1:
                problems.append(f"shard {name} is {shards[name].dtype} {shards[name].shape}, not 1-D int16")
        if not name.startswith(track["split"] + "-"):
            problems.append(f"track {track['id']} ({track['split']}) lies in shard {name}")
        if track["offset"] < 0 or track["offset"] + track["frames"] > len(shards[name]):
            problems.append(f"track {track['id']} runs past the end of shard {name}")
    for name in shards:
        spans = sorted((t["offset"], t["offset"] + t["frames"]) for t in manifest["tracks"] if t["shard"] == name)
        if any(end > next_start for (_, end), (next_start, _) in zip(spans, spans[1:])):
            problems.append(f"tracks overlap in shard {name}")
    for index, track in enumerate(manifest["tracks"]):
        if track["id"] != index:
            problems.append(f"track at index {index} has id {track['id']}")

    settings = manifest["puzzles"]
    length, low, high = settings["chunk_samples"], settings["pad_min_samples"], settings["pad_max_samples"]
    for path in sorted((corpus / "puzzles").glob("*.npz")):
        split = path.stem
        data = np.load(path)
        chunks, order, track_ids, starts = data["chunks"], data["order"], data["track"], data["starts"]
        n_puzzles, n_chunks = order.shape
        counts["puzzles"] += n_puzzles
        if chunks.shape != (n_puzzles, n_chunks, length):
            problems.append(f"{path.name}: chunks shape {chunks.shape}, expected {(n_puzzles, n_chunks, length)}")
            continue
        for b in range(n_puzzles):
            track = manifest["tracks"][int(track_ids[b])]
            if track["split"] != split:
                problems.append(f"{path.name}[{b}] comes from {track['split']} track {track['id']}")
            if sorted(order[b].tolist()) != list(range(n_chunks)):
                problems.append(f"{path.name}[{b}] order {order[b].tolist()} is not a permutation")
                continue
            audio = shards[track["shard"]][track["offset"] : track["offset"] + track["frames"]]
            in_time = np.empty(n_chunks, dtype=np.int64)
            in_time[order[b]] = starts[b]
            gaps = np.diff(in_time) - length
            if np.any(gaps < low) or np.any(gaps > high):
                problems.append(f"{path.name}[{b}] gaps {gaps.tolist()} outside [{low}, {high}] (or labels wrong)")
            if settings["pad_mode"] in ("shared", "fixed") and np.any(gaps != gaps[0]):
                problems.append(f"{path.name}[{b}] gaps {gaps.tolist()} differ under pad_mode {settings['pad_mode']}")
            if in_time[0] < 0 or in_time[-1] + length > len(audio):
                problems.append(f"{path.name}[{b}] runs outside its track")
                continue
            for i in range(n_chunks):
                counts["chunks"] += 1
                if not np.array_equal(chunks[b, i], audio[starts[b, i] : starts[b, i] + length]):
                    problems.append(f"{path.name}[{b}] slot {i} differs from the track at sample {starts[b, i]}")
    return problems, counts


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: python scripts/verify_corpus.py CORPUS_DIR", file=sys.stderr)
        return 2
    problems, counts = verify(Path(sys.argv[1]))
    if problems:
        for line in problems[:20]:
            print(line)
        print(f"FAILED: {len(problems)} problem(s)")
        return 1
    print(f"OK: {counts['tracks']} tracks, {counts['puzzles']} puzzles, {counts['chunks']} chunks verified sample by sample")
    return 0


if __name__ == "__main__":
    sys.exit(main())
