"""Atomic writes: a reader sees the old file or folder, or the whole new one, never part of one.

:func:`write_text` for single text files (run folders, eval and probe
reports, sweep tables); :func:`replacing` for a file another library writes
(Keras models and checkpoints, ``.npz``); :func:`new_folder` for a folder
built in one go (a corpus, a labelled probe set); :func:`remove_folder` to
delete one folder, never a path around it.

A failed write (a full disk, a read-only folder) leaves the old file in place
and no temporary file, and is an :class:`~audiosort.errors.InputError` naming
the file, so the command line reports it in one line.
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
    """Write ``text`` (UTF-8) to a temporary file beside ``path``, then rename it over ``path``.

    Raises
    ------
    InputError
        The file cannot be written; ``path`` is left as it was.
    """
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; when the block ends, it is synced and renamed over ``path``.

    The temporary name is ``.<name>.partial-<pid>-<thread><suffixes>``: hidden,
    and it ends like ``path`` (Keras insists on ``.keras`` and ``.weights.h5``).

    Raises
    ------
    InputError
        The block or the sync raised an ``OSError`` (no space left, no
        permission): ``path`` keeps its old content and the temporary file is
        removed. Anything else the block raises is re-raised after the same
        clean-up.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}-{threading.get_ident()}{''.join(path.suffixes)}")
    try:
        yield tmp
        _sync_and_rename(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _sync_and_rename(tmp: Path, path: Path) -> None:
    """The low-level commit: a full disk often shows only here, when the data is forced out."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def remove_folder(folder: str | Path) -> None:
    """Delete ``folder``: rename it to a hidden name beside itself, then delete that.

    Only ``folder`` itself is touched (a symbolic link is removed, not
    followed). Once the rename is done no reader sees a half-deleted folder
    under its name.
    """
    folder = Path(folder)
    trash = folder.parent / f".{folder.name}.old-{os.getpid()}"
    os.replace(folder, trash)
    _delete(trash)


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


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
    _delete(trash)
