"""Greedy LapCVAE training as commands (section 4, Figure 3; section 5.1.3, Figure 8).

    lapcvae train-level --res 64 --variant lapcvae --level 3 --data data/prepared/64/train.npy \\
        --out results/models/64/lapcvae/level3.pt
    lapcvae train-level ... --level 2 --coarser results/models/64/lapcvae/level3.pt --out .../level2.pt
    lapcvae retrain-m --res 64 --checkpoint results/models/64/lapcvae/level0.pt --data ... \\
        --out results/models/64/lapcvae/retrained_m.pt

Levels train coarsest first: the checkpoint of level k holds levels k..K and seeds the job of level k - 1.
`train_joint` trains all levels in one job instead (the ablation of greedy training, studies/ablations.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core import registry
from core.params import train_settings
from data.arrays import load_image_array
from models.checkpoint import load_checkpoint
from models.lapcvae import LapCVAE
from training.loop import paired_seeds

logger = logging.getLogger(__name__)

# variant -> use_m, for every per-level model of the registry
VARIANTS = {name: bool(registry.spec(name).options.get("use_m"))
            for name in registry.trained_by(registry.TRAIN_PER_LEVEL)}
# The coarsest level has no M (its prior is N(0, I), Eq. 5), so both variants build on one trained copy of it,
# the one of this variant: results/models/{res}/lapcvae/level{K}.pt.
SHARED_COARSEST_VARIANT = registry.retrain_source()


def load_images(path: str | Path, resolution: int) -> np.ndarray:
    """The prepared uint8 (N, 3, res, res) array, memory-mapped."""
    return load_image_array(path, resolution)


def resolution_params(params: dict[str, Any], resolution: int) -> dict[str, Any]:
    if str(resolution) not in params["lapcvae"]:
        raise ValueError(f"--res {resolution}: params has no lapcvae.{resolution!s} section; "
                         f"use one of {sorted(k for k in params['lapcvae'] if k.isdigit())}")
    return params["lapcvae"][str(resolution)]


def level_settings(params: dict[str, Any], resolution: int, level: int) -> dict[str, Any]:
    """The training loop's settings for one level: `train`, LapCVAE's overrides; budget.epochs for every level."""
    levels = resolution_params(params, resolution)["levels"]
    if not 0 <= level < levels:
        raise ValueError(f"level {level} is outside 0..{levels - 1} for {resolution} px")
    return train_settings(params, "lapcvae", resolution)


def retrain_m_settings(params: dict[str, Any], resolution: int) -> dict[str, Any]:
    """The loop's settings for retraining the M networks (section 5.1.3): LapCVAE's, with `lapcvae.retrain_m`'s
    epochs, lr and, where it names one, optimizer."""
    retrain = params["lapcvae"]["retrain_m"]
    return {**train_settings(params, "lapcvae", resolution), "epochs": retrain["epochs"], "lr": retrain["lr"],
            **({"optimizer": retrain["optimizer"]} if "optimizer" in retrain else {})}


def build_level_model(params: dict[str, Any], resolution: int, variant: str, level: int,
                      coarser: str | Path | None) -> LapCVAE:
    """The model holding levels `level`..K: fresh level `level` plus the trained coarser levels."""
    level_params = resolution_params(params, resolution)
    coarsest = level_params["levels"] - 1
    if not 0 <= level <= coarsest:
        raise ValueError(f"--level {level} is outside 0..{coarsest} for {resolution} px")
    if level < coarsest and coarser is None:
        raise ValueError(f"--level {level} needs --coarser: the checkpoint of level {level + 1} (levels train "
                         "coarsest first)")
    if level == coarsest and coarser is not None:
        raise ValueError(f"--level {level} is the coarsest level: it trains alone, drop --coarser")
    if level == coarsest and not VARIANTS[variant]:
        raise ValueError(f"--level {level} is the coarsest level, which has no M: both variants share one "
                         f"(one job, one checkpoint); train it with --variant {SHARED_COARSEST_VARIANT} and pass "
                         f"that checkpoint as --coarser of {variant}'s level {level - 1}")
    torch.manual_seed(paired_seeds(params["seed"], resolution)[0])
    model = LapCVAE.from_params(level_params, resolution, use_m=VARIANTS[variant],
                                trained_levels=coarsest + 1 - level)
    if coarser is not None:
        checkpoint = load_checkpoint(coarser)
        expected = {**model.config, "trained_levels": coarsest - level}
        found = dict(checkpoint.get("config") or {})
        found.setdefault("conditioning", "latents")  # a checkpoint without the key conditioned on latents
        if level + 1 == coarsest and "use_m" in found:
            found["use_m"] = model.config["use_m"]  # the coarsest level alone has no M: the variants share it
        if isinstance(found.get("kl_weights"), list) and len(found["kl_weights"]) == len(expected["kl_weights"]):
            # Levels 0..level are not in the coarser checkpoint: their weights did not shape it (greedy tuning
            # changes them after it was trained).
            found["kl_weights"] = [*expected["kl_weights"][:level + 1], *found["kl_weights"][level + 1:]]
        if checkpoint.get("kind") != "lapcvae" or found != expected:
            raise ValueError(f"--coarser {coarser} was trained with another configuration "
                             f"({checkpoint.get('config')}) than level {level + 1} of {variant} at {resolution} px "
                             f"needs ({expected}); retrain the coarser levels with these params")
        missing, unexpected = model.load_state_dict(checkpoint["state_dict"], strict=False)
        if unexpected or any(not key.startswith(f"level_vaes.{level}.") for key in missing):
            raise ValueError(f"--coarser {coarser} does not hold levels {level + 1}..{coarsest}; retrain them")
    return model


def train_level(params: dict[str, Any], resolution: int, variant: str, level: int, coarser: str | Path | None,
                images: np.ndarray, out: str | Path,
                validate: Callable[[LapCVAE], dict[str, float]] | None = None,
                validate_every: int = 0) -> tuple[LapCVAE, dict[str, Any]]:
    """Train level `level` of a LapCVAE variant on its frozen coarser levels into `out` (greedy training,
    coarsest first); returns levels level..K and fit's metadata. validate(model) -> values: see `fit`."""
    from models.lapcvae import LevelTrainable
    from training.loop import fit

    model = build_level_model(params, resolution, variant, level, coarser)
    meta = fit(LevelTrainable(model, level), images, settings=level_settings(params, resolution, level),
               seed=paired_seeds(params["seed"], resolution)[1], output=out,
               export=model, device=params["device"], name=f"{resolution}/{variant}/level{level}",
               validate=None if validate is None else lambda: validate(model), validate_every=validate_every)
    return model, meta


def train_joint(params: dict[str, Any], resolution: int, images: np.ndarray, out: str | Path,
                validate: Callable[[LapCVAE], dict[str, float]] | None = None,
                validate_every: int = 0) -> tuple[LapCVAE, dict[str, Any]]:
    """Train every level of LapCVAE (with M) in one job, end to end (`JointTrainable`: Eq. 12 summed over the
    levels, the same kl_weights), for budget.epochs with LapCVAE's training settings; returns it and fit's meta."""
    from models.lapcvae import JointTrainable
    from training.loop import fit

    level_params = resolution_params(params, resolution)
    torch.manual_seed(paired_seeds(params["seed"], resolution)[0])
    model = LapCVAE.from_params(level_params, resolution, use_m=True)
    meta = fit(JointTrainable(model), images, settings=train_settings(params, "lapcvae", resolution),
               seed=paired_seeds(params["seed"], resolution)[1], output=out, export=model,
               device=params["device"], name=f"{resolution}/lapcvae/joint",
               validate=None if validate is None else lambda: validate(model), validate_every=validate_every)
    return model, meta
