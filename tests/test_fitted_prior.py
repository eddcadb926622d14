"""The prior fitted to the training split's posterior means (models/fitted_prior.py, `lapcvae fit-prior`): its
statistics against numpy's, its samples' statistics, samples closer to the data than N(0, I)'s when the aggregate
posterior is far from N(0, I), and the command's refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from baselines.vae import VAE
from data.faces import draw_face
from data.prepare import resize
from models.checkpoint import save_model
from models.fitted_prior import (
    fit_prior,
    fitted_latents,
    load_prior,
    sample_fitted,
    sample_latents,
    subset_indices,
)
from models.lapcvae import JointTrainable, LapCVAE
from models.pyramid import laplacian_pyramid
from training.loop import fit
from workflow.commands.prior import fit_prior_main

SIZE = 16  # px: the faces are shrunk so that the models train in seconds


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    """72 synthetic faces (uint8 (72, 3, 16, 16)): the head's crop of `draw_face`, resized as `prepare` does."""
    crops = np.stack([draw_face(0, index)[0][40:188, 15:163] for index in range(72)])  # (72, 148, 148, 3)
    return resize(torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous(), SIZE).numpy()


def train(trainable: torch.nn.Module, images: np.ndarray, folder: Path, epochs: int,
          export: torch.nn.Module | None = None) -> None:
    """`epochs` passes of the shared training loop, in batches of 24."""
    settings = {"lr": 3e-3, "batch_size": 24, "epochs": epochs, "log_every": 10, "bf16": False, "grad_clip": None}
    fit(trainable, images, settings=settings, seed=0, output=folder / "model.pt", export=export, device="cpu")


@pytest.fixture(scope="module")
def trained_vae(faces: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> VAE:
    torch.manual_seed(0)
    model = VAE(resolution=SIZE, latent_dim=8, widths=[8, 16], kl_weight=0.01)
    train(model, faces[:48], tmp_path_factory.mktemp("vae"), epochs=20)
    return model.eval()


def trained_lapcvae(faces: np.ndarray, folder: Path, use_m: bool) -> LapCVAE:
    torch.manual_seed(0)
    model = LapCVAE(resolution=SIZE, levels=3, latent_dims=[6, 5, 4], kl_weights=[0.01, 0.01, 0.01], widths=[4, 8],
                    feature_size=2, m_hidden=8, use_m=use_m)
    train(JointTrainable(model), faces[:48], folder, epochs=5, export=model)
    return model.eval()


@pytest.fixture(scope="module")
def lapcvae_models(faces: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> dict[str, LapCVAE]:
    return {name: trained_lapcvae(faces, tmp_path_factory.mktemp(name), use_m=name == "lapcvae")
            for name in ("lapcvae", "lapcvae_nom")}


def model_named(name: str, trained_vae: VAE, lapcvae_models: dict[str, LapCVAE]) -> torch.nn.Module:
    return trained_vae if name == "vae" else lapcvae_models[name]


def as_float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(images)).float() / 255.0


@pytest.mark.parametrize("name", ["vae", "lapcvae", "lapcvae_nom"])
@pytest.mark.parametrize("ridge", [0.0, 1e-2])
def test_fitted_gaussians_match_numpy_on_the_encoded_means(name: str, ridge: float, faces: np.ndarray,
                                                           trained_vae: VAE, lapcvae_models: dict) -> None:
    model = model_named(name, trained_vae, lapcvae_models)
    train_images = faces[:48]
    # batches of 20 do not divide 48: the last batch is short
    prior = fit_prior(model, train_images, batch_size=20, ridge=ridge, seed=0)
    with torch.no_grad():
        rows = [latent.double().numpy() for latent in fitted_latents(model, as_float(train_images))]
    assert len(prior.means) == len(rows) == (1 if name == "vae" else 3)
    for mean, covariance, latent in zip(prior.means, prior.covariances, rows, strict=True):
        expected = np.cov(latent, rowvar=False)
        expected += ridge * np.diag(expected).mean() * np.eye(len(expected))
        np.testing.assert_allclose(mean.numpy(), latent.mean(axis=0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(covariance.numpy(), expected, rtol=1e-4, atol=1e-6)
        assert float(np.diag(expected).min()) > 0  # a real spread, not a degenerate code


def test_lapcvae_levels_are_fitted_to_the_posterior_means_less_m_prior_mean(lapcvae_models: dict,
                                                                            faces: np.ndarray) -> None:
    model = lapcvae_models["lapcvae"]
    images = as_float(faces[:16])
    with torch.no_grad():
        means = model.encode(images)  # [z_0, z_1, z_2] posterior means
        residuals = fitted_latents(model, images)
        # M_k's mean of q_{k+1}'s re-encoding of what the coarser levels reconstruct (Eq. 13; as `rate` computes)
        pyramid = laplacian_pyramid(images, model.levels)
        state = model.coarse_to_fine(0, model._posterior_means(pyramid), reencode_levels=[1, 2])
        m_means = [model.level(k).prior(state.reencoded[k + 1])[0] for k in range(model.coarsest)]
    torch.testing.assert_close(residuals[-1], means[-1])  # level K: N(0, I) in the paper, no M
    for k in range(model.coarsest):
        torch.testing.assert_close(residuals[k], means[k] - m_means[k])
        assert (residuals[k] - means[k]).abs().max() > 1e-3  # M moved it
    without = lapcvae_models["lapcvae_nom"]
    with torch.no_grad():
        for latent, mean in zip(fitted_latents(without, images), without.encode(images), strict=True):
            torch.testing.assert_close(latent, mean)


def test_a_seeded_subset_is_fitted_when_images_are_capped(trained_vae: VAE, faces: np.ndarray) -> None:
    train_images = faces[:48]
    prior = fit_prior(trained_vae, train_images, batch_size=7, ridge=0.0, seed=3, max_images=20)
    rows = subset_indices(48, 20, 3)
    assert prior.images == 20 and len(set(rows)) == 20
    assert not np.array_equal(rows, subset_indices(48, 20, 4))  # the seed picks the subset
    with torch.no_grad():
        latent = trained_vae.encoder(as_float(train_images[rows]))[0].double().numpy()
    np.testing.assert_allclose(prior.means[0].numpy(), latent.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(prior.covariances[0].numpy(), np.cov(latent, rowvar=False), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["vae", "lapcvae_nom"])
def test_samples_have_the_fitted_statistics(name: str, trained_vae: VAE, lapcvae_models: dict,
                                            faces: np.ndarray) -> None:
    model = model_named(name, trained_vae, lapcvae_models)
    prior = fit_prior(model, faces[:48], batch_size=16, ridge=1e-3, seed=0)
    n = 20000
    latents, images = sample_latents(model, prior, n, seed=1)
    assert images.shape == (n, 3, SIZE, SIZE) and images.min() >= 0 and images.max() <= 1
    for latent, mean, covariance in zip(latents, prior.means, prior.covariances, strict=True):
        drawn = latent.double()
        scale = covariance.diagonal().sqrt()  # (D,)
        # 5 standard errors of the mean; the correlation matrix to 0.05 (its standard error is about 0.007)
        assert ((drawn.mean(dim=0) - mean).abs() < 5 * scale / n**0.5).all()
        drawn_covariance = torch.cov(drawn.T)
        torch.testing.assert_close(drawn_covariance / torch.outer(scale, scale),
                                   covariance / torch.outer(scale, scale), rtol=0, atol=0.05)
    first = sample_fitted(model, prior, 8, seed=1)
    assert torch.equal(sample_fitted(model, prior, 8, seed=1), first)  # seeded: the same images
    assert not torch.equal(sample_fitted(model, prior, 8, seed=2), first)


def scaled_encoder(model: VAE, factor: float) -> VAE:
    """The same VAE with its posterior means multiplied by `factor` and its decoder's input divided by it: the
    same reconstructions, an aggregate posterior `factor` times wider than the trained one."""
    scaled = VAE.from_config(model.config)
    scaled.load_state_dict(model.state_dict())
    latent_dim = model.latent_dim
    with torch.no_grad():
        scaled.encoder.to_stats.weight[:latent_dim] *= factor
        scaled.encoder.to_stats.bias[:latent_dim] *= factor
        scaled.decoder.from_latent[0].weight /= factor
    return scaled.eval()


def test_fitted_prior_samples_resemble_the_data_where_n01_samples_do_not(trained_vae: VAE,
                                                                          faces: np.ndarray) -> None:
    model = scaled_encoder(trained_vae, 20.0)
    test = as_float(faces[48:])
    torch.testing.assert_close(model.reconstruct(test), trained_vae.reconstruct(test), rtol=0, atol=1e-4)
    prior = fit_prior(model, faces[:48], batch_size=16, ridge=1e-4, seed=0)
    n = 400
    fitted, standard = sample_fitted(model, prior, n, seed=0), model.sample(n, seed=0)

    def distances(samples: torch.Tensor) -> tuple[float, float]:
        """RMS distance of the mean images and of the per-pixel standard deviations to the test images'."""
        mean_distance = (samples.mean(dim=0) - test.mean(dim=0)).pow(2).mean().sqrt()
        std_distance = (samples.std(dim=0) - test.std(dim=0)).pow(2).mean().sqrt()
        return float(mean_distance), float(std_distance)

    fitted_mean, fitted_std = distances(fitted)
    standard_mean, standard_std = distances(standard)
    assert fitted_mean < 0.75 * standard_mean and fitted_std < 0.75 * standard_std


def test_fit_prior_command_writes_the_prior_and_refuses_a_resolution_mismatch(
        trained_vae: VAE, faces: np.ndarray, tmp_path: Path) -> None:
    checkpoint = tmp_path / "vae.pt"
    save_model(checkpoint, trained_vae)
    train_path = tmp_path / "train.npy"
    np.save(train_path, faces[:48])
    out = tmp_path / "priors" / "vae.pt"
    fit_prior_main(["--checkpoint", str(checkpoint), "--data", str(train_path), "--out", str(out)])
    prior = load_prior(out)
    expected = fit_prior(trained_vae, faces[:48], batch_size=256, ridge=prior.ridge, seed=0)
    torch.testing.assert_close(prior.means[0], expected.means[0])
    torch.testing.assert_close(prior.covariances[0], expected.covariances[0])

    larger = tmp_path / "train32.npy"
    np.save(larger, np.repeat(np.repeat(faces[:48], 2, axis=2), 2, axis=3))  # (48, 3, 32, 32)
    refused = tmp_path / "refused.pt"
    with pytest.raises(ValueError, match=r"holds 32x32 px images.*16 px model.*train\.npy"):
        fit_prior_main(["--checkpoint", str(checkpoint), "--data", str(larger), "--out", str(refused)])
    assert not refused.exists()

    other = VAE(resolution=SIZE, latent_dim=4, widths=[8, 16], kl_weight=0.01)
    with pytest.raises(ValueError, match="belongs to a vae model"):
        sample_fitted(other, prior, 2, seed=0)
