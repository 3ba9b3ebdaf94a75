"""Atomic writes: a reader sees the old file or folder, or the whole new one, never part of one.

:func:`write_text` for single text files (run folders, eval and probe
reports, sweep tables); :func:`replacing` for a file another library writes
(Keras models and checkpoints, ``.npz``); :func:`new_folder` for a folder
built in one go (a corpus, a labelled probe set); :func:`remove_folder` to
delete one folder, never a path around it.

:func:`check_output` is the one answer to "may this output replace that
path?", asked by every command before it writes anything the user named
(``prepare --out``, a run folder, ``embed --out``, ``listen --out``, a sweep
folder): never the working folder or one above it, never an input, never
something that is not the kind of output the command writes.

A failed write (a full disk, a read-only folder) leaves the old file in place
and no temporary file, and is an :class:`~audiosort.errors.InputError` naming
the file, so the command line reports it in one line.

:func:`read_regular` and :func:`check_regular` are the reading side: a file
opened as data (a config, a corpus shard, a puzzle set) must be a regular
file, as a FIFO blocks its reader forever and ``/dev/zero`` never ends.
:func:`exclusive` serializes read-merge-write cycles on one folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import stat
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
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
    tmp = path.with_name(_hidden_name(path.name, f"partial-{os.getpid()}-{threading.get_ident()}{''.join(path.suffixes[-2:])}"))
    try:
        yield tmp
        _sync_and_rename(tmp, path)
    except OSError as e:
        _unlink_quietly(tmp)
        raise InputError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        _unlink_quietly(tmp)
        raise


def check_regular(path: str | Path, what: str) -> Path:
    """Raise :class:`InputError` when ``path`` exists but is not a regular file (symlinks followed); return ``path``.

    A FIFO would block its reader until a writer comes, a device such as
    ``/dev/zero`` never ends: both are refused before anything opens them. A
    missing file passes, for the caller to report in its own words.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return path
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO, device or socket"
        raise InputError(f"{what} {path} is not a regular file ({kind}); give a file")
    return path


def read_regular(path: str | Path, what: str, *, max_bytes: int | None = None) -> bytes:
    """The bytes of the regular file ``path``; refuse anything else, or a file over ``max_bytes``, before reading.

    The file is opened without blocking (``O_NONBLOCK``: a FIFO with no
    writer would wait forever) and checked with ``fstat`` on what was opened.

    Raises
    ------
    InputError
        ``path`` cannot be opened, is not a regular file (a FIFO, a device, a
        folder), or holds more than ``max_bytes`` bytes.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise InputError(f"cannot read {what} {path}: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO, device or socket"
            raise InputError(f"{what} {path} is not a regular file ({kind}); give a file")
        limit = -1 if max_bytes is None else max_bytes + 1
        try:
            data = f.read(limit)
        except OSError as e:
            raise InputError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise InputError(f"{what} {path} is larger than {max_bytes:,} bytes; that is not a {what} file")
    return data


@contextlib.contextmanager
def exclusive(path: str | Path, *, what: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` for a read-merge-write of files beside or in it.

    ``path`` is a folder, or a lock file (created empty if missing, and
    kept). Two processes merging into one file (``probe.json``) take turns:
    the second waits, then reads what the first wrote. The kernel releases
    the lock however its holder ends.
    """
    try:
        if os.path.isdir(path):
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        else:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        raise InputError(f"cannot lock {what} {path}: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    # The clean-up of a failed write fails the same way (a read-only filesystem, a name too long):
    # the write's own error is the one to report.
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


# A file or folder name holds at most NAME_MAX bytes (255 on Linux and macOS); a path, PATH_MAX (4096)
# bytes. Outputs leave room in the path for the files written inside them and their temporary names.
NAME_MAX_BYTES = 255
PATH_MAX_BYTES = 4096 - 256


def _hidden_name(name: str, tag: str) -> str:
    """``.<name>.<tag>``; a name too long to take a tag (up to 64 bytes) is replaced by a hash of it."""
    if len(os.fsencode(name)) > NAME_MAX_BYTES - 64:
        name = hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
    return f".{name}.{tag}"


def check_output(
    out: str | Path,
    *,
    what: str,
    overwrite: bool,
    keep: Iterable[str | Path] = (),
    markers: Iterable[str] = (),
    kind: str = "folder",
) -> Path:
    """May ``out`` be written, replacing what is there? Refuse, before anything is written, an output that could destroy what the user did not name.

    Parameters
    ----------
    out : str or Path
        The output the user named: a folder to create or replace whole (a
        corpus, a run), or a file (an ``.npz``, a wav).
    what : str, keyword-only
        Names the output in messages ("corpus", "run folder", "--out").
    overwrite : bool, keyword-only
        Whether an existing ``out`` may be replaced; without it, one is an error.
    keep : iterable of str or Path, keyword-only
        Inputs (files and folders) ``out`` may neither equal, lie inside nor
        contain, resolved with symlinks followed.
    markers : iterable of str, keyword-only
        Names an existing, non-empty folder ``out`` must hold all of to be
        replaced (``manifest.json`` for a corpus; ``config.yaml`` and
        ``checkpoints`` for a run), so that ``--overwrite`` never deletes a
        folder audiosort did not write.
    kind : {"folder", "file"}, keyword-only
        An existing ``out`` must be a folder, or a regular file (never a
        device, a FIFO, a socket). A symlink is judged by what it points to
        (a dangling one is replaceable), but only the link is ever replaced.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    InputError
        An empty or over-long name, a name that is not UTF-8, the working
        folder or one above it (or the filesystem root), an overlap with
        ``keep``, an existing ``out`` without ``overwrite``, or an existing
        ``out`` that is not the kind of output named.
    """
    path = Path(out)
    if str(out).strip() == "":
        raise InputError(f"the {what} name is empty")
    check_name(path, what)
    if kind == "file" and path.is_dir():
        raise InputError(f"{what} {out} is a folder; give the file to write")
    resolved = path.resolve()
    here = Path.cwd().resolve()
    if resolved == here or resolved in here.parents:
        raise InputError(f"{what} {out} is the working folder or one above it ({resolved}); name a new {kind}")
    for given in keep:
        kept = Path(given).resolve()
        if resolved == kept or resolved in kept.parents or kept in resolved.parents:
            raise InputError(f"{what} {out} overlaps input {given}; write it outside the inputs")
    if not (path.exists() or path.is_symlink()):
        return path
    if not overwrite:
        raise InputError(f"{what} {out} already exists; pass overwrite=True to replace it")
    if not path.exists():  # a dangling symlink: only the link is replaced
        return path
    if kind == "file":
        if not path.is_file():  # a device, a FIFO, a socket
            raise InputError(f"{what} {out} exists and is not a regular file; overwrite=True replaces only a file")
        return path
    if not path.is_dir():
        raise InputError(f"{what} {out} exists and is not a folder; overwrite=True replaces only a {what}")
    markers = list(markers)
    missing = [name for name in markers if not (path / name).exists()]
    if missing and any(path.iterdir()):
        raise InputError(
            f"{out} is not a {what} (no {', '.join(missing)}); overwrite=True replaces only a {what} audiosort wrote"
        )
    return path


def check_files_into(
    folder: str | Path, names: Iterable[str], *, what: str, keep: Iterable[str | Path] = (),
    folders: Mapping[str, tuple[str, ...]],
) -> list[Path]:
    """May the files ``names`` be written into ``folder`` (a command's ``--out`` folder), replacing files of those names?

    ``folder`` may not be the working folder or one above it, and may be
    neither in nor be a folder audiosort keeps to itself (a corpus, a run
    folder: ``folders`` maps each kind to the names that mark it, see
    :data:`audiosort.run.AUDIOSORT_FOLDERS`); each file is checked as an
    output of kind ``"file"`` that may not overlap ``keep`` (the inputs).

    Returns
    -------
    list of Path
        ``folder / name`` for each name.

    Raises
    ------
    InputError
        Naming the first rule broken.
    """
    folder = Path(folder)
    keep = tuple(keep)
    if (folder.exists() or folder.is_symlink()) and not folder.is_dir():
        raise InputError(f"cannot create {folder}: a file of that name exists, and {what} names a folder")
    check_output(folder, what=what, overwrite=True)
    for place in (Path(os.path.abspath(folder)), *Path(os.path.abspath(folder)).parents):
        for kind, markers in folders.items():
            if all((place / marker).exists() for marker in markers):
                raise InputError(f"{what} {folder} lies in {kind} {place}, which audiosort keeps to its own files; write elsewhere")
    return [check_output(folder / name, what=what, overwrite=True, keep=keep, kind="file") for name in names]


def check_name(path: Path, what: str) -> None:
    """Raise :class:`InputError` unless every part of ``path`` fits the filesystem's limits, and the name is UTF-8 (it is printed and stored in JSON)."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(text).decode("utf-8", "backslashreplace")
        raise InputError(f"{what} {shown} is not valid UTF-8; use a name of UTF-8 characters") from None
    for part in path.parts:
        size = len(part.encode("utf-8"))
        if size > NAME_MAX_BYTES:
            raise InputError(
                f"{what} name {part[:40]}... is {size} bytes long; a file or folder name holds at most {NAME_MAX_BYTES}"
            )
    size = len(os.fsencode(os.path.abspath(text)))
    if size > PATH_MAX_BYTES:
        raise InputError(
            f"{what} path {text[:40]}... is {size} bytes long; keep it under {PATH_MAX_BYTES} "
            "(the system's 4096, less room for the files written inside it)"
        )


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
    trash = folder.parent / _hidden_name(folder.name, f"old-{os.getpid()}")
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
    contents: Iterable[str] = (),
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
        replaceable. With a marker, ``out`` may not lie inside a folder that
        holds it (a corpus inside a corpus); and at the rename, under a lock
        on every folder above ``out``, the check is made again, and an
        existing ``out`` may hold only what the new folder holds, the names in
        ``contents`` and temporary names: a command that wrote into ``out``
        meanwhile (another corpus inside it) keeps what it wrote.
    contents : iterable of str, keyword-only
        More names an existing ``out`` may hold (``features``, the corpus's
        feature cache).

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
    out = check_output(out, what=what, overwrite=overwrite, keep=keep, markers=[marker] if marker else [])
    if marker:
        _refuse_inside(out, marker, what)
    tmp = out.parent / _hidden_name(out.name, f"partial-{os.getpid()}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(out)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as e:
        raise InputError(f"cannot write {what} beside {out}: {e.strerror or e}") from None
    try:
        yield tmp
        if marker:
            with _ancestors_locked(out, what):
                _refuse_inside(out, marker, what)
                _check_still_replaceable(out, tmp, what=what, overwrite=overwrite, marker=marker, contents=contents)
                _move_into_place(tmp, out, overwrite)
        else:
            _move_into_place(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def refuse_inside(out: str | Path, *, what: str, marker: str = "manifest.json", container: str = "corpus") -> None:
    """Refuse an ``out`` inside a folder that holds ``marker``: a ``container`` audiosort wrote, which replacing deletes.

    Raises
    ------
    InputError
        Naming the folder ``out`` would lie in.
    """
    for folder in Path(os.path.abspath(out)).parents:
        if (folder / marker).is_file():
            raise InputError(f"{what} {out} would lie inside {folder}, a {container} audiosort wrote; write it elsewhere")


def _refuse_inside(out: Path, marker: str, what: str) -> None:
    refuse_inside(out, what=what, marker=marker, container=what)


def _check_still_replaceable(out: Path, tmp: Path, *, what: str, overwrite: bool, marker: str, contents: Iterable[str]) -> None:
    """At the rename: is an ``out`` that exists now still only what audiosort wrote (see :func:`new_folder`)?"""
    if not (out.exists() or out.is_symlink()):
        return
    check_output(out, what=what, overwrite=overwrite, markers=[marker])
    if out.is_symlink() or not out.is_dir():
        return
    allowed = {entry.name for entry in tmp.iterdir()} | set(contents) | {marker}
    temporary = re.compile(r"\..*\.(partial|old)-\d+.*")
    for entry in out.iterdir():
        if entry.name not in allowed and not temporary.fullmatch(entry.name):
            raise InputError(
                f"{out} now holds {entry.name}, which audiosort did not write there; it was not replaced "
                f"(the new {what} was not kept)"
            )
    for folder, _, files in os.walk(out):
        if folder != str(out) and marker in files:
            raise InputError(f"{out} now holds another {what} at {folder}; it was not replaced (the new {what} was not kept)")


# Tries (10 ms apart) to lock the folders above an output before refusing: two renames take milliseconds.
_LOCK_TRIES = 500


@contextlib.contextmanager
def _ancestors_locked(out: Path, what: str) -> Iterator[None]:
    """Hold an exclusive flock on every folder above ``out``, root first.

    Two outputs one inside the other share every folder above the outer one,
    so their renames take turns; the order (root first) keeps two lockers
    from waiting on each other. Refused after :data:`_LOCK_TRIES` tries
    rather than waiting on a long holder (a training locks its run folder).
    """
    fds = []
    try:
        for folder in reversed(Path(os.path.abspath(out)).parents):
            try:
                fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                continue  # a folder we may not read cannot be replaced by another user's command either
            fds.append(fd)
            for attempt in range(_LOCK_TRIES):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    time.sleep(0.01)
            else:
                raise InputError(f"cannot write {what} {out}: {folder} is held by another command; try again")
        yield
    finally:
        for fd in fds:
            os.close(fd)


def remove_stale_partials(out: str | Path) -> list[Path]:
    """Delete ``.<out>.partial-<pid>`` and ``.<out>.old-<pid>`` left beside ``out`` by processes that are gone.

    A process killed outright (SIGKILL, power loss) cannot clean up after
    itself; the next build of the same folder does. Returns what it removed.
    """
    out = Path(out)
    pattern = re.compile(rf"{re.escape(_hidden_name(out.name, ''))}(partial|old)-(\d+)")
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
        raise InputError(f"{out} already exists; pass overwrite=True to replace it")
    trash = out.parent / _hidden_name(out.name, f"old-{os.getpid()}")
    os.replace(out, trash)
    os.replace(tmp, out)
    _delete(trash)


def save_figure(figure, path: str | Path) -> None:
    """Save a matplotlib ``figure`` as a PNG at ``path``, atomically (see :func:`replacing`)."""
    with replacing(path) as tmp:
        figure.savefig(tmp, format="png")
