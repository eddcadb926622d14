"""Image editing with LapCVAE (paper section 5.2): Figure 1 (paint the coarse level) and Figure 9 (resample a region).

Both edits keep the latents of the `fixed_levels` coarsest pyramid levels of an image, sample the finer levels N
times (`partial_sample`), and Poisson-composite (Perez et al. 2003, `eval.poisson`) the masked region of every
sample into the reconstruction of the original image:
- coarse edit: the coarse levels come from an *edited* image: the user paints its coarse level (the Gaussian level
  the fixed Laplacian levels span) or a full image, and its coarse pyramid levels replace the original's;
- region resample: the coarse levels come from the image itself; only the region changes.
In pipeline mode (no --image) the commands pick a test face themselves: for the coarse edit one that wears
sunglasses, whose eye region is painted over with the skin tone of its cheeks and forehead (Figure 1, right).

This module holds the editing maths (masks, the coarse level, the two edits, compositing); the files an edit
reads and writes and Figures 1 and 9 are in `eval.editing_figures`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.progress import progress_bar
from eval.poisson import PoissonSolver
from models.pyramid import laplacian_pyramid, reconstruct

logger = logging.getLogger(__name__)



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
               for variant in progress_bar(variants, desc="poisson composite", unit="image", leave=False)]
    return torch.from_numpy(np.stack(blended)).float()  # (N, 3, H, W)


def check_model(model: nn.Module) -> None:
    if not hasattr(model, "partial_sample"):
        raise ValueError(f"editing needs a LapCVAE checkpoint (results/models/<res>/lapcvae/level0.pt), "
                         f"got a {getattr(model, 'kind', type(model).__name__)} model")


@torch.no_grad()
def resample_region(model: nn.Module, image: torch.Tensor, edited: torch.Tensor, mask: np.ndarray,
                    fixed_levels: int, variants: int, seed: int) -> EditResult:
    """Keep `edited`'s coarse latents, sample `variants` completions, composite their region into the
    reconstruction of `image`. image, edited: (1, 3, H, W) in [0, 1] at the model's resolution; mask (H, W)."""
    check_model(model)
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
