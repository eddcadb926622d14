"""Rate-distortion: VAE-family models compared at equal rate, not at whatever rate their KL weight gave.

Each model is retrained with its KL weight(s) multiplied by each factor of `rate_distortion.grid` (VAE:
`vae.{res}.kl_weight`, VAE/GAN: `vaegan.{res}.kl_weight`, when params has them; LapCVAE: every level's
`kl_weights`, with M), under the same budget rule as Table 1 (budget.epochs over train.npy), and measured on
the test split: distortion = mean per-image RMSE (0-255, quantised, as Table 1) and rate = the KL divergence
of the posterior from the prior in nats per image (`rate_per_image`). Writes a CSV and a plot of RMSE
against rate, one line per model.

    lapcvae rate-distortion --res 64 --train data/prepared/64/train.npy --test data/prepared/64/test.npy \\
        --out-csv results/metrics/rate_distortion_64.csv --figure results/figures/rate_distortion_64.png
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from core import atomic
from eval.gaussian_bound import gaussian_rmse_at_rate
from studies.tuning import train_model, validation_rmse

logger = logging.getLogger(__name__)

SWEPT_MODELS = ("vae", "vaegan", "lapcvae")


@torch.no_grad()
def rate_per_image(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(N,) KL(q(z | x) || p(z)) in nats of each image: the model's own `rate` (VAE and VAE/GAN against N(0, I),
    LapCVAE summed over its levels against the prior each level trained with, Eq. 12). images in [0, 1]."""
    model.eval()
    return model.rate(images).double().cpu()


def mean_rate(model: nn.Module, images: np.ndarray, batch_size: int = 256) -> float:
    """Mean rate in nats per image over uint8 (N, 3, H, W) images."""
    rates = [rate_per_image(model, torch.from_numpy(np.array(images[start:start + batch_size])).float() / 255.0)
             for start in range(0, len(images), batch_size)]
    return float(torch.cat(rates).mean())


def scaled(params: Mapping[str, Any], model: str, resolution: int, factor: float) -> dict[str, Any] | None:
    """params with `model`'s KL weight(s) at `resolution` times `factor`; None if the model has none."""
    updated = copy.deepcopy(dict(params))
    section = updated[model][str(resolution)]
    if model == "lapcvae":
        section["kl_weights"] = [float(f"{weight * factor:.4g}") for weight in section["kl_weights"]]
    elif "kl_weight" in section:
        section["kl_weight"] = float(f"{section['kl_weight'] * factor:.4g}")
    else:
        return None
    return updated


def sweep(params: Mapping[str, Any], resolution: int, train_images: np.ndarray, test_images: np.ndarray,
          work_dir: str | Path, models: Sequence[str] = SWEPT_MODELS) -> pd.DataFrame:
    """One row per (model, factor, training seed of `rate_distortion.seeds`): the weights used, test RMSE, rate
    (nats per image), training seconds. Every model trains from the same seeds (paired, training.loop)."""
    rows = []
    for model in models:
        for factor in params["rate_distortion"]["grid"]:
            trial = scaled(params, model, resolution, factor)
            if trial is None:
                logger.warning("%s has no KL weight at %d px (%s.%d.kl_weight): left out of the sweep", model,
                               resolution, model, resolution)
                break
            for seed in params["rate_distortion"].get("seeds", [params["seed"]]):
                out_dir = Path(work_dir) / model / f"x{factor:g}" / f"seed{seed}"
                started = time.perf_counter()
                network, _ = train_model({**trial, "seed": seed}, model, resolution, train_images, out_dir)
                section = trial[model][str(resolution)]
                weights = section["kl_weights"] if model == "lapcvae" else section["kl_weight"]
                seconds = time.perf_counter() - started
                rows.append({"model": model, "factor": factor, "seed": seed, "kl_weights": str(weights),
                             "rmse_mean": validation_rmse(network, test_images),
                             "rate_nats": mean_rate(network, test_images), "train_seconds": seconds})
                logger.info("%s x%g seed %d: RMSE %.2f at %.1f nats", model, factor, seed, rows[-1]["rmse_mean"],
                            rows[-1]["rate_nats"])
    return pd.DataFrame(rows, columns=["model", "factor", "seed", "kl_weights", "rmse_mean", "rate_nats",
                                       "train_seconds"])


def plot(table: pd.DataFrame, resolution: int, path: str | Path, spectrum: np.ndarray | None = None) -> None:
    """RMSE against rate, one line per model (mean over seeds, std bars on both axes), points labelled with their
    KL-weight factor, and, given the training split's PCA spectrum, the linear-Gaussian bound
    (eval.gaussian_bound) over the same rates; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 4))
    points = table.groupby(["model", "factor"], sort=False)[["rate_nats", "rmse_mean"]].agg(["mean", "std"])
    for model, rows in points.groupby(level="model", sort=False):
        rows = rows.sort_values(("rate_nats", "mean"))
        axes.errorbar(rows[("rate_nats", "mean")], rows[("rmse_mean", "mean")], xerr=rows[("rate_nats", "std")],
                      yerr=rows[("rmse_mean", "std")], marker="o", capsize=2, label=model)
        for (_, factor), row in rows.iterrows():
            axes.annotate(f"x{factor:g}", (row[("rate_nats", "mean")], row[("rmse_mean", "mean")]), fontsize=7,
                          textcoords="offset points", xytext=(3, 3))
    if spectrum is not None:
        rates = np.linspace(0.0, 1.2 * float(table["rate_nats"].max()), 100)
        bound = [gaussian_rmse_at_rate(spectrum, 3 * resolution ** 2, rate) for rate in rates]
        axes.plot(rates, bound, color="grey", linestyle="--", linewidth=1,
                  label="linear-Gaussian code (training covariance)")
    axes.ticklabel_format(useOffset=False)
    axes.set_xlabel("rate: KL(q || prior), nats per test image")
    axes.set_ylabel("test RMSE (0-255)")
    seeds = table["seed"].nunique() if "seed" in table.columns else 1
    axes.set_title(f"Rate-distortion, {resolution}x{resolution} ({seeds} seed{'s' * (seeds > 1)})")
    axes.legend()
    figure.tight_layout()
    try:
        atomic.save_figure(figure, path, format="png", dpi=120)
    finally:
        plt.close(figure)
