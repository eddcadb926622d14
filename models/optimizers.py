"""Adam and RMSprop for the training loop, stepping with torch's own functional kernels.

Why not torch.optim.Adam itself: building any torch.optim.Optimizer (and its first step) imports torch._dynamo,
1.4-1.7 s of CPU in every training process on the 2-core CPU machine (benchmarks/startup.py), longer
than a smoke-scale job trains and almost what `import torch` costs. These classes call the same functions
torch.optim.Adam.step and RMSprop.step call (torch.optim.adam.adam, torch.optim.rmsprop.rmsprop: fused or
per-tensor), with the same state, so they make the same updates bit for bit, and their state_dict has torch's
layout (tests/test_training.py checks both).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import nn
from torch.optim.adam import adam
from torch.optim.rmsprop import rmsprop


class Optimizer:
    """One parameter group (`param_groups[0]`: the params and the options, `lr` settable per step) and lazily
    created per-parameter state; subclasses give DEFAULTS, STATE (the state tensors) and `_update`."""

    DEFAULTS: ClassVar[dict[str, Any]]
    STATE: ClassVar[tuple[str, ...]]

    def __init__(self, params: Iterable[nn.Parameter], **options: Any) -> None:
        unknown = set(options) - set(self.DEFAULTS)
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown options {sorted(unknown)}; known: {sorted(self.DEFAULTS)}")
        self.defaults = {**self.DEFAULTS, **options}
        self.param_groups = [{"params": list(params), **self.defaults}]
        self.state: dict[nn.Parameter, dict[str, torch.Tensor]] = {}

    @property
    def _group(self) -> dict[str, Any]:
        return self.param_groups[0]

    def _state(self, param: nn.Parameter) -> dict[str, torch.Tensor]:
        if param not in self.state:
            fused = bool(self._group.get("fused"))
            # Where torch.optim keeps `step`: on the parameter's device for the fused kernel, else on the CPU.
            step = torch.zeros((), dtype=torch.float32, device=param.device if fused else "cpu")
            self.state[param] = {"step": step, **{name: torch.zeros_like(param, memory_format=torch.preserve_format)
                                                  for name in self.STATE}}
        return self.state[param]

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        params = [param for param in self._group["params"] if param.grad is not None]
        states = [self._state(param) for param in params]
        self._update(params, [param.grad for param in params], states,
                     has_complex=any(torch.is_complex(param) for param in params))

    def _update(self, params: list[nn.Parameter], grads: list[torch.Tensor], states: list[dict[str, torch.Tensor]],
                *, has_complex: bool) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """torch.optim's layout: state keyed by the parameter's position, the group's options with positions."""
        positions = {param: position for position, param in enumerate(self._group["params"])}
        options = {key: value for key, value in self._group.items() if key != "params"}
        return {"state": {positions[param]: dict(state) for param, state in self.state.items()},
                "param_groups": [{**options, "params": list(range(len(positions)))}]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Options and state from `state_dict` (ours or torch.optim's of the same class and parameters)."""
        params = self._group["params"]
        saved_groups = state_dict["param_groups"]
        saved_counts = [len(group["params"]) for group in saved_groups]
        if saved_counts != [len(params)]:
            raise ValueError(f"{type(self).__name__}: the saved state is for parameter groups of {saved_counts} "
                             f"tensors, this optimizer has one of {len(params)}: it was saved for another model")
        self._group.update({key: saved_groups[0][key] for key in self.DEFAULTS if key in saved_groups[0]})
        fused = bool(self._group.get("fused"))
        self.state = {}
        for position, saved in state_dict["state"].items():
            param = params[int(position)]
            self.state[param] = {
                name: value.to(dtype=torch.float32, device=param.device if fused else "cpu") if name == "step"
                else value.to(dtype=param.dtype, device=param.device)
                for name, value in saved.items()
            }


class Adam(Optimizer):
    """torch.optim.Adam's update (no amsgrad): fused=True runs torch's one-kernel-per-tensor implementation."""

    DEFAULTS: ClassVar[dict[str, Any]] = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                                          "fused": False}
    STATE = ("exp_avg", "exp_avg_sq")

    def _update(self, params: list[nn.Parameter], grads: list[torch.Tensor], states: list[dict[str, torch.Tensor]],
                *, has_complex: bool) -> None:
        group = self._group
        beta1, beta2 = group["betas"]
        # fused None (not False) lets torch pick its per-tensor or foreach loop, as torch.optim.Adam does.
        adam(params, grads, [state["exp_avg"] for state in states], [state["exp_avg_sq"] for state in states], [],
             [state["step"] for state in states], fused=True if group["fused"] else None, has_complex=has_complex,
             amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"],
             eps=group["eps"], maximize=False)


class RMSprop(Optimizer):
    """torch.optim.RMSprop's update without momentum or centring (Larsen et al.'s VAE/GAN: config/paper.yaml)."""

    DEFAULTS: ClassVar[dict[str, Any]] = {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0}
    STATE = ("square_avg",)

    def _update(self, params: list[nn.Parameter], grads: list[torch.Tensor], states: list[dict[str, torch.Tensor]],
                *, has_complex: bool) -> None:
        group = self._group
        rmsprop(params, grads, [state["square_avg"] for state in states], [], [], [state["step"] for state in states],
                has_complex=has_complex, lr=group["lr"], alpha=group["alpha"], eps=group["eps"],
                weight_decay=group["weight_decay"], momentum=0.0, centered=False)
