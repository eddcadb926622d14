"""Progress bars for a person at a terminal, and nothing for a log file or a pipe.

tqdm redraws its bar with a carriage return; written to a file, every redraw stays (a training log keeps one bar per
step). `progress_bar` draws only when its stream is a terminal, at most once a second there. Off a terminal it draws
nothing, and `set_postfix` (called where a loop logs its values) logs one line instead, at most one per tenth of
the bar's total, so a log keeps a few lines per job (every step's values are in its training curve CSV).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from tqdm import tqdm

logger = logging.getLogger(__name__)

REDRAW_SECONDS = 1.0  # a terminal bar redraws at most this often
LOG_FRACTION = 0.1  # off a terminal, a bar with a total logs its values at most once per this share of it


def is_terminal(stream: TextIO | None) -> bool:
    """Whether `stream` is a terminal (False for files, pipes, StringIO and closed streams)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # isatty() on a closed stream
        return False


class ProgressBar(tqdm):
    """tqdm drawn only on a terminal; elsewhere silent, except that `set_postfix` logs one line.

    `disable=True` silences it everywhere (e.g. on every process but the first); `disable=None`, tqdm's "only on a
    terminal", is what every bar here does anyway.
    """

    def __init__(self, iterable: Iterable[Any] | None = None, *, file: TextIO | None = None,
                 disable: bool | None = False, mininterval: float = REDRAW_SECONDS, **kwargs: Any) -> None:
        stream = sys.stderr if file is None else file  # looked up now: a test or a CLI may have replaced it
        self.logs_postfix = not disable and not is_terminal(stream)
        self.label = kwargs.get("desc") or ""
        self.logged_at: float | None = None  # the count at the last logged line
        self.unit_name = kwargs.get("unit", "it")
        super().__init__(iterable, file=stream, disable=bool(disable) or self.logs_postfix, mininterval=mininterval,
                         **kwargs)

    def __iter__(self) -> Iterator[Any]:
        if not self.logs_postfix:
            yield from super().__iter__()
            return
        for item in self.iterable:  # tqdm stops counting when disabled; the logged line needs the count
            yield item
            self.n += 1

    def update(self, n: float = 1) -> bool | None:
        if self.logs_postfix:
            self.n += n
            return None
        return super().update(n)

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        if not self.logs_postfix:
            super().set_postfix(ordered_dict, refresh, **kwargs)
            return
        if self.total:
            recent = self.logged_at is not None and self.n - self.logged_at < LOG_FRACTION * self.total
            if recent and self.n < self.total:
                return  # a line per tenth keeps a long job's log short; the last step is always logged
            self.logged_at = self.n
        super().set_postfix(ordered_dict, refresh=False, **kwargs)  # formats the values as the bar would
        done = f"{self.n:g}/{self.total:g} {self.unit_name} ({100 * self.n / self.total:.0f}%)" if self.total \
            else f"{self.n:g} {self.unit_name}"
        logger.info("%s: %s: %s", self.label, done, self.postfix)


def progress_bar(iterable: Iterable[Any] | None = None, **kwargs: Any) -> ProgressBar:
    """`tqdm(iterable, **kwargs)` that draws only on a terminal, at most once a second; see `ProgressBar`."""
    return ProgressBar(iterable, **kwargs)
