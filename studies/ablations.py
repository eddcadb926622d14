"""Ablations of LapCVAE: greedy against joint training, and the decoder's conditioning (Eq. 11 against Eq. 10).

A variant is `<training>_<conditioning>` (params `ablations.variants`):
- training `greedy`: one job per level, coarsest first, each on its frozen coarser levels (Table 1's LapCVAE);
  `joint`: every level in one job, end to end, minimising Eq. 12 summed over the levels with the same lambda_k
  (models.lapcvae.JointTrainable). Every job trains budget.epochs, as the budget rule says: greedy training is
  K + 1 jobs of budget.epochs each, joint training one.
- conditioning (lapcvae.<res>.conditioning): `latents` (Eq. 11), `image` (Eq. 10, u(x_{k+1})), `both`.
Each variant (with M) is followed by retrain-M (Figure 8), as Table 1's LapCVAE is.

Measured per variant (and per variant after retrain-M): test RMSE (0-255, quantised, Table 1's metric), R^2 of
band h_0, rate (KL nats per image against the prior each level trained with), final validation RMSE, parameters,
train seconds, images seen and train FLOPs (eval.cost's count of one step, forward and backward, times images).

Greedy against joint, "time to the same validation loss": during training the loop measures the validation
RMSE of the model trained so far (greedy: the levels k..K held after level k's job, upsampled to full size;
joint: the whole pyramid) every `ablations.validate_every` steps and at each epoch end. The greedy curve runs
through its jobs in training order, with their seconds and images added up. The target is the final validation
RMSE of the worse of the two; each one's time to target is the train seconds (and images seen) of its first
measurement at or below it. The paper's claim "the total training time is doubled if the greedy training
procedure is used" predicts greedy / joint = 2.

    lapcvae ablations train --res 64 --variant joint_latents --train .../train.npy --val .../val.npy \\
        --out-dir results/ablations/64/joint_latents
    lapcvae ablations table --res 64 --work-dir results/ablations/64 --val ... --test ... \\
        --out-csv results/ablations/64.csv --out-json results/ablations/64.json
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from core.atomic import atomic_path
from eval.cost import images_seen
from eval.metrics import atomic_write_csv, atomic_write_json, per_image_metrics, rate_per_image, rmse_per_image
from models.checkpoint import load_model
from models.lapcvae import CONDITIONING, JointTrainable, LapCVAE, LevelTrainable, PriorRetrainer
from training.flops import training_step_flops

logger = logging.getLogger(__name__)

TRAININGS = ("greedy", "joint")
COLUMNS = ["variant", "training", "conditioning", "m_retrained", "parameters", "val_rmse", "test_rmse",
           "r2_h0", "rate_nats", "train_seconds", "images_seen", "train_flops"]
COMPARISON_COLUMNS = ["conditioning", "target_val_rmse", "greedy_final_val_rmse", "joint_final_val_rmse",
                      "greedy_seconds_to_target", "joint_seconds_to_target", "seconds_ratio_greedy_over_joint",
                      "greedy_images_to_target", "joint_images_to_target", "images_ratio_greedy_over_joint",
                      "greedy_flops_to_target", "joint_flops_to_target", "flops_ratio_greedy_over_joint",
                      "greedy_total_seconds", "joint_total_seconds"]


def parse_variant(variant: str) -> tuple[str, str]:
    """'greedy_image' -> ('greedy', 'image')."""
    training, _, conditioning = variant.partition("_")
    if training not in TRAININGS or conditioning not in CONDITIONING:
        raise ValueError(f"unknown ablation variant {variant!r}: use <{'|'.join(TRAININGS)}>_"
                         f"<{'|'.join(CONDITIONING)}> (params ablations.variants)")
    return training, conditioning


def variant_params(params: Mapping[str, Any], resolution: int, conditioning: str) -> dict[str, Any]:
    """params with lapcvae.<res>.conditioning set."""
    updated = copy.deepcopy(dict(params))
    updated["lapcvae"][str(resolution)]["conditioning"] = conditioning
    return updated


def _batches(images: np.ndarray, device: torch.device, batch_size: int = 256):
    for start in range(0, len(images), batch_size):
        yield torch.from_numpy(np.array(images[start:start + batch_size])).to(device).float() / 255.0


def validation_rmse(model: nn.Module, val_images: np.ndarray) -> float:
    """Mean per-image RMSE (0-255, quantised, Table 1's metric) of the model's reconstructions of `val_images`."""
    device = next(model.parameters()).device
    with torch.no_grad():
        values = [rmse_per_image(batch, model.reconstruct(batch)).cpu() for batch in _batches(val_images, device)]
    return float(torch.cat(values).double().mean())


def _cost(trainable: nn.Module, resolution: int, meta: Mapping[str, Any], checkpoint: Path) -> dict[str, Any]:
    """One job's cost; FLOPs are counted on a copy (a training step in train mode moves batch-norm statistics)."""
    flops = training_step_flops(copy.deepcopy(trainable).cpu(), resolution)
    seen = images_seen(dict(meta))
    return {"checkpoint": str(checkpoint), "train_seconds": float(meta["train_seconds"]), "images_seen": seen,
            "flops_per_image": flops, "train_flops": flops * seen}


def _atomic_copy(source: Path, target: Path) -> None:
    with atomic_path(target) as temporary:
        shutil.copyfile(source, temporary)


def train_variant(params: Mapping[str, Any], resolution: int, variant: str, train_images: np.ndarray,
                  val_images: np.ndarray, out_dir: str | Path) -> dict[str, Any]:
    """Train one variant and retrain its M networks; writes model.pt, retrained_m.pt, training.json in out_dir.

    Returns the training record: jobs (checkpoint, seconds, images seen, FLOPs) and the validation curve.
    """
    from training.lapcvae_jobs import train_joint, train_level

    training, conditioning = parse_variant(variant)
    trial = variant_params(params, resolution, conditioning)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    every = int(params["ablations"]["validate_every"])

    def validate(model: LapCVAE) -> dict[str, float]:
        return {"val_rmse": validation_rmse(model, val_images)}

    jobs, curves = [], []
    if training == "joint":
        checkpoint = out_dir / "model.pt"
        model, meta = train_joint(trial, resolution, train_images, checkpoint, validate=validate,
                                  validate_every=every)
        jobs.append({"job": "joint", **_cost(JointTrainable(model), resolution, meta, checkpoint)})
        curves.append(("joint", checkpoint))
    else:
        coarser: Path | None = None
        for level in range(trial["lapcvae"][str(resolution)]["levels"] - 1, -1, -1):
            checkpoint = out_dir / f"level{level}.pt"
            model, meta = train_level(trial, resolution, "lapcvae", level, coarser, train_images, checkpoint,
                                      validate=validate, validate_every=every)
            jobs.append({"job": f"level{level}", **_cost(LevelTrainable(model, level), resolution, meta, checkpoint)})
            curves.append((f"level{level}", checkpoint))
            coarser = checkpoint
        _atomic_copy(out_dir / "level0.pt", out_dir / "model.pt")

    from training.lapcvae_jobs import retrain_m_settings
    from training.loop import fit, paired_seeds

    settings = retrain_m_settings(trial, resolution)

    retrained = out_dir / "retrained_m.pt"
    meta = fit(PriorRetrainer(model), train_images, settings=settings,
               seed=paired_seeds(params["seed"], resolution)[1], output=retrained, export=model,
               device=params["device"], name=f"{resolution}/{variant}/retrain_m")
    jobs.append({"job": "retrain_m", **_cost(PriorRetrainer(model), resolution, meta, retrained)})

    record = {"variant": variant, "training": training, "conditioning": conditioning, "resolution": resolution,
              "jobs": jobs, "curve": joined_curve(curves)}
    atomic_write_json(out_dir / "training.json", record)
    return record


def joined_curve(jobs: Sequence[tuple[str, Path]]) -> list[dict[str, Any]]:
    """The validation curves (`<checkpoint stem>.val.csv`) of jobs run one after another, as one curve: each job's
    train seconds and images seen are offset by those of the jobs before it."""
    rows: list[dict[str, Any]] = []
    seconds, seen = 0.0, 0
    for job, checkpoint in jobs:
        path = Path(checkpoint).with_name(Path(checkpoint).stem + ".val.csv")
        frame = pd.read_csv(path)
        for record in frame.to_dict("records"):
            rows.append({"job": job, "step": int(record["step"]),
                         "train_seconds": seconds + float(record["train_seconds"]),
                         "images_seen": seen + int(record["images_seen"]), "val_rmse": float(record["val_rmse"])})
        seconds += float(frame["train_seconds"].iloc[-1])
        seen += int(frame["images_seen"].iloc[-1])
    return rows


def time_to_target(curve: Sequence[Mapping[str, Any]], target: float) -> tuple[float, int]:
    """(train seconds, images seen) at the first measurement with val_rmse <= target; (nan, -1) if none."""
    for row in curve:
        if row["val_rmse"] <= target:
            return float(row["train_seconds"]), int(row["images_seen"])
    return float("nan"), -1


def curve_flops(record: Mapping[str, Any]) -> list[float]:
    """Train FLOPs spent by each point of a record's curve: the jobs before it in full, plus its own job's
    images so far times that job's FLOPs per image (the machine-independent twin of train seconds)."""
    per_image = {job["job"]: job["flops_per_image"] for job in record["jobs"]}
    images = {job["job"]: job["images_seen"] for job in record["jobs"]}
    flops, done_flops, done_images, current = [], 0.0, 0, None
    for row in record["curve"]:
        if row["job"] != current:
            if current is not None:
                done_flops += images[current] * per_image[current]
                done_images += images[current]
            current = row["job"]
        flops.append(done_flops + (row["images_seen"] - done_images) * per_image[current])
    return flops


def compare_training(greedy: Mapping[str, Any], joint: Mapping[str, Any]) -> dict[str, Any]:
    """Greedy against joint at one conditioning: time and images to the worse one's final validation RMSE."""
    greedy_final, joint_final = greedy["curve"][-1]["val_rmse"], joint["curve"][-1]["val_rmse"]
    target = max(greedy_final, joint_final)
    greedy_seconds, greedy_images = time_to_target(greedy["curve"], target)
    joint_seconds, joint_images = time_to_target(joint["curve"], target)
    greedy_flops, joint_flops = (next((flops for row, flops in zip(record["curve"], curve_flops(record), strict=True)
                                       if row["val_rmse"] <= target), float("nan")) for record in (greedy, joint))

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else float("nan")

    return {
        "conditioning": greedy["conditioning"], "target_val_rmse": target,
        "greedy_final_val_rmse": greedy_final, "joint_final_val_rmse": joint_final,
        "greedy_seconds_to_target": greedy_seconds, "joint_seconds_to_target": joint_seconds,
        "seconds_ratio_greedy_over_joint": ratio(greedy_seconds, joint_seconds),
        "greedy_images_to_target": greedy_images, "joint_images_to_target": joint_images,
        "images_ratio_greedy_over_joint": ratio(greedy_images, joint_images),
        "greedy_flops_to_target": greedy_flops, "joint_flops_to_target": joint_flops,
        "flops_ratio_greedy_over_joint": ratio(greedy_flops, joint_flops),
        "greedy_total_seconds": sum(job["train_seconds"] for job in greedy["jobs"] if job["job"] != "retrain_m"),
        "joint_total_seconds": sum(job["train_seconds"] for job in joint["jobs"] if job["job"] != "retrain_m"),
    }


def measure_test(model: nn.Module, test_images: np.ndarray) -> dict[str, float]:
    """Mean test RMSE, R^2 of band h_0 and rate (nats per image) of a model."""
    device = next(model.parameters()).device
    rmse, r2_h0, rate = [], [], []
    with torch.no_grad():
        for batch in _batches(test_images, device):
            metrics = per_image_metrics(batch, model.reconstruct(batch))
            rmse.append(metrics["rmse"])
            r2_h0.append(metrics["r2_h0"])
            rate.append(rate_per_image(model, batch))
    return {"test_rmse": float(torch.cat(rmse).double().mean()),
            "r2_h0": float(torch.cat(r2_h0).double().nanmean()),
            "rate_nats": float(torch.cat(rate).double().mean())}


def ablation_table(records: Mapping[str, Mapping[str, Any]], work_dir: str | Path, val_images: np.ndarray,
                   test_images: np.ndarray, device: str = "cpu") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per variant and per variant after retrain-M; greedy against joint per conditioning)."""
    from core.device import resolve_device

    rows = []
    for variant, record in records.items():
        jobs = record["jobs"]
        for retrained in (False, True):
            name = "retrained_m.pt" if retrained else "model.pt"
            model = load_model(Path(work_dir) / variant / name, resolve_device(device)).eval()
            counted = [job for job in jobs if retrained or job["job"] != "retrain_m"]
            rows.append({
                "variant": variant + ("+retrain_m" if retrained else ""), "training": record["training"],
                "conditioning": record["conditioning"], "m_retrained": retrained,
                "parameters": sum(p.numel() for p in model.parameters()),
                "val_rmse": validation_rmse(model, val_images), **measure_test(model, test_images),
                "train_seconds": sum(job["train_seconds"] for job in counted),
                "images_seen": sum(job["images_seen"] for job in counted),
                "train_flops": sum(job["train_flops"] for job in counted),
            })
            logger.info("%s: test RMSE %.2f", rows[-1]["variant"], rows[-1]["test_rmse"])
    comparisons = [compare_training(records[f"greedy_{c}"], records[f"joint_{c}"]) for c in CONDITIONING
                   if f"greedy_{c}" in records and f"joint_{c}" in records]
    return pd.DataFrame(rows, columns=COLUMNS), pd.DataFrame(comparisons, columns=COMPARISON_COLUMNS)


def write_tables(table: pd.DataFrame, comparison: pd.DataFrame, records: Mapping[str, Mapping[str, Any]],
                 out_csv: str | Path, out_json: str | Path) -> None:
    """The variant table as CSV; both tables, the curves and the definitions as JSON."""
    atomic_write_csv(out_csv, table)
    atomic_write_json(out_json, {
        "variants": table.to_dict("records"), "greedy_vs_joint": comparison.to_dict("records"),
        "curves": {variant: record["curve"] for variant, record in records.items()},
        "definitions": {
            "target_val_rmse": "the final validation RMSE (0-255) of the worse of greedy and joint training",
            "seconds_to_target": "train seconds (summed over the jobs run so far) at the first validation "
                                 "measurement at or below the target",
            "greedy_curve": "the model held after each greedy job (levels k..K, upsampled to full size)",
            "flops_to_target": "eval.cost's FLOPs per image of each job times the images it had seen, summed",
        },
    })


def read_records(work_dir: str | Path, variants: Sequence[str]) -> dict[str, dict[str, Any]]:
    records = {}
    for variant in variants:
        path = Path(work_dir) / variant / "training.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run `lapcvae ablations train --variant {variant}` first")
        records[variant] = json.loads(path.read_text())
    return records
