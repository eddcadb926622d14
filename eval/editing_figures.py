"""Editing's files and figures (paper section 5.2): the input image, painted coarse level and mask files, the
output PNGs, and Figures 1 and 9. The maths of the edits is in `eval.editing`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, UnidentifiedImageError

from core import atomic
from data.arrays import rgb_pixels
from eval.editing import EditResult, coarse_image
from eval.plotting import to_hwc_uint8
from models.pyramid import laplacian_pyramid

logger = logging.getLogger(__name__)

MASK_THRESHOLD = 127  # mask PNG pixels brighter than this (white) are the region
DETAIL_GAIN = 2.0  # high-frequency levels are signed and faint: shown as 0.5 + gain * h
CELL_INCHES = 1.1  # figure cell size
LABEL_INCHES = 1.2  # left margin for the row labels


# ----- files ------------------------------------------------------------------------------------------------
def _open_rgb(path: str | Path) -> Image.Image:
    """An image file as a loaded RGB PIL image; FileNotFoundError / ValueError naming the fix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist: pass an existing PNG or JPEG")
    try:
        with Image.open(path) as opened:
            return Image.fromarray(rgb_pixels(opened, path))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"image {path} cannot be read ({error}); pass a valid PNG or JPEG") from error


def to_tensor(picture: Image.Image, size: int) -> torch.Tensor:
    """A PIL image of any size as (1, 3, size, size) float in [0, 1] (bicubic resize)."""
    resized = picture.resize((size, size), Image.Resampling.BICUBIC)
    array = np.asarray(resized, dtype=np.float32) / 255.0  # (size, size, 3)
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous().clamp(0.0, 1.0)


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """An image file of any size as (1, 3, size, size) float in [0, 1]."""
    return to_tensor(_open_rgb(path), size)


def load_edited_coarse(path: str | Path, resolution: int, levels: int, fixed_levels: int) -> torch.Tensor:
    """The user's edit as the coarse image `coarse_image` gives (1, 3, h, w).

    A file exactly the coarse level's size is that level, painted; anything else is a painted full image, resized
    to the model's resolution, whose coarse level is taken.
    """
    picture = _open_rgb(path)
    coarse_size = resolution // 2 ** (levels - fixed_levels)
    if picture.size == (coarse_size, coarse_size):
        return to_tensor(picture, coarse_size)
    return coarse_image(to_tensor(picture, resolution), levels, fixed_levels)


def load_mask(path: str | Path, size: int) -> np.ndarray:
    """A mask image (white = region) of any size as (size, size) bool (nearest-neighbour resize)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask {path} does not exist: pass a PNG, white where the region is")
    try:
        with Image.open(path) as opened:
            gray = opened.convert("L").resize((size, size), Image.Resampling.NEAREST)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"mask {path} cannot be read ({error}); pass a valid PNG, white = region") from error
    mask = np.asarray(gray) > MASK_THRESHOLD
    if not mask.any():
        raise ValueError(f"mask {path} has no white pixel: paint the region to edit in white")
    return mask


def save_png(image: np.ndarray | torch.Tensor, path: Path) -> None:
    """One image ((3, H, W) / (H, W, 3) float in [0, 1] or uint8, or an (H, W) bool mask) as a PNG, atomically."""
    array = np.asarray(image.cpu() if isinstance(image, torch.Tensor) else image)
    picture = Image.fromarray(array.astype(np.uint8) * 255) if array.ndim == 2 else Image.fromarray(
        to_hwc_uint8(array))
    atomic.save_image(picture, path, format="PNG")


def write_outputs(result: EditResult, out_dir: str | Path) -> None:
    """variant_XX.png, composite_XX.png and input, edited, mask, reconstruction, base PNGs in out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    singles = {"input": result.image[0], "edited": result.edited[0], "mask": result.mask,
               "reconstruction": result.reconstruction[0], "base": result.base[0]}
    for name, image in singles.items():
        save_png(image, out_dir / f"{name}.png")
    for index, (variant, blended) in enumerate(zip(result.variants, result.composites, strict=True)):
        save_png(variant, out_dir / f"variant_{index:02d}.png")
        save_png(blended, out_dir / f"composite_{index:02d}.png")
    logger.info("wrote %d variants and composites to %s", len(result.variants), out_dir)


# ----- the figure (Figures 1 and 9) -------------------------------------------------------------------------
def _full_size(image: torch.Tensor, size: int) -> np.ndarray:
    """(3, h, w) -> (3, size, size) by pixel repetition, so coarse levels show their real resolution."""
    factor = size // image.shape[-1]
    return image.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1).numpy()


def _overlay(image: torch.Tensor, mask: np.ndarray) -> np.ndarray:
    """(3, H, W) with the mask's region tinted red."""
    shown = image.numpy().copy()
    red = np.array([1.0, 0.0, 0.0])[:, None]
    shown[:, mask] = 0.5 * shown[:, mask] + 0.5 * red
    return shown


def edit_figure(result: EditResult, levels: int, edited_coarse: torch.Tensor | None, title: str) -> Figure:
    """Row (a): input, its pyramid levels, the edit, the mask, the reconstruction; (b) samples; (c) composites."""
    size = result.image.shape[-1]
    pyramid = laplacian_pyramid(result.image, levels)
    row_a: list[tuple[np.ndarray, str]] = [(result.image[0].numpy(), "input")]
    for k, level in enumerate(pyramid):
        shown = level[0] if k == levels - 1 else 0.5 + DETAIL_GAIN * level[0]  # details are signed
        name = f"b{k}" if k == levels - 1 else f"h{k}"
        row_a.append((_full_size(shown, size), f"{name} ({level.shape[-1]} px)"))
    if edited_coarse is not None:
        row_a.append((_full_size(edited_coarse[0], size), "painted coarse"))
    row_a += [(_overlay(result.image[0], result.mask), "mask"), (result.reconstruction[0].numpy(), "reconstruction"),
              (result.base[0].numpy(), "base (fixed levels)")]
    rows = [("(a)", row_a),
            ("(b) samples", [(v.numpy(), f"sample {i + 1}") for i, v in enumerate(result.variants)]),
            ("(c) composites", [(c.numpy(), f"composite {i + 1}") for i, c in enumerate(result.composites)])]
    n_cols = max(len(cells) for _, cells in rows)
    width = CELL_INCHES * n_cols + LABEL_INCHES
    fig = Figure(figsize=(width, CELL_INCHES * 3 + 0.9))
    FigureCanvasAgg(fig)
    fig.suptitle(title, fontsize=11, fontweight="bold")
    grid = fig.add_gridspec(3, n_cols, left=LABEL_INCHES / width, right=0.99, top=0.82, bottom=0.02,
                            hspace=0.35, wspace=0.05)
    for r, (row_label, cells) in enumerate(rows):
        for c in range(n_cols):
            axes = fig.add_subplot(grid[r, c])
            axes.set_axis_off()
            if c < len(cells):
                image, label = cells[c]
                axes.imshow(to_hwc_uint8(image), interpolation="nearest")
                axes.set_title(label, fontsize=6)
            if c == 0:
                axes.text(-0.15, 0.5, row_label, transform=axes.transAxes, ha="right", va="center", fontsize=8)
    return fig


# ----- command line -----------------------------------------------------------------------------------------


def pick_sunglasses_face(attributes_path: str | Path) -> int:
    """Test-split row of the first face with Sunglasses == 1, else Eyeglasses == 1, else row 0 (logged)."""
    attributes_path = Path(attributes_path)
    if not attributes_path.is_file():
        raise FileNotFoundError(f"{attributes_path} does not exist: run `lapcvae prepare` first")
    table = pd.read_csv(attributes_path)
    missing = {"split", "row"} - set(table.columns)
    if missing:
        raise ValueError(f"{attributes_path} lacks the columns {sorted(missing)}: rerun `lapcvae prepare`")
    test = table[table["split"].astype(str) == "test"].sort_values("row")
    for attribute in ("Sunglasses", "Eyeglasses"):
        if attribute in test.columns and (test[attribute] == 1).any():
            row = int(test.loc[test[attribute] == 1, "row"].iloc[0])
            logger.info("editing test face %d, which has %s", row, attribute)
            return row
    logger.warning("no test face wears sunglasses or eyeglasses; editing test face 0")
    return 0
