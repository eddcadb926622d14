"""The report's vocabulary: its block types and how a number becomes a table cell.

`eval.report` builds the report as a list of these blocks; `eval.report_render` renders them (Markdown, HTML);
`eval.report_provenance` adds where the numbers came from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from eval.metric_directions import BETTER, best_positions
from eval.plotting import DISPLAY_NAMES

MISSING = "n/a"


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Paragraph:
    text: str
    note: bool = False  # a missing artefact or caveat, shown highlighted


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str
    # Per column, which value is better (eval.metric_directions.BETTER's word) or None; ranked columns get their
    # best value marked. Rows in `yardstick_rows` (the reference rows) are shown but not ranked.
    better: Sequence[str | None] = ()
    yardstick_rows: frozenset[int] = field(default_factory=frozenset)


@dataclass
class FigureBlock:
    path: Path
    caption: str


@dataclass
class Preformatted:
    text: str


Block = Heading | Paragraph | Bullets | Table | FigureBlock | Preformatted

# A cell's leading number: "12.34 ± 1.20 (3)", "[11.0, 13.2]", "1.0e-04", "2.50 G" (engineering()'s suffixes).
CELL_NUMBER = re.compile(r"^\[?(?P<number>[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)(?:\s?(?P<suffix>[kMGT]))?(?=$|[\s,\]])")
SUFFIXES = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def cell_value(text: str) -> float | None:
    """The number a table cell starts with (what it sorts and ranks by); None for words and n/a."""
    match = CELL_NUMBER.match(text.strip())
    if match is None:
        return None
    return float(match["number"]) * SUFFIXES.get(match["suffix"] or "", 1.0)


def best_cells(table: Table) -> set[tuple[int, int]]:
    """(row, column) of the best value of each ranked column, ties included, over the rows that are not yardsticks."""
    cells = set()
    for column, direction in enumerate(table.better):
        if direction is None:
            continue
        ranked = [row for row in range(len(table.rows)) if row not in table.yardstick_rows]
        values = [cell_value(table.rows[row][column]) for row in ranked]
        cells |= {(ranked[position], column) for position in best_positions(values, direction)}
    return cells

def number(value: Any, digits: int = 2) -> str:
    """A table cell: the value with `digits` decimals, or n/a for a missing value."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return MISSING
    return f"{float(value):.{digits}f}"


def p_value(value: Any) -> str:
    """A p-value cell: three decimals, "< 0.001" below 0.001 (the CSVs keep the float)."""
    if value is None or pd.isna(value):
        return MISSING
    return "< 0.001" if value < 1e-3 else f"{value:.3f}"


def engineering(value: Any) -> str:
    """1234567 -> '1.23 M': parameter and FLOP counts at a glance."""
    if value is None or pd.isna(value):
        return MISSING
    for divisor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= divisor:
            return f"{value / divisor:.2f} {suffix}"
    return f"{value:.0f}"


REFERENCE_DISPLAY_NAMES = {"mean_face": "mean face", "pca": "PCA", "lapcvae_coarsest": "LapCVAE coarsest level",
                           "training_images": "training images (real faces)"}


def display(model: str) -> str:
    return DISPLAY_NAMES.get(model, REFERENCE_DISPLAY_NAMES.get(model, model))


def read_json(path: Path, how_to_make: str) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {how_to_make}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete it and {how_to_make}") from error


def across_seeds(record: Mapping[str, Any], column: str, digits: int = 2) -> str:
    """'mean ± std (n)' over seeds, or the single value with one seed."""
    value, spread = record.get(column), record.get(f"{column}_seed_std")
    n_seeds = record.get("n_seeds")
    if spread is None or pd.isna(spread):
        return number(value, digits)
    return f"{number(value, digits)} ± {number(spread, digits)} ({int(n_seeds)})"


def csv_table(path: Path, caption: str, columns: Sequence[str] | None = None) -> Table:
    """A CSV file as a report table (numbers rounded), keeping `columns` in that order when given."""
    frame = pd.read_csv(path)
    if columns:
        frame = frame[[column for column in columns if column in frame.columns]]
    rows = [[number(value, 3) if isinstance(value, float) else str(value) for value in record]
            for record in frame.itertuples(index=False)]
    return Table([str(column) for column in frame.columns], rows, caption,
                 better=[BETTER.get(str(column)) for column in frame.columns])
