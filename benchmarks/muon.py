"""Muon's orthogonalisation per step, side by side: the reference Newton-Schulz matrix iteration (fp32 and the
reference implementation's bf16), torch.optim.Muon's own kernel (bf16), and `training.optimizers.orthogonalize`
(the same map through one eigendecomposition of the Gram matrix), on the hidden weight matrices Muon steps in the
default VAE at 64 and 128 px, and on one 512 x 2,816 matrix. Prints milliseconds per optimizer step (median of
interleaved repeats), the ratio to the eigendecomposition form, and each form's relative distance to the float64
iteration.

    .venv/bin/python benchmarks/muon.py [--threads 1] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch.optim._muon import _zeropower_via_newtonschulz

from baselines.vae import VAE, vae_config
from core.params import load_params
from models.interface import io_parameters
from training.optimizers import NEWTON_SCHULZ, NEWTON_SCHULZ_STEPS, Muon, newton_schulz, orthogonalize

FORMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "Newton-Schulz matrix iteration, fp32": newton_schulz,
    "Newton-Schulz matrix iteration, bf16": lambda matrix: newton_schulz(matrix, dtype=torch.bfloat16).float(),
    "torch.optim.Muon's kernel, bf16": lambda matrix: _zeropower_via_newtonschulz(
        matrix, NEWTON_SCHULZ, NEWTON_SCHULZ_STEPS, 1e-7).float(),
    "orthogonalize (Gram eigendecomposition)": orthogonalize,
}


def vae_matrices(resolution: int) -> list[torch.Tensor]:
    """Random matrices of the shapes Muon orthogonalises in the default VAE (out x in * k * k)."""
    with torch.device("meta"):
        model = VAE.from_config(vae_config(load_params(), resolution))
    generator = torch.Generator().manual_seed(0)
    io = io_parameters(model)
    return [torch.randn(param.shape[0], param[0].numel(), generator=generator)
            for param in model.parameters() if Muon.orthogonalizes(param, io)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = {f"VAE at {res} px": vae_matrices(res) for res in (64, 128)}
    cases["one 512 x 2816 matrix"] = [torch.randn(512, 2816, generator=torch.Generator().manual_seed(1))]
    for case, matrices in cases.items():
        exact = [newton_schulz(matrix, dtype=torch.float64) for matrix in matrices]
        seconds: dict[str, list[float]] = {name: [] for name in FORMS}
        for _ in range(args.repeats):  # interleaved, so that a change in the machine's load hits every form alike
            for name, form in FORMS.items():
                started = time.perf_counter()
                for matrix in matrices:
                    form(matrix)
                seconds[name].append(time.perf_counter() - started)
        medians = {name: statistics.median(values) for name, values in seconds.items()}
        shapes = ", ".join("x".join(map(str, matrix.shape)) for matrix in matrices)
        print(f"{case} ({shapes}), {args.threads} thread(s):")
        for name, form in FORMS.items():
            error = max(float((form(matrix).double() - reference).norm() / reference.norm())
                        for matrix, reference in zip(matrices, exact, strict=True))
            print(f"  {name}: {1e3 * medians[name]:.2f} ms a step, {medians[name] / medians[list(FORMS)[-1]]:.2f}x "
                  f"the eigendecomposition form; relative distance to the float64 iteration {error:.1e}")


if __name__ == "__main__":
    main()
