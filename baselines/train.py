"""`lapcvae train-baseline`: train the VAE or VAE/GAN baseline of Table 1 with the shared training loop.

    lapcvae train-baseline --params config/smoke.yaml --model vae --res 64 \
        --data data/prepared/64/train.npy --out results/models/64/vae/model.pt
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from core import registry
from core.params import add_params_arguments, params_from_args, train_settings
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lapcvae train-baseline", description=__doc__.splitlines()[0])
    add_params_arguments(parser)
    parser.add_argument("--model", required=True, choices=sorted(BASELINES), help="which baseline to train")
    parser.add_argument("--res", required=True, type=int, help="image resolution in pixels, e.g. 64")
    parser.add_argument("--data", required=True, type=Path, help="prepared training images, {res}/train.npy")
    parser.add_argument("--out", required=True, type=Path, help="checkpoint to write, e.g. .../vae/model.pt")
    args = parser.parse_args(argv)

    import torch

    from models.training import derive_seed, fit  # imported here so `--help` stays fast

    params = params_from_args(args)
    images = load_train_images(args.data, args.res)
    # Initial weights come from the params seed too, so that a rerun reaches the same weights.
    torch.manual_seed(derive_seed(params["seed"], f"{args.model}-init", args.res))
    model = build_baseline(params, args.model, args.res)
    logger.info("%s at %d px: %d parameters, %d training images", args.model, args.res,
                sum(parameter.numel() for parameter in model.parameters()), len(images))
    seed = derive_seed(params["seed"], f"{args.model}-train", args.res)
    settings = train_settings(params, registry.spec(args.model).params_section, args.res)
    summary = fit(model, images, settings=settings, seed=seed, output=args.out,
                  device=params["device"], name=f"{args.model}@{args.res}")
    logger.info("trained %s: %s", args.out, summary)
