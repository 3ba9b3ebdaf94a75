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
import re
import shutil
import threading
from collections.abc import Iterable, Iterator
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
def new_folder(
    out: str | Path,
    *,
    overwrite: bool,
    what: str = "folder",
    keep: Iterable[str | Path] = (),
    marker: str | None = None,
) -> Iterator[Path]:
    """Build a folder in ``.<out>.partial-<pid>`` beside ``out``; rename it into place when the block ends.

    Parameters
    ----------
    out : str or Path
        The folder to create (or replace). It must name a folder of its own:
        not empty, not the working folder or one above it, not the
        filesystem root (checked on the resolved path, symlinks followed).
    overwrite : bool, keyword-only
        Replace an existing ``out``; without it, an existing ``out`` is an
        error, checked before the block runs and again before the rename.
        The old ``out`` is moved aside and deleted only once the new one is
        in place; only ``out`` itself (a symlink: the link) is ever removed.
    what : str, keyword-only
        Names the folder in error messages ("corpus", "probe set").
    keep : iterable of str or Path, keyword-only
        Paths ``out`` must neither equal, lie inside nor contain (resolved,
        symlinks followed): the inputs the folder is built from.
    marker : str, keyword-only, optional
        A file name an existing ``out`` must hold to be replaced
        (``manifest.json`` for a corpus), so that ``--overwrite`` never
        deletes a folder this code did not write. An empty folder is always
        replaceable.

    Yields
    ------
    Path
        The empty temporary folder to fill.

    Raises
    ------
    InputError
        ``out`` exists without ``overwrite``, is not replaceable (see
        ``out``, ``keep``, ``marker``), or nothing can be written beside it.
        Whatever the block raises (SIGTERM too, as the command line turns it
        into SystemExit) leaves ``out`` as it was and no temporary folder.
    """
    _check_replaceable(out, what=what, keep=keep)
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise InputError(f"{out} already exists; pass --overwrite to replace it")
        _check_overwritable(out, what=what, marker=marker)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(out)
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


def _check_replaceable(out: str | Path, *, what: str, keep: Iterable[str | Path]) -> None:
    """Refuse an ``out`` whose replacement could delete the working folder or any of ``keep``."""
    if str(out).strip() == "":
        raise InputError(f"the {what} folder name is empty")
    resolved = Path(out).resolve()
    here = Path.cwd().resolve()
    if resolved == here or resolved in here.parents:
        raise InputError(f"{what} folder {out} is the working folder or one above it ({resolved}); name a new folder")
    for given in keep:
        kept = Path(given).resolve()
        if resolved == kept or resolved in kept.parents or kept in resolved.parents:
            raise InputError(f"{what} folder {out} overlaps input {given}; write the {what} outside its inputs")


def _check_overwritable(out: Path, *, what: str, marker: str | None) -> None:
    """An existing ``out`` may be replaced when it is a symlink, an empty folder, or holds ``marker``."""
    if out.is_symlink():
        return
    if not out.is_dir():
        raise InputError(f"{out} exists and is not a folder; --overwrite replaces only a {what} folder")
    if marker is not None and not (out / marker).is_file() and any(out.iterdir()):
        raise InputError(f"{out} is not a {what} (no {marker}); --overwrite replaces only a {what} folder")


def remove_stale_partials(out: str | Path) -> list[Path]:
    """Delete ``.<out>.partial-<pid>`` and ``.<out>.old-<pid>`` left beside ``out`` by processes that are gone.

    A process killed outright (SIGKILL, power loss) cannot clean up after
    itself; the next build of the same folder does. Returns what it removed.
    """
    out = Path(out)
    pattern = re.compile(rf"\.{re.escape(out.name)}\.(partial|old)-(\d+)")
    removed = []
    if not out.parent.is_dir():
        return removed
    for entry in out.parent.iterdir():
        found = pattern.fullmatch(entry.name)
        # An old folder with no new one in its place is the only copy left (the process died between
        # the two renames): it stays, for the user to rename back.
        orphan = found and found.group(1) == "old" and not out.exists()
        if found and not orphan and not _process_alive(int(found.group(2))):
            _delete(entry)
            removed.append(entry)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def save_figure(figure, path: str | Path) -> None:
    """Save a matplotlib ``figure`` as a PNG at ``path``, atomically (see :func:`replacing`)."""
    with replacing(path) as tmp:
        figure.savefig(tmp, format="png")
