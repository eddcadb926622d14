"""Validation runs behind the default model settings: train one model with params.yaml plus overrides, score it
on the validation split only (never test). Results: one JSON line per run on stdout and appended to --log.

    OMP_NUM_THREADS=1 python benchmarks/quality.py --model vae --res 64 --data data/prepared \
        --set train.schedule='{warmup: 0.05, decay: cosine}' --log scratch/quality.jsonl

--set takes a dotted params path and a YAML value (repeatable); "vae.64.kl_weight=0.02" addresses
vae["64"]["kl_weight"]. LapCVAE trains every level of the with-M variant greedily, coarsest first.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from core.params import load_params, validate
from eval.metrics import contrast_per_image
from studies.tuning import validation_rmse
from training.baseline_jobs import BASELINES


def apply_override(params: dict[str, Any], assignment: str) -> None:
    path, _, text = assignment.partition("=")
    node = params
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = yaml.safe_load(text)


def std_ratio(model: torch.nn.Module, images: np.ndarray) -> float:
    """Median over images of the reconstruction's pixel std over the original's (Table 1's contrast)."""
    with torch.inference_mode():
        reference = torch.from_numpy(np.array(images)).float() / 255.0
        return float(contrast_per_image(reference, model.reconstruct(reference)).nanmedian())


def mean_rate(model: torch.nn.Module, images: np.ndarray, batch: int = 256) -> float | None:
    """Mean KL(q(z|x) || p(z)) in nats per validation image, or None for a model without `rate`."""
    if not hasattr(model, "rate"):
        return None
    with torch.inference_mode():
        rates = [model.rate(torch.from_numpy(np.array(images[start:start + batch])).float() / 255.0)
                 for start in range(0, len(images), batch)]
    return float(torch.cat(rates).float().mean())


def train(params: dict[str, Any], model: str, resolution: int, images: np.ndarray, work: Path) -> torch.nn.Module:
    if model == "lapcvae":
        from training.lapcvae_jobs import train_level

        coarser = None
        for level in reversed(range(params["lapcvae"][str(resolution)]["levels"])):
            out = work / f"level{level}.pt"
            network, _ = train_level(params, resolution, "lapcvae", level, coarser, images, out)
            coarser = out
        return network.cpu().eval()
    from training.baseline_jobs import train_baseline

    return train_baseline(params, model, resolution, images, work / "model.pt")[0].cpu().eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, choices=["lapcvae", *BASELINES])
    parser.add_argument("--res", type=int, default=64)
    parser.add_argument("--data", default="data/prepared", help="folder with {res}/train.npy and {res}/val.npy")
    parser.add_argument("--set", action="append", default=[], help="dotted.path=YAML value (repeatable)")
    parser.add_argument("--log", default=None, help="append the result line to this JSONL file")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    params = load_params()
    for assignment in args.set:
        apply_override(params, assignment)
    params = validate(params)
    params["device"] = "cpu"
    folder = Path(args.data) / str(args.res)
    train_images, val_images = np.load(folder / "train.npy"), np.load(folder / "val.npy")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        network = train(params, args.model, args.res, train_images, Path(work))
    seconds = time.perf_counter() - start
    result = {"tag": args.tag, "model": args.model, "res": args.res, "set": args.set,
              "val_rmse": round(validation_rmse(network, val_images), 3),
              # The same score on as many training images: a gap to val_rmse is overfitting, none underfitting.
              "train_rmse": round(validation_rmse(network, train_images[:len(val_images)]), 3),
              "std_ratio": round(std_ratio(network, val_images), 3),
              "rate": None if (rate := mean_rate(network, val_images)) is None else round(rate, 1),
              "seconds": round(seconds, 1),
              "parameters": sum(p.numel() for p in network.parameters()), "n_train": len(train_images)}
    line = json.dumps(result)
    print(line, flush=True)
    if args.log:
        with open(args.log, "a") as handle:
            handle.write(line + "\n")


if __name__ == "__main__":
    main()
