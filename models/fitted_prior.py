"""A prior fitted after training: full-covariance Gaussians over the training split's posterior means.

Weights chosen for reconstruction leave the aggregate posterior (the posterior means of the training images) far
from the N(0, I) prior a model is sampled from (Eq. 5), so its decoder rarely sees prior samples like the codes it
learned on. The fitted prior replaces N(0, I) by one Gaussian N(m, C) per latent, fitted to those means:
- VAE, VAE/GAN, PixelVAE: one Gaussian over z, decoded as the model's own `sample` decodes (`decode_latents`).
- LapCVAE: one Gaussian per level k. With M (Eq. 13) it is fitted to r_k = mu_k - R_k(mu'_{k+1}), the posterior
  mean less M's prior mean of q_{k+1}'s re-encoding of the coarser levels' reconstruction; sampling runs `sample`'s
  coarse-to-fine pass with z_k = R_k(mu'_{k+1}) + r_k, r_k ~ N(m_k, C_k). So it replaces each level's learned
  latent distribution (N(0, I) at level K and without M; S_k's variances and the zero offset of Eq. 13 below K) by
  the aggregate posterior's, and keeps M's image-dependent mean, through which z_k follows the coarser latents the
  decoder is conditioned on (Eq. 11). Without M (or `against_m=False`) r_k = mu_k and levels are drawn independently.

The artefact (`save_prior` / `load_prior`) is a plain dict of tensors and primitives, loaded with weights_only=True:
    {"kind", "config" (the model's), "against_m", "images", "ridge", "seed", "levels": [int], "means": [(D_k,)],
     "covariances": [(D_k, D_k)]}  (float64; levels finest first, one entry for single-latent models)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.atomic import save_torch
from models.pyramid import laplacian_pyramid

logger = logging.getLogger(__name__)


class GaussianMoments:
    """Running count, sum and sum of outer products in float64: the mean and covariance of batches of rows."""

    def __init__(self, dim: int):
        self.count = 0
        self.total = torch.zeros(dim, dtype=torch.float64)  # (D,)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64)  # (D, D)

    def add(self, rows: torch.Tensor) -> None:
        rows = rows.detach().to("cpu", torch.float64)  # (B, D)
        self.count += len(rows)
        self.total += rows.sum(dim=0)
        self.outer += rows.T @ rows

    def mean_and_covariance(self, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(D,) mean and (D, D) unbiased covariance plus `ridge` times the mean variance on the diagonal."""
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 images, got {self.count}; pass more training images")
        mean = self.total / self.count
        covariance = (self.outer - self.count * torch.outer(mean, mean)) / (self.count - 1)
        covariance = 0.5 * (covariance + covariance.T)  # exact symmetry for the Cholesky factor
        jitter = ridge * float(covariance.diagonal().mean().clamp_min(1e-12))  # relative: scale-free
        return mean, covariance + jitter * torch.eye(len(mean), dtype=torch.float64)


@dataclass
class FittedPrior:
    """Per-level Gaussians (finest first) fitted to a model's posterior means; see the module docstring."""

    kind: str
    config: dict[str, Any]
    against_m: bool
    images: int
    ridge: float
    seed: int
    levels: list[int]
    means: list[torch.Tensor]  # (D_k,) float64 each
    covariances: list[torch.Tensor]  # (D_k, D_k) float64 each

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def check_model(self, model: nn.Module, source: str | Path = "the fitted prior") -> None:
        """Refuse a model other than the one the prior was fitted to (kind or config differ)."""
        if model.kind != self.kind or model.config != self.config:
            raise ValueError(f"{source} belongs to a {self.kind} model with config {self.config}, not "
                             f"to this {model.kind} model ({model.config}); run `lapcvae fit-prior` on its checkpoint")

    def draw(self, index: int, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """n rows (n, D) from the Gaussian at `index`, drawn on the CPU generator (the same rows on every device)."""
        factor = torch.linalg.cholesky(self.covariances[index])  # (D, D) lower, float64
        noise = torch.randn(n, len(self.means[index]), generator=generator, dtype=torch.float64)  # (n, D)
        return (self.means[index] + noise @ factor.T).float().to(device)


def is_pyramid(model: nn.Module) -> bool:
    return hasattr(model, "coarse_to_fine")


def _single_latent(model: nn.Module) -> None:
    if not (hasattr(model, "encoder") and hasattr(model, "decode_latents")):
        raise ValueError(f"a fitted prior needs a VAE-family model (an encoder and decode_latents, or LapCVAE); "
                         f"{model.kind} has neither")


def fitted_latents(model: nn.Module, images: torch.Tensor, against_m: bool = True) -> list[torch.Tensor]:
    """(B, 3, H, W) in [0, 1] -> the rows each Gaussian is fitted to, finest level first, each (B, D_k).

    Single-latent models: [mu]. LapCVAE: mu_k - R_k(mu'_{k+1}) at the levels with M (when against_m), else mu_k.
    """
    if not is_pyramid(model):
        _single_latent(model)
        return [model.encoder(images)[0]]
    pyramid = laplacian_pyramid(images, model.levels)
    rows: dict[int, torch.Tensor] = {}

    def posterior_means(k: int, upsampled: torch.Tensor | None, prior: tuple | None) -> torch.Tensor:
        mean = model.encode_level(k, pyramid[k], upsampled)[0]  # (B, n_z[k])
        rows[k] = mean if prior is None or not against_m else mean - prior[0]  # r_k
        return mean

    # Re-encoding as `rate` and `sample` do: M_k sees q_{k+1}'s code of what levels k+1..K reconstruct.
    model.coarse_to_fine(model.first_level, posterior_means, reencode_levels=range(model.first_level + 1,
                                                                                    model.levels))
    return [rows[k] for k in range(model.first_level, model.levels)]


def prior_levels(model: nn.Module) -> list[int]:
    """The latent levels of a model, finest first: [first_level..K] for LapCVAE, [0] otherwise."""
    return list(range(model.first_level, model.levels)) if is_pyramid(model) else [0]


def subset_indices(count: int, images: int | None, seed: int) -> np.ndarray:
    """Sorted row indices: all `count` rows, or `images` of them drawn without replacement from `seed`."""
    if images is None or images >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=images, replace=False))


@torch.no_grad()
def fit_prior(model: nn.Module, images: np.ndarray, *, batch_size: int, ridge: float, seed: int,
              max_images: int | None = None, against_m: bool = True,
              device: str | torch.device = "cpu") -> FittedPrior:
    """Fit the prior to a uint8 (N, 3, H, W) array (memory-mapped: read `batch_size` rows at a time).

    max_images: fit to a subset of that many images drawn with `seed` (all when None or larger than N).
    """
    resolution = int(model.config["resolution"])
    if images.ndim != 4 or images.shape[1:] != (3, resolution, resolution):
        raise ValueError(f"the images are {tuple(images.shape)}, the {model.kind} model takes (N, 3, {resolution}, "
                         f"{resolution}); pass the training split of the model's resolution")
    if not is_pyramid(model):
        _single_latent(model)
    model = model.to(device).eval()
    rows = subset_indices(len(images), max_images, seed)
    moments: list[GaussianMoments] | None = None
    for start in range(0, len(rows), batch_size):
        batch = torch.from_numpy(np.asarray(images[rows[start: start + batch_size]])).to(device).float() / 255.0
        latents = fitted_latents(model, batch, against_m)  # finest first, (B, D_k) each
        moments = moments or [GaussianMoments(latent.shape[1]) for latent in latents]
        for moment, latent in zip(moments, latents, strict=True):
            moment.add(latent)
    fitted = [moment.mean_and_covariance(ridge) for moment in moments or []]
    logger.info("fitted prior of a %s model to %d images: mean variance per level %s", model.kind, len(rows),
                [round(float(cov.diagonal().mean()), 4) for _, cov in fitted])
    return FittedPrior(kind=model.kind, config=dict(model.config), against_m=against_m and is_pyramid(model),
                       images=len(rows), ridge=ridge, seed=seed, levels=prior_levels(model),
                       means=[mean for mean, _ in fitted], covariances=[cov for _, cov in fitted])


@torch.no_grad()
def sample_latents(model: nn.Module, prior: FittedPrior, n: int, seed: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """n draws: (the latents fed to the decoder, finest level first, each (n, D_k); images (n, 3, H, W) in [0, 1])."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    if not is_pyramid(model):
        _single_latent(model)
        latents = prior.draw(0, n, generator, device)  # (n, latent_dim)
        return [latents], model.decode_latents(latents, seed)

    def choose(k: int, upsampled: torch.Tensor | None, m_prior: tuple | None) -> torch.Tensor:
        residual = prior.draw(k - model.first_level, n, generator, device)  # r_k (n, n_z[k])
        return residual if m_prior is None or not prior.against_m else m_prior[0] + residual  # R_k(mu'_{k+1}) + r_k

    state = model.coarse_to_fine(model.first_level, choose,
                                 reencode_levels=range(model.first_level + 1, model.levels))
    return state.latents, model.to_full_size(state.composed[0]).clamp(0.0, 1.0)


def sample_fitted(model: nn.Module, prior: FittedPrior, n: int, seed: int) -> torch.Tensor:
    """n images (n, 3, H, W) in [0, 1] from the fitted prior; the same seed gives the same images."""
    prior.check_model(model)
    return sample_latents(model, prior, n, seed)[1]


def save_prior(path: str | Path, prior: FittedPrior) -> Path:
    """Write the prior atomically (core/atomic.py)."""
    save_torch(prior.to_dict(), path)
    return Path(path)


def load_prior(path: str | Path) -> FittedPrior:
    """Read a prior written by `save_prior`; a missing or foreign file is refused with the fix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"fitted prior {path} does not exist: run `lapcvae fit-prior` on the checkpoint")
    try:
        fields = torch.load(path, map_location="cpu", weights_only=True)
        return FittedPrior(**fields)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise ValueError(f"{path} is not a fitted prior ({error}); delete it and rerun `lapcvae fit-prior`") from error
