"""Training throughput of every LapCVAE level, and its FLOP rate against this machine's matrix-multiply rate.

For 64 and 128 px, default (params.yaml) and paper (config/paper.yaml) widths, each level k trains a few steps
(levels k+1..K frozen, as in train-level). FLOPs of one step (forward + backward) are counted with
torch.utils.flop_counter.FlopCounterMode; the reference is a large torch.mm timed in the same run.

    .venv/bin/python benchmarks/train.py [--steps 2] [--batch-size 16] [--resolutions 64 128]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from core.params import load_params
from models.lapcvae import LapCVAE, LevelTrainable

CONFIGS = {"default": (), "paper": ("config/paper.yaml",)}


def matmul_rate(size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a (size x size) @ (size x size) float32 torch.mm, best of `repeats`."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def train_step(trainable: LevelTrainable, optimizer: torch.optim.Optimizer, images: torch.Tensor) -> None:
    loss = trainable.training_step(images).objectives[f"level{trainable.level}"]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def measure_level(section: dict, resolution: int, level: int, batch_size: int, steps: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = LapCVAE.from_params(section, resolution, use_m=True, trained_levels=section["levels"] - level)
    trainable = LevelTrainable(model, level).train()
    optimizer = torch.optim.Adam(trainable.parameter_groups()[f"level{level}"], lr=1e-4)
    images = torch.rand(batch_size, 3, resolution, resolution)
    with FlopCounterMode(display=False) as counter:
        loss = trainable.training_step(images).objectives[f"level{level}"]
        loss.backward()
    optimizer.zero_grad()
    train_step(trainable, optimizer, images)  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        train_step(trainable, optimizer, images)
    seconds = (time.perf_counter() - start) / steps
    flops = counter.get_total_flops()
    return {"params": sum(p.numel() for p in model.level(level).parameters()),
            "images_per_s": batch_size / seconds, "gflop_per_image": flops / batch_size / 1e9,
            "gflop_per_s": flops / seconds / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2, help="timed steps per level")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args()
    reference = matmul_rate()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; torch.mm 2048^3: "
          f"{reference / 1e9:.1f} GFLOP/s (batch {args.batch_size}, {args.steps} timed steps per level)")
    print(f"{'res':>4} {'config':>8} {'level':>5} {'size':>5} {'params':>11} {'img/s':>8} {'GFLOP/img':>10} "
          f"{'GFLOP/s':>8} {'of mm':>6}")
    for resolution in args.resolutions:
        for config in args.configs:
            section = load_params(*CONFIGS[config])["lapcvae"][str(resolution)]
            for level in range(section["levels"] - 1, -1, -1):
                result = measure_level(section, resolution, level, args.batch_size, args.steps)
                print(f"{resolution:>4} {config:>8} {level:>5} {resolution // 2**level:>5} {result['params']:>11,} "
                      f"{result['images_per_s']:>8.1f} {result['gflop_per_image']:>10.3f} "
                      f"{result['gflop_per_s']:>8.1f} {result['gflop_per_s'] * 1e9 / reference:>6.1%}", flush=True)


if __name__ == "__main__":
    main()
