"""Atomic writes: a reader sees the old file or folder, or the whole new one, never part of one.

:func:`write_text` for single files (run folders, eval and probe reports,
sweep tables); :func:`new_folder` for a folder built in one go (a corpus, a
labelled probe set).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

from audiosort.errors import InputError


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``.

    The temporary name, ``.<name>.partial-<pid>-<thread>``, is removed again
    if the write fails.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}-{threading.get_ident()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def new_folder(out: str | Path, *, overwrite: bool, what: str = "folder") -> Iterator[Path]:
    """Build a folder in ``.<out>.partial-<pid>`` beside ``out``; rename it into place when the block ends.

    Parameters
    ----------
    out : str or Path
        The folder to create (or replace).
    overwrite : bool, keyword-only
        Replace an existing ``out``; without it, an existing ``out`` is an
        error, checked before the block runs and again before the rename.
    what : str, keyword-only
        Names the folder in error messages ("corpus", "probe set").

    Yields
    ------
    Path
        The empty temporary folder to fill.

    Raises
    ------
    InputError
        ``out`` exists without ``overwrite``, or nothing can be written beside it.
        Whatever the block raises leaves ``out`` as it was and no temporary folder.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists; pass --overwrite to replace it")
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as e:
        raise InputError(f"cannot write {what} beside {out}: {e.strerror or e}") from None
    try:
        yield tmp
        _move_into_place(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename ``tmp`` to ``out``; an old ``out`` is moved aside first and deleted only once ``tmp`` is in place."""
    if not out.exists():
        os.replace(tmp, out)
        return
    if not overwrite:
        raise InputError(f"{out} already exists; pass --overwrite to replace it")
    trash = out.parent / f".{out.name}.old-{os.getpid()}"
    os.replace(out, trash)
    os.replace(tmp, out)
    if trash.is_dir():
        shutil.rmtree(trash)
    else:
        trash.unlink()
