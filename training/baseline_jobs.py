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


def lapcvae_flops_epochs(params: Mapping[str, Any], model: str, resolution: int) -> int:
    """Epochs that give one-job model `model` LapCVAE's network training FLOPs at `resolution`
    (registry.flops_matched()): budget.epochs x LapCVAE's forward and backward FLOPs per image, summed over its
    levels, / the model's, rounded, at least one. The optimizer's FLOPs are left out of the match: they depend on
    the optimizer's matrix shapes, not on what the network computes, and are shown beside it in Table 1."""
    from training.flops import lapcvae_step_flops, training_step_flops

    epochs = int(params["budget"]["epochs"])
    model_flops = training_step_flops(build_baseline(params, model, resolution), resolution)
    lapcvae_flops = lapcvae_step_flops(params, resolution)
    matched = max(1, round(epochs * lapcvae_flops / model_flops))
    logger.info("%s at %d px: %d epochs give it LapCVAE's %d epochs of network FLOPs (%.3g against %.3g per image "
                "and epoch; %+.1f %% after rounding)", model, resolution, matched, epochs, lapcvae_flops,
                model_flops, 100 * (matched * model_flops / (epochs * lapcvae_flops) - 1))
    return matched


def load_train_images(path: str | Path, resolution: int) -> np.ndarray:
    """The prepared uint8 training images (N, 3, res, res), memory-mapped."""
    return load_image_array(path, resolution)


def train_baseline(params: Mapping[str, Any], model: str, resolution: int, images: np.ndarray,
                   out: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Build `model` from params and train it with the shared loop into `out`; returns it and fit's metadata."""
    import torch

    from core.params import train_settings
    from training.loop import fit, paired_seeds  # imported here so that `--help` stays fast

    settings = train_settings(params, registry.spec(model).params_section, resolution)
    if model in registry.flops_matched():
        settings["epochs"] = lapcvae_flops_epochs(params, model, resolution)
    init_seed, train_seed = paired_seeds(params["seed"], resolution)
    torch.manual_seed(init_seed)  # initial weights from the params seed too, so a rerun reaches the same weights
    network = build_baseline(params, model, resolution)
    logger.info("%s at %d px: %d parameters, %d training images, %d epochs", model, resolution,
                sum(parameter.numel() for parameter in network.parameters()), len(images), settings["epochs"])
    summary = fit(network, images, settings=settings,
                  seed=train_seed, output=out,
                  device=params["device"], name=f"{model}@{resolution}")
    return network, summary
