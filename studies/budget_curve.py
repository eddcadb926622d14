"""Budget curves: how much of a model's Table 1 number is the budget rule's, and how much the model's.

Each model of `budget_curve.models` is retrained with `budget.epochs` times each factor of `budget_curve.grid`
(every LapCVAE level too, as the budget rule says) from each training seed of `budget_curve.seeds` (the data stay
those of `seed`), everything else as params gives it, and measured on the validation split (the split a budget
would be chosen on) and on the test split (Table 1's): RMSE on 0-255 of the quantised reconstruction, as Table 1,
beside the training FLOPs (eval/cost.py) and seconds. The figure draws test RMSE (mean over seeds, bars: std
across them) against training FLOPs, one line per model, with PCA of LapCVAE's latent size as the reference line.
A curve still falling at factor 1 says the model is limited by the budget there, a flat one by the model; where
two curves cross, the ranking depends on the budget.

    lapcvae budget-curve --res 64 --model vae --seed 0 --train data/prepared/64/train.npy \\
        --val data/prepared/64/val.npy --test data/prepared/64/test.npy \\
        --work-dir results/budget_curve/64/vae/seed0 --out-csv results/budget_curve/64/vae/seed0.csv
    lapcvae budget-curve-plot --res 64 --tables results/budget_curve/64/*/seed*.csv \\
        --train data/prepared/64/train.npy --test data/prepared/64/test.npy \\
        --out-csv results/metrics/budget_curve_64.csv --figure results/figures/budget_curve_64.png
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import atomic
from eval.cost import training_cost
from eval.plotting import DISPLAY_NAMES
from eval.references import build_references
from eval.report_studies import budget_curve_seed_means
from studies.tuning import short_budget, train_model, validation_rmse

logger = logging.getLogger(__name__)

COLUMNS = ["model", "seed", "factor", "epochs", "val_rmse", "rmse_mean", "train_flops", "images_seen", "train_seconds"]


def budget_epochs(params: Mapping[str, Any], factor: float) -> int:
    """budget.epochs x factor, rounded, at least one epoch."""
    if factor <= 0:
        raise ValueError(f"budget_curve.grid factors must be positive, got {factor}")
    return max(1, round(int(params["budget"]["epochs"]) * factor))


def curve(params: Mapping[str, Any], model: str, resolution: int, train_images: np.ndarray,
          val_images: np.ndarray, test_images: np.ndarray, work_dir: str | Path, seed: int = 0) -> pd.DataFrame:
    """One row per factor of budget_curve.grid: the model trained that many times the budget from training seed
    `seed` (in place of params' `seed` for initialisation, batches and noise, as a DAG training seed), scored and
    costed."""
    rows = []
    for factor in params["budget_curve"]["grid"]:
        epochs = budget_epochs(params, factor)
        trial = {**short_budget(params, epochs), "seed": seed}
        network, checkpoints = train_model(trial, model, resolution, train_images, Path(work_dir) / f"x{factor:g}")
        cost = training_cost(checkpoints)
        rows.append({"model": model, "seed": seed, "factor": factor, "epochs": epochs,
                     "val_rmse": validation_rmse(network, val_images),
                     "rmse_mean": validation_rmse(network, test_images),
                     "train_flops": cost["train_flops"], "images_seen": cost["images_seen"],
                     "train_seconds": cost["train_seconds"]})
        logger.info("%s at %d px, seed %d, %d epochs: validation RMSE %.2f, test %.2f, %.3g training FLOPs", model,
                    resolution, seed, epochs, rows[-1]["val_rmse"], rows[-1]["rmse_mean"], rows[-1]["train_flops"])
    return pd.DataFrame(rows, columns=COLUMNS)


def pca_rmse(params: dict[str, Any], resolution: int, train_images: np.ndarray, test_images: np.ndarray) -> float:
    """Test RMSE of PCA with LapCVAE's latent size fitted on the training split: Table 1's reference row."""
    pca = build_references(params, resolution, train_images, None, names=["pca"])["pca"]
    return validation_rmse(pca, test_images)


def plot(table: pd.DataFrame, resolution: int, pca: float, path: str | Path) -> None:
    """Test RMSE (mean over seeds, std across them as bars) against training FLOPs (log scale), one line per
    model, points labelled with their epochs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.5, 4))
    summary = budget_curve_seed_means(table)
    for model, rows in summary.groupby("model", sort=False):
        rows = rows.sort_values("train_flops")
        seeds = int(rows["n_seeds"].min())
        axes.errorbar(rows["train_flops"], rows["rmse_mean"], yerr=rows["rmse_seed_std"].fillna(0.0), marker="o",
                      capsize=3, label=f"{DISPLAY_NAMES.get(str(model), model)} ({seeds} seed{'s' * (seeds > 1)})")
        for _, row in rows.iterrows():
            axes.annotate(f"{row['epochs']:g} ep", (row["train_flops"], row["rmse_mean"]), fontsize=7,
                          textcoords="offset points", xytext=(3, 3))
    axes.axhline(pca, color="grey", linestyle="--", linewidth=1, label=f"PCA, same latent size ({pca:.2f})")
    axes.set_xscale("log")
    axes.set_xlabel("training FLOPs")
    axes.set_ylabel("test RMSE (0-255)")
    axes.set_title(f"RMSE against training budget, {resolution}x{resolution}")
    axes.legend(fontsize=8)
    figure.tight_layout()
    try:
        atomic.save_figure(figure, path, format="png", dpi=120)
    finally:
        plt.close(figure)


def combine(tables: Sequence[pd.DataFrame], pca: float) -> pd.DataFrame:
    """The models' curves as one table, with each point's RMSE over PCA's (Table 1's "RMSE / PCA" column)."""
    table = pd.concat(list(tables), ignore_index=True)
    table["rmse_over_pca"] = table["rmse_mean"] / pca
    return table
