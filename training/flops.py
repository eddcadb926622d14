"""FLOPs of one training step per image (2 per multiply-add), the unit of the suite's compute budgets: Table 1's
training FLOPs (eval/cost.py), the ablations (studies/ablations.py) and the VAE trained with LapCVAE's network FLOPs
(training/baseline_jobs.py); and Table 1's FLOPs per reconstruction. torch's FlopCounterMode counts them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from models.interface import io_parameters
from training.optimizers import muon_step_flops

FLOP_BATCH = 2  # batch norm needs more than one image per batch in training mode


def count_flops(function: Callable[[torch.Tensor], Any], example: torch.Tensor) -> int:
    """FLOPs of one call `function(example)` in inference mode (Table 1's FLOPs per reconstruction)."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        function(example)
    return counter.get_total_flops()


def training_step_flops(trainable: nn.Module, resolution: int, seed: int = 0) -> int:
    """FLOPs of one full training step (forward and backward of every objective) per image.

    A trainable that may skip an objective by a rule of its own (VAE/GAN's balancing) declares `every_objective`;
    it is set for the count, so that the count is a full step's wherever the trained weights sit.
    """
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(FLOP_BATCH, 3, resolution, resolution, generator=generator)  # (B, 3, H, W) in [0, 1]
    torch.manual_seed(seed)  # reparameterisation noise
    groups = trainable.parameter_groups()
    trainable.train()
    counter = FlopCounterMode(display=False)
    skips = hasattr(trainable, "every_objective")
    if skips:
        previous, trainable.every_objective = trainable.every_objective, True
    try:
        with counter:
            result = trainable.training_step(images)
            active = [(group, loss) for group, loss in result.objectives.items() if loss is not None]
            for position, (group, loss) in enumerate(active):
                torch.autograd.grad(loss, list(groups[group]), retain_graph=position < len(active) - 1,
                                    allow_unused=True)
    finally:
        if skips:
            trainable.every_objective = previous
    return counter.get_total_flops() // FLOP_BATCH


def optimizer_step_flops(trainable: nn.Module, settings: Mapping[str, Any]) -> int:
    """FLOPs one step of the job's optimizer spends beyond element-wise updates (Adam's and RMSprop's, a few per
    parameter, are left out): Muon's orthogonalisation of every hidden weight matrix, whatever the batch."""
    if settings.get("optimizer", "adam") != "muon":
        return 0
    io = io_parameters(trainable)
    return sum(muon_step_flops(params, io) for params in trainable.parameter_groups().values())


def lapcvae_step_flops(params: Mapping[str, Any], resolution: int) -> float:
    """LapCVAE's (with M) network training FLOPs per image summed over its levels: one greedy step of each level,
    its frozen coarser levels costing their forward pass. Times budget.epochs passes, it is the model's network
    training FLOPs per training image."""
    from models.lapcvae import LapCVAE, LevelTrainable

    level_params = params["lapcvae"][str(resolution)]
    levels = int(level_params["levels"])
    total = 0
    for level in range(levels):
        model = LapCVAE.from_params(level_params, resolution, use_m=True, trained_levels=levels - level)
        trainable = LevelTrainable(model, level)
        total += training_step_flops(trainable, resolution)
    return total
