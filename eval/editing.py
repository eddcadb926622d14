"""Image editing with LapCVAE (paper section 5.2): Figure 1 (paint the coarse level) and Figure 9 (resample a region).

Both edits keep the latents of the `fixed_levels` coarsest pyramid levels of an image, sample the finer levels N
times (`partial_sample`), and Poisson-composite (Perez et al. 2003, `eval.poisson`) the masked region of every
sample into the reconstruction of the original image:
- coarse edit: the coarse levels come from an *edited* image: the user paints its coarse level (the Gaussian level
  the fixed Laplacian levels span) or a full image, and its coarse pyramid levels replace the original's;
- region resample: the coarse levels come from the image itself; only the region changes.
In pipeline mode (no --image) the commands pick a test face themselves: for the coarse edit one that wears
sunglasses, whose eye region is painted over with the skin tone of its cheeks and forehead (Figure 1, right).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, UnidentifiedImageError
from torch import nn
from tqdm import tqdm

from core import atomic
from eval.plotting import to_hwc_uint8
from eval.poisson import PoissonSolver
from models.pyramid import laplacian_pyramid, reconstruct

logger = logging.getLogger(__name__)

MASK_THRESHOLD = 127  # mask PNG pixels brighter than this (white) are the region
DETAIL_GAIN = 2.0  # high-frequency levels are signed and faint: shown as 0.5 + gain * h
CELL_INCHES = 1.1  # figure cell size
LABEL_INCHES = 1.2  # left margin for the row labels


@dataclass
class EditResult:
    """Everything an edit produced; images are float tensors in [0, 1] on the CPU."""

    image: torch.Tensor  # (1, 3, H, W) the original
    edited: torch.Tensor  # (1, 3, H, W) the image whose coarse latents are kept (the original for a region edit)
    mask: np.ndarray  # (H, W) bool, True = region composited from the samples
    reconstruction: torch.Tensor  # (1, 3, H, W) of the original, the compositing target
    base: torch.Tensor  # (1, 3, H, W) what the fixed coarse levels alone produce (Figure 7's "Base")
    variants: torch.Tensor  # (N, 3, H, W) samples with the fixed levels kept
    composites: torch.Tensor  # (N, 3, H, W) each variant's region Poisson-blended into the reconstruction


# ----- boxes, masks and the coarse level ---------------------------------------------------------------------
def box_slices(height: int, width: int, box: Mapping[str, float]) -> tuple[slice, slice]:
    """Rows and columns of a box given in fractions of the image ({top, left, bottom, right}); never empty."""
    if not (0.0 <= box["top"] < box["bottom"] <= 1.0 and 0.0 <= box["left"] < box["right"] <= 1.0):
        raise ValueError(f"box {dict(box)} must satisfy 0 <= top < bottom <= 1 and 0 <= left < right <= 1 "
                         "(fractions of the image); fix it in params.yaml editing")
    top, left = math.floor(box["top"] * height), math.floor(box["left"] * width)
    bottom = max(top + 1, math.ceil(box["bottom"] * height))
    right = max(left + 1, math.ceil(box["right"] * width))
    return slice(top, bottom), slice(left, right)


def box_mask(height: int, width: int, box: Mapping[str, float]) -> np.ndarray:
    """(H, W) bool mask of a fractional box."""
    mask = np.zeros((height, width), dtype=bool)
    mask[box_slices(height, width, box)] = True
    return mask


def _check_fixed_levels(levels: int, fixed_levels: int) -> None:
    if not 1 <= fixed_levels <= levels:
        raise ValueError(f"fixed_levels={fixed_levels} must lie in 1..{levels} (the model's pyramid levels); "
                         "fix editing.fixed_levels")


def coarse_image(image: torch.Tensor, levels: int, fixed_levels: int) -> torch.Tensor:
    """The Gaussian level the `fixed_levels` coarsest Laplacian levels span: (B, 3, H / 2^m, W / 2^m), m = L - f."""
    _check_fixed_levels(levels, fixed_levels)
    pyramid = laplacian_pyramid(image, levels)
    return reconstruct(pyramid[levels - fixed_levels:])  # Eq. 7 over the coarse levels only


def with_coarse_image(image: torch.Tensor, coarse: torch.Tensor, levels: int, fixed_levels: int) -> torch.Tensor:
    """`image` with its `fixed_levels` coarsest Laplacian levels replaced by those of `coarse` (Eq. 7).

    coarse: (B, 3, h, w) at the size `coarse_image` gives. The finer levels (the detail) stay the original's.
    The model re-decomposes the result, and with Burt-Adelson filters that round trip of a spliced pyramid is
    close but not exact, so the coarse levels the model encodes are the edit's up to that small difference.
    """
    _check_fixed_levels(levels, fixed_levels)
    pyramid = laplacian_pyramid(image, levels)
    expected = tuple(pyramid[levels - fixed_levels].shape[-2:])
    if tuple(coarse.shape[-2:]) != expected:
        raise ValueError(f"the edited coarse image is {tuple(coarse.shape[-2:])} but level {levels - fixed_levels} "
                         f"of a {tuple(image.shape[-2:])} image is {expected}: paint the coarse level at that size")
    spliced = reconstruct(pyramid[:levels - fixed_levels] + laplacian_pyramid(coarse, fixed_levels))
    return spliced.clamp(0.0, 1.0)  # models take images in [0, 1]; old detail on new paint can overshoot


def skin_tone(coarse: torch.Tensor, skin_boxes: Sequence[Mapping[str, float]]) -> torch.Tensor:
    """Median colour (3,) of the pixels of `coarse` (1, 3, h, w) inside the skin boxes (cheeks, forehead).

    The median ignores the odd strand of hair or bit of background a box catches.
    """
    height, width = coarse.shape[-2:]
    pixels = [coarse[0][(slice(None), *box_slices(height, width, box))].reshape(3, -1) for box in skin_boxes]
    return torch.cat(pixels, dim=1).median(dim=1).values  # (3,)


def paint_box(coarse: torch.Tensor, box: Mapping[str, float], colour: torch.Tensor) -> torch.Tensor:
    """A copy of `coarse` (1, 3, h, w) with the fractional box filled with `colour` (3,)."""
    painted = coarse.clone()
    rows, cols = box_slices(*coarse.shape[-2:], box)
    painted[:, :, rows, cols] = colour.view(1, 3, 1, 1)
    return painted


# ----- the two edits ----------------------------------------------------------------------------------------
def composite(variants: torch.Tensor, target: torch.Tensor, mask: np.ndarray) -> torch.Tensor:
    """Poisson-blend the masked region of every variant (N, 3, H, W) into target (1, 3, H, W); one factorisation."""
    solver = PoissonSolver(mask)
    target_array = target[0].cpu().double().numpy()  # (3, H, W)
    blended = [solver.blend(variant.cpu().double().numpy(), target_array)
               for variant in tqdm(variants, desc="poisson composite", unit="image", leave=False)]
    return torch.from_numpy(np.stack(blended)).float()  # (N, 3, H, W)


def _check_model(model: nn.Module) -> None:
    if not hasattr(model, "partial_sample"):
        raise ValueError(f"editing needs a LapCVAE checkpoint (results/models/<res>/lapcvae/level0.pt), "
                         f"got a {getattr(model, 'kind', type(model).__name__)} model")


@torch.no_grad()
def resample_region(model: nn.Module, image: torch.Tensor, edited: torch.Tensor, mask: np.ndarray,
                    fixed_levels: int, variants: int, seed: int) -> EditResult:
    """Keep `edited`'s coarse latents, sample `variants` completions, composite their region into the
    reconstruction of `image`. image, edited: (1, 3, H, W) in [0, 1] at the model's resolution; mask (H, W)."""
    _check_model(model)
    if image.shape != edited.shape or image.shape[0] != 1:
        raise ValueError(f"image {tuple(image.shape)} and edited {tuple(edited.shape)} must both be (1, 3, H, W)")
    if tuple(mask.shape) != tuple(image.shape[-2:]):
        raise ValueError(f"the mask is {mask.shape} but the image is {tuple(image.shape[-2:])}: "
                         "give a mask of the image's size")
    if variants < 1:
        raise ValueError(f"variants={variants}: ask for at least one sample")
    device = next(model.parameters()).device
    samples, base = model.partial_sample(edited.to(device), fixed_levels, variants, seed)  # (N, 3, H, W), (1, ...)
    reconstruction = model.reconstruct(image.to(device)).cpu()  # (1, 3, H, W)
    samples = samples.cpu()
    logger.info("sampled %d variants keeping the %d coarsest levels; compositing %d masked pixels",
                variants, fixed_levels, int(mask.sum()))
    return EditResult(image=image.cpu(), edited=edited.cpu(), mask=mask.astype(bool), reconstruction=reconstruction,
                      base=base.cpu(), variants=samples, composites=composite(samples, reconstruction, mask))


def coarse_edit(model: nn.Module, image: torch.Tensor, edited_coarse: torch.Tensor, mask: np.ndarray,
                fixed_levels: int, variants: int, seed: int) -> EditResult:
    """Figure 1: the coarse level of `image` (1, 3, H, W) replaced by `edited_coarse` (1, 3, h, w, the size
    `coarse_image` gives), then `resample_region` with those edited coarse levels kept."""
    edited = with_coarse_image(image, edited_coarse, model.levels, fixed_levels)
    return resample_region(model, image, edited, mask, fixed_levels, variants, seed)


def region_resample(model: nn.Module, image: torch.Tensor, mask: np.ndarray, fixed_levels: int, variants: int,
                    seed: int) -> EditResult:
    """Figure 9: keep the image's own coarse levels and resample the masked region."""
    return resample_region(model, image, image, mask, fixed_levels, variants, seed)


# ----- files ------------------------------------------------------------------------------------------------
def _open_rgb(path: str | Path) -> Image.Image:
    """An image file as a loaded RGB PIL image; FileNotFoundError / ValueError naming the fix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist: pass an existing PNG or JPEG")
    try:
        with Image.open(path) as opened:
            return opened.convert("RGB")
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
