"""The test -ELBO on the common likelihood (eval/elbo.py): the discretised Gaussian against scipy, each model's
-ELBO against its rate and distortion computed independently, units, and training lowering it."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import with_random_band_outputs
from scipy.stats import norm

from baselines.pixelvae import PixelVAE
from baselines.vae import VAE
from eval.elbo import bits_per_dimension, discretised_gaussian_nll, negative_elbo
from models import checkpoint
from models.lapcvae import LapCVAE
from models.pyramid import laplacian_pyramid, upsample
from workflow.commands.evaluate import evaluate_main

SIGMA = 0.0707106781
SIZE = 16


def uint8_images(n: int, seed: int = 0) -> torch.Tensor:
    """(n, 3, 16, 16) 8-bit images as [0, 1] floats, every level 0..255 possible (edges included)."""
    levels = torch.randint(0, 256, (n, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(seed))
    return levels.float() / 255


def scipy_nll(images: torch.Tensor, means: torch.Tensor, sigma: float) -> np.ndarray:
    """-log P per image from scipy's normal CDF: bins of width 1/255 around each level, the end bins open."""
    x, m = images.double().numpy(), means.double().numpy()
    upper = np.where(x >= 1.0, np.inf, x + 0.5 / 255)
    lower = np.where(x <= 0.0, -np.inf, x - 0.5 / 255)
    # P = cdf(upper) - cdf(lower) = sf(lower) - sf(upper), in logs on the side of the mean where both are accurate
    with np.errstate(divide="ignore"):
        log_cdf = norm.logcdf(upper, m, sigma) + np.log1p(-np.exp(norm.logcdf(lower, m, sigma)
                                                                  - norm.logcdf(upper, m, sigma)))
        log_sf = norm.logsf(lower, m, sigma) + np.log1p(-np.exp(norm.logsf(upper, m, sigma)
                                                                - norm.logsf(lower, m, sigma)))
    return -np.where(x > m, log_sf, log_cdf).reshape(len(x), -1).sum(axis=1)


def hand_kl(mean: torch.Tensor, log_var: torch.Tensor, prior_mean: torch.Tensor | None = None,
            prior_log_var: torch.Tensor | None = None) -> np.ndarray:
    """KL(N(mean, exp(log_var)) || N(prior)) per row, summed over dims, in numpy."""
    mu, lv = mean.double().numpy(), log_var.double().numpy()
    pm = np.zeros_like(mu) if prior_mean is None else prior_mean.double().numpy()
    plv = np.zeros_like(lv) if prior_log_var is None else prior_log_var.double().numpy()
    return 0.5 * (plv - lv + (np.exp(lv) + (mu - pm) ** 2) / np.exp(plv) - 1.0).sum(axis=1)


def test_discretised_gaussian_matches_scipy_and_sums_to_one_over_the_levels():
    images = uint8_images(4)
    means = images + 0.1 * torch.randn(images.shape, generator=torch.Generator().manual_seed(1))
    means[0] = 3.0  # far from every level: tail bins must stay finite
    ours = discretised_gaussian_nll(images, means, SIGMA).numpy()
    assert np.all(np.isfinite(ours))
    np.testing.assert_allclose(ours[1:], scipy_nll(images[1:], means[1:], SIGMA), rtol=1e-7)  # scipy: CDF cancellation
    # The 256 probabilities of one value sum to 1, whatever the mean (inside, at an edge, outside [0, 1]).
    every_level = (torch.arange(256, dtype=torch.float64) / 255).view(256, 1, 1, 1).expand(256, 3, 1, 1)
    for mean in (0.5, 0.0, 1.2, -0.3):
        nll = discretised_gaussian_nll(every_level, torch.full_like(every_level, mean), SIGMA)  # 3 equal channels
        assert torch.exp(-nll / 3).sum().item() == pytest.approx(1.0, abs=1e-9)


def test_discretised_nll_is_the_continuous_one_plus_the_bin_width_away_from_the_edges():
    """Inside (0, 1) and for sigma >> 1/255: -log P ~ -log N(x; m, sigma^2) - log(1/255), i.e. the common loss
    scale's SSE / (2 sigma^2) plus a constant per value."""
    images = torch.full((2, 3, SIZE, SIZE), 128 / 255)
    means = images + 0.05 * torch.randn(images.shape, generator=torch.Generator().manual_seed(2))
    sse = (means - images).double().pow(2).flatten(1).sum(1)
    dims = 3 * SIZE * SIZE
    continuous = sse / (2 * SIGMA**2) + dims * math.log(math.sqrt(2 * math.pi) * SIGMA * 255)
    torch.testing.assert_close(discretised_gaussian_nll(images, means, SIGMA), continuous, rtol=1e-4, atol=0)


def tiny_vae(seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(resolution=SIZE, latent_dim=4, widths=[4, 8], kl_weight=2 * SIGMA**2).eval()


def test_vae_elbo_is_its_kl_plus_the_likelihood_of_its_decoded_draw():
    model, images = tiny_vae(), uint8_images(5)
    terms = negative_elbo(model, images, SIGMA, torch.Generator().manual_seed(3))
    with torch.no_grad():  # independently: the same draws from the same stream, decoded, scored by scipy
        mean, log_var = model.encoder(images)
        eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(3))
        decoded = model.decoder(mean + torch.exp(0.5 * log_var) * eps)
    kl, distortion = hand_kl(mean, log_var), scipy_nll(images, decoded, SIGMA)
    np.testing.assert_allclose(terms["nelbo_kl"].numpy(), kl, rtol=1e-5, atol=1e-5)  # float32 KL
    np.testing.assert_allclose(terms["nelbo_distortion"].numpy(), distortion, rtol=1e-7)
    np.testing.assert_allclose(terms["nelbo"].numpy(), kl + distortion, rtol=1e-7)


@pytest.mark.parametrize("use_m", [True, False])
def test_lapcvae_elbo_is_the_levels_kls_plus_the_finest_reconstruction_term(use_m):
    """Eqs. 7, 9, 11, 13 by hand: draw z_K, compose, draw z_k given u(x_{k+1}), KL against M_k of the re-encoded
    generated level (or N(0, I)), and score only the composed full image."""
    torch.manual_seed(0)
    model = with_random_band_outputs(LapCVAE(resolution=SIZE, levels=3, latent_dims=[6, 5, 4],
                                             kl_weights=[0.01, 0.1, 1.0], widths=[4, 8], feature_size=2,
                                             m_hidden=8, use_m=use_m)).eval()
    images = uint8_images(4)
    terms = negative_elbo(model, images, SIGMA, torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(5)
    pyramid, latents, kl = laplacian_pyramid(images, 3), [], np.zeros(len(images))
    composed, reencoded = None, None
    with torch.no_grad():
        for k in (2, 1, 0):
            upsampled = None if k == 2 else upsample(composed, (SIZE // 2**k, SIZE // 2**k))
            mean, log_var = model.encode_level(k, pyramid[k], upsampled)
            prior = model.level(k).prior_net(reencoded) if use_m and k < 2 else (None, None)
            kl += hand_kl(mean, log_var, *prior)
            latents.insert(0, mean + torch.exp(0.5 * log_var) * torch.randn(mean.shape, generator=generator))
            high = model.decode_level(k, latents, upsampled)
            composed = high if upsampled is None else high + upsampled
            reencoded = model.encode_level(k, high, upsampled)
    distortion = scipy_nll(images, composed, SIGMA)
    np.testing.assert_allclose(terms["nelbo_kl"].numpy(), kl, rtol=1e-5, atol=1e-5)  # float32 KL
    np.testing.assert_allclose(terms["nelbo"].numpy(), kl + distortion, rtol=1e-6)


def test_pixelvae_elbo_scores_its_teacher_forced_prediction():
    torch.manual_seed(0)
    model = PixelVAE(resolution=SIZE, latent_dim=4, widths=[4, 8], condition_channels=3, pixelcnn_hidden=6,
                     pixelcnn_layers=3, first_kernel=5, kernel=3, kl_weight=2 * SIGMA**2,
                     sample_temperature=0.5).eval()
    images = uint8_images(3)
    terms = negative_elbo(model, images, SIGMA, torch.Generator().manual_seed(4))
    with torch.no_grad():
        mean, log_var = model.encoder(images)
        eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(4))
        predicted = model.pixelcnn(images, model.decoder(mean + torch.exp(0.5 * log_var) * eps))
    expected = hand_kl(mean, log_var) + scipy_nll(images, predicted, SIGMA)
    np.testing.assert_allclose(terms["nelbo"].numpy(), expected, rtol=1e-7)


def test_training_lowers_the_elbo():
    """A VAE trained on its loss (kl_weight = 2 sigma^2: the -ELBO up to the discretisation) scores a lower
    -ELBO on held-out images than the same network untrained."""
    generator = torch.Generator().manual_seed(0)
    # smooth faces-like images: a random colour per image plus a vertical gradient
    colours = torch.rand(96, 3, 1, 1, generator=generator) * 0.6 + 0.2
    ramp = torch.linspace(-0.15, 0.15, SIZE).view(1, 1, SIZE, 1)
    images = torch.round((colours + ramp).expand(96, 3, SIZE, SIZE).clamp(0, 1) * 255) / 255
    train, held_out = images[:64], images[64:]
    model = tiny_vae()

    def score() -> float:
        model.eval()
        return negative_elbo(model, held_out, SIGMA, torch.Generator().manual_seed(1))["nelbo"].mean().item()

    untrained = score()
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(150):
        batch = train[(step * 16) % 64:(step * 16) % 64 + 16]
        optimizer.zero_grad()
        model.training_step(batch).objectives["vae"].backward()
        optimizer.step()
    trained = score()
    assert trained < untrained - 0.1 * abs(untrained)


def test_evaluate_writes_the_elbo_in_nats_and_bits_per_dimension(tmp_path):
    model = tiny_vae()
    checkpoint.save_model(tmp_path / "model.pt", model, meta={"train_seconds": 1.0, "device": "cpu"})
    np.save(tmp_path / "test.npy", (uint8_images(6) * 255).round().to(torch.uint8).numpy())
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"device": "cpu", "seed": 7,
                                        "eval": {"batch_size": 4, "bootstrap_samples": 50, "samples": 2}}))
    out_dir, per_image_path = tmp_path / "eval" / "16" / "vae", tmp_path / "16_vae.csv"
    evaluate_main(["--params", str(override), "--res", str(SIZE), "--model", "vae", "--checkpoint",
                   str(tmp_path / "model.pt"), "--test", str(tmp_path / "test.npy"), "--out-dir", str(out_dir),
                   "--per-image", str(per_image_path)])
    summary = json.loads((out_dir / "summary.json").read_text())
    per_image = pd.read_csv(per_image_path)
    dims = 3 * SIZE * SIZE
    assert summary["nelbo_sigma"] == pytest.approx(SIGMA)
    assert summary["nelbo_mean"] == pytest.approx(per_image["nelbo"].mean())
    np.testing.assert_allclose(per_image["nelbo"], per_image["nelbo_kl"] + per_image["nelbo_distortion"])
    assert summary["nelbo_bits_per_dim"] == pytest.approx(summary["nelbo_mean"] / (dims * math.log(2)))
    assert bits_per_dimension(dims * math.log(2), dims) == pytest.approx(1.0)
    # one posterior draw per image: the KL term is the rate (a one-level posterior's KL needs no draw)
    np.testing.assert_allclose(per_image["nelbo_kl"], per_image["rate"], rtol=1e-5)
    assert summary["rmse_mean"] is not None and "reconstruction_withheld" not in summary
