"""Building blocks shared by LapCVAE's per-level VAEs and the baselines: conv encoder and decoder stacks
and the diagonal-Gaussian algebra of the VAE (reparameterisation, closed-form KL)."""

from __future__ import annotations

import torch
from torch import nn

from models.interface import mark_io_layers


def conv_block(in_channels: int, out_channels: int, *, batch_norm: bool = True) -> nn.Sequential:
    """Halve the spatial size: 4x4 stride-2 conv, batch norm (or a bias), leaky ReLU (the DCGAN-style block)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=not batch_norm),
        nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity(),
        nn.LeakyReLU(0.2, inplace=True),
    )


def deconv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Double the spatial size: 4x4 stride-2 transposed conv, batch norm, ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ConvEncoder(nn.Module):
    """(B, C, H, W) -> mean and log-variance of a diagonal Gaussian over `latent_dim` dims.

    Each entry of `widths` is one stride-2 block, so H and W must be divisible by 2 ** len(widths).
    batch_norm: False gives the blocks a bias instead, so that an image's code in training does not depend on the
    other images of its batch.
    """

    def __init__(self, *, in_channels: int, size: int, widths: list[int], latent_dim: int, batch_norm: bool = True):
        super().__init__()
        channels = [in_channels, *widths]
        self.features = nn.Sequential(*(conv_block(a, b, batch_norm=batch_norm)
                                        for a, b in zip(channels[:-1], channels[1:], strict=True)))
        feature_size = size // 2 ** len(widths)
        self.to_stats = nn.Linear(widths[-1] * feature_size * feature_size, 2 * latent_dim)
        mark_io_layers(self.features[0][0], self.to_stats)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x).flatten(1)  # (B, widths[-1] * s * s)
        mean, log_var = self.to_stats(features).chunk(2, dim=1)  # (B, latent_dim) each
        return mean, log_var


class ConvDecoder(nn.Module):
    """(B, latent_dim) -> (B, out_channels, size, size); `widths` run coarse to fine, mirroring the encoder.

    output_bias: if given, the output layer starts with zero weights and this bias (the image it predicts before
    training); None keeps PyTorch's random initialisation.
    """

    def __init__(self, *, latent_dim: int, size: int, widths: list[int], out_channels: int,
                 output_bias: float | None = None):
        super().__init__()
        self.start_size = size // 2 ** len(widths)
        self.start_channels = widths[0]
        self.from_latent = nn.Sequential(
            nn.Linear(latent_dim, widths[0] * self.start_size * self.start_size), nn.ReLU(inplace=True)
        )
        blocks = [deconv_block(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        self.features = nn.Sequential(*blocks)
        self.to_image = nn.ConvTranspose2d(widths[-1], out_channels, kernel_size=4, stride=2, padding=1)
        mark_io_layers(self.to_image)  # the layer decoding a latent is hidden: it reads a dense code
        if output_bias is not None:
            # Start from a flat output_bias image: a randomly initialised output layer's first hundred steps go
            # to shrinking its noise (LapCVAE's finest SSE at init 2,172 against 24 for predicting no detail),
            # and the decoder learns to ignore a latent the encoder has not made useful yet (posterior collapse).
            nn.init.zeros_(self.to_image.weight)
            nn.init.constant_(self.to_image.bias, output_bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.from_latent(z).view(-1, self.start_channels, self.start_size, self.start_size)  # (B, C0, s, s)
        return self.to_image(self.features(x))  # (B, out_channels, size, size)


def reparameterize(mean: torch.Tensor, log_var: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mean + sigma * eps, eps ~ N(0, I) (Kingma and Welling 2014)."""
    eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + torch.exp(0.5 * log_var) * eps


def kl_diagonal_gaussians(
    mean_q: torch.Tensor, log_var_q: torch.Tensor,
    mean_p: torch.Tensor | None = None, log_var_p: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(q || p) per sample, summed over latent dims, for diagonal Gaussians; p defaults to N(0, I).

    KL = 1/2 * sum( log var_p - log var_q + (var_q + (mean_q - mean_p)^2) / var_p - 1 )
    """
    if mean_p is None:
        mean_p = torch.zeros_like(mean_q)
    if log_var_p is None:
        log_var_p = torch.zeros_like(log_var_q)
    kl = log_var_p - log_var_q + (log_var_q.exp() + (mean_q - mean_p).pow(2)) / log_var_p.exp() - 1.0
    return 0.5 * kl.sum(dim=1)  # (B,)
