"""Three options of the training step on this CPU, each against its alternative, the rest of the step as `fit` runs
it: memory layout (NCHW against channels-last), precision (fp32 against bf16 autocast; where the CPU has no native
bf16 both are fp32, and the line says so) and optimizer (the per-tensor Adam against fit's fused Adam). Median of
interleaved steps, one run.

Interleaving the two variants step by step keeps the ratio fair on a machine shared with other jobs.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/step_options.py [--repeats 5] [--compare layout precision adam]
"""

from __future__ import annotations

import argparse

import torch

# benchmarks/train.py (a script runs with its own folder on sys.path; benchmarks/ is not an installed package)
from train import RawStep, build, interleaved_medians

from core.params import load_params
from training.loop import autocast_dtype

JOBS = [("vae", 64, None), ("lapcvae", 64, 0), ("vaegan", 64, None)]
# RawStep options of the two variants of each comparison, the first the one the loop does not use (where it can).
COMPARISONS = {
    "layout": {"NCHW": {"fast": True, "channels_last": False}, "channels-last": {"fast": True}},
    "precision": {"fp32": {"fast": True, "bf16": False}, "bf16 autocast": {"fast": True}},
    "adam": {"per-tensor Adam": {"fast": True, "fused": False}, "fused Adam": {"fast": True}},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--compare", nargs="+", default=list(COMPARISONS), choices=list(COMPARISONS))
    args = parser.parse_args()
    params, device = load_params(), torch.device("cpu")
    if "precision" in args.compare and autocast_dtype(device, True) is None:
        print("precision: this CPU has no native bf16, so fit trains in fp32 and both variants are fp32")
    for comparison in args.compare:
        variants = COMPARISONS[comparison]
        for kind, resolution, level in JOBS:
            images = torch.rand(args.batch_size, 3, resolution, resolution,
                                generator=torch.Generator().manual_seed(0))
            steps = {name: RawStep(build(kind, params, resolution, level)[0], device, **options)
                     for name, options in variants.items()}
            medians = interleaved_medians(steps, images, args.repeats)
            (before, old), (after, new) = medians.items()
            print(f"{comparison}: {kind} {resolution} px{'' if level is None else f' level {level}'}: {before} "
                  f"{args.batch_size / old:.1f} img/s, {after} {args.batch_size / new:.1f} img/s, "
                  f"speed-up {old / new:.2f}x", flush=True)


if __name__ == "__main__":
    main()
