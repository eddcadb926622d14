"""The contracts every model of the suite honours, so that training and evaluation treat them alike.

- `Trainable`: what the one training loop (training/loop.py) needs from a model.
- `GenerativeModel`: what evaluation, figures, editing and the human study need from a trained model.
- `mark_io_layers`: which layers are a network's input or output layers (the optimizer treats them apart).
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


IO_LAYER = "io_layer"  # attribute set on a network's input and output layers


def mark_io_layers(*layers: nn.Module) -> None:
    """Mark the layers that read a network's input or write its output (the first convolution on an image, a
    latent's mean/log-variance head, the RGB output, M's layers): Muon orthogonalises only hidden weight matrices,
    these step with Adam (Jordan et al. 2024, "Muon: an optimizer for hidden layers"). The layer decoding a latent
    is hidden: it maps a dense unit-variance code to features, the geometry Muon's step is built for."""
    for layer in layers:
        setattr(layer, IO_LAYER, True)


def io_parameters(module: nn.Module) -> set[int]:
    """ids of the parameters of every layer inside `module` marked by `mark_io_layers`."""
    return {id(param) for layer in module.modules() if getattr(layer, IO_LAYER, False) for param in layer.parameters()}
