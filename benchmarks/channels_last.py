"""Channels-last against NCHW for fp32 training steps on this CPU: median of interleaved steps, one run.

Interleaving the two layouts step by step keeps the ratio fair on a machine shared with other jobs.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/channels_last.py [--repeats 5]
"""

from __future__ import annotations

import argparse

import torch

# benchmarks/train.py (a script runs with its own folder on sys.path; benchmarks/ is not an installed package)
from train import RawStep, build, interleaved_medians

from core.params import load_params

JOBS = [("vae", 64, None), ("lapcvae", 64, 0), ("vaegan", 64, None)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    params, device = load_params(), torch.device("cpu")
    for kind, resolution, level in JOBS:
        images = torch.rand(args.batch_size, 3, resolution, resolution, generator=torch.Generator().manual_seed(0))
        steps = {}
        for channels_last in (False, True):
            trainable, _ = build(kind, params, resolution, level)
            # autocast_dtype stays None without native bf16, so fast=True differs from fast=False only in layout
            # and the per-step host copy.
            steps[channels_last] = RawStep(trainable, device, fast=channels_last)
        medians = interleaved_medians(steps, images, args.repeats)
        nchw, last = medians[False], medians[True]
        print(f"{kind} {resolution} px{'' if level is None else f' level {level}'}: NCHW "
              f"{args.batch_size / nchw:.1f} img/s, channels-last {args.batch_size / last:.1f} img/s, "
              f"ratio {nchw / last:.2f}", flush=True)


if __name__ == "__main__":
    main()
