"""VAE/GAN training steps as the loop takes them (encoder and decoder gradients from one backward pass,
VAEGAN.shared_backward) against one pass per objective: median of interleaved steps, one run, default params.

Interleaving the two step by step keeps the ratio fair on a machine shared with other jobs.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vaegan_backward.py [--res 128] [--repeats 6]
"""

from __future__ import annotations

import argparse

import torch

# benchmarks/train.py (a script runs with its own folder on sys.path; benchmarks/ is not an installed package)
from train import RawStep, build, interleaved_medians

from core.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()
    params = load_params()
    batch = params["vaegan"][str(args.res)]["train"].get("batch_size", params["train"]["batch_size"])
    images = torch.rand(batch, 3, args.res, args.res, generator=torch.Generator().manual_seed(0))
    steps = {}
    for shared in (True, False):
        model, _ = build("vaegan", params, args.res, None)
        model.shared_backward = shared
        steps[shared] = RawStep(model, torch.device("cpu"), fast=True)
    medians = interleaved_medians(steps, images, args.repeats)
    one, two = medians[True], medians[False]
    print(f"vaegan@{args.res}, batch {batch}: now {one:.3f} s/step, as before {two:.3f} s/step: {one / two:.2f}x "
          "the time")


if __name__ == "__main__":
    main()
