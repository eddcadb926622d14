"""Write a whole output folder atomically: build it beside the target, then rename it into place."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)


def remove_stale(out: Path) -> None:
    """Delete `<out>.tmp-*` / `<out>.old-*` folders that an interrupted run left behind."""
    for pattern in (f"{out.name}.tmp-*", f"{out.name}.old-*"):
        for stale in out.parent.glob(pattern):
            logger.info("removing %s, left behind by an interrupted run", stale)
            shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def atomic_directory(out: str | Path) -> Iterator[Path]:
    """Yield an empty `<out>.tmp-<pid>` folder; on success it replaces `out`, on any error it is deleted.

    A reader sees either the old `out` or the complete new one, never a half-written tree.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out)
    temporary = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    temporary.mkdir()
    try:
        yield temporary
        if out.exists():
            retired = out.with_name(f"{out.name}.old-{os.getpid()}")
            os.replace(out, retired)
            os.replace(temporary, out)
            shutil.rmtree(retired)
        else:
            os.replace(temporary, out)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
