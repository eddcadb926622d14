"""Per-image metrics of Table 1 on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from eval.metrics import (
    band_r2,
    bootstrap_mean_ci,
    contrast_per_image,
    count_parameters,
    psnr_per_image,
    rmse_per_image,
    ssim_per_image,
)
from training.flops import count_flops


def uint8_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Random images as the test split holds them: uint8 values, as floats in [0, 1]. (n, 3, size, size)"""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(20, 236, (n, 3, size, size), generator=generator).float() / 255


def test_rmse_is_zero_for_identical_images():
    images = uint8_images(3, 8)
    assert torch.equal(rmse_per_image(images, images.clone()), torch.zeros(3))


def test_rmse_of_uniform_offset_is_the_offset_on_the_255_scale():
    images = uint8_images(2, 8)
    rmse = rmse_per_image(images, images + 10 / 255)
    assert torch.allclose(rmse, torch.full((2,), 10.0), atol=1e-5)


def test_rmse_quantises_the_reconstruction_like_a_saved_image():
    images = uint8_images(2, 8)
    assert torch.equal(rmse_per_image(images, images + 0.3 / 255), torch.zeros(2))  # rounds back to the input
    assert torch.allclose(rmse_per_image(images, images + 0.7 / 255), torch.ones(2), atol=1e-5)  # rounds to +1


def test_rmse_clamps_the_reconstruction_to_the_valid_range():
    white = torch.ones(1, 3, 4, 4)
    assert rmse_per_image(white, white * 1.5).item() == 0.0


def test_rmse_of_one_changed_pixel_is_computed_per_image():
    reference = torch.zeros(2, 3, 2, 2)
    reconstruction = reference.clone()
    reconstruction[1, 0, 0, 0] = 51 / 255  # one of 12 values of the second image off by 51
    rmse = rmse_per_image(reference, reconstruction)
    assert rmse[0].item() == 0.0
    assert rmse[1].item() == pytest.approx(math.sqrt(51**2 / 12), rel=1e-6)


def test_rmse_rejects_mismatched_shapes_and_nan():
    images = uint8_images(2, 8)
    with pytest.raises(ValueError, match="same shape"):
        rmse_per_image(images, images[:1])
    with pytest.raises(ValueError, match="NaN"):
        rmse_per_image(images, images * math.nan)


def test_psnr_matches_its_definition_from_the_rmse():
    images = uint8_images(2, 16)
    reconstruction = images + 10 / 255
    expected = 20 * math.log10(255 / 10)  # PSNR = 20 log10(MAX / RMSE)
    assert torch.allclose(psnr_per_image(images, reconstruction), torch.full((2,), expected), atol=1e-3)


def test_ssim_is_one_for_identical_images_and_lower_for_noisy_ones():
    images = uint8_images(2, 16)
    assert torch.allclose(ssim_per_image(images, images.clone()), torch.ones(2), atol=1e-5)
    noisy = images + 0.2 * torch.randn(images.shape, generator=torch.Generator().manual_seed(1))
    assert (ssim_per_image(images, noisy) < 0.9).all()


@pytest.mark.parametrize("size", [8, 16, 64])
def test_psnr_and_ssim_equal_torchmetrics_which_they_replaced(size):
    # Our own PSNR and SSIM (torchmetrics costs each job ~7 s of imports) against torchmetrics' defaults, on
    # reconstructions that quantise, clamp and come in float64 like PCA's.
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    images = uint8_images(3, size)
    noise = 0.1 * torch.randn(images.shape, generator=torch.Generator().manual_seed(3))
    for reconstruction in (images + noise, (images + noise).double(), (0.5 * images + 0.3)):
        quantised = torch.round(reconstruction.clamp(0, 1) * 255) / 255
        expected_psnr = peak_signal_noise_ratio(quantised, images, data_range=1.0, reduction="none",
                                                dim=(1, 2, 3))
        expected_ssim = structural_similarity_index_measure(quantised, images, data_range=1.0, reduction="none")
        assert torch.allclose(psnr_per_image(images, reconstruction), expected_psnr, rtol=1e-6, atol=1e-5)
        assert torch.allclose(ssim_per_image(images, reconstruction), expected_ssim, rtol=0, atol=1e-6)


def test_band_r2_is_one_for_the_image_itself_lower_when_blurred_and_at_most_zero_when_grey():
    images = uint8_images(3, 16)
    assert torch.allclose(band_r2(images, images.clone()), torch.ones(3, 2), atol=1e-6)
    blurred = F.avg_pool2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), 3, stride=1)  # (3, 3, 16, 16)
    blurred_r2 = band_r2(images, blurred)  # (3, 2)
    assert (blurred_r2[:, 0] < 0.5).all() and (blurred_r2[:, 0] < blurred_r2[:, 1]).all()  # h0 suffers most
    grey = torch.full_like(images, 128 / 255)
    assert (band_r2(images, grey) <= 1e-6).all()  # no detail: every band scores 0
    noise = (images + 0.3 * torch.randn(images.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    assert (band_r2(images, noise)[:, 0] < 0).all()  # unaligned detail scores below a flat band


def test_band_r2_is_nan_for_a_flat_reference():
    flat = torch.full((1, 3, 8, 8), 0.5)
    assert torch.isnan(band_r2(flat, uint8_images(1, 8))).all()


def test_contrast_is_one_for_the_image_near_half_when_its_deviations_are_halved_and_zero_when_grey():
    images = uint8_images(4, 16)  # (4, 3, 16, 16)
    assert torch.allclose(contrast_per_image(images, images.clone()), torch.ones(4, dtype=torch.float64))
    per_image_mean = images.mean(dim=(1, 2, 3), keepdim=True)
    halved = per_image_mean + 0.5 * (images - per_image_mean)  # the mean kept, every deviation halved
    np.testing.assert_allclose(contrast_per_image(images, halved).numpy(), 0.5, atol=0.01)  # 8-bit rounding only
    grey = per_image_mean.expand_as(images)  # what a model that averages to grey outputs
    assert (contrast_per_image(images, grey) < 0.01).all()
    flat = torch.full((1, 3, 8, 8), 0.5)
    assert torch.isnan(contrast_per_image(flat, uint8_images(1, 8))).all()


def test_bootstrap_interval_contains_the_mean_and_is_seeded():
    values = np.random.default_rng(0).gamma(2.0, 10.0, size=500)
    low, high = bootstrap_mean_ci(values, samples=300, seed=3)
    assert low < values.mean() < high
    assert (low, high) == bootstrap_mean_ci(values, samples=300, seed=3)
    # The interval of the mean is about 2 x 1.96 standard errors wide.
    standard_error = values.std(ddof=1) / math.sqrt(values.size)
    assert 2.5 * standard_error < high - low < 5.5 * standard_error


def test_bootstrap_rejects_empty_values():
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_mean_ci(np.array([]), samples=10, seed=0)


def test_flops_and_parameters_of_a_linear_layer():
    layer = nn.Linear(12, 5)
    assert count_flops(layer, torch.zeros(1, 12)) == 2 * 12 * 5  # one multiply and one add per weight
    assert count_parameters(layer) == 12 * 5 + 5
