"""The contracts every model of the suite honours, so that training and evaluation treat them alike.

- `Trainable`: what the one training loop (training/loop.py) needs from a model.
- `GenerativeModel`: what evaluation, figures, editing and the human study need from a trained model.
Images are float tensors in [0, 1] of shape (N, 3, H, W) on both sides of every interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


@dataclass
class StepResult:
    """One training step's objectives, keyed by the parameter group each one updates.

    A group whose objective is None is not updated this step (VAE/GAN's balancing rule uses this).
    `logs` are detached scalars for the progress bar and the per-step CSV (reconstruction and KL per level...).
    """

    objectives: dict[str, torch.Tensor | None]
    logs: dict[str, torch.Tensor] = field(default_factory=dict)


@runtime_checkable
class Trainable(Protocol):
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters each objective of `training_step` updates, one optimizer per group."""
        ...

    def training_step(self, images: torch.Tensor) -> StepResult:
        """images: (B, 3, H, W) float in [0, 1].

        A trainable whose objectives hold KL terms declares `kl_scale = 1.0` and multiplies them by it; the loop
        then sets it before each step (train.kl_warmup)."""
        ...


@runtime_checkable
class GenerativeModel(Protocol):
    kind: str
    config: dict[str, Any]

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, H, W) reconstruction from posterior means, clamped to [0, 1]."""
        ...

    def sample(self, n: int, seed: int) -> torch.Tensor:
        """n images (n, 3, H, W) in [0, 1] decoded from the prior; the same seed gives the same images."""
        ...
