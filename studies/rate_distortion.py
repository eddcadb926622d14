"""Rate-distortion: VAE-family models compared at equal rate, not at whatever rate their KL weight gave.

Each model is retrained with its KL weight(s) multiplied by each factor of `rate_distortion.grid` (VAE:
`vae.{res}.kl_weight`, VAE/GAN: `vaegan.{res}.kl_weight`, when params has them; LapCVAE: every level's
`kl_weights`, with M), for each training seed of `rate_distortion.seeds`, under the same budget rule as Table 1
(budget.epochs over train.npy), and measured on the test split (`studies.tuning.trial_scores`, the test images in
place of the validation ones): distortion = mean per-image RMSE (0-255, quantised, as Table 1), rate = the KL
divergence of the posterior from the prior in nats per image (`rate_per_image`), the test -ELBO, and the samples
of a prior fitted to the model's training posteriors (models/fitted_prior.py), as many as test images, scored
against the test images in the resolution's sample embedding (eval/sample_quality.py): precision, recall and the
Frechet distance. The figure: RMSE against rate with the linear-Gaussian bound, and sample precision and recall
against rate, one line per model (mean over seeds, std bars).

**The claim, at matched rate** (`matched_rate_claims`): each swept model other than the VAE, at its default
setting (factor 1.0), has a rate r per seed; the VAE's RMSE at r is interpolated from the VAE's swept points of
the same seed, piecewise linear in log rate (`interpolate_at_rate`; NaN, with a warning, where r lies outside
the VAE's swept rates: never extrapolated). Over the seeds: the mean difference (model minus VAE at matched rate),
Student's paired t test (eval.table.seed_test, at least eval.table.MIN_SEEDS seeds), and `supported` where the
Holm-adjusted p < 0.05 and the model is the better side. The same is reported for sample precision. One claim is
pre-specified: LapCVAE's test RMSE against the VAE's at LapCVAE's rate; the other rows are exploratory. There is
no multiplicity correction within the study beyond Holm over the rows of the claims table.

    lapcvae rate-distortion --res 64 --train data/prepared/64/train.npy --test data/prepared/64/test.npy \\
        --embedding results/eval/64/sample_embedding.npz --spectrum results/eval/64/pca/spectrum.npy \\
        --work-dir results/rate_distortion/64 --out-csv results/metrics/rate_distortion_64.csv \\
        --claims results/metrics/rate_distortion_64_claims.csv --figure results/figures/rate_distortion_64.png
"""

from __future__ import annotations

import copy
import logging
import math
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
from eval.metric_directions import BETTER, badness
from eval.sample_quality import SampleEmbedding
from eval.table import BASELINE, MIN_SEEDS, holm, seed_test
from studies.tuning import train_model, trial_scores

logger = logging.getLogger(__name__)

SWEPT_MODELS = ("vae", "vaegan", "lapcvae")
SAMPLE_COLUMNS = ("sample_precision", "sample_recall", "fd_embedding")
TABLE_COLUMNS = ("model", "factor", "seed", "kl_weights", "rmse_mean", "rate_nats", "nelbo_mean", *SAMPLE_COLUMNS,
                 "train_seconds")
DEFAULT_FACTOR = 1.0  # the model as params sets it: the point each claim compares
CLAIM_METRICS = ("rmse_mean", "sample_precision")
PRESPECIFIED = ("lapcvae", "rmse_mean")  # the study's one pre-specified claim; every other row is exploratory
ALPHA = 0.05


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


def check_claim_inputs(params: Mapping[str, Any], resolution: int) -> None:
    """Refuse, before anything trains, a sweep whose matched-rate claims cannot be made: the grid must hold the
    default factor 1.0 and the VAE must have a KL weight at `resolution` to sweep."""
    grid = [float(factor) for factor in params["rate_distortion"]["grid"]]
    if not any(math.isclose(factor, DEFAULT_FACTOR) for factor in grid):
        raise ValueError(f"rate_distortion.grid {grid} lacks {DEFAULT_FACTOR:g}: the matched-rate claims compare "
                         f"each model at its default setting; add {DEFAULT_FACTOR:g} to the grid")
    if scaled(params, BASELINE, resolution, DEFAULT_FACTOR) is None:
        raise ValueError(f"{BASELINE}.{resolution} has no kl_weight: the matched-rate claims interpolate the "
                         f"{BASELINE}'s swept points; set {BASELINE}.{resolution}.kl_weight")


def sweep(params: Mapping[str, Any], resolution: int, train_images: np.ndarray, test_images: np.ndarray,
          embedding: SampleEmbedding, work_dir: str | Path, models: Sequence[str] = SWEPT_MODELS) -> pd.DataFrame:
    """One row per (model, factor, training seed of `rate_distortion.seeds`) (TABLE_COLUMNS): the weights used,
    test RMSE, rate (nats per image), test -ELBO, the fitted prior's sample scores against the test images in
    `embedding`, training seconds. Every model trains from the same seeds (paired, training.loop)."""
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
                seeded = {**trial, "seed": seed}  # training, the fitted prior and its samples all take this seed
                started = time.perf_counter()
                network, _ = train_model(seeded, model, resolution, train_images, out_dir)
                seconds = time.perf_counter() - started
                scores = trial_scores(network, model, seeded, train_images, test_images, embedding)
                section = trial[model][str(resolution)]
                weights = section["kl_weights"] if model == "lapcvae" else section["kl_weight"]
                rows.append({"model": model, "factor": factor, "seed": seed, "kl_weights": str(weights),
                             "rmse_mean": scores["val_rmse"], "rate_nats": mean_rate(network, test_images),
                             "nelbo_mean": scores["val_nelbo"],
                             **{column: scores[column] for column in SAMPLE_COLUMNS}, "train_seconds": seconds})
                logger.info("%s x%g seed %d: RMSE %.2f at %.1f nats, sample precision %.3f, recall %.3f", model,
                            factor, seed, rows[-1]["rmse_mean"], rows[-1]["rate_nats"],
                            rows[-1]["sample_precision"], rows[-1]["sample_recall"])
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def interpolate_at_rate(rates: Sequence[float], values: Sequence[float], rate: float, label: str = "") -> float:
    """The value at `rate` on the curve through (rates, values), piecewise linear in log rate.

    NaN, with a warning, where `rate` lies outside [min(rates), max(rates)] (no extrapolation) or is not positive;
    points whose rate or value is not finite, or whose rate is not positive, are left out. Equal rates: their
    values are averaged. label names the point in the warning (e.g. "lapcvae seed 0").
    """
    points = pd.DataFrame({"rate": np.asarray(rates, np.float64), "value": np.asarray(values, np.float64)})
    points = points[np.isfinite(points["rate"]) & np.isfinite(points["value"]) & (points["rate"] > 0)]
    points = points.groupby("rate", sort=True)["value"].mean()
    if points.empty or not np.isfinite(rate) or rate <= 0 or not points.index[0] <= rate <= points.index[-1]:
        span = f"[{points.index[0]:.4g}, {points.index[-1]:.4g}]" if len(points) else "(no finite point)"
        logger.warning("%s: rate %.4g nats is outside the swept rates %s; no matched value (not extrapolated)",
                       label or "matched rate", rate, span)
        return math.nan
    return float(np.interp(np.log(rate), np.log(points.index.to_numpy()), points.to_numpy()))


def matched_rate_claims(table: pd.DataFrame, metrics: Sequence[str] = CLAIM_METRICS,
                        min_seeds: int = MIN_SEEDS) -> pd.DataFrame:
    """Each swept model other than the VAE, at factor 1.0, against the VAE at the same rate, over seeds.

    table: `sweep`'s rows. For each (model, metric): per seed, the model's value and the VAE's interpolated at the
    model's rate from the VAE's points of that seed (`interpolate_at_rate`); a seed without a matched value is left
    out (n_outside_range). Columns: model, metric, role ("pre-specified" for PRESPECIFIED, else "exploratory"),
    better (eval.metric_directions), n_seeds, n_outside_range, rate_nats, model_value, vae_at_rate (means over the
    seeds tested), mean_diff (model minus VAE), std_diff, p_value (Student's paired t, eval.table.seed_test),
    p_holm (Holm over the rows), test, supported (p_holm < 0.05 and mean_diff on the better side).
    """
    baseline = table[table["model"] == BASELINE]
    if baseline.empty:
        raise ValueError(f"the sweep has no {BASELINE} rows: the matched-rate claims interpolate the {BASELINE}'s "
                         f"swept points; sweep {BASELINE} (set {BASELINE}.<res>.kl_weight)")
    rows = []
    for model in dict.fromkeys(table["model"]):
        if model == BASELINE:
            continue
        default = table[(table["model"] == model) & np.isclose(table["factor"].astype(float), DEFAULT_FACTOR)]
        if default.empty:
            raise ValueError(f"{model} has no point at factor {DEFAULT_FACTOR:g}: add {DEFAULT_FACTOR:g} to "
                             "rate_distortion.grid")
        for metric in metrics:
            if metric not in table.columns:
                continue
            own: dict[int, float] = {}
            matched: dict[int, float] = {}
            rates: list[float] = []
            for _, point in default.iterrows():
                seed = int(point["seed"])
                vae = baseline[baseline["seed"] == seed]
                value = interpolate_at_rate(vae["rate_nats"], vae[metric], float(point["rate_nats"]),
                                            f"{model} seed {seed} ({metric})")
                if np.isfinite(value) and np.isfinite(point[metric]):
                    own[seed], matched[seed] = float(point[metric]), value
                    rates.append(float(point["rate_nats"]))
            test = seed_test(own, matched, min_seeds=min_seeds, paired=True)
            rows.append({"model": model, "metric": metric,
                         "role": "pre-specified" if (model, metric) == PRESPECIFIED else "exploratory",
                         "better": BETTER[metric], "n_seeds": len(own), "n_outside_range": len(default) - len(own),
                         "rate_nats": float(np.mean(rates)) if rates else math.nan,
                         "model_value": float(np.mean(list(own.values()))) if own else math.nan,
                         "vae_at_rate": float(np.mean(list(matched.values()))) if matched else math.nan,
                         "mean_diff": test["mean_diff"], "std_diff": test["std_diff"], "p_value": test["p_value"],
                         "test": test["test"]})
    claims = pd.DataFrame(rows, columns=["model", "metric", "role", "better", "n_seeds", "n_outside_range",
                                         "rate_nats", "model_value", "vae_at_rate", "mean_diff", "std_diff",
                                         "p_value", "test"])
    claims.insert(len(claims.columns) - 1, "p_holm", holm(claims["p_value"].to_numpy(np.float64)))
    better_side = [bool(badness(diff, direction) < 0) for diff, direction in zip(claims["mean_diff"],
                                                                                claims["better"], strict=True)]
    claims["supported"] = (claims["p_holm"] < ALPHA) & np.array(better_side, dtype=bool)
    return claims


def plot(table: pd.DataFrame, resolution: int, path: str | Path, spectrum: np.ndarray | None = None) -> None:
    """Two panels, one line per model (mean over seeds, std bars on both axes), points labelled with their
    KL-weight factor: RMSE against rate, with, given the training split's PCA spectrum, the linear-Gaussian bound
    (eval.gaussian_bound) over the same rates; and the fitted prior's sample precision (solid) and recall (dashed)
    against rate. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (distortion, samples) = plt.subplots(1, 2, figsize=(10, 4))
    columns = ["rate_nats", "rmse_mean", *(column for column in ("sample_precision", "sample_recall")
                                           if column in table.columns)]
    points = table.groupby(["model", "factor"], sort=False)[columns].agg(["mean", "std"])
    for model, rows in points.groupby(level="model", sort=False):
        rows = rows.sort_values(("rate_nats", "mean"))
        rate, rate_std = rows[("rate_nats", "mean")], rows[("rate_nats", "std")]
        line = distortion.errorbar(rate, rows[("rmse_mean", "mean")], xerr=rate_std, yerr=rows[("rmse_mean", "std")],
                                   marker="o", capsize=2, label=model)
        colour = line.lines[0].get_color()
        for (_, factor), row in rows.iterrows():
            distortion.annotate(f"x{factor:g}", (row[("rate_nats", "mean")], row[("rmse_mean", "mean")]),
                                fontsize=7, textcoords="offset points", xytext=(3, 3))
        for column, style, name in (("sample_precision", "-", "precision"), ("sample_recall", "--", "recall")):
            if column in table.columns:
                samples.errorbar(rate, rows[(column, "mean")], xerr=rate_std, yerr=rows[(column, "std")],
                                 marker="o", capsize=2, color=colour, linestyle=style, label=f"{model} {name}")
    if spectrum is not None:
        rates = np.linspace(0.0, 1.2 * float(table["rate_nats"].max()), 100)
        bound = [gaussian_rmse_at_rate(spectrum, 3 * resolution ** 2, rate) for rate in rates]
        distortion.plot(rates, bound, color="grey", linestyle="--", linewidth=1,
                        label="linear-Gaussian code (training covariance)")
    seeds = table["seed"].nunique() if "seed" in table.columns else 1
    distortion.ticklabel_format(useOffset=False)
    distortion.set_xlabel("rate: KL(q || prior), nats per test image")
    distortion.set_ylabel("test RMSE (0-255)")
    distortion.set_title(f"Rate-distortion, {resolution}x{resolution} ({seeds} seed{'s' * (seeds > 1)})")
    distortion.legend(fontsize=8)
    samples.set_xlabel("rate: KL(q || prior), nats per test image")
    samples.set_ylabel("fitted-prior samples vs test images")
    samples.set_ylim(-0.02, 1.02)
    samples.set_title("Sample precision (solid) and recall (dashed)")
    samples.legend(fontsize=7)
    figure.tight_layout()
    try:
        atomic.save_figure(figure, path, format="png", dpi=120)
    finally:
        plt.close(figure)
