"""The one atomic writer: every file and folder the suite writes is built beside its target, then renamed.

A reader (the next rule, a person, a resumed run) sees either the old file or the complete new one, never half
a file; a writer that fails leaves neither the target nor its temporary behind.

    with atomic_path("results/x.npy") as temporary:   # any writer that takes a path
        np.save(temporary, array)
    write_text(path, text) / write_json / write_csv / save_npy / npy_memmap / save_torch / save_figure
    with atomic_directory("data/prepared") as staging: ...   # a whole folder

One temporary-name scheme for files and folders: `<name>.tmp-<host>-<pid>-<run id>` in the target's folder (same
file system, so the rename is atomic; the writer's identity keeps two concurrent writers apart and tells a leftover
from a live write). `remove_stale` (beside one target) and `remove_leftovers` (a whole tree, at the start of a
workflow run) delete what a killed writer left, whatever killed it: a name whose process no longer runs on this
host. A live writer's temporaries, and any other host's, are left alone. `exclusive_writer` makes a second
writer of the same output (a folder, a training job's checkpoint and curve) stop with a message naming the first.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.paths import RAW_MARKERS, destroyed_content

if TYPE_CHECKING:  # only for type hints: the writers import these lazily, so core stays light
    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

TEMPORARY_MARK = ".tmp-"  # `<name>.tmp-<host>-<pid>-<run id>`
RETIRED_MARK = ".old-"  # `<name>.old-<host>-<pid>-<run id>`: a replaced folder, deleted once the new one is in place
WRITER_MARK = ".writing"  # `<name>.writing`: held (flock) by the one process writing `<name>`, see exclusive_writer
# A workflow run's id (workflow/locks.py exports it to every job); a process outside a run gets its own.
RUN_ID_VARIABLE = "LAPCVAE_RUN_ID"
_PROCESS_RUN_ID = secrets.token_hex(4)


def host_name() -> str:
    return socket.gethostname().replace(os.sep, "_") or "localhost"


def run_id() -> str:
    """The id of the workflow run this process belongs to (letters and digits only), or this process's own."""
    given = "".join(filter(str.isalnum, os.environ.get(RUN_ID_VARIABLE, "")))
    return given or _PROCESS_RUN_ID


def writer_tag() -> str:
    """`<host>-<pid>-<run id>`: who writes a temporary, so that the next run can tell a leftover from a live write."""
    return f"{host_name()}-{os.getpid()}-{run_id()}"


def temporary_path(final: str | Path) -> Path:
    """The temporary path a write of `final` goes through: `<name>.tmp-<host>-<pid>-<run id>` beside it."""
    final = Path(final)
    return final.with_name(f"{final.name}{TEMPORARY_MARK}{writer_tag()}")


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (a process of another user counts: it may be writing too)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temporary_writer(path: str | Path) -> tuple[str, int, str] | None:
    """(host, pid, run id) of the writer of a temporary or retired `path`; None for any other name. A name from
    before host and run id were recorded (`<name>.tmp-<pid>`) was written on this host."""
    name = Path(path).name
    for mark in (TEMPORARY_MARK, RETIRED_MARK):
        base, found, tag = name.rpartition(mark)
        if not found or not base:
            continue
        if tag.isdigit():
            return host_name(), int(tag), ""
        parts = tag.rsplit("-", 2)
        if len(parts) == 3 and parts[0] and parts[1].isdigit() and parts[2].isalnum():
            return parts[0], int(parts[1]), parts[2]
    return None


def is_leftover(path: str | Path) -> bool:
    """Whether `path` is a temporary (or retired folder) whose writer no longer runs on this host. Another host's
    are never leftovers here: that host may still be writing."""
    writer = temporary_writer(path)
    if writer is None:
        return False
    host, pid, _ = writer
    return host == host_name() and not pid_alive(pid)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _remove_if_leftover(path: Path) -> bool:
    writer = temporary_writer(path)
    if writer is None:
        return False
    host, pid, run = writer
    if not is_leftover(path):
        logger.info("leaving %s: its writer (pid %d on %s, run %s) may still be writing", path, pid, host,
                    run or "?")
        return False
    logger.warning("removing %s, left behind by pid %d on %s (run %s), which no longer runs", path, pid, host,
                   run or "?")
    _remove(path)
    return True


def remove_stale(final: str | Path) -> None:
    """Delete the temporaries and retired folders beside `final` whose writer no longer runs (see is_leftover)."""
    final = Path(final)
    if not final.parent.is_dir():
        return
    for mark in (TEMPORARY_MARK, RETIRED_MARK):
        for stale in final.parent.glob(f"{glob_escape(final.name)}{mark}*"):
            _remove_if_leftover(stale)
    _remove_unheld_writer_mark(final.with_name(final.name + WRITER_MARK))


def glob_escape(name: str) -> str:
    """`name` as a glob pattern that matches only itself (`[`, `*` and `?` are legal in file names)."""
    return "".join(f"[{char}]" if char in "[]*?" else char for char in name)


def remove_leftovers(root: str | Path, recursive: bool = True) -> list[Path]:
    """Delete every temporary, retired folder and writer mark under `root` (only its own entries unless
    `recursive`) whose writer no longer runs on this host; a workflow run calls it on its output roots before any
    job starts. Returns what was removed."""
    removed: list[Path] = []
    root = Path(root)
    if not root.is_dir():
        return removed
    for folder, subfolders, files in os.walk(root):
        for name in list(subfolders) + files:
            path = Path(folder) / name
            if temporary_writer(path) is not None:
                if name in subfolders:
                    subfolders.remove(name)  # never walk into a staging folder, live or not
                if _remove_if_leftover(path):
                    removed.append(path)
            elif name.endswith(WRITER_MARK) and _remove_unheld_writer_mark(path):
                removed.append(path)
        if not recursive:
            subfolders.clear()
    return removed


@contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield the temporary path to write `final` through; on success it is renamed to `final`, on any error
    (or if the body wrote nothing) it is deleted and `final` is left as it was.

    Writers that add a suffix to a path (np.save without `.npy`) must be given a file handle or an explicit
    format instead: the wrappers below do that.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final)
    temporary = temporary_path(final)
    _remove(temporary)  # this process's own leftover, if any
    try:
        yield temporary
        if not temporary.exists():
            raise FileNotFoundError(f"nothing was written to {temporary} for {final}: the writer wrote elsewhere "
                                    "(did it append a suffix?); pass it a file handle or an explicit format")
        os.replace(temporary, final)
    except BaseException:
        _remove(temporary)
        raise


def check_replaceable(final: Path, raw_data: bool = False) -> None:
    """Refuse to replace a folder that holds code or (unless it is a raw data set being rewritten, `raw_data`) raw
    images: `atomic_directory` deletes the old folder whole."""
    if not final.exists() and not final.is_symlink():
        return
    if not final.is_dir() or final.is_symlink():
        raise ValueError(f"{final} is {'a link' if final.is_symlink() else 'a file'}, not a folder: writing the "
                         "folder there would replace it; pass another path (or move it)")
    found = destroyed_content(final, keep_raw=raw_data)
    if found is not None:
        what = "raw data" if found.name in RAW_MARKERS and found != final else "code"
        raise ValueError(f"{final} holds {what} ({found}), which replacing the folder would delete; pass a folder "
                         "of its own (e.g. the default paths.* folders)")


@contextmanager
def atomic_directory(final: str | Path, raw_data: bool = False) -> Iterator[Path]:
    """Yield an empty `<name>.tmp-<pid>` folder; on success it replaces the folder `final`, on any error it is
    deleted. A reader sees either the old folder or the complete new one, never a half-written tree.

    A `final` that holds code, or raw images unless `raw_data` (the folder is a raw data set being rewritten), is
    refused before anything is written.
    """
    final = Path(final)
    check_replaceable(final, raw_data)
    final.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_writer(final):  # a second writer of the folder stops, rather than swap folders under the first
        remove_stale(final)
        temporary = temporary_path(final)
        temporary.mkdir()
        try:
            yield temporary
            if final.exists():
                retired = final.with_name(f"{final.name}{RETIRED_MARK}{writer_tag()}")
                os.replace(final, retired)
                os.replace(temporary, final)
                _remove(retired)
            else:
                os.replace(temporary, final)
        except BaseException:
            _remove(temporary)
            raise


class WriterBusyError(ValueError):
    """Another live process writes the same output."""


def _read_writer_mark(path: Path) -> str:
    try:
        holder = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        holder = {}
    if not isinstance(holder, dict) or "pid" not in holder:
        return "a process whose identity is not recorded yet"
    return (f"pid {holder.get('pid')} on {holder.get('host')} (run {holder.get('run')}, "
            f"`{holder.get('command', '?')}`, started {holder.get('started', '?')})")


def _try_flock(handle: Any) -> bool:
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _remove_unheld_writer_mark(path: Path) -> bool:
    """Delete a writer mark that no process holds any more (a killed writer's); True if removed."""
    try:
        handle = path.open("r+")
    except FileNotFoundError:
        return False
    with handle:
        if not _try_flock(handle):
            return False
        if not path.exists() or os.fstat(handle.fileno()).st_ino != path.stat().st_ino:
            return False
        logger.warning("removing %s, left by a writer that no longer runs: %s", path, _read_writer_mark(path))
        path.unlink(missing_ok=True)
        return True


@contextmanager
def exclusive_writer(final: str | Path) -> Iterator[None]:
    """Be the only process writing `final` while the body runs, or raise WriterBusyError naming the one that is.

    The mark `<name>.writing` beside `final` is held with flock, which the system releases however the writer
    ends (a kill included), so a mark nobody holds is a leftover and is taken over. It records the writer
    (host, pid, run id, command, start) for the message. Where the file system has no flock (some network file
    systems), the write goes on unguarded with a warning.
    """
    final = Path(final)
    mark = final.with_name(final.name + WRITER_MARK)
    mark.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = mark.open("a+")
        try:
            held = _try_flock(handle)
        except OSError as error:  # no flock on this file system
            handle.close()
            logger.warning("cannot lock %s (%s): a second writer of %s would not be stopped", mark, error, final)
            yield
            return
        if not held:
            handle.close()
            raise WriterBusyError(f"{final} is being written by another process: {_read_writer_mark(mark)}; wait "
                                  "for it to finish (or stop it), or write to another path")
        try:
            same_file = os.fstat(handle.fileno()).st_ino == mark.stat().st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        handle.close()  # the previous holder removed the mark between our open and our lock: take the new one
    try:
        if handle.seek(0, os.SEEK_END):
            logger.info("taking over %s from a writer that no longer runs: %s", mark, _read_writer_mark(mark))
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"host": host_name(), "pid": os.getpid(), "run": run_id(),
                                 "command": " ".join(sys.argv)[:300],
                                 "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
        handle.flush()
        yield
    finally:
        mark.unlink(missing_ok=True)  # while still held: a process that opened it meanwhile sees another inode
        handle.close()


def write_text(path: str | Path, text: str) -> Path:
    """UTF-8 text, atomically; returns the path."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def json_ready(value: Any) -> Any:
    """Replace NaN/inf floats by None so that the file is strict JSON (dvc metrics, browsers)."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, value: Any, indent: int | None = 2) -> Path:
    """Strict JSON (NaN/inf written as null), indented, newline-terminated, atomically."""
    return write_text(path, json.dumps(json_ready(value), indent=indent, default=str) + "\n")


def write_csv(path: str | Path, table: pd.DataFrame) -> Path:
    """A data frame as CSV without its index, atomically."""
    return write_text(path, table.to_csv(index=False))


def save_npy(path: str | Path, array: np.ndarray) -> Path:
    """An array as .npy, atomically (through a handle: np.save would add `.npy` to the temporary name)."""
    import numpy as np

    with atomic_path(path) as temporary, temporary.open("wb") as handle:
        np.save(handle, array)
    return Path(path)


@contextmanager
def npy_memmap(path: str | Path, shape: tuple[int, ...], dtype: Any) -> Iterator[np.ndarray]:
    """A .npy file filled in place through a memory map, renamed to `path` when the body finishes."""
    import numpy as np

    with atomic_path(path) as temporary:
        array = np.lib.format.open_memmap(temporary, mode="w+", dtype=dtype, shape=shape)
        try:
            yield array
            array.flush()
        finally:
            del array  # close the map before the rename (or the deletion)


def save_torch(obj: Any, path: str | Path) -> Path:
    """torch.save, atomically."""
    import torch

    with atomic_path(path) as temporary:
        torch.save(obj, temporary)
    return Path(path)


def save_figure(figure: Figure, path: str | Path, **savefig: Any) -> Path:
    """A matplotlib figure, atomically; the format comes from `path`'s suffix unless `format=` is given."""
    path = Path(path)
    savefig.setdefault("format", path.suffix.lstrip(".").lower() or "png")
    with atomic_path(path) as temporary:
        figure.savefig(temporary, **savefig)
    return path


def save_image(image: Any, path: str | Path, **save: Any) -> Path:
    """A PIL image, atomically; the format comes from `path`'s suffix unless `format=` is given."""
    path = Path(path)
    save.setdefault("format", {"jpg": "JPEG"}.get(path.suffix.lstrip(".").lower(), path.suffix.lstrip(".").upper()))
    with atomic_path(path) as temporary:
        image.save(temporary, **save)
    return path
