"""Muon for the training loop (Adam and RMSprop are torch.optim's: training/loop.py `OPTIMIZERS`).

Muon (Jordan et al. 2024, "Muon: an optimizer for hidden layers") is not in torch 2.14's torch.optim for
convolutions, so it is written here: docs/tuning.md ("The optimizer and its schedule") shows what it does for
every model under the budget rule, and what it costs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import nn
from torch.optim.adam import adam

# Newton-Schulz quintic of Muon's reference implementation: five steps map every singular value of a normalised
# matrix into about [0.7, 1.2] (near-null ones stay small), so the update's singular directions all move at about
# the same rate.
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)
NEWTON_SCHULZ_STEPS = 5


# FLOPs of a symmetric eigendecomposition with eigenvectors, per m^3 (Golub and Van Loan's count for the symmetric
# QR algorithm, one FLOP per add or multiply): FlopCounterMode does not count LAPACK calls, so muon_step_flops adds it.
EIGH_FLOPS_PER_CUBE = 9


def _normalized_wide(matrix: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, bool]:
    """(m, n) with m <= n (the transpose of a tall matrix), scaled to Frobenius norm 1, and whether it was wide."""
    wide = matrix.shape[0] <= matrix.shape[1]
    x = matrix.to(dtype) if wide else matrix.to(dtype).T
    return x / (x.norm() + 1e-7), wide  # spectral norm <= Frobenius norm = 1, inside the iteration's basin


def newton_schulz(matrix: torch.Tensor, steps: int = NEWTON_SCHULZ_STEPS,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Muon's reference form of the steps: x <- a x + (b x x^T + c (x x^T)^2) x, each step three matrix products
    (the reference implementation runs them in bf16). `orthogonalize` computes the same map more cheaply; this one
    is kept as its specification (tests/test_training.py) and its baseline (benchmarks/muon.py)."""
    a, b, c = NEWTON_SCHULZ
    x, wide = _normalized_wide(matrix, dtype)
    for _ in range(steps):
        gram = x @ x.T  # (m, m)
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x if wide else x.T


def orthogonalize(matrix: torch.Tensor, steps: int = NEWTON_SCHULZ_STEPS) -> torch.Tensor:
    """About U V^T of `matrix` = U S V^T: Muon's `steps` Newton-Schulz steps, applied through the Gram matrix.

    Each step maps x to p(x x^T) x with p a polynomial, so every step only rescales the singular values:
    s -> s (a + b s^2 + c s^4). Here one eigendecomposition of the small side's Gram matrix x x^T = U S^2 U^T gives
    the singular values, the steps run on them as scalars, and the result is U diag(scale) U^T x: the map of
    `newton_schulz`'s rounds of (m, n) matrix products (within 0.2 % of it in float64, tests/test_training.py) for 2
    products of that size instead of fifteen (benchmarks/muon.py times both forms).
    """
    a, b, c = NEWTON_SCHULZ
    x, wide = _normalized_wide(matrix, torch.float32)  # (m, n), m <= n: the Gram matrix is the small side's
    gram = x @ x.T  # (m, m)
    try:
        squared_values, vectors = torch.linalg.eigh(gram)  # (m,), (m, m): x x^T = U diag(s^2) U^T
    except torch.linalg.LinAlgError:
        # LAPACK's fp32 solver can fail on a diverging run's matrices: retry in float64, then take the matrix
        # iteration, so that a diverging run ends at the loop's NaN check with its message instead of here.
        # Deterministic: the same input fails the same way.
        try:
            squared_values, vectors = (part.float() for part in torch.linalg.eigh(gram.double()))
        except torch.linalg.LinAlgError:
            return newton_schulz(matrix, steps)
    squared_values = squared_values.clamp(min=0.0)  # rounding can leave a null direction slightly negative
    scale = torch.ones_like(squared_values)
    for _ in range(steps):
        factor = a + b * squared_values + c * squared_values.square()  # s -> s * factor
        scale = scale * factor
        squared_values = squared_values * factor.square()
    x = (vectors * scale) @ vectors.T @ x  # (m, n): U diag(scale) U^T x
    return x if wide else x.T


def muon_step_flops(params: Iterable[nn.Parameter], io_parameters: set[int] = frozenset()) -> int:
    """FLOPs of one Muon step's orthogonalisation over `params` (2 per multiply-add, as the FLOP counter): per
    hidden matrix m x n (m <= n), the Gram matrix (2 m^2 n), its eigendecomposition (EIGH_FLOPS_PER_CUBE m^3),
    U diag U^T (2 m^3) and its product with the matrix (2 m^2 n). io_parameters: ids of the input and output
    layers' parameters (models.interface.io_parameters), which step with Adam."""
    total = 0
    for param in params:
        if Muon.orthogonalizes(param, io_parameters):
            m, n = sorted((param.shape[0], param[0].numel()))
            total += 4 * m * m * n + (2 + EIGH_FLOPS_PER_CUBE) * m ** 3
    return total


class Muon:
    """Muon for every hidden weight matrix (a convolution's flattened to out x in*k*k), torch's Adam for the rest.

    A matrix steps by matrix_lr along its orthogonalised Nesterov momentum, scaled by sqrt(max(1, rows / cols)) as
    in the reference implementation; biases, norms' scales, the input and output layers marked by the model
    (`io_parameters`, models.interface.mark_io_layers) and matrices with at most 3 rows or columns step with Adam
    at lr (torch's functional Adam, torch.optim.adam.adam). The update's scale is fixed by the orthogonalisation,
    not by the loss, so one matrix_lr serves models whose Adam rates differ (params.yaml `train.matrix_lr`; chosen
    on validation: docs/tuning.md); train.schedule scales both rates. Optimizer FLOPs
    per step: muon_step_flops (eval/cost.py adds them).

    Not a torch.optim.Optimizer: building one imports torch._dynamo, about as much CPU as `import torch`, in every
    one of the default run's training jobs, which all step with Muon (benchmarks/startup.py). One parameter group
    (`param_groups[0]`: the params and the options, `lr` and `matrix_lr` set per step by the loop) and a state_dict
    in torch.optim's layout.
    """

    DEFAULTS: ClassVar[dict[str, Any]] = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                                          "matrix_lr": 5e-3, "momentum": 0.95}
    STATE = ("exp_avg", "exp_avg_sq")  # a matrix's momentum is its exp_avg; its exp_avg_sq stays unused

    def __init__(self, params: Iterable[nn.Parameter], io_parameters: set[int] = frozenset(), **options: Any) -> None:
        unknown = set(options) - set(self.DEFAULTS)
        if unknown:
            raise TypeError(f"Muon: unknown options {sorted(unknown)}; known: {sorted(self.DEFAULTS)}")
        self.defaults = {**self.DEFAULTS, **options}
        self.param_groups = [{"params": list(params), **self.defaults}]
        self.state: dict[nn.Parameter, dict[str, torch.Tensor]] = {}
        self.io_parameters = set(io_parameters)

    @staticmethod
    def orthogonalizes(param: torch.Tensor, io_parameters: set[int] = frozenset()) -> bool:
        """Whether `param` is a hidden weight matrix, the kind Muon steps."""
        return param.ndim >= 2 and id(param) not in io_parameters and min(param.shape[0], param[0].numel()) > 3

    def _state(self, param: nn.Parameter) -> dict[str, torch.Tensor]:
        if param not in self.state:
            # Where torch.optim.Adam keeps `step` for its per-tensor kernel: on the CPU.
            step = torch.zeros((), dtype=torch.float32, device="cpu")
            self.state[param] = {"step": step, **{name: torch.zeros_like(param, memory_format=torch.preserve_format)
                                                  for name in self.STATE}}
        return self.state[param]

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        group = self.param_groups[0]
        adam_params, adam_grads, adam_states = [], [], []
        for param in group["params"]:
            if param.grad is None:
                continue
            grad, state = param.grad, self._state(param)
            if not self.orthogonalizes(param, self.io_parameters):
                adam_params.append(param)
                adam_grads.append(grad)
                adam_states.append(state)
                continue
            if group["weight_decay"]:
                grad = grad.add(param, alpha=group["weight_decay"])
            momentum = state["exp_avg"].mul_(group["momentum"]).add_(grad)
            state["step"] += 1
            nesterov = grad.add(momentum, alpha=group["momentum"]).reshape(param.shape[0], -1)  # (out, in * k * k)
            update = orthogonalize(nesterov)
            step_size = group["matrix_lr"] * max(1.0, nesterov.shape[0] / nesterov.shape[1]) ** 0.5
            param.add_(update.reshape(param.shape).to(param.dtype), alpha=-step_size)
        if adam_params:
            beta1, beta2 = group["betas"]
            adam(adam_params, adam_grads, [state["exp_avg"] for state in adam_states],
                 [state["exp_avg_sq"] for state in adam_states], [], [state["step"] for state in adam_states],
                 has_complex=any(torch.is_complex(param) for param in adam_params), amsgrad=False, beta1=beta1,
                 beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)

    def state_dict(self) -> dict[str, Any]:
        """torch.optim's layout: state keyed by the parameter's position, the group's options with positions."""
        group = self.param_groups[0]
        positions = {param: position for position, param in enumerate(group["params"])}
        options = {key: value for key, value in group.items() if key != "params"}
        return {"state": {positions[param]: dict(state) for param, state in self.state.items()},
                "param_groups": [{**options, "params": list(range(len(positions)))}]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Options and state from a state_dict of Muon over the same parameters."""
        group = self.param_groups[0]
        params = group["params"]
        saved_groups = state_dict["param_groups"]
        saved_counts = [len(saved["params"]) for saved in saved_groups]
        if saved_counts != [len(params)]:
            raise ValueError(f"Muon: the saved state is for parameter groups of {saved_counts} tensors, this "
                             f"optimizer has one of {len(params)}: it was saved for another model")
        group.update({key: saved_groups[0][key] for key in self.DEFAULTS if key in saved_groups[0]})
        self.state = {}
        for position, saved in state_dict["state"].items():
            param = params[int(position)]
            self.state[param] = {
                name: value.to(dtype=torch.float32, device="cpu") if name == "step"
                else value.to(dtype=param.dtype, device=param.device)
                for name, value in saved.items()
            }
