"""The test -ELBO of every VAE-family model on one likelihood, in nats per image and bits per dimension.

The likelihood. Every model is scored with the same decoder distribution, whatever it trained with: each of the
D = 3 H W channel values of an 8-bit image, x_i in {0, 1/255, ..., 1}, is drawn independently from a Gaussian of
mean m_i (the model's decoder output for that value, unclamped) and fixed standard deviation sigma on the [0, 1]
scale (`eval.elbo_sigma`, by default sqrt(0.01 / 2) = 0.0707, 18.0 grey levels: the common loss scale's
kl_weight 0.01 = 2 sigma^2 of params.yaml), discretised to the 256 levels:
    P(x_i | m_i) = Phi((x_i + 1/510 - m_i) / sigma) - Phi((x_i - 1/510 - m_i) / sigma),
with the first and last bins open (x_i = 0 takes everything below 1/510, x_i = 1 everything above 1 - 1/510), so
the 256 probabilities sum to 1 and -log P is a code length in nats, comparable across models and data sets.
For the models that trained with kl_weight = 2 sigma^2 (the defaults), the loss they minimised is, up to the
discretisation and a constant, 2 sigma^2 times this -ELBO.

The bound. -ELBO(x) = E_q[-log P(x | z)] + KL(q(z | x) || p(z)), estimated with one draw z ~ q(z | x) per test
image (the KL in closed form), so the mean over the test split is an unbiased estimate of the mean -ELBO. What
each model supplies (`elbo_terms(images, generator) -> (kl (N,), means (N, 3, H, W))`):
- VAE, VAE/GAN's encoder and decoder: z ~ q(z | x), KL to N(0, I), means = dec(z).
- LapCVAE (Eqs. 8-13): z_K ~ q_K(z_K | b_K), then for k = K-1..0 z_k ~ q_k(z_k | h_k, u(x_{k+1})) with x_{k+1}
  composed from the sampled z_{k+1..K} (Eq. 7); KL of each level against its prior (N(0, I) at K and without M;
  M_k of q_{k+1}'s re-encoding of the generated level, Eq. 13); means = the composed finest image x_0. So the
  -ELBO of the whole pyramid is the sum of the levels' KLs and one reconstruction term, on the full image.
- PixelVAE: z ~ q(z | x), KL to N(0, I), means = the PixelCNN's prediction of each pixel from the true pixels
  before it (teacher forcing), so -log P(x | z) is its exact autoregressive likelihood.
bits per dimension = nats / (D ln 2).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # only annotates: the tables come from eval.metrics
    import pandas as pd

PIXEL_LEVELS = 255  # 8-bit images: values k / 255
NELBO_COLUMNS = ("nelbo", "nelbo_kl", "nelbo_distortion")  # per image, nats


def discretised_gaussian_nll(images: torch.Tensor, means: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N,) -log P(images | means) in nats, summed over channels and pixels (see the module docstring).

    images: (N, 3, H, W) in [0, 1], exact multiples of 1/255 (8-bit files); means: same shape, any real values.
    Computed in float64 with log-CDFs, so bins many sigma from the mean keep their (tiny) probability.
    """
    if images.shape != means.shape:
        raise ValueError(f"images {tuple(images.shape)} and means {tuple(means.shape)} must have the same shape")
    if not sigma > 0:
        raise ValueError(f"the likelihood's sigma must be > 0, got {sigma}; set eval.elbo_sigma")
    levels = torch.round(images.double() * PIXEL_LEVELS)  # (N, 3, H, W), integers 0..255
    centred = levels / PIXEL_LEVELS - means.double()
    half_bin = 0.5 / PIXEL_LEVELS
    upper = (centred + half_bin) / sigma  # standardised bin edges
    lower = (centred - half_bin) / sigma
    # log(Phi(u) - Phi(l)); for a bin right of the mean (l > 0) the mirrored Phi(-l) - Phi(-u), so that both
    # CDFs are taken where they are small and accurate.
    mirrored = lower > 0
    high = torch.where(mirrored, -lower, upper)
    low = torch.where(mirrored, -upper, lower)
    log_high, log_low = torch.special.log_ndtr(high), torch.special.log_ndtr(low)
    inner = log_high + torch.log(-torch.expm1(log_low - log_high))
    log_prob = torch.where(levels == 0, torch.special.log_ndtr(upper),  # open bin (-inf, 1/510]
                           torch.where(levels == PIXEL_LEVELS, torch.special.log_ndtr(-lower), inner))
    return -log_prob.flatten(1).sum(dim=1)  # (N,)


def negative_elbo(model: torch.nn.Module, images: torch.Tensor, sigma: float | None,
                  generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Per-image -ELBO in nats and its two terms, each (N,) float64 on the CPU: NaN for a model without
    `elbo_terms` (the reference rows) or without a sigma. generator: the CPU stream of the posterior draws."""
    elbo_terms = getattr(model, "elbo_terms", None)
    if elbo_terms is None or sigma is None:
        missing = torch.full((images.shape[0],), math.nan, dtype=torch.float64)
        return dict.fromkeys(NELBO_COLUMNS, missing)
    kl, means = elbo_terms(images, generator)
    distortion = discretised_gaussian_nll(images, means, sigma).cpu()
    kl = kl.double().cpu()
    return {"nelbo": kl + distortion, "nelbo_kl": kl, "nelbo_distortion": distortion}


def bits_per_dimension(nats_per_image: float, dimensions: int) -> float:
    """nats per image -> bits per channel value: nats / (D ln 2)."""
    return nats_per_image / (dimensions * math.log(2.0))


def elbo_summary(per_image: pd.DataFrame, dimensions: int, sigma: float) -> dict[str, float]:
    """summary.json's -ELBO entries from the per-image columns (NELBO_COLUMNS): means over the test split in nats
    per image, the -ELBO in bits per dimension, and the likelihood's sigma they were computed with."""
    nelbo = float(per_image["nelbo"].mean())
    return {"nelbo_mean": nelbo, "nelbo_bits_per_dim": bits_per_dimension(nelbo, dimensions),
            "nelbo_kl_mean": float(per_image["nelbo_kl"].mean()),
            "nelbo_distortion_mean": float(per_image["nelbo_distortion"].mean()), "nelbo_sigma": sigma}
