"""Poisson image editing (eval/poisson.py) against the discrete equations it must solve, checked pixel by pixel."""

from __future__ import annotations

import numpy as np
import pytest

from eval.poisson import PoissonSolver, poisson_blend

HEIGHT, WIDTH = 12, 14


def smooth_image(seed: int, low: float = 0.35, high: float = 0.65) -> np.ndarray:
    """(H, W, 3) smooth random image in [low, high]: sums of a few low-frequency cosines."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:HEIGHT, :WIDTH] / max(HEIGHT, WIDTH)
    image = np.zeros((HEIGHT, WIDTH, 3))
    for _ in range(4):
        row_frequency, col_frequency, phase = rng.uniform(0.3, 2.0), rng.uniform(0.3, 2.0), rng.uniform(0, 6.3)
        wave = np.cos(2 * np.pi * (row_frequency * rows + col_frequency * cols) + phase)  # (H, W)
        image += wave[..., None] * rng.normal(size=3)  # a different weight per channel
    image = (image - image.min()) / (image.max() - image.min())
    return low + (high - low) * image


def interior_mask() -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[3:9, 4:11] = True
    mask[5, 2:4] = True  # a non-rectangular region
    return mask


def border_mask() -> np.ndarray:
    """Touches the top and left image borders, including the corner pixel."""
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[:7, :9] = True
    return mask


def poisson_residual(result: np.ndarray, source: np.ndarray, mask: np.ndarray) -> float:
    """max |sum_q (f_p - f_q) - sum_q (s_p - s_q)| over mask pixels p, q their in-image 4-neighbours."""
    worst = 0.0
    for row, col in zip(*np.nonzero(mask), strict=True):
        lhs, rhs = np.zeros(3), np.zeros(3)
        for d_row, d_col in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            q_row, q_col = row + d_row, col + d_col
            if 0 <= q_row < mask.shape[0] and 0 <= q_col < mask.shape[1]:
                lhs += result[row, col] - result[q_row, q_col]
                rhs += source[row, col] - source[q_row, q_col]
        worst = max(worst, float(np.abs(lhs - rhs).max()))
    return worst


@pytest.mark.parametrize("mask", [interior_mask(), border_mask()], ids=["interior", "border"])
def test_solution_satisfies_the_discrete_poisson_equation_and_keeps_target_outside(mask):
    source, target = smooth_image(1), smooth_image(2)
    result = poisson_blend(source, target, mask)
    assert result.min() > 0.0 and result.max() < 1.0  # nothing was clipped, so the equation must hold exactly
    assert poisson_residual(result, source, mask) < 1e-9
    np.testing.assert_array_equal(result[~mask], target[~mask])
    assert np.abs(result[mask] - target[mask]).max() > 0.01  # the source's structure did come in


@pytest.mark.parametrize("mask", [interior_mask(), border_mask()], ids=["interior", "border"])
def test_identical_source_and_target_give_target(mask):
    target = smooth_image(3)
    np.testing.assert_allclose(poisson_blend(target, target, mask), target, atol=1e-12)


@pytest.mark.parametrize("mask", [interior_mask(), border_mask()], ids=["interior", "border"])
def test_constant_offset_source_gives_target(mask):
    """Same gradients, boundary from target: the offset disappears, also with Neumann sides at the border."""
    target = smooth_image(4)
    source = target + np.array([0.2, -0.15, 0.1])
    np.testing.assert_allclose(poisson_blend(source, target, mask), target, atol=1e-12)


def test_linear_ramp_difference_gives_target_for_an_interior_mask():
    """f = s + harmonic(t - s on the boundary); a linear ramp is discretely harmonic, so f = s - ramp = t."""
    target = smooth_image(5)
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    ramp = (0.01 * rows - 0.02 * cols + 0.05)[..., None] * np.array([1.0, 0.5, -1.0])  # (H, W, 3)
    result = poisson_blend(target + ramp, target, interior_mask())
    np.testing.assert_allclose(result, target, atol=1e-12)


def test_linear_ramp_is_not_removed_where_the_mask_meets_the_image_border():
    """At the image border the missing neighbour makes the ramp's discrete Laplacian nonzero (Neumann side)."""
    target = smooth_image(5)
    cols = np.mgrid[:HEIGHT, :WIDTH][1]
    source = target + (0.02 * cols)[..., None]
    result = poisson_blend(source, target, border_mask())
    assert poisson_residual(result, source, border_mask()) < 1e-9
    assert np.abs(result - target).max() > 1e-3


def test_empty_mask_returns_target_in_its_layout():
    target = smooth_image(6).transpose(2, 0, 1)  # (3, H, W)
    result = poisson_blend(smooth_image(7), target, np.zeros((HEIGHT, WIDTH), dtype=bool))
    assert result.shape == target.shape
    np.testing.assert_array_equal(result, target)


def test_whole_image_mask_keeps_source_gradients_at_target_mean():
    target = smooth_image(8)
    source = target + 0.1
    np.testing.assert_allclose(poisson_blend(source, target, np.ones((HEIGHT, WIDTH))), target, atol=1e-12)


def test_channels_first_and_last_agree_and_keep_target_layout():
    source, target, mask = smooth_image(9), smooth_image(10), interior_mask()
    last = poisson_blend(source, target, mask)
    first = poisson_blend(source.transpose(2, 0, 1), target.transpose(2, 0, 1), mask)
    assert first.shape == (3, HEIGHT, WIDTH)
    np.testing.assert_allclose(first.transpose(1, 2, 0), last, atol=1e-12)


def test_output_is_clipped_to_unit_range():
    target = np.full((HEIGHT, WIDTH, 3), 0.9)
    source = np.zeros((HEIGHT, WIDTH, 3))
    source[4:8, 5:9] = 3.0  # a bright square: steep gradients push the solution above 1
    result = poisson_blend(source, target, interior_mask())
    assert result.max() == 1.0 and result.min() >= 0.0


def test_one_solver_blends_many_sources_like_separate_calls():
    mask, target = interior_mask(), smooth_image(11)
    solver = PoissonSolver(mask)
    for seed in (12, 13):
        source = smooth_image(seed)
        np.testing.assert_array_equal(solver.blend(source, target), poisson_blend(source, target, mask))


@pytest.mark.parametrize(
    ("source_shape", "target_shape", "mask_shape"),
    [((HEIGHT, WIDTH, 3), (HEIGHT + 1, WIDTH, 3), (HEIGHT, WIDTH)),
     ((HEIGHT, WIDTH, 4), (HEIGHT, WIDTH, 3), (HEIGHT, WIDTH)),
     ((HEIGHT, WIDTH, 3), (HEIGHT, WIDTH, 3), (HEIGHT, WIDTH - 1))],
)
def test_shape_mismatch_raises_value_error(source_shape, target_shape, mask_shape):
    with pytest.raises(ValueError, match="mask"):
        poisson_blend(np.zeros(source_shape), np.zeros(target_shape), np.ones(mask_shape, dtype=bool))


def test_mask_must_be_two_dimensional():
    with pytest.raises(ValueError, match="2-D"):
        PoissonSolver(np.ones((HEIGHT, WIDTH, 3), dtype=bool))
