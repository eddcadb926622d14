"""Tuning every model's regularisation weights on the validation split, with the same number of trials each.

The protocol (docs/protocol.md, "How models are compared"): each tuned weight gets `tune.trials` candidates, either
`tune.grid.<model>` (factors applied to the current value) or log-spaced factors 10^[-span, span] around it;
every candidate trains with the same short budget (`tune.epochs` epochs over train.npy, the training split
minus validation) from the same seed, and is scored by its reconstruction RMSE on the validation split
(`val.npy`, 8-bit quantised like Table 1). The test split is never read.

- VAE: its KL weight (`vae.{res}.kl_weight`, when params has it).
- VAE/GAN: `gamma` (and `kl_weight`, when params has it), one after the other.
- LapCVAE: `kl_weights` greedily per level, coarsest first, as the paper did (section 5): level K's weight is
  chosen on the validation RMSE of level K alone (upsampled to full size), then level K-1 trains on the chosen
  level K, and so on. The with-M variant is tuned; the without-M variant uses the same weights.

`tune` returns (and the command writes) every trial with its validation RMSE, and the chosen values as a
params override file (`results/tuning/{res}.yaml`), which params.yaml copies with a note of where they came from.

    lapcvae tune --res 64 --train data/prepared/64/train.npy --val data/prepared/64/val.npy --out-dir results/tuning
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from eval.metrics import rmse_per_image

logger = logging.getLogger(__name__)

TUNED_MODELS = ("vae", "vaegan", "lapcvae")
BASELINE_WEIGHTS = {"vae": ("kl_weight",), "vaegan": ("gamma", "kl_weight")}


def candidate_factors(trials: int, span: float) -> list[float]:
    """`trials` factors log-spaced over 10^[-span, span] (1.0 included when `trials` is odd)."""
    if trials < 1:
        raise ValueError(f"tune.trials must be at least 1, got {trials}")
    if trials == 1:
        return [1.0]
    return [float(10.0 ** exponent) for exponent in np.linspace(-span, span, trials)]


def candidates(current: float, factors: Sequence[float], upper: float | None = None) -> list[float]:
    """The candidate values of one weight: current x each factor (clipped to `upper`, duplicates dropped)."""
    if current <= 0:
        raise ValueError(f"cannot search around a weight of {current}: set a positive starting value")
    values = [float(f"{current * factor:.4g}") for factor in factors]  # 1e-06, not 1.0000000000000002e-06
    if upper is not None:
        values = [min(value, upper) for value in values]
    return list(dict.fromkeys(values))


def validation_rmse(model: nn.Module, val_images: np.ndarray, batch_size: int = 256) -> float:
    """Mean per-image RMSE (0-255, quantised reconstruction, as Table 1) of `model` on the validation images."""
    model.eval()
    values = []
    with torch.inference_mode():
        for start in range(0, len(val_images), batch_size):
            reference = torch.from_numpy(np.array(val_images[start:start + batch_size])).float() / 255.0
            values.append(rmse_per_image(reference, model.reconstruct(reference)))
    return float(torch.cat(values).double().mean())


def _set(params: dict[str, Any], path: Sequence[str | int], value: Any) -> dict[str, Any]:
    """A deep copy of `params` with the value at `path` replaced."""
    updated = copy.deepcopy(params)
    node: Any = updated
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return updated


def _get(params: Mapping[str, Any], path: Sequence[str | int]) -> Any:
    node: Any = params
    for part in path:
        node = node[part]
    return node


def short_budget(params: Mapping[str, Any], epochs: int) -> dict[str, Any]:
    """params with budget.epochs replaced by the tuning budget (the same for every model)."""
    return _set(dict(params), ("budget", "epochs"), int(epochs))


def train_baseline(params: dict[str, Any], model: str, resolution: int, train_images: np.ndarray,
                   out: Path) -> nn.Module:
    """Train the VAE or VAE/GAN that `params` describes with the shared loop; returns it (eval mode)."""
    from training.baseline_jobs import train_baseline as train_one_job

    return train_one_job(params, model, resolution, train_images, out)[0].cpu().eval()


def train_level(params: dict[str, Any], resolution: int, level: int, coarser: Path | None,
                train_images: np.ndarray, out: Path) -> nn.Module:
    """Train LapCVAE's level `level` (with M) on the coarser levels' checkpoint; returns levels level..K."""
    from training.lapcvae_jobs import train_level as train_one_level

    return train_one_level(params, resolution, "lapcvae", level, coarser, train_images, out)[0].cpu().eval()


def train_model(params: dict[str, Any], model: str, resolution: int, train_images: np.ndarray,
                out_dir: Path) -> tuple[nn.Module, list[Path]]:
    """Train a whole model into out_dir: a baseline's one job, or LapCVAE (with M) level by level, coarsest first.
    Returns the trained network (eval mode) and its jobs' checkpoints, in training order (for eval.cost)."""
    if model != "lapcvae":
        checkpoint = out_dir / "model.pt"
        return train_baseline(params, model, resolution, train_images, checkpoint), [checkpoint]
    checkpoints: list[Path] = []
    network: nn.Module | None = None
    for level in range(params["lapcvae"][str(resolution)]["levels"] - 1, -1, -1):
        coarser = checkpoints[-1] if checkpoints else None
        checkpoints.append(out_dir / f"level{level}.pt")
        network = train_level(params, resolution, level, coarser, train_images, checkpoints[-1])
    assert network is not None  # levels >= 1 (validated)
    return network, checkpoints


def _search(label: str, path: Sequence[str | int], values: Sequence[float],
            run: Callable[[float, Path], float], out_dir: Path, trials: list[dict[str, Any]],
            model: str, current: float) -> float:
    """Try each value (run(value, trial_dir) -> validation RMSE), record the trials, return the best value."""
    scores = []
    for index, value in enumerate(values):
        started = time.perf_counter()
        score = run(value, out_dir / f"{label}-trial{index}")
        scores.append(score)
        trials.append({"model": model, "key": ".".join(map(str, path)), "trial": index, "value": value,
                       "val_rmse": score, "seconds": time.perf_counter() - started, "chosen": False})
        logger.info("tune %s = %.4g: validation RMSE %.3f", ".".join(map(str, path)), value, score)
    # Ties (e.g. a level whose weight does not matter at this budget) go to the value nearest the current one:
    # no move without evidence.
    best = min((index for index, score in enumerate(scores) if score == np.nanmin(scores)),
               key=lambda index: abs(np.log(values[index] / current)))
    trials[len(trials) - len(values) + best]["chosen"] = True
    return values[best]


def tune(params: Mapping[str, Any], resolution: int, train_images: np.ndarray, val_images: np.ndarray,
         out_dir: str | Path, models: Sequence[str] = TUNED_MODELS) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Tune every model's weights at one resolution; (all trials, {dotted key: chosen value})."""
    settings = params["tune"]
    out_dir = Path(out_dir)
    res = str(resolution)
    base = short_budget(dict(params), settings["epochs"])
    trials: list[dict[str, Any]] = []
    chosen: dict[str, Any] = {}

    def factors(model: str) -> list[float]:
        grid = (settings.get("grid") or {}).get(model)
        return list(grid) if grid else candidate_factors(settings["trials"], settings["span"])

    for model in models:
        if model in BASELINE_WEIGHTS:
            tuned = copy.deepcopy(base)
            for key in BASELINE_WEIGHTS[model]:
                path = (model, res, key)
                if key not in tuned[model][res]:
                    logger.warning("%s has no %s at %s px: not tuned", model, key, res)
                    continue
                upper = 1.0 if key == "gamma" else None  # gamma weighs Dis_l against the GAN: in [0, 1]

                def run(value: float, trial_dir: Path, model: str = model, path: tuple = path,
                        tuned: dict = tuned) -> float:
                    network = train_baseline(_set(tuned, path, value), model, resolution, train_images,
                                             trial_dir / "model.pt")
                    return validation_rmse(network, val_images)

                current = float(_get(tuned, path))
                values = candidates(current, factors(model), upper)
                best = _search(f"{model}-{key}", path, values, run, out_dir / "trials" / res, trials, model,
                               current)
                tuned = _set(tuned, path, best)
                chosen[".".join(path)] = best
        elif model == "lapcvae":
            weights = list(base["lapcvae"][res]["kl_weights"])
            coarser: Path | None = None
            for level in range(base["lapcvae"][res]["levels"] - 1, -1, -1):  # coarsest first (greedy)
                checkpoints: dict[float, Path] = {}

                def run(value: float, trial_dir: Path, level: int = level, coarser: Path | None = coarser,
                        checkpoints: dict = checkpoints, weights: list = weights) -> float:
                    trial_weights = [*weights[:level], value, *weights[level + 1:]]
                    trial_params = _set(base, ("lapcvae", res, "kl_weights"), trial_weights)
                    out = trial_dir / f"level{level}.pt"
                    network = train_level(trial_params, resolution, level, coarser, train_images, out)
                    checkpoints[value] = out
                    return validation_rmse(network, val_images)

                path = ("lapcvae", res, "kl_weights", level)
                values = candidates(float(weights[level]), factors("lapcvae"))
                weights[level] = _search(f"lapcvae-level{level}", path, values, run, out_dir / "trials" / res,
                                         trials, "lapcvae", float(weights[level]))
                coarser = checkpoints[weights[level]]  # the next finer level trains on the chosen one
            chosen[f"lapcvae.{res}.kl_weights"] = weights
        else:
            raise ValueError(f"unknown model {model!r} to tune; choose from {', '.join(TUNED_MODELS)}")
    return pd.DataFrame(trials), chosen


def override_file(chosen: Mapping[str, Any]) -> dict[str, Any]:
    """The chosen values as a params override tree ({"vae": {"64": {"kl_weight": ...}}, ...})."""
    tree: dict[str, Any] = {}
    for dotted, value in chosen.items():
        node = tree
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return tree
