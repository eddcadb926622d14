"""FLOPs of one training step per image (FlopCounterMode: 2 per multiply-add), the unit of the suite's compute
budgets: Table 1's training FLOPs (eval/cost.py), the ablations (eval/ablations.py) and the VAE trained with
LapCVAE's training FLOPs (baselines/train.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

FLOP_BATCH = 2  # batch norm needs more than one image per batch in training mode


def training_step_flops(trainable: nn.Module, resolution: int, seed: int = 0) -> int:
    """FLOPs of one training step (forward and backward of every objective) per image."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(FLOP_BATCH, 3, resolution, resolution, generator=generator)  # (B, 3, H, W) in [0, 1]
    torch.manual_seed(seed)  # reparameterisation noise
    groups = trainable.parameter_groups()
    trainable.train()
    counter = FlopCounterMode(display=False)
    with counter:
        result = trainable.training_step(images)
        active = [(group, loss) for group, loss in result.objectives.items() if loss is not None]
        for position, (group, loss) in enumerate(active):
            torch.autograd.grad(loss, list(groups[group]), retain_graph=position < len(active) - 1,
                                allow_unused=True)
    return int(counter.get_total_flops()) // FLOP_BATCH


def lapcvae_step_flops(params: Mapping[str, Any], resolution: int) -> int:
    """LapCVAE's (with M) training FLOPs per image summed over its levels: one greedy step of each level, its
    frozen coarser levels costing their forward pass. Times budget.epochs passes, it is the model's training FLOPs
    per training image."""
    from models.lapcvae import LapCVAE, LevelTrainable

    level_params = params["lapcvae"][str(resolution)]
    levels = int(level_params["levels"])
    total = 0
    for level in range(levels):
        model = LapCVAE.from_params(level_params, resolution, use_m=True, trained_levels=levels - level)
        total += training_step_flops(LevelTrainable(model, level), resolution)
    return total
