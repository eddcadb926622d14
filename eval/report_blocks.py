"""The report's vocabulary: its block types and how a number becomes a table cell.

`eval.report` builds the report as a list of these blocks; `eval.report_render` renders them (Markdown, HTML);
`eval.report_provenance` adds where the numbers came from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

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


@dataclass
class FigureBlock:
    path: Path
    caption: str


@dataclass
class Preformatted:
    text: str


Block = Heading | Paragraph | Bullets | Table | FigureBlock | Preformatted

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


REFERENCE_DISPLAY_NAMES = {"mean_face": "mean face", "pca": "PCA", "lapcvae_coarsest": "LapCVAE coarsest level"}


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
