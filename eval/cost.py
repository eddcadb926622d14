"""What training a model cost: wall time, training images seen and training FLOPs, for Table 1.

A model is built by one or more training jobs (a LapCVAE: one job per level, coarsest first, plus the M
retraining for `lapcvae_retrained_m`; a baseline: one job). For each job's checkpoint:

- images seen = steps x min(batch_size, N), from the checkpoint's meta (the loop drops partial batches);
- FLOPs per image = torch's FlopCounterMode's count (training.flops; 2 per multiply-add) of one
  training step, forward *and* the backward passes the loop runs (torch.autograd.grad of each objective with
  respect to its own parameter group), on a batch of 2 random images, halved. Frozen coarser LapCVAE levels cost
  their forward pass only, and each of VAE/GAN's three objectives is differentiated, as in
  training.loop._update, also those its balancing rule would skip at the trained weights (a full step: the
  count must not depend on where the weights sit against the rule; the steps that skipped an update cost less).
  Adam's and RMSprop's element-wise updates are left out (a few FLOPs per parameter per step, negligible beside
  the convolutions); Muon's Newton-Schulz iterations are not (training.flops.optimizer_step_flops: matrix products
  over every weight matrix, per step whatever the batch size), and count as the job's optimizer FLOPs.
- network FLOPs = sum over jobs of FLOPs per image x images seen (the forward and backward passes: what the
  equal-compute control matches); optimizer FLOPs = sum over jobs of the optimizer's; train FLOPs = both; train
  seconds = sum of the jobs' times.

Written by `lapcvae evaluate ... --training-checkpoints level3.pt ... level0.pt --cost .../cost.json` in the DAG
(one job per model), or alone:

    lapcvae training-cost --checkpoints results/models/64/lapcvae/level3.pt ... level0.pt \\
        --out results/eval/64/lapcvae/cost.json
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.atomic import write_json
from models.checkpoint import load_model
from training.flops import optimizer_step_flops, training_step_flops

logger = logging.getLogger(__name__)


def trainable_for(checkpoint: str | Path) -> tuple[nn.Module, int]:
    """(the Trainable its job trained, image resolution) of one training job's checkpoint."""
    from models.lapcvae import LevelTrainable, PriorRetrainer

    model = load_model(checkpoint, torch.device("cpu"))
    resolution = int(model.config["resolution"])
    if model.kind != "lapcvae":
        return model, resolution
    if Path(checkpoint).name == "retrained_m.pt":
        return PriorRetrainer(model), resolution
    return LevelTrainable(model, model.first_level), resolution


def images_seen(meta: dict[str, Any], train_count: int | None = None) -> int:
    """Training images the job's steps went through: steps x the batch size the loop used."""
    settings = meta.get("settings", {})
    batch = int(settings.get("batch_size", 0))
    if train_count is not None:
        batch = min(batch, train_count)
    return int(meta.get("steps", 0)) * batch  # under torchrun the ranks share each batch: still one batch a step


def training_cost(checkpoints: list[str | Path]) -> dict[str, Any]:
    """Cost of the model that the training jobs of `checkpoints` built, summed, with one entry per job."""
    if not checkpoints:
        raise ValueError("training-cost needs the checkpoints of the model's training jobs (--checkpoints)")
    jobs = []
    for checkpoint in checkpoints:
        trainable, resolution = trainable_for(checkpoint)
        meta = dict(getattr(getattr(trainable, "model", trainable), "meta", {}))
        flops = training_step_flops(trainable, resolution)
        seen = images_seen(meta)
        optimizer_flops = optimizer_step_flops(trainable, meta.get("settings", {})) * int(meta.get("steps", 0))
        jobs.append({"checkpoint": str(checkpoint), "train_seconds": meta.get("train_seconds"),
                     "epochs": meta.get("epochs"), "steps": meta.get("steps"), "images_seen": seen,
                     "flops_per_image": flops, "network_flops": flops * seen, "optimizer_flops": optimizer_flops,
                     "train_flops": flops * seen + optimizer_flops})
    return {
        "train_seconds": sum(job["train_seconds"] or 0.0 for job in jobs),
        "images_seen": sum(job["images_seen"] for job in jobs),
        "network_flops": sum(job["network_flops"] for job in jobs),
        "optimizer_flops": sum(job["optimizer_flops"] for job in jobs),
        "train_flops": sum(job["train_flops"] for job in jobs),
        "jobs": jobs,
    }


def write_training_cost(checkpoints: list[str | Path], out: str | Path) -> dict[str, Any]:
    """training_cost of `checkpoints`, written to the JSON `out` (cost.json beside the model's summary.json)."""
    measured = training_cost(checkpoints)
    write_json(out, measured)
    logger.info("%s: %.3g training FLOPs, %d images seen, %.1f s", out, measured["train_flops"],
                measured["images_seen"], measured["train_seconds"])
    return measured
