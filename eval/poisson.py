"""Poisson image editing (Perez, Gangnet and Blake 2003), the compositing the paper uses in section 5.2.

Inside the mask the result f solves the discrete Poisson equation with the source's gradients as guidance
field and the target as Dirichlet boundary (Perez et al., Eq. 7 of their paper):

    |N_p| f_p - sum_{q in N_p, q in mask} f_q = sum_{q in N_p, q not in mask} t_q + sum_{q in N_p} (s_p - s_q)

where N_p are the 4-neighbours of pixel p that lie inside the image: a neighbour outside the image is simply
absent (a Neumann condition at the image border). Outside the mask the result is the target.

The matrix depends only on the mask, so `PoissonSolver` builds and factorises it once (sparse LU) and then
blends any number of (source, target) pairs with that mask, one solve for all three channels.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

logger = logging.getLogger(__name__)

__all__ = ["PoissonSolver", "poisson_blend", "to_channels_last"]

# (row, column) steps to the 4-neighbours of a pixel.
NEIGHBOUR_STEPS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def _shifted(array: np.ndarray, step: tuple[int, int], fill: float | bool) -> np.ndarray:
    """array[p + step] at every pixel p of an (H, W, ...) array; `fill` where p + step leaves the image."""
    d_row, d_col = step
    height, width = array.shape[:2]
    out = np.full_like(array, fill)
    rows_out = slice(max(0, -d_row), height - max(0, d_row))
    cols_out = slice(max(0, -d_col), width - max(0, d_col))
    rows_in = slice(max(0, d_row), height - max(0, -d_row))
    cols_in = slice(max(0, d_col), width - max(0, -d_col))
    out[rows_out, cols_out] = array[rows_in, cols_in]
    return out


def _in_image(height: int, width: int, step: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: does pixel p + step lie inside the image?"""
    return _shifted(np.ones((height, width), dtype=bool), step, False)


def to_channels_last(image: np.ndarray, mask_shape: tuple[int, int], name: str) -> tuple[np.ndarray, bool]:
    """An RGB array as (H, W, 3) float64 and whether it came channels first, checked against the mask's (H, W)."""
    array = np.asarray(image, dtype=np.float64)
    if array.ndim == 3 and array.shape[:2] == mask_shape and array.shape[2] == 3:
        return array, False
    if array.ndim == 3 and array.shape[1:] == mask_shape and array.shape[0] == 3:
        return array.transpose(1, 2, 0), True
    raise ValueError(
        f"{name} has shape {array.shape} but the mask is {mask_shape}: give an RGB image of the mask's size, "
        f"as (H, W, 3) or (3, H, W)"
    )


class PoissonSolver:
    """The Poisson system of one mask, factorised once; `blend` then solves it for any source and target."""

    def __init__(self, mask: np.ndarray):
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"the mask must be a 2-D (H, W) array, got shape {mask.shape}")
        self.mask = mask.astype(bool)  # (H, W)
        height, width = self.mask.shape
        self.unknowns = int(self.mask.sum())
        # Each pixel of the mask is one unknown; -1 marks pixels outside it.
        self.index = np.full((height, width), -1, dtype=np.int64)
        self.index[self.mask] = np.arange(self.unknowns)
        self.neighbour_count = sum(_in_image(height, width, step) for step in NEIGHBOUR_STEPS)  # (H, W) 2..4
        # With no pixel outside the mask there is no Dirichlet boundary: f is only fixed up to a constant.
        self.whole_image = self.unknowns == height * width
        self._solve = None if self.unknowns == 0 or self.whole_image else self._factorise()

    def _factorise(self):
        height, width = self.mask.shape
        rows = [self.index[self.mask]]
        cols = [self.index[self.mask]]
        values = [self.neighbour_count[self.mask].astype(np.float64)]
        for step in NEIGHBOUR_STEPS:
            neighbour_index = _shifted(self.index, step, -1)  # (H, W), -1 outside the image or the mask
            coupled = self.mask & (neighbour_index >= 0)
            rows.append(self.index[coupled])
            cols.append(neighbour_index[coupled])
            values.append(np.full(int(coupled.sum()), -1.0))
        matrix = scipy.sparse.csc_matrix(
            (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
            shape=(self.unknowns, self.unknowns),
        )
        logger.debug("factorising the %d x %d Poisson system of a %dx%d mask", self.unknowns, self.unknowns,
                     height, width)
        return scipy.sparse.linalg.splu(matrix).solve  # solves all three channels' columns at once

    def right_hand_side(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """(unknowns, 3): guidance divergence plus the Dirichlet values of target on the mask's boundary."""
        height, width = self.mask.shape
        rhs = np.zeros((height, width, 3))
        for step in NEIGHBOUR_STEPS:
            inside = _in_image(height, width, step)[..., None]  # (H, W, 1)
            outside_mask = ~_shifted(self.mask, step, True)[..., None]  # in the image and not in the mask
            rhs += np.where(inside, source - _shifted(source, step, 0.0), 0.0)  # s_p - s_q, Neumann at the border
            rhs += np.where(outside_mask, _shifted(target, step, 0.0), 0.0)  # t_q on the boundary
        return rhs[self.mask]

    def blend(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """`source`'s masked region Poisson-composited into `target`, clipped to [0, 1], in target's layout."""
        source_hwc, _ = to_channels_last(source, self.mask.shape, "source")
        target_hwc, channels_first = to_channels_last(target, self.mask.shape, "target")
        result = target_hwc.copy()  # (H, W, 3)
        if self.whole_image:
            # Pure Neumann problem: the source's gradients everywhere, the free constant set by target's mean.
            logger.info("the mask covers the whole image: returning the source shifted to the target's mean")
            result = source_hwc - source_hwc.mean(axis=(0, 1)) + target_hwc.mean(axis=(0, 1))
        elif self._solve is not None:
            result[self.mask] = self._solve(self.right_hand_side(source_hwc, target_hwc))  # (unknowns, 3)
        result = np.clip(result, 0.0, 1.0)
        return result.transpose(2, 0, 1) if channels_first else result


def poisson_blend(source: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Poisson-composite the masked region of `source` into `target` (Perez et al. 2003).

    source, target: (H, W, 3) or (3, H, W) floats in [0, 1] (each in either layout; the result has target's).
    mask: (H, W), nonzero / True = region to take from the source. An empty mask returns target; a mask touching
    the image border treats outside-image neighbours as absent (Neumann). The result is clipped to [0, 1].
    """
    return PoissonSolver(mask).blend(source, target)
