"""Shared matplotlib helpers for every figure of the suite: labelled image grids, captions, atomic PNG writes.

Figures are built with matplotlib's object API (`matplotlib.figure.Figure`, Agg canvas), never pyplot, so
no global state or display backend is involved and nothing needs closing.

    from eval.plotting import image_grid, save_figure
    fig = image_grid([[original, reconstruction]], row_labels=["face 0"], col_labels=["Original", "VAE"],
                     title="Reconstructions", caption="64 x 64 test images.")
    save_figure(fig, "results/figures/example.png")
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from core import atomic, registry

logger = logging.getLogger(__name__)

# Every evaluated model, in the order of Table 1, with the name figures and the report show for it.
DISPLAY_NAMES = registry.display_names()  # core/registry.py
MODELS = tuple(DISPLAY_NAMES)  # Table 1's order

DEFAULT_DPI = 150
# Images are shown at an integer zoom so that a 64 px face is still readable (nearest-neighbour, no blur).
TARGET_CELL_PIXELS = 128
CAPTION_CHARACTERS_PER_INCH = 14  # ~ width of 9 pt text, to wrap captions to the figure width
WHITE = 255


def to_hwc_uint8(image: np.ndarray) -> np.ndarray:
    """One RGB image as (H, W, 3) uint8, from (3, H, W) or (H, W, 3), uint8 or float in [0, 1]."""
    array = np.asarray(image)
    if array.ndim != 3 or 3 not in (array.shape[0], array.shape[-1]):
        raise ValueError(f"an image must be (3, H, W) or (H, W, 3), got shape {array.shape}")
    if array.shape[-1] != 3:  # channels first -> channels last
        array = array.transpose(1, 2, 0)
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"an image must be uint8 or float in [0, 1], got dtype {array.dtype}")
    if not np.isfinite(array).all():
        raise ValueError("an image holds NaN or infinite values: check the model that produced it")
    return np.round(np.clip(array, 0.0, 1.0) * 255).astype(np.uint8)


def grid_array(rows: Sequence[Sequence[np.ndarray | None]], padding: int = 2) -> np.ndarray:
    """Tile images into one (H_total, W_total, 3) uint8 array, white between cells.

    Row r, column c starts at pixel (r * (h + padding), c * (w + padding)). Rows may be of different
    lengths and cells may be None (left white), e.g. a "Base" column only some rows have.
    """
    cells = [[None if cell is None else to_hwc_uint8(cell) for cell in row] for row in rows]
    present = [cell for row in cells for cell in row if cell is not None]
    if not present:
        raise ValueError("an image grid needs at least one image")
    height, width = present[0].shape[:2]
    if any(cell.shape[:2] != (height, width) for cell in present):
        raise ValueError("every image of a grid must have the same size; resize them first")
    n_rows, n_columns = len(cells), max(len(row) for row in cells)
    grid = np.full(
        (n_rows * height + (n_rows - 1) * padding, n_columns * width + (n_columns - 1) * padding, 3),
        WHITE, dtype=np.uint8,
    )  # (H_total, W_total, 3)
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            if cell is not None:
                top, left = r * (height + padding), c * (width + padding)
                grid[top:top + height, left:left + width] = cell
    return grid


def cell_size(rows: Sequence[Sequence[np.ndarray | None]]) -> tuple[int, int]:
    """(height, width) of the images of a grid."""
    first = next(cell for row in rows for cell in row if cell is not None)
    image = to_hwc_uint8(first)
    return image.shape[0], image.shape[1]


def add_caption(fig: Figure, caption: str, bottom_inches: float) -> None:
    """A wrapped caption line under the figure, in the `bottom_inches` reserved for it."""
    width_inches = fig.get_figwidth()
    wrapped = textwrap.fill(caption, width=max(30, int(width_inches * CAPTION_CHARACTERS_PER_INCH)))
    fig.text(0.5, (bottom_inches - 0.08) / fig.get_figheight(), wrapped, ha="center", va="top",
             fontsize=9, style="italic", wrap=False)


def caption_height(caption: str | None, width_inches: float) -> float:
    """Inches of figure height a wrapped caption needs."""
    if not caption:
        return 0.15
    lines = len(textwrap.wrap(caption, width=max(30, int(width_inches * CAPTION_CHARACTERS_PER_INCH))))
    return 0.25 + 0.17 * lines


def image_grid(
    rows: Sequence[Sequence[np.ndarray | None]],
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    caption: str | None = None,
    padding: int = 2,
    dpi: int = DEFAULT_DPI,
) -> Figure:
    """A labelled grid of images: one label left of each row, one above each column, a title and a caption.

    rows: list of rows, each a list of images (3, H, W) or (H, W, 3), uint8 or float [0, 1], or None (blank).
    The figure is sized so that every image is shown at an integer zoom of its own pixels.
    """
    grid = grid_array(rows, padding)  # (H_total, W_total, 3)
    height, width = cell_size(rows)
    n_rows, n_columns = len(rows), max(len(row) for row in rows)
    if row_labels is not None and len(row_labels) != n_rows:
        raise ValueError(f"{len(row_labels)} row labels for {n_rows} rows; give one label per row")
    if col_labels is not None and len(col_labels) != n_columns:
        raise ValueError(f"{len(col_labels)} column labels for {n_columns} columns; give one per column")

    zoom = max(1, round(TARGET_CELL_PIXELS / max(height, width)))
    image_width, image_height = grid.shape[1] * zoom / dpi, grid.shape[0] * zoom / dpi  # inches
    left = 0.2 + (0.075 * max(map(len, row_labels)) if row_labels else 0.0)
    top = 0.15 + (0.3 if col_labels else 0.0) + (0.35 if title else 0.0)
    right = 0.2
    fig_width = max(left + image_width + right, 4.0)
    bottom = caption_height(caption, fig_width)
    fig_height = top + image_height + bottom
    fig = Figure(figsize=(fig_width, fig_height), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.add_axes(
        (left / fig_width, bottom / fig_height, image_width / fig_width, image_height / fig_height)
    )
    axes.imshow(grid, interpolation="nearest")
    axes.set_xticks([c * (width + padding) + (width - 1) / 2 for c in range(n_columns)])
    axes.set_yticks([r * (height + padding) + (height - 1) / 2 for r in range(n_rows)])
    axes.set_xticklabels(col_labels or [], fontsize=9)
    axes.set_yticklabels(row_labels or [], fontsize=9)
    axes.xaxis.set_ticks_position("top")
    axes.tick_params(length=0)
    for spine in axes.spines.values():
        spine.set_visible(False)
    if title:
        fig.suptitle(title, y=1 - 0.12 / fig_height, va="top", fontsize=11, fontweight="bold")
    if caption:
        add_caption(fig, caption, bottom)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = DEFAULT_DPI) -> Path:
    """Write `fig` as a PNG atomically (temporary file in the same folder, then rename); return the path."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"figure path {path} must end in .png")
    atomic.save_figure(fig, path, format="png", dpi=dpi, facecolor="white")
    logger.info("wrote %s", path)
    return path
