"""The one atomic writer: every file and folder the suite writes is built beside its target, then renamed.

A reader (the next rule, a person, a resumed run) sees either the old file or the complete new one, never half
a file; a writer that fails leaves neither the target nor its temporary behind.

    with atomic_path("results/x.npy") as temporary:   # any writer that takes a path
        np.save(temporary, array)
    write_text(path, text) / write_json / write_csv / save_npy / npy_memmap / save_torch / save_figure
    with atomic_directory("data/prepared") as staging: ...   # a whole folder

One temporary-name scheme for files and folders: `<name>.tmp-<pid>` in the target's folder (same file system,
so the rename is atomic; the process id keeps two concurrent writers apart). `remove_stale` deletes what a
killed run left (a kill skips the clean-up).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
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

TEMPORARY_MARK = ".tmp-"  # `<name>.tmp-<pid>`
RETIRED_MARK = ".old-"  # `<name>.old-<pid>`: a replaced folder, deleted once the new one is in place


def temporary_path(final: str | Path) -> Path:
    """The temporary path a write of `final` goes through: `<name>.tmp-<pid>` beside it."""
    final = Path(final)
    return final.with_name(f"{final.name}{TEMPORARY_MARK}{os.getpid()}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale(final: str | Path) -> None:
    """Delete `<name>.tmp-*` / `<name>.old-*` beside `final`, left behind by an interrupted run."""
    final = Path(final)
    if not final.parent.is_dir():
        return
    for mark in (TEMPORARY_MARK, RETIRED_MARK):
        for stale in final.parent.glob(f"{final.name}{mark}*"):
            logger.info("removing %s, left behind by an interrupted run", stale)
            _remove(stale)


@contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield the temporary path to write `final` through; on success it is renamed to `final`, on any error
    (or if the body wrote nothing) it is deleted and `final` is left as it was.

    Writers that add a suffix to a path (np.save without `.npy`) must be given a file handle or an explicit
    format instead: the wrappers below do that.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
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
    remove_stale(final)
    temporary = temporary_path(final)
    temporary.mkdir()
    try:
        yield temporary
        if final.exists():
            retired = final.with_name(f"{final.name}{RETIRED_MARK}{os.getpid()}")
            os.replace(final, retired)
            os.replace(temporary, final)
            _remove(retired)
        else:
            os.replace(temporary, final)
    except BaseException:
        _remove(temporary)
        raise


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
