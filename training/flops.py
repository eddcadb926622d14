"""FLOPs of one training step per image (2 per multiply-add), the unit of the suite's compute budgets: Table 1's
training FLOPs (eval/cost.py), the ablations (studies/ablations.py) and the VAE trained with LapCVAE's training FLOPs
(training/baseline_jobs.py); and the counter behind them and behind Table 1's FLOPs per reconstruction."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from models.interface import io_parameters
from training.optimizers import muon_step_flops

FLOP_BATCH = 2  # batch norm needs more than one image per batch in training mode

# Queries of a tensor's layout, not computations: FlopCounterMode lets them through uncounted, and so does this.
_LAYOUT_QUERIES = frozenset({
    torch.ops.aten.sym_is_contiguous.default, torch.ops.aten.is_contiguous.default,
    torch.ops.aten.is_contiguous.memory_format, torch.ops.aten.is_strides_like_format.default,
    torch.ops.aten.is_non_overlapping_and_dense.default, torch.ops.aten.size.default,
    torch.ops.aten.sym_size.default, torch.ops.aten.stride.default, torch.ops.aten.sym_stride.default,
    torch.ops.aten.storage_offset.default, torch.ops.aten.sym_storage_offset.default,
    torch.ops.aten.numel.default, torch.ops.aten.sym_numel.default, torch.ops.aten.dim.default,
    torch.ops.prim.layout.default,
})


class FlopCounter(TorchDispatchMode):
    """Counts the FLOPs of the aten ops run inside it with torch's own formulas (torch.utils.flop_counter's
    registry: 2 per multiply-add of matmuls and convolutions, forward and backward): FlopCounterMode's total.

    Why not FlopCounterMode itself: a TorchDispatchMode's `__torch_dispatch__` is wrapped in torch._disable_dynamo
    unless the mode opts out, and its first call imports torch._dynamo in every process that counts
    (benchmarks/startup.py measures it; FlopCounterMode's module tracker does the same in backward). This mode never
    runs under torch.compile, so it opts out; it keeps FlopCounterMode's dispatch rules (ops without a formula are
    decomposed and their parts counted), so the totals are the same (tests/test_protocol_cost.py compares them on
    every model).
    """

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # do not wrap __torch_dispatch__ in torch._disable_dynamo (see the class docstring)

    def __torch_dispatch__(self, func: torch._ops.OpOverload, types: tuple[type, ...], args: tuple = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _LAYOUT_QUERIES:
            return NotImplemented
        packet = func._overloadpacket
        if packet not in flop_registry and func is not torch.ops.prim.device.default:
            with self:  # count what the op decomposes into
                decomposed = func.decompose(*args, **kwargs)
                if decomposed is not NotImplemented:
                    return decomposed
        out = func(*args, **kwargs)
        if packet in flop_registry:
            self.total += int(flop_registry[packet](*args, **kwargs, out_val=out))
        return out


def count_flops(function: Callable[[torch.Tensor], Any], example: torch.Tensor) -> int:
    """FLOPs of one call `function(example)` in inference mode (Table 1's FLOPs per reconstruction)."""
    counter = FlopCounter()
    with torch.inference_mode(), counter:
        function(example)
    return counter.total


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
    counter = FlopCounter()
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
    return counter.total // FLOP_BATCH


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
