"""Which split each track goes to: a stable hash of its source path, and the held-out sources.

Splits are by track and decided by a hash of each source's path, so adding
files never moves an existing track to another split, and a chunk set never
mixes tracks. :func:`hold_out` sends whole sources to the out-of-domain split
``ood`` (``prepare --test-sources``), never trained on.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from typing import Sequence

import numpy as np

from audiosort.errors import InputError

SPLITS = ("train", "val", "test")
# Out of domain: every track of the sources named by --test-sources, never trained on.
OOD_SPLIT = "ood"
ALL_SPLITS = (*SPLITS, OOD_SPLIT)
# The splits that get a fixed puzzle set in the corpus.
PUZZLE_SPLITS = ("val", "test", OOD_SPLIT)


def split_fraction(source: str) -> float:
    """Where a source path falls in [0, 1): a stable hash that decides its split."""
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(
    sources: list[str], *, val_fraction: float, test_fraction: float, group_pattern: str | None = None
) -> list[str]:
    """Split tracks by a hash of their source path.

    A source lands in ``test`` when its hash fraction u < test_fraction, in
    ``val`` when u < test_fraction + val_fraction, else ``train``; so adding
    sources never moves an existing one. With 3 or more groups, every split
    whose fraction is non-zero gets at least one: the train group whose u lies
    closest to the empty split's interval moves there (only small corpora are
    ever affected).

    Parameters
    ----------
    sources : list of str
        Source paths (relative, POSIX), one per track.
    val_fraction, test_fraction : float in [0, 1)
    group_pattern : str, optional
        A regular expression removed from each path before hashing, so that
        versions of one piece (``track3.opus``, ``track3_enhanced.opus`` with
        ``_enhanced``) share a split instead of leaking across it.

    Returns
    -------
    list of str
        "train", "val" or "test" per source.
    """
    keys = _group_keys(sources, group_pattern)
    groups = sorted(set(keys))
    u = np.array([split_fraction(g) for g in groups])
    splits = np.where(u < test_fraction, "test", np.where(u < test_fraction + val_fraction, "val", "train")).astype(object)
    intervals = {"test": (0.0, test_fraction), "val": (test_fraction, test_fraction + val_fraction)}
    if len(groups) >= 3:
        for split, (low, high) in intervals.items():
            if high > low and not np.any(splits == split):
                donors = np.flatnonzero(splits == "train")
                if len(donors) <= 1:
                    donors = np.flatnonzero(splits != split)
                distance = np.maximum(low - u[donors], u[donors] - high)
                splits[donors[np.argmin(distance)]] = split
    split_of = dict(zip(groups, splits))
    return [str(split_of[k]) for k in keys]



def hold_out(sources: list[str], patterns: Sequence[str], *, group_pattern: str | None = None) -> list[bool]:
    """Which sources go to the out-of-domain split: those whose path matches one of ``patterns``.

    Parameters
    ----------
    sources : list of str
        Source paths relative to the sources' common folder (POSIX).
    patterns : sequence of str
        Shell-style globs (:func:`fnmatch.fnmatchcase`, where ``*`` also
        crosses ``/``): ``supertux/*`` holds out every file under
        ``supertux/``. A pattern matching no source is an error (a typo would
        otherwise hold out nothing, silently).
    group_pattern : str, optional
        As in :func:`assign_splits`: when one version of a piece is held out,
        every version is, so no near-copy is trained on.

    Returns
    -------
    list of bool
        True for each held-out source.
    """
    if not patterns:
        return [False] * len(sources)
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(source, pattern) for source in sources):
            raise InputError(
                f"test_sources pattern {pattern!r} matches no track (paths are relative to the sources' common folder, "
                f"e.g. {sources[0]!r})"
            )
    keys = _group_keys(sources, group_pattern)
    held_keys = {key for key, source in zip(keys, sources) if any(fnmatch.fnmatchcase(source, p) for p in patterns)}
    return [key in held_keys for key in keys]


def _group_keys(sources: list[str], group_pattern: str | None) -> list[str]:
    if not group_pattern:
        return list(sources)
    try:
        pattern = re.compile(group_pattern)
    except re.error as e:
        raise InputError(f"group_pattern={group_pattern!r} is not a regular expression: {e}") from None
    return [pattern.sub("", s) for s in sources]
