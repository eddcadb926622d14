"""Table 1 (section 5.1): every evaluated model's reconstruction metrics, with paired tests against the VAE.

`build_table1` returns the table as a DataFrame (the report uses it); the `table` command writes it to
`table1.csv` and as nested `metrics.json` ({"64": {"vae": {"rmse_mean": ...}}}) for `dvc metrics show`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from eval.metrics import MODELS
from eval.paper import PAPER_TABLE1

logger = logging.getLogger(__name__)

BASELINE = "vae"  # every model's per-image RMSE is tested against the VAE's at the same resolution
SUMMARY_COLUMNS = ("n_test", "rmse_mean", "rmse_std", "psnr_mean", "ssim_mean", "r2_h0_mean", "r2_h1_mean",
                   "rate_mean", "parameters", "flops_per_image", "train_seconds", "eval_seconds")


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


Inputs = dict[tuple[str, str], tuple[Path, Path]]  # (resolution, model) -> (summary.json, per-image CSV)


def inputs_from_files(summaries: Sequence[str | Path], per_image: Sequence[str | Path]) -> Inputs:
    """Pair each `evaluate` summary with its per-image CSV (same order); the summary names its model and size.

    Every file must exist: a missing one is an error, not a row silently left out.
    """
    if len(summaries) != len(per_image):
        raise ValueError(f"got {len(summaries)} summaries but {len(per_image)} per-image CSVs; pass one of each "
                         "per evaluated model, in the same order")
    inputs: Inputs = {}
    for summary_path, per_image_path in zip(map(Path, summaries), map(Path, per_image), strict=True):
        for path in (summary_path, per_image_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path} does not exist: run `lapcvae evaluate` for that model first")
        summary = read_summary(summary_path)
        inputs[(str(summary["resolution"]), summary["model"])] = (summary_path, per_image_path)
    return inputs


def inputs_from_folders(params: dict[str, Any], eval_dir: str | Path, per_image_dir: str | Path) -> Inputs:
    """The evaluated models found under `eval_dir` (layout of the pipeline); models not evaluated are skipped."""
    eval_dir, per_image_dir = Path(eval_dir), Path(per_image_dir)
    inputs: Inputs = {}
    for resolution in map(str, params["data"]["resolutions"]):
        for model in MODELS:
            summary_path = eval_dir / resolution / model / "summary.json"
            if summary_path.is_file():
                inputs[(resolution, model)] = (summary_path, per_image_dir / f"{resolution}_{model}.csv")
            else:
                logger.info("no %s; %s at %s px left out of Table 1", summary_path, model, resolution)
    return inputs


def build_table1(params: dict[str, Any], eval_dir: str | Path | None = None, per_image_dir: str | Path | None = None,
                 *, inputs: Inputs | None = None) -> pd.DataFrame:
    """One row per evaluated model and resolution (resolutions of params, models in Table 1's order).

    The models are `inputs` (see inputs_from_files), or those found under eval_dir / per_image_dir.
    Columns: resolution, model, the summary numbers of `evaluate`, rmse_ci95_lo/hi, the paired Wilcoxon test
    against the VAE (NaN for the VAE itself or when no VAE was evaluated) and the paper's published RMSE.
    """
    if inputs is None:
        inputs = inputs_from_folders(params, eval_dir, per_image_dir)
    rows = []
    for resolution in map(str, params["data"]["resolutions"]):
        baseline = read_per_image(inputs[(resolution, BASELINE)][1]) if (resolution, BASELINE) in inputs else None
        for model in MODELS:
            if (resolution, model) not in inputs:
                continue
            summary_path, per_image_path = inputs[(resolution, model)]
            summary = read_summary(summary_path)
            row: dict[str, Any] = {"resolution": int(resolution), "model": model}
            row.update({column: summary.get(column) for column in SUMMARY_COLUMNS})
            row["rmse_ci95_lo"], row["rmse_ci95_hi"] = summary["rmse_ci95"]
            if baseline is not None and model != BASELINE:
                row.update(paired_wilcoxon(read_per_image(per_image_path), baseline))
            else:
                row.update({"wilcoxon_statistic": np.nan, "wilcoxon_p": np.nan, "rmse_median_diff_vs_vae": np.nan})
            paper = PAPER_TABLE1.get(resolution, {}).get(model, {})
            row["paper_rmse_mean"] = paper.get("rmse_mean", np.nan)
            row["paper_rmse_std"] = paper.get("rmse_std", np.nan)
            rows.append(row)
    if not rows:
        raise FileNotFoundError(f"no evaluated model found ({eval_dir or 'no summaries given'}): run "
                                "`lapcvae evaluate` first")
    return pd.DataFrame(rows)


def metrics_json(table: pd.DataFrame) -> dict[str, dict[str, dict[str, Any]]]:
    """{"64": {"vae": {"rmse_mean": ..., ...}}} from Table 1; missing values become null."""
    nested: dict[str, dict[str, dict[str, Any]]] = {}
    for record in table.to_dict(orient="records"):
        resolution, model = str(record.pop("resolution")), record.pop("model")
        values = {key: (None if pd.isna(value) else value) for key, value in record.items()}
        nested.setdefault(resolution, {})[model] = values
    return nested
