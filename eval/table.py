"""Table 1 (section 5.1): every evaluated model's metrics and training cost beside the reference rows,
aggregated over training seeds, with the comparison's claims tested across seeds.

`build_table1` returns the table as a DataFrame (the report uses it); the `table` command writes it to
`table1.csv`, the per-seed rows to `table1_seeds.csv`, the claims with their cross-seed tests to `claims.csv`,
and nested `metrics.json` ({"64": {"vae": {"rmse_mean": ...}}}) for `dvc metrics show`.

Several seeds: pass one eval folder and one per-image folder per seed (--eval-dir D0 D1 D2 --per-image-dir
P0 P1 P2 --seeds 0 1 2), as the `table` rule does for the DAG's per-seed layout (core/registry.py, seed_results):
results/eval and results/metrics/per_image for the first seed, results/seeds/{s}/... for the others.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import registry
from eval.metric_directions import BETTER, LOWER
from eval.metrics import MODELS
from eval.paper import PAPER_TABLE1

logger = logging.getLogger(__name__)

BASELINE = "vae"  # every model is tested against the VAE at the same resolution
SUMMARY_COLUMNS = ("n_test", "rmse_mean", "rmse_std", "psnr_mean", "ssim_mean", "r2_h0_mean", "r2_h1_mean",
                   "contrast_median", "rate_mean", "parameters", "flops_per_image", "train_seconds", "eval_seconds",
                   "sample_seconds", "sample_precision", "sample_recall", "fd_embedding", "fitted_sample_precision",
                   "fitted_sample_recall", "fitted_fd_embedding")
COST_COLUMNS = ("train_seconds", "images_seen", "network_flops", "optimizer_flops", "train_flops")  # eval.cost
# eval.references: rows every model must beat; then eval.sample_quality's real-image row (training images scored
# as samples: the precision, recall and Frechet distance of real faces; it reconstructs nothing)
REFERENCES = ("mean_face", "pca", "lapcvae_coarsest", "training_images")
MIN_SEEDS = 3  # fewer training seeds leave a cross-seed test without power: report it as not testable
SIGNIFICANCE = 0.05
# The comparison's claims, each tested across seeds: (claim, model, versus, per-seed column, better as BETTER says).
CLAIMS = (
    ("LapCVAE reconstructs with lower RMSE than the VAE", "lapcvae", "vae", "rmse_mean"),
    ("LapCVAE reconstructs with lower RMSE than the VAE trained with as many FLOPs", "lapcvae", "vae_equal_flops",
     "rmse_mean"),
    ("LapCVAE reconstructs with lower RMSE than VAE/GAN", "lapcvae", "vaegan", "rmse_mean"),
    ("M helps: LapCVAE has lower RMSE than LapCVAE without M", "lapcvae", "lapcvae_nom", "rmse_mean"),
    ("LapCVAE keeps more aligned fine detail (R^2 of band h0) than the VAE", "lapcvae", "vae", "r2_h0_mean"),
    ("LapCVAE's finer levels improve on its coarsest level alone", "lapcvae", "lapcvae_coarsest", "rmse_mean"),
    ("LapCVAE beats PCA with as many components as its latent dimensions", "lapcvae", "pca", "rmse_mean"),
    ("The VAE beats the mean face", "vae", "mean_face", "rmse_mean"),
    ("VAE/GAN beats the mean face", "vaegan", "mean_face", "rmse_mean"),
)


def read_summary(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete it and rerun `lapcvae evaluate`") from error


def read_per_image(path: Path) -> pd.Series:
    """Per-image RMSE indexed by test image row, from an `evaluate` per-image CSV."""
    if not path.is_file():
        raise FileNotFoundError(f"per-image metrics {path} do not exist: rerun `lapcvae evaluate` for that model")
    table = pd.read_csv(path)
    if not {"image", "rmse"} <= set(table.columns):
        raise ValueError(f"{path} lacks the image/rmse columns; rerun `lapcvae evaluate` for that model")
    return table.set_index("image")["rmse"].sort_index()


def paired_wilcoxon(model_rmse: pd.Series, baseline_rmse: pd.Series) -> dict[str, float]:
    """Wilcoxon signed-rank test of paired per-image RMSE (model - baseline) over the same test images."""
    from scipy.stats import wilcoxon  # imported when used: scipy.stats is slow to import

    if not model_rmse.index.equals(baseline_rmse.index):
        raise ValueError("per-image metrics cover different test images; evaluate every model on the same split")
    differences = (model_rmse - baseline_rmse).to_numpy()  # (N,)
    if not np.any(differences):  # identical errors: the test is undefined, there is no difference to detect
        statistic, p_value = np.nan, 1.0
    else:
        result = wilcoxon(model_rmse.to_numpy(), baseline_rmse.to_numpy())
        statistic, p_value = float(result.statistic), float(result.pvalue)
    return {"wilcoxon_statistic": statistic, "wilcoxon_p": p_value,
            "rmse_median_diff_vs_vae": float(np.median(differences))}


def paths_of(value: str | Path | Sequence[str | Path]) -> list[Path]:
    return [Path(value)] if isinstance(value, str | Path) else [Path(item) for item in value]


def run_seeds(params: Mapping[str, Any], runs: int) -> list[int]:
    """The training seed of each run directory: params `seeds` when it lists one per run, else 0, 1, ..."""
    seeds = list(params.get("seeds") or [])
    return seeds if len(seeds) == runs else list(range(runs))


def numeric_columns(summary: Mapping[str, Any]) -> list[str]:
    """Summary numbers that aggregate across seeds: Table 1's, plus per-band R^2, rate, FID and KID when present."""
    extra = [key for key, value in summary.items() if isinstance(value, int | float) and not isinstance(value, bool)
             and key.startswith(("r2_", "rate", "fid_", "kid_")) and key not in SUMMARY_COLUMNS]
    return [*SUMMARY_COLUMNS, *extra]


def per_seed_table(params: Mapping[str, Any], eval_dirs: Sequence[Path], per_image_dirs: Sequence[Path],
                   seeds: Sequence[int]) -> pd.DataFrame:
    """Long table: one row per (resolution, model or reference, seed) with its summary and training cost.

    The training cost (eval.cost: train_seconds, images_seen, train_flops) comes from `cost.json` beside
    `summary.json` when present; its train_seconds then replaces the summary's.
    """
    rows = []
    for seed, eval_dir, per_image_dir in zip(seeds, eval_dirs, per_image_dirs, strict=True):
        for resolution in map(str, params["data"]["resolutions"]):
            # the models that run at this resolution (a model's files from a run with other params are no row)
            for model in (*registry.models_at(params, resolution), *REFERENCES):
                summary_path = eval_dir / resolution / model / "summary.json"
                if not summary_path.is_file():
                    continue
                summary = read_summary(summary_path)
                row: dict[str, Any] = {"resolution": int(resolution), "model": model, "seed": seed,
                                       "kind": "reference" if model in REFERENCES else "model",
                                       "per_image": str(per_image_dir / f"{resolution}_{model}.csv")}
                row.update({column: summary.get(column) for column in numeric_columns(summary)})
                row["rmse_ci95_lo"], row["rmse_ci95_hi"] = summary.get("rmse_ci95") or (np.nan, np.nan)
                cost_path = summary_path.with_name("cost.json")
                if cost_path.is_file():
                    cost = read_summary(cost_path)
                    row.update({key: cost.get(key) for key in COST_COLUMNS})
                rows.append(row)
    if not rows:
        raise FileNotFoundError(f"no <eval-dir>/<res>/<model>/summary.json in {[str(d) for d in eval_dirs]}: "
                                "run `lapcvae evaluate` first")
    return pd.DataFrame(rows)


def seed_test(first: Mapping[int, float], second: Mapping[int, float], min_seeds: int = MIN_SEEDS
              ) -> dict[str, Any]:
    """Paired test over training seeds of a per-seed number (e.g. mean test RMSE): first - second.

    A reference computed once (one value) is compared with every seed of the other side. With fewer than
    `min_seeds` pairs no test is made (p = NaN, test says why): two trained networks are not two methods.
    The test is Student's paired t (two-sided) on the per-seed differences.
    """
    from scipy.stats import ttest_rel  # see paired_wilcoxon

    if len(second) == 1 and len(first) > 1:
        second = {seed: next(iter(second.values())) for seed in first}
    if len(first) == 1 and len(second) > 1:
        first = {seed: next(iter(first.values())) for seed in second}
    common = sorted(set(first) & set(second))
    differences = np.array([first[seed] - second[seed] for seed in common], dtype=np.float64)  # (S,)
    result = {"n_seeds": len(common), "mean_diff": float(differences.mean()) if len(common) else np.nan,
              "std_diff": float(differences.std(ddof=1)) if len(common) > 1 else np.nan}
    if len(common) < min_seeds:
        return {**result, "p_value": np.nan, "test": f"not testable: {len(common)} seed(s) < {min_seeds}"}
    if not np.any(differences - differences[0]):  # identical differences: t is infinite or undefined
        p = 1.0 if differences[0] == 0 else 0.0
    else:
        p = float(ttest_rel(differences, np.zeros_like(differences)).pvalue)
    return {**result, "p_value": p, "test": f"paired t over {len(common)} seeds"}


def _values(frame: pd.DataFrame, resolution: int, model: str, column: str) -> dict[int, float]:
    rows = frame[(frame["resolution"] == resolution) & (frame["model"] == model)]
    if column not in rows.columns and column.removesuffix("_mean") in rows.columns:
        column = column.removesuffix("_mean")  # e.g. r2_h0 where a summary names it without "_mean"
    if column not in rows.columns:
        return {}
    rows = rows.dropna(subset=[column])
    return {int(seed): float(value) for seed, value in zip(rows["seed"], rows[column], strict=True)}


def build_table1(params: Mapping[str, Any], eval_dir: str | Path | Sequence[str | Path],
                 per_image_dir: str | Path | Sequence[str | Path], seeds: Sequence[int] | None = None
                 ) -> pd.DataFrame:
    """One row per model and reference at each resolution, aggregated over the training seeds' runs.

    eval_dir, per_image_dir: one folder each, or one per seed (same order; `seeds` names them, default
    params `seeds`). Numeric columns are the mean over seeds, `<column>_seed_std` their standard deviation
    across seeds (NaN with one seed). rmse_std stays the spread over test images (averaged over seeds).
    rmse_ci95: with one seed the bootstrap interval over test images; with several, Student's t interval of the
    mean over seeds. Against the VAE: the cross-seed paired test of per-seed mean RMSE (`seed_*` columns,
    eval.table.seed_test) and, with one seed only, the per-image Wilcoxon test of the two trained networks
    (descriptive: it compares two networks, not two methods). Then the paper's published RMSE.
    """
    from scipy.stats import t as t_distribution  # see paired_wilcoxon

    eval_dirs, per_image_dirs = paths_of(eval_dir), paths_of(per_image_dir)
    if len(eval_dirs) != len(per_image_dirs):
        raise ValueError(f"{len(eval_dirs)} eval folders but {len(per_image_dirs)} per-image folders: give one "
                         "of each per seed, in the same order")
    seeds = list(seeds) if seeds is not None else run_seeds(params, len(eval_dirs))
    if len(seeds) != len(eval_dirs):
        raise ValueError(f"{len(seeds)} seeds for {len(eval_dirs)} run folders: give one seed per folder")
    long = per_seed_table(params, eval_dirs, per_image_dirs, seeds)
    rows = []
    for (resolution, model), group in long.groupby(["resolution", "model"], sort=False):
        row: dict[str, Any] = {"resolution": resolution, "model": model, "kind": group["kind"].iloc[0],
                               "n_seeds": len(group), "seeds": " ".join(map(str, group["seed"]))}
        for column in group.columns.drop(["resolution", "model", "seed", "kind", "per_image"]):
            values = pd.to_numeric(group[column], errors="coerce")
            row[column] = float(values.mean()) if values.notna().any() else np.nan
            if column not in {"n_test", "parameters", "flops_per_image", "rmse_ci95_lo", "rmse_ci95_hi"}:
                row[f"{column}_seed_std"] = float(values.std(ddof=1)) if values.notna().sum() > 1 else np.nan
        if len(group) > 1:
            means = group["rmse_mean"].to_numpy(np.float64)
            half = t_distribution.ppf(0.975, len(means) - 1) * means.std(ddof=1) / np.sqrt(len(means))
            row["rmse_ci95_lo"], row["rmse_ci95_hi"] = means.mean() - half, means.mean() + half
        baseline = _values(long, resolution, BASELINE, "rmse_mean")
        if baseline and model != BASELINE and not pd.isna(row["rmse_mean"]):  # a row with RMSE to compare
            test = seed_test(_values(long, resolution, model, "rmse_mean"), baseline)
            row.update({"seed_rmse_diff_vs_vae": test["mean_diff"], "seed_p_vs_vae": test["p_value"],
                        "seed_test_vs_vae": test["test"]})
        else:
            row.update({"seed_rmse_diff_vs_vae": np.nan, "seed_p_vs_vae": np.nan, "seed_test_vs_vae": ""})
        vae_rows = long[(long["resolution"] == resolution) & (long["model"] == BASELINE)]
        if len(group) == 1 and len(vae_rows) == 1 and model != BASELINE and not pd.isna(row["rmse_mean"]):
            row.update(paired_wilcoxon(read_per_image(Path(group["per_image"].iloc[0])),
                                       read_per_image(Path(vae_rows["per_image"].iloc[0]))))
        else:
            row.update({"wilcoxon_statistic": np.nan, "wilcoxon_p": np.nan, "rmse_median_diff_vs_vae": np.nan})
        paper = PAPER_TABLE1.get(str(resolution), {}).get(model, {})
        row["paper_rmse_mean"] = paper.get("rmse_mean", np.nan)
        row["paper_rmse_std"] = paper.get("rmse_std", np.nan)
        rows.append(row)
    order = {(res, model): index for index, (res, model) in enumerate(
        (int(res), model) for res in params["data"]["resolutions"] for model in (*REFERENCES, *MODELS))}
    rows.sort(key=lambda row: order[(row["resolution"], row["model"])])
    return pd.DataFrame(rows)


def claims_table(long: pd.DataFrame, min_seeds: int = MIN_SEEDS) -> pd.DataFrame:
    """Each claim of the comparison (CLAIMS) tested across seeds at each resolution, with its verdict.

    verdict: "supported" / "contradicted" (p < 0.05, in / against the claimed direction), "not shown"
    (p >= 0.05), "not testable" (fewer than `min_seeds` seeds) or "missing" (a side was not evaluated).
    """
    rows = []
    for resolution in sorted(long["resolution"].unique()):
        for claim, first, second, column in CLAIMS:
            better = BETTER[column]
            a, b = _values(long, resolution, first, column), _values(long, resolution, second, column)
            row = {"resolution": int(resolution), "claim": claim, "model": first, "versus": second,
                   "metric": column, "better": better}
            if not a or not b:
                rows.append({**row, "n_seeds": 0, "mean_diff": np.nan, "std_diff": np.nan, "p_value": np.nan,
                             "test": "", "verdict": "missing"})
                continue
            test = seed_test(a, b, min_seeds)
            if np.isnan(test["p_value"]):
                verdict = "not testable"
            elif test["p_value"] >= SIGNIFICANCE:
                verdict = "not shown"
            else:
                claimed = test["mean_diff"] < 0 if better == LOWER else test["mean_diff"] > 0
                verdict = "supported" if claimed else "contradicted"
            rows.append({**row, **test, "verdict": verdict})
    return pd.DataFrame(rows)


def metrics_json(table: pd.DataFrame) -> dict[str, dict[str, dict[str, Any]]]:
    """{"64": {"vae": {"rmse_mean": ..., ...}}} from Table 1; missing values become null."""
    nested: dict[str, dict[str, dict[str, Any]]] = {}
    for record in table.to_dict(orient="records"):
        resolution, model = str(record.pop("resolution")), record.pop("model")
        values = {key: (None if pd.isna(value) else value) for key, value in record.items()}
        nested.setdefault(resolution, {})[model] = values
    return nested
