"""The VAE baseline of Table 1 (Kingma and Welling 2014): one convolutional VAE over the whole image.

As in the paper (section 5.1), its latent space has LapCVAE's combined size at that resolution (the sum of
`lapcvae[res].latent_dims`) and its parameter count is matched to LapCVAE's: `match_vae_widths` scales the
relative widths of `vae[res].widths` until the two counts are closest, so the match holds for any config.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from models.blocks import ConvDecoder, ConvEncoder, kl_diagonal_gaussians, reparameterize
from models.interface import StepResult

logger = logging.getLogger(__name__)


def check_conv_stack(resolution: int, widths: list[int], model: str) -> None:
    """The encoder halves the image once per width; refuse stacks that do not fit the resolution."""
    if not widths or min(widths) < 1:
        raise ValueError(f"{model}: widths {widths} must be a non-empty list of positive channel counts")
    if resolution % 2 ** len(widths):
        raise ValueError(
            f"{model}: a {resolution} px image cannot be halved {len(widths)} times (one per entry of widths "
            f"{widths}); use fewer widths or a resolution divisible by {2 ** len(widths)}"
        )


def sample_prior(n: int, latent_dim: int, seed: int, device: torch.device) -> torch.Tensor:
    """n latent codes from N(0, I), drawn on the CPU from `seed` so a seed gives the same codes everywhere."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, latent_dim, generator=generator).to(device)  # (n, latent_dim)


class EncoderDecoderModel(nn.Module):
    """`reconstruct` and `sample` for the single-latent baselines, which hold `encoder`, `decoder`, `latent_dim`."""

    encoder: ConvEncoder
    decoder: ConvDecoder
    latent_dim: int
    kl_scale = 1.0  # KL warm-up factor, set by the training loop each step (train.kl_warmup)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        mean, _ = self.encoder(images)  # decode the posterior mean
        return self.decoder(mean).clamp(0.0, 1.0)  # (N, 3, H, W)

    @torch.no_grad()
    def rate(self, images: torch.Tensor) -> torch.Tensor:
        """(N,) KL(q(z|x) || N(0, I)) in nats per image: the bits the code spends on each image (x ln 2)."""
        mean, log_var = self.encoder(images)
        return kl_diagonal_gaussians(mean.float(), log_var.float())

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor, seed: int) -> torch.Tensor:
        """(n, latent_dim) codes -> (n, 3, H, W) in [0, 1]; `seed` is unused (the decoder is deterministic)."""
        return self.decoder(latents).clamp(0.0, 1.0)

    @torch.no_grad()
    def sample(self, n: int, seed: int) -> torch.Tensor:
        device = next(self.parameters()).device
        return self.decode_latents(sample_prior(n, self.latent_dim, seed, device), seed)  # (n, 3, H, W)

    @torch.no_grad()
    def elbo_terms(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One posterior draw z ~ q(z | x) per image: (KL to N(0, I) in nats (N,), dec(z) (N, 3, H, W) unclamped),
        the terms of the -ELBO that eval/elbo.py scores (eps drawn on the CPU from `generator`)."""
        mean, log_var = self.encoder(images)
        eps = torch.randn(mean.shape, generator=generator).to(mean.device)  # on the CPU: the same draws everywhere
        decoded = self.decoder(mean + torch.exp(0.5 * log_var) * eps)
        return kl_diagonal_gaussians(mean.float(), log_var.float()), decoded.float()


class VAE(EncoderDecoderModel):
    """Convolutional VAE with a N(0, I) prior and the loss every VAE-family model here shares:
    sum of squared errors over the [0, 1] pixels of an image + kl_weight * KL in nats (per image, batch mean)."""

    kind = "vae"

    def __init__(self, *, resolution: int, latent_dim: int, widths: list[int], kl_weight: float):
        super().__init__()
        check_conv_stack(resolution, widths, self.kind)
        if latent_dim < 1:
            raise ValueError(f"vae: latent_dim must be positive, got {latent_dim}")
        if kl_weight < 0:
            raise ValueError(f"vae: kl_weight must be >= 0, got {kl_weight}; set vae.<res>.kl_weight")
        self.config = {"resolution": resolution, "latent_dim": latent_dim, "widths": list(widths),
                       "kl_weight": kl_weight}
        self.kl_weight = kl_weight
        self.resolution = resolution
        self.latent_dim = latent_dim
        self.encoder = ConvEncoder(in_channels=3, size=resolution, widths=list(widths), latent_dim=latent_dim)
        # The decoder mirrors the encoder: its widths run coarse to fine.
        self.decoder = ConvDecoder(latent_dim=latent_dim, size=resolution, widths=list(widths)[::-1],
                                   out_channels=3)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> VAE:
        # A checkpoint without kl_weight trained with a weight of 1.
        return cls(resolution=int(config["resolution"]), latent_dim=int(config["latent_dim"]),
                   widths=[int(width) for width in config["widths"]], kl_weight=float(config.get("kl_weight", 1.0)))

    @classmethod
    def from_params(cls, params: Mapping[str, Any], resolution: int) -> VAE:
        """The VAE of a params tree at one resolution, latent size and parameter count matched to LapCVAE."""
        return cls.from_config(vae_config(params, resolution))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"vae": list(self.parameters())}

    def training_step(self, images: torch.Tensor) -> StepResult:
        mean, log_var = self.encoder(images)  # (B, latent_dim) each
        latents = reparameterize(mean, log_var)
        decoded = self.decoder(latents)  # (B, 3, H, W)
        # Sum of squared errors per image on [0, 1] pixels: -log N(x; dec(z), sigma^2 I) up to a constant and
        # the factor 1 / (2 sigma^2), which kl_weight absorbs (kl_weight = 2 sigma^2).
        reconstruction = (decoded.float() - images).pow(2).flatten(1).sum(dim=1).mean()
        kl = kl_diagonal_gaussians(mean.float(), log_var.float()).mean()  # KL to N(0, I) in nats, Eq. 5's prior
        loss = reconstruction + self.kl_scale * self.kl_weight * kl
        return StepResult(
            objectives={"vae": loss},
            logs={"loss": loss.detach(), "reconstruction": reconstruction.detach(), "kl": kl.detach()},
        )



def parameter_count(build: Callable[[], nn.Module]) -> int:
    """Parameters of the module `build()` returns, built on the meta device so nothing is allocated."""
    with torch.device("meta"):
        module = build()
    return sum(parameter.numel() for parameter in module.parameters())


def lapcvae_parameter_count(params: Mapping[str, Any], resolution: int) -> int:
    """Parameters of the full LapCVAE (with the M networks) that `params` describes at `resolution`."""
    from models.lapcvae import LapCVAE  # imported here: LapCVAE is only needed to size the VAE

    level_params = params["lapcvae"][str(resolution)]
    return parameter_count(lambda: LapCVAE.from_params(level_params, resolution, use_m=True))


def count_widths(resolution: int, latent_dim: int, widths: list[int]) -> int:
    """Parameters of a VAE with these widths."""
    return parameter_count(lambda: VAE(resolution=resolution, latent_dim=latent_dim, widths=widths, kl_weight=1.0))


def scaled_widths(widths: list[int], multiplier: float) -> list[int]:
    return [max(1, round(width * multiplier)) for width in widths]


def match_vae_widths(params: Mapping[str, Any], resolution: int, target: int | None = None) -> list[int]:
    """`vae[res].widths` scaled by the multiplier whose VAE parameter count is closest to LapCVAE's.

    target: the parameter count to match; by default LapCVAE's at this resolution in `params`.
    The count grows monotonically with the multiplier, so a bisection in log space finds the crossing.
    """
    key = str(resolution)
    base_widths = list(params["vae"][key]["widths"])
    latent_dim = vae_latent_dim(params, resolution)
    check_conv_stack(resolution, base_widths, "vae")
    target = lapcvae_parameter_count(params, resolution) if target is None else target

    def count(multiplier: float) -> int:
        return count_widths(resolution, latent_dim, scaled_widths(base_widths, multiplier))

    low, high = math.log(1e-3), math.log(1e3)
    for _ in range(60):
        middle = 0.5 * (low + high)
        if count(math.exp(middle)) < target:
            low = middle
        else:
            high = middle
    candidates = [scaled_widths(base_widths, math.exp(bound)) for bound in (low, high)]
    best = min(candidates, key=lambda widths: abs(count_widths(resolution, latent_dim, widths) - target))
    logger.info("VAE at %d px: widths %s, %d parameters (LapCVAE: %d)",
                resolution, best, count_widths(resolution, latent_dim, best), target)
    return best


def vae_latent_dim(params: Mapping[str, Any], resolution: int) -> int:
    """LapCVAE's combined latent size at this resolution (256 at 64 and 448 at 128 in the paper)."""
    return int(sum(params["lapcvae"][str(resolution)]["latent_dims"]))


def vae_config(params: Mapping[str, Any], resolution: int) -> dict[str, Any]:
    """The VAE's `from_config` dict for a params tree: LapCVAE's latent size, matched widths."""
    return {
        "resolution": resolution,
        "latent_dim": vae_latent_dim(params, resolution),
        "widths": match_vae_widths(params, resolution),
        "kl_weight": float(params["vae"][str(resolution)]["kl_weight"]),
    }
