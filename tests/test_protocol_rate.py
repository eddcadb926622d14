"""Rate in nats per image: the posterior's KL to the prior, for the VAE and for LapCVAE's levels."""

from __future__ import annotations

import torch

from baselines.vae import VAE
from models.blocks import kl_diagonal_gaussians
from models.lapcvae import LapCVAE
from models.pyramid import laplacian_pyramid
from studies.rate_distortion import rate_per_image, scaled

TINY = {"resolution": 16, "levels": 2, "latent_dims": [4, 3], "kl_weights": [0.1, 1.0], "widths": [4, 8],
        "feature_size": 2, "m_hidden": 6}


def test_vae_rate_is_the_encoder_kl_to_the_standard_normal():
    torch.manual_seed(0)
    model = VAE(resolution=16, latent_dim=5, widths=[4, 8], kl_weight=1.0).eval()
    images = torch.rand(3, 3, 16, 16)
    mean, log_var = model.encoder(images)
    expected = 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).sum(dim=1)  # closed form, independent
    assert torch.allclose(rate_per_image(model, images).float(), expected.detach(), atol=1e-5)


def test_lapcvae_rate_sums_the_levels_kl():
    torch.manual_seed(0)
    images = torch.rand(3, 3, 16, 16)
    without_m = LapCVAE(**TINY, use_m=False).eval()
    pyramid = laplacian_pyramid(images, 2)
    with torch.no_grad():
        coarse_mean, coarse_log_var = without_m.encode_level(1, pyramid[1], None)
        coarse = without_m.decode_level(1, [coarse_mean])  # level 1 reconstructs b_1 from its posterior mean
        fine = without_m.encode_level(0, pyramid[0], without_m._upsample_to(coarse, 0))
        expected = kl_diagonal_gaussians(coarse_mean, coarse_log_var) + kl_diagonal_gaussians(*fine)
    assert torch.allclose(rate_per_image(without_m, images).float(), expected, atol=1e-4)
    with_m = LapCVAE(**TINY, use_m=True).eval()
    rate = rate_per_image(with_m, images)
    assert rate.shape == (3,) and torch.isfinite(rate).all() and (rate > 0).all()


def test_sweep_scales_every_level_weight():
    params = {"lapcvae": {"16": {"kl_weights": [0.1, 1.0]}}, "vae": {"16": {}}}
    assert scaled(params, "lapcvae", 16, 10.0)["lapcvae"]["16"]["kl_weights"] == [1.0, 10.0]
    assert scaled(params, "vae", 16, 10.0) is None  # no KL weight key: left out, not guessed
