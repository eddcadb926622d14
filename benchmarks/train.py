"""Training throughput of every model (LapCVAE levels, VAE, VAE/GAN): a plain fp32 step against the loop's fast path.

For each resolution, default (params.yaml) and paper (config/paper.yaml) widths, and model (each LapCVAE level k
with levels k+1..K frozen, as in train-level; the VAE; the VAE/GAN), side by side in one run:
- `fp32 img/s`: a plain eager step: NCHW, fp32, every loss copied to the host each step;
- `fast img/s`: the same step the way `fit` runs it: channels-last, bf16 autocast where the device computes
  bf16 natively (CUDA, CPUs with AVX512-BF16/AMX), fused Adam, no per-step host copy (and torch.compile with
  --compile);
- the speed-up, the fast step's FLOP rate as a fraction of the fp32 and the bf16 torch.mm rates measured in this
  run (FLOPs of forward + backward counted by torch's FlopCounterMode);
- `fit/raw`: a whole `fit` call (`--fit-steps` steps, checkpoint included) in img/s over the fast raw step's.

    .venv/bin/python benchmarks/train.py [--steps 2] [--batch-size 16] [--resolutions 64 128] [--configs default]
    .venv/bin/python benchmarks/train.py --device cuda --paper      # make bench-gpu: paper widths on a GPU
    .venv/bin/python benchmarks/train.py --tiny                    # seconds: checks the script itself
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from core.device import autocast_dtype, resolve_device
from core.params import load_params
from models.lapcvae import LapCVAE, LevelTrainable
from training.baseline_jobs import build_baseline
from training.loop import (
    fit,
    make_optimizers,
    set_gradients,
    uses_channels_last,
)

CONFIGS = {"default": (), "paper": ("config/paper.yaml",)}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device: torch.device, dtype: torch.dtype, size: int = 2048, repeats: int = 3) -> float:
    """FLOP/s of a (size x size) @ (size x size) torch.mm in `dtype`, best of `repeats`.

    A 256^3 probe first: where bf16 is emulated (no native support) it runs at well under 1 GFLOP/s and a
    2048^3 product would take minutes, so the probe's rate is reported instead.
    """
    def best_of(n: int, times: int) -> float:
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        torch.mm(a, b)  # warm-up
        synchronize(device)
        best = float("inf")
        for _ in range(times):
            start = time.perf_counter()
            torch.mm(a, b)
            synchronize(device)
            best = min(best, time.perf_counter() - start)
        return 2 * n**3 / best

    probe = best_of(256, repeats)
    return probe if dtype != torch.float32 and probe < 5e9 else best_of(size, repeats)


def build(kind: str, params: dict, resolution: int, level: int | None) -> tuple[nn.Module, nn.Module]:
    """(trainable, export) at initial weights seeded alike for both measured paths."""
    torch.manual_seed(0)
    if kind == "lapcvae":
        section = params["lapcvae"][str(resolution)]
        model = LapCVAE.from_params(section, resolution, use_m=True, trained_levels=section["levels"] - level)
        return LevelTrainable(model, level), model
    model = build_baseline(params, kind, resolution)
    return model, model


class RawStep:
    """One optimisation step outside `fit`: training_step, per-group gradients, Adam (as `fit._update` does)."""

    def __init__(self, trainable: nn.Module, device: torch.device, fast: bool, compile_step: bool = False,
                 fused: bool | None = None, bf16: bool | None = None, channels_last: bool | None = None):
        self.trainable = trainable.to(device).train()
        self.device, self.fast = device, fast
        # fused, bf16, channels_last (default: fast) turn one option of the fast path off, to time it alone.
        self.dtype = autocast_dtype(device, fast if bf16 is None else bf16)
        self.memory_format = torch.channels_last if (fast if channels_last is None else channels_last) and \
            uses_channels_last(trainable) else torch.contiguous_format
        trainable.to(memory_format=self.memory_format)
        self.groups = {group: list(params) for group, params in trainable.parameter_groups().items()}
        # fused (default: fast): fit's fused Adam, or the per-tensor Adam.
        self.optimizers = make_optimizers(trainable, {"lr": 1e-4}, fused=fast if fused is None else fused)
        self.step_fn: Callable = torch.compile(trainable.training_step) if compile_step else trainable.training_step

    def __call__(self, images: torch.Tensor) -> None:
        images = images.contiguous(memory_format=self.memory_format)
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            objectives = self.step_fn(images).objectives
        if not self.fast:  # today's loop: each loss to the host every step to check it is finite
            for value in objectives.values():
                if value is not None:
                    torch.isfinite(value.detach().float().cpu())
        updating = [group for group in self.groups if objectives.get(group) is not None]
        set_gradients(objectives, self.groups, updating)
        for group in updating:
            self.optimizers[group].step()
            for param in self.groups[group]:
                param.grad = None


def time_steps(step: RawStep, images: torch.Tensor, steps: int) -> tuple[float, float]:
    """(seconds of the first step, seconds per step after it)."""
    start = time.perf_counter()
    step(images)
    synchronize(step.device)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step(images)
    synchronize(step.device)
    return first, (time.perf_counter() - start) / steps


def interleaved_medians(steps: dict[Any, RawStep], images: torch.Tensor, repeats: int) -> dict[Any, float]:
    """Median seconds per step of each variant, timed one step of each in turn (after one warm-up step each), so
    that the ratio stays fair on a machine shared with other jobs."""
    for step in steps.values():
        step(images)  # warm-up
    seconds: dict[Any, list[float]] = {key: [] for key in steps}
    for _ in range(repeats):
        for key, step in steps.items():
            start = time.perf_counter()
            step(images)
            synchronize(step.device)
            seconds[key].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in seconds.items()}


def count_flops(trainable: nn.Module, images: torch.Tensor) -> float:
    """FLOPs of one forward + backward of every objective (a deep copy, so the measured models stay untouched)."""
    trainable = copy.deepcopy(trainable)
    with FlopCounterMode(display=False) as counter:
        objectives = [value for value in trainable.training_step(images).objectives.values() if value is not None]
        torch.autograd.backward(objectives)
    return counter.get_total_flops()


def measure(kind: str, params: dict, resolution: int, level: int | None, args: argparse.Namespace,
            device: torch.device) -> dict[str, float]:
    batch = args.batch_size
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, resolution, resolution, generator=generator).to(device)
    trainable, _ = build(kind, params, resolution, level)
    flops = count_flops(trainable.to(device), images)
    _, old = time_steps(RawStep(trainable, device, fast=False), images, args.steps)
    trainable, export = build(kind, params, resolution, level)
    _, new = time_steps(RawStep(trainable, device, fast=True), images, args.steps)
    result = {"params": sum(p.numel() for ps in trainable.parameter_groups().values() for p in ps),
              "old": batch / old, "new": batch / new, "gflop_per_image": flops / batch / 1e9,
              "flop_rate": flops / new}
    if args.compile:
        trainable, _ = build(kind, params, resolution, level)
        first, compiled = time_steps(RawStep(trainable, device, fast=True, compile_step=True), images, args.steps)
        result.update(compiled=batch / compiled, compile_s=first - new,
                      break_even=(first - new) / (new - compiled) if compiled < new else float("inf"))
    # A whole fit call on --fit-steps batches of uint8 images, checkpoint and resume bookkeeping included.
    trainable, export = build(kind, params, resolution, level)
    data = np.random.default_rng(0).integers(0, 256, (batch * args.fit_steps, 3, resolution, resolution),
                                             dtype=np.uint8)
    settings = {**params["train"], "batch_size": batch, "epochs": 1, "log_every": 10, "compile": False}
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        fit(trainable, data, settings=settings, seed=0, output=Path(folder) / "model.pt", export=export,
            device=str(device), name=f"{kind}{level if level is not None else ''}")
        result["fit"] = len(data) / (time.perf_counter() - start)
    return result


def jobs(args: argparse.Namespace) -> list[tuple[str, str, int, int | None]]:
    """(config, kind, resolution, level) of every training job measured."""
    rows = []
    for resolution in args.resolutions:
        for config in args.configs:
            levels = load_params(*CONFIGS[config])["lapcvae"][str(resolution)]["levels"]
            rows += [(config, "lapcvae", resolution, level) for level in range(levels - 1, -1, -1)]
            rows += [(config, kind, resolution, None) for kind in args.baselines]
    return rows


def tiny(params: dict) -> dict:
    """Widths small enough for a CPU to run the whole table in seconds (to check the script, not to measure)."""
    for resolution in ("64", "128"):
        params["lapcvae"][resolution].update(latent_dims=[8] * params["lapcvae"][resolution]["levels"],
                                             widths=[4, 8], m_hidden=16)
        params["vaegan"][resolution].update(widths=[8, 16, 32, 32, 32][: len(params["vaegan"][resolution]["widths"])],
                                            latent_dim=16, dis_hidden=16)
    return params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2, help="timed steps per model and path")
    parser.add_argument("--fit-steps", type=int, default=6, help="steps of the whole fit call")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--baselines", nargs="*", default=["vae", "vaegan"], choices=["vae", "vaegan"])
    parser.add_argument("--device", default="cpu", help="cpu, cuda (or auto)")
    parser.add_argument("--paper", action="store_true", help="paper widths only, batch 64 (for a GPU)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile: compile s, break-even")
    parser.add_argument("--tiny", action="store_true", help="tiny widths: check the script in seconds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.paper:
        args.configs, args.batch_size = ["paper"], 64
    device = resolve_device(args.device)
    fp32, bf16 = matmul_rate(device, torch.float32), matmul_rate(device, torch.bfloat16)
    native = autocast_dtype(device, True) is not None
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads; torch.mm fp32 "
          f"{fp32 / 1e9:.1f} GFLOP/s, bf16 {bf16 / 1e9:.2f} GFLOP/s "
          f"({'native' if native else 'emulated: fit uses fp32'}); "
          f"batch {args.batch_size}, {args.steps} timed steps, fit over {args.fit_steps} steps"
          f"{' (tiny widths)' if args.tiny else ''}\n")
    header = ("| res | widths | model | params | GFLOP/img | fp32 img/s | fast img/s | speed-up | of fp32 mm "
              "| of bf16 mm | fit img/s | fit/raw |")
    if args.compile:
        header += " compiled img/s | compile s | break-even steps |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for config, kind, resolution, level in jobs(args):
        params = load_params(*CONFIGS[config])
        if args.tiny:
            params = tiny(params)
        name = f"level {level} ({resolution // 2**level} px)" if kind == "lapcvae" else kind
        r = measure(kind, params, resolution, level, args, device)
        line = (f"| {resolution} | {config} | {name} | {r['params']:,} | {r['gflop_per_image']:.3f} | {r['old']:.1f} "
                f"| {r['new']:.1f} | {r['new'] / r['old']:.2f}x | {r['flop_rate'] / fp32:.0%} | "
                f"{r['flop_rate'] / bf16:.0%} | {r['fit']:.1f} | {r['fit'] / r['new']:.0%} |")
        if args.compile:
            line += f" {r['compiled']:.1f} | {r['compile_s']:.1f} | {r['break_even']:.0f} |"
        print(line, flush=True)


if __name__ == "__main__":
    main()
