"""A toy reconstruction metric for tests/test_adding_a_metric.py: the mean absolute error per image, 0-255 scale."""

from __future__ import annotations

import torch


def mae_per_image(reference: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """(N,) mean |reconstruction - reference| over pixels and channels, on the [0, 255] scale."""
    return ((reconstruction.double() - reference.double()).abs() * 255.0).flatten(1).mean(dim=1)
