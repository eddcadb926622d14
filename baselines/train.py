"""`lapcvae train-baseline`: train the VAE or VAE/GAN baseline of Table 1 with the shared training loop.

    lapcvae train-baseline --params config/smoke.yaml --model vae --res 64 \
        --data data/prepared/64/train.npy --out results/models/64/vae/model.pt
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from core import registry
from data.arrays import load_image_array

logger = logging.getLogger(__name__)

# The models trained by one job of the shared loop (the registry's TRAIN_ONE_JOB ones: VAE, VAE/GAN, ...).
BASELINES: list[str] = registry.trained_by(registry.TRAIN_ONE_JOB)


def build_baseline(params: Mapping[str, Any], model: str, resolution: int) -> nn.Module:
    """The untrained one-job model `model` ("vae", "vaegan", ...) that `params` describes at `resolution`."""
    if model not in BASELINES:
        raise ValueError(f"unknown baseline {model!r}; choose one of {', '.join(BASELINES)}")
    section = registry.spec(model).params_section
    if str(resolution) not in params.get(section, {}):
        raise ValueError(f"{section}.{resolution}: params has no settings for {resolution} px; add a "
                         f"{section}.\"{resolution}\" section or pick one of {', '.join(params.get(section, {}))}")
    return registry.load_class(registry.spec(model).model_class).from_params(params, resolution)


def load_train_images(path: str | Path, resolution: int) -> np.ndarray:
    """The prepared uint8 training images (N, 3, res, res), memory-mapped."""
    return load_image_array(path, resolution)
