"""A toy model for tests/test_adding_a_model.py: a linear autoencoder added as docs/extending.md says
("Adding a model").

The test copies this file to models/toy.py of a copy of the repository, adds its registry entry, params
section and schema fragment there, and runs the smoke DAG: nothing else may need editing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from models.interface import StepResult


class ToyAutoencoder(nn.Module):
    """x -> Linear -> z -> Linear -> sigmoid; samples decode z ~ N(0, I)."""

    kind = "toy"

    def __init__(self, *, resolution: int, latent_dim: int):
        super().__init__()
        self.config = {"resolution": resolution, "latent_dim": latent_dim}
        self.resolution = resolution
        self.latent_dim = latent_dim
        pixels = 3 * resolution * resolution
        self.encoder = nn.Linear(pixels, latent_dim)
        self.decoder = nn.Linear(latent_dim, pixels)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ToyAutoencoder:
        return cls(resolution=int(config["resolution"]), latent_dim=int(config["latent_dim"]))

    @classmethod
    def from_params(cls, params: Mapping[str, Any], resolution: int) -> ToyAutoencoder:
        return cls(resolution=resolution, latent_dim=params["toy"][str(resolution)]["latent_dim"])

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        size = self.resolution
        return torch.sigmoid(self.decoder(latents)).view(len(latents), 3, size, size)  # (B, 3, H, W)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"toy": list(self.parameters())}

    def training_step(self, images: torch.Tensor) -> StepResult:
        decoded = self.decode(self.encoder(images.flatten(1)))
        reconstruction = (decoded.float() - images).pow(2).flatten(1).sum(dim=1).mean()
        return StepResult(objectives={"toy": reconstruction}, logs={"reconstruction": reconstruction.detach()})

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encoder(images.flatten(1)))

    @torch.no_grad()
    def sample(self, n: int, seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        latents = torch.randn(n, self.latent_dim, generator=generator).to(next(self.parameters()).device)
        return self.decode(latents)
