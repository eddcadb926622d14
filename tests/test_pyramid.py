"""models.pyramid against a direct numpy implementation of the Burt-Adelson binomial pyramid (Eqs. 6-7)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import pyramid
from models.pyramid import downsample, laplacian_pyramid, reconstruct, upsample

# Applied as a full 5x5 kernel, not separably, so that it checks the separable code independently.
KERNEL_2D = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256.0


def reference_blur(image: np.ndarray) -> np.ndarray:
    """(C, H, W) float64 -> same size: 5x5 binomial, reflect-101 borders (numpy's 'reflect'), tap by tap."""
    channels, height, width = image.shape
    padded = np.pad(image, ((0, 0), (2, 2), (2, 2)), mode="reflect")
    out = np.zeros_like(image)
    for dy in range(5):
        for dx in range(5):
            out += KERNEL_2D[dy, dx] * padded[:, dy : dy + height, dx : dx + width]
    return out


def reference_down(image: np.ndarray) -> np.ndarray:
    return reference_blur(image)[:, ::2, ::2]


def reference_up(image: np.ndarray) -> np.ndarray:
    channels, height, width = image.shape
    grid = np.zeros((channels, 2 * height, 2 * width))
    grid[:, ::2, ::2] = image
    return 4.0 * reference_blur(grid)


def reference_pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    blurred = [image]
    for _ in range(levels - 1):
        blurred.append(reference_down(blurred[-1]))
    details = [blurred[k] - reference_up(blurred[k + 1]) for k in range(levels - 1)]  # Eq. 6
    return [*details, blurred[-1]]


def random_images(shape: tuple[int, ...], dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


SIZES_AND_LEVELS = [((16, 16), 1), ((16, 16), 3), ((32, 48), 4), ((64, 64), 4), ((24, 8), 4)]


@pytest.mark.parametrize("size,levels", SIZES_AND_LEVELS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pyramid_matches_numpy_reference_and_inverts(size, levels, dtype):
    images = random_images((2, 3, *size), dtype)
    levels_out = laplacian_pyramid(images, levels)
    assert len(levels_out) == levels
    tolerance = 1e-12 if dtype == torch.float64 else 2e-6
    for index in range(images.shape[0]):
        expected = reference_pyramid(images[index].double().numpy(), levels)
        for k, (got, want) in enumerate(zip(levels_out, expected, strict=True)):
            assert got.dtype == dtype
            assert got.shape[-2:] == (size[0] // 2**k, size[1] // 2**k)
            np.testing.assert_allclose(got[index].double().numpy(), want, atol=tolerance, rtol=0)
    rebuilt = reconstruct(levels_out)  # Eq. 7
    assert rebuilt.dtype == dtype
    # One subtraction and one addition per level: a few units in the last place of values in [0, 1].
    assert (rebuilt - images).abs().max().item() <= 4 * torch.finfo(dtype).eps


@pytest.mark.parametrize("shape", [(1, 1, 7, 5), (2, 3, 9, 12), (1, 2, 3, 3), (1, 1, 2, 1), (1, 1, 1, 1)])
def test_down_and_up_match_reference_on_any_size(shape):
    images = random_images(shape, torch.float64, seed=3)
    for index in range(shape[0]):
        image = images[index].numpy()
        np.testing.assert_allclose(downsample(images)[index].numpy(), reference_down(image), atol=1e-12)
        np.testing.assert_allclose(upsample(images)[index].numpy(), reference_up(image), atol=1e-12)


def test_upsample_to_odd_size_crops_the_even_result():
    coarse = random_images((1, 3, 4, 3), torch.float64)
    np.testing.assert_array_equal(upsample(coarse, (7, 5)).numpy(), upsample(coarse)[..., :7, :5].numpy())
    with pytest.raises(ValueError, match="2n or 2n-1"):
        upsample(coarse, (10, 6))


@pytest.mark.parametrize("stride", [1, 2])
def test_conv_and_slice_paths_agree(stride):
    images = random_images((2, 3, 11, 16), torch.float64, seed=5)
    by_conv = pyramid._blur(images, gain=2.0, stride=stride, method="conv")
    by_slices = pyramid._blur(images, gain=2.0, stride=stride, method="slices")
    np.testing.assert_allclose(by_conv.numpy(), by_slices.numpy(), atol=1e-13)


def test_binomial_blur_keeps_constants_and_removes_nyquist():
    constant = torch.full((1, 3, 16, 16), 0.25)
    assert torch.equal(downsample(constant), torch.full((1, 3, 8, 8), 0.25))
    assert torch.equal(upsample(downsample(constant)), constant)
    stripes = torch.tensor([1.0, -1.0]).repeat(8).view(1, 1, 1, 16).expand(1, 1, 16, 16)
    # [1, 4, 6, 4, 1] has a zero at the Nyquist frequency: alternating columns vanish after the blur.
    assert downsample(stripes.contiguous()).abs().max().item() == 0.0


def test_indivisible_size_is_a_clear_error():
    with pytest.raises(ValueError, match=r"divisible by 2\^\(levels-1\) = 8"):
        laplacian_pyramid(torch.zeros(1, 3, 100, 100), 4)
    with pytest.raises(ValueError, match="positive integer"):
        laplacian_pyramid(torch.zeros(1, 3, 16, 16), 0)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        downsample(torch.zeros(3, 16, 16))
    with pytest.raises(TypeError, match="floating-point"):
        downsample(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="empty"):
        reconstruct([])


def test_gradients_flow_and_bfloat16_runs():
    images = random_images((2, 3, 16, 16), torch.float32).requires_grad_()
    reconstruct(laplacian_pyramid(images, 3)).sum().backward()
    torch.testing.assert_close(images.grad, torch.ones_like(images))  # the round trip is the identity map
    low_precision = laplacian_pyramid(images.detach().bfloat16(), 3)
    assert all(level.dtype == torch.bfloat16 for level in low_precision)
