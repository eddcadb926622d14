"""Table 1 (section 5.1): every evaluated model's metrics and training cost beside the reference rows,
aggregated over training seeds, with the comparison's claims tested across seeds.

`build_table1` returns the table as a DataFrame (the report uses it); the `table` command writes it to
`table1.csv`, the per-seed rows to `table1_seeds.csv`, the claims with their cross-seed tests to `claims.csv`,
and nested `metrics.json` ({"64": {"vae": {"rmse_mean": ...}}}) for `dvc metrics show`: a few numbers per
model (METRICS_JSON_COLUMNS), no nulls or strings.

Columns beside the reconstruction metrics: the test -ELBO (`nelbo_mean` in nats per image, `nelbo_bits_per_dim`;
eval/elbo.py) and, when `evaluate` wrote them, sample metrics (`sample_precision`, `sample_recall`, `fd_*`), and
how often the samples are faces relative to the test images (`face_ratio`, `fitted_face_ratio`; `lapcvae
face-check`, eval/face_check.py). A
model whose registry entry says reconstructs=False (PixelVAE) has no reconstruction metrics: its summary withholds
them.

The claims (CLAIMS, `claims_table`): each is a comparison of per-seed numbers of two models at one resolution.
Seeds pair when, in every run, both models' training jobs read the data in the same order (the same data-order
seed in the checkpoints' meta): then Student's paired t test; otherwise Welch's unpaired t test; against a
reference computed once, a one-sample t test. The p-values of all claims tested (every resolution) are adjusted
together by Holm's step-down method, and the verdict reads the adjusted p; claims.csv keeps both.

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
from eval.metric_directions import RECONSTRUCTION_METRICS
from eval.metrics import MODELS
from eval.paper import PAPER_TABLE1

logger = logging.getLogger(__name__)

BASELINE = "vae"  # every model is tested against the VAE at the same resolution
SUMMARY_COLUMNS = ("n_test", "rmse_mean", "rmse_std", "psnr_mean", "ssim_mean", "r2_h0_mean", "r2_h1_mean",
                   "contrast_median", "rate_mean", "parameters", "flops_per_image", "train_seconds", "eval_seconds",
                   "sample_seconds", "sample_precision", "sample_recall", "fd_embedding", "fitted_sample_precision",
                   "fitted_sample_recall", "fitted_fd_embedding",
                   *(metric.summary_column for metric in RECONSTRUCTION_METRICS))
COST_COLUMNS = ("train_seconds", "images_seen", "network_flops", "optimizer_flops", "train_flops")  # eval.cost
# eval/face_check.py: how often each prior's samples are faces, over the test split's rate
FACE_COLUMNS = ("face_ratio", "fitted_face_ratio")
FACE_CHECK_DIR = "face_check"  # <eval-dir>/<res>/face_check/<model>.json (`lapcvae face-check`)
# metrics.json (`dvc metrics show`, `dvc exp show`): only the numbers two runs are compared on; table1.csv keeps
# every column (intervals, seed spreads, tests, the paper's values).
METRICS_JSON_COLUMNS = ("rmse_mean", "r2_h0_mean", "rate_mean", "nelbo_mean", "nelbo_bits_per_dim",
                        "sample_precision", "sample_recall", "fd_embedding", "fitted_sample_precision",
                        "fitted_sample_recall", "fitted_fd_embedding", *FACE_COLUMNS, "network_flops",
                        "optimizer_flops", "train_seconds")
REFERENCES = registry.REFERENCES  # Table 1's reference rows (core/registry.py)
MIN_SEEDS = 3  # fewer training seeds leave a cross-seed test without power: report it as not testable
SIGNIFICANCE = 0.05  # family-wise, over every claim tested (Holm)
# The comparison's claims, each tested across seeds: (claim, model, versus, per-seed column, which is better).
# Only claims in question: a trained model beating the mean face, or LapCVAE's finer levels improving on its
# coarsest alone, are shown by Table 1's reference rows, not tested. M shapes only the finer levels' priors, so
# it is judged on what a prior controls: the rate, the -ELBO and, where `evaluate` scored them, the samples.
# A claim whose column no summary holds (e.g. the sample metrics of an older evaluation) is left out.
CLAIMS = (
    ("LapCVAE reconstructs with lower RMSE than the VAE", "lapcvae", "vae", "rmse_mean", "lower"),
    ("LapCVAE reconstructs with lower RMSE than the VAE trained with as many network FLOPs", "lapcvae",
     "vae_equal_flops", "rmse_mean", "lower"),
    ("LapCVAE reconstructs with lower RMSE than VAE/GAN", "lapcvae", "vaegan", "rmse_mean", "lower"),
    ("LapCVAE keeps more aligned fine detail (R^2 of band h0) than the VAE", "lapcvae", "vae", "r2_h0_mean",
     "higher"),
    ("LapCVAE has a lower test -ELBO than the VAE", "lapcvae", "vae", "nelbo_mean", "lower"),
    # the paper's sentence "samples sharper than VAE", at its first step: are the N(0, I) prior's samples faces
    ("LapCVAE's N(0, I) samples are faces more often than the VAE's", "lapcvae", "vae", "face_ratio", "higher"),
    ("LapCVAE beats PCA with as many components as its latent dimensions", "lapcvae", "pca", "rmse_mean",
     "lower"),
    ("M helps: LapCVAE codes images at a lower rate than LapCVAE without M", "lapcvae", "lapcvae_nom",
     "rate_mean", "lower"),
    ("M helps: LapCVAE has a lower test -ELBO than LapCVAE without M", "lapcvae", "lapcvae_nom", "nelbo_mean",
     "lower"),
    ("M helps: LapCVAE's samples have higher precision than without M", "lapcvae", "lapcvae_nom",
     "sample_precision", "higher"),
    ("M helps: LapCVAE's samples have higher recall than without M", "lapcvae", "lapcvae_nom", "sample_recall",
     "higher"),
    ("M helps: LapCVAE's samples have a lower Frechet distance than without M", "lapcvae", "lapcvae_nom",
     "fd_embedding", "lower"),
    ("M helps: LapCVAE's N(0, I) samples are faces more often than without M", "lapcvae", "lapcvae_nom",
     "face_ratio", "higher"),
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
             and key.startswith(("r2_", "rate", "fid_", "kid_", "nelbo", "sample_precision", "sample_recall",
                                 "fd_"))
             and key not in SUMMARY_COLUMNS]
    return [*SUMMARY_COLUMNS, *extra]


def per_seed_table(params: Mapping[str, Any], eval_dirs: Sequence[Path], per_image_dirs: Sequence[Path],
                   seeds: Sequence[int]) -> pd.DataFrame:
    """Long table: one row per (resolution, model or reference, seed) with its summary and training cost.

    The training cost (eval.cost: train_seconds, images_seen, train_flops) comes from `cost.json` beside
    `summary.json` when present; its train_seconds then replaces the summary's. The face check's ratios
    (eval/face_check.py) come from `<res>/face_check/<model>.json` when present.
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
                # the data-order seed of the job that trained the evaluated checkpoint: equal ones pair seeds
                row["train_seed"] = (summary.get("meta") or {}).get("seed")
                row["rmse_ci95_lo"], row["rmse_ci95_hi"] = summary.get("rmse_ci95") or (np.nan, np.nan)
                cost_path = summary_path.with_name("cost.json")
                if cost_path.is_file():
                    cost = read_summary(cost_path)
                    row.update({key: cost.get(key) for key in COST_COLUMNS})
                faces_path = eval_dir / resolution / FACE_CHECK_DIR / f"{model}.json"
                if faces_path.is_file():
                    faces = read_summary(faces_path)
                    row.update({key: faces.get(key) for key in FACE_COLUMNS})
                rows.append(row)
    if not rows:
        raise FileNotFoundError(f"no <eval-dir>/<res>/<model>/summary.json in {[str(d) for d in eval_dirs]}: "
                                "run `lapcvae evaluate` first")
    return pd.DataFrame(rows)


def seed_test(first: Mapping[int, float], second: Mapping[int, float], min_seeds: int = MIN_SEEDS,
              paired: bool = True) -> dict[str, Any]:
    """Test over training seeds of a per-seed number (e.g. mean test RMSE), first against second.

    A reference computed once (one value) against every seed of the other side: one-sample t test of that side's
    values against it. Otherwise, paired=True: Student's paired t on the per-seed differences of the seeds both
    have; paired=False: Welch's unpaired t test (unequal variances) of the two sets. Two-sided. With fewer than
    `min_seeds` seeds on a side no test is made (p = NaN, test says why): two trained networks are not two
    methods. mean_diff: mean(first) - mean(second); std_diff: the per-seed differences' std (paired, one-sample)
    or the standard error of mean_diff (Welch).
    """
    from scipy.stats import ttest_1samp, ttest_ind, ttest_rel  # see paired_wilcoxon

    a, b = np.array(list(first.values()), dtype=np.float64), np.array(list(second.values()), dtype=np.float64)
    if len(b) == 1 and len(a) > 1:
        kind, seeds, reference = "one-sample t", len(a), float(b[0])
        differences = a - reference
    elif len(a) == 1 and len(b) > 1:
        kind, seeds, reference = "one-sample t", len(b), float(a[0])
        differences = reference - b
    elif paired:
        common = sorted(set(first) & set(second))
        kind, seeds = "paired t", len(common)
        differences = np.array([first[seed] - second[seed] for seed in common], dtype=np.float64)  # (S,)
    else:
        kind, seeds = "Welch t", min(len(a), len(b))
        differences = None
    if differences is not None:
        result = {"n_seeds": seeds, "mean_diff": float(differences.mean()) if seeds else np.nan,
                  "std_diff": float(differences.std(ddof=1)) if seeds > 1 else np.nan}
    else:
        result = {"n_seeds": seeds, "mean_diff": float(a.mean() - b.mean()),
                  "std_diff": float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
                  if seeds > 1 else np.nan}
    if seeds < min_seeds:
        return {**result, "p_value": np.nan, "test": f"not testable: {seeds} seed(s) < {min_seeds}"}
    if differences is not None:
        if not np.any(differences - differences[0]):  # identical differences: t is infinite or undefined
            p = 1.0 if differences[0] == 0 else 0.0
        elif kind == "paired t":
            p = float(ttest_rel(differences, np.zeros_like(differences)).pvalue)
        else:
            p = float(ttest_1samp(differences, 0.0).pvalue)
        return {**result, "p_value": p, "test": f"{kind} over {seeds} seeds"}
    if not np.any(a - a[0]) and not np.any(b - b[0]):  # no spread on either side
        p = 1.0 if a[0] == b[0] else 0.0
    else:
        p = float(ttest_ind(a, b, equal_var=False).pvalue)
    return {**result, "p_value": p, "test": f"Welch t over {len(a)} and {len(b)} seeds (unpaired)"}


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN entries are not in the family, stay NaN).

    Sorted ascending, the i-th smallest (i = 0..m-1) becomes max over j <= i of min(1, (m - j) p_(j)); rejecting
    where the adjusted p < alpha controls the family-wise error rate at alpha.
    """
    values = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(values, np.nan)
    tested = np.flatnonzero(~np.isnan(values))
    order = tested[np.argsort(values[tested], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * values[index]))
        adjusted[index] = running
    return adjusted


def seeds_pair(long: pd.DataFrame, resolution: int, first: str, second: str) -> bool:
    """Whether run s of `first` and run s of `second` share their training data order for every run both have:
    the data-order seeds their checkpoints' meta record are equal (and known). Then their seeds pair."""
    if "train_seed" not in long.columns:
        return False
    orders = [_values(long, resolution, model, "train_seed") for model in (first, second)]
    common = set(orders[0]) & set(orders[1])
    return bool(common) and all(orders[0][seed] == orders[1][seed] for seed in common)


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
    mean over seeds. Against the VAE: the cross-seed test of per-seed mean RMSE (`seed_*` columns, unadjusted;
    paired where the seeds pair, else Welch: eval.table.seed_test) and, with one seed only, the per-image
    Wilcoxon test of the two trained networks (descriptive: it compares two networks, not two methods). Then the
    paper's published RMSE. A model whose summary withholds its RMSE (PixelVAE) gets neither test.
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
        for column in group.columns.drop(["resolution", "model", "seed", "kind", "per_image", "train_seed"],
                                         errors="ignore"):
            values = pd.to_numeric(group[column], errors="coerce")
            row[column] = float(values.mean()) if values.notna().any() else np.nan
            if column not in {"n_test", "parameters", "flops_per_image", "rmse_ci95_lo", "rmse_ci95_hi"}:
                row[f"{column}_seed_std"] = float(values.std(ddof=1)) if values.notna().sum() > 1 else np.nan
        if len(group) > 1:
            means = group["rmse_mean"].to_numpy(np.float64)
            half = t_distribution.ppf(0.975, len(means) - 1) * means.std(ddof=1) / np.sqrt(len(means))
            row["rmse_ci95_lo"], row["rmse_ci95_hi"] = means.mean() - half, means.mean() + half
        baseline = _values(long, resolution, BASELINE, "rmse_mean")
        own = _values(long, resolution, model, "rmse_mean")  # empty where the summary withholds RMSE
        if baseline and own and model != BASELINE:
            test = seed_test(own, baseline, paired=seeds_pair(long, resolution, model, BASELINE))
            row.update({"seed_rmse_diff_vs_vae": test["mean_diff"], "seed_p_vs_vae": test["p_value"],
                        "seed_test_vs_vae": test["test"]})
        else:
            row.update({"seed_rmse_diff_vs_vae": np.nan, "seed_p_vs_vae": np.nan, "seed_test_vs_vae": ""})
        vae_rows = long[(long["resolution"] == resolution) & (long["model"] == BASELINE)]
        if len(group) == 1 and len(vae_rows) == 1 and model != BASELINE and own:
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

    test: the test each claim used (paired t where the seeds pair, `seeds_pair`; Welch t where they do not;
    one-sample t against a reference computed once). p_value: its two-sided p; p_holm: Holm-adjusted over every
    claim tested here (all resolutions). verdict, on p_holm: "supported" / "contradicted" (p_holm < 0.05, in /
    against the claimed direction), "not shown" (p_holm >= 0.05), "not testable" (fewer than `min_seeds` seeds)
    or "missing" (a side was not evaluated). A claim whose metric no summary holds is left out.
    """
    rows = []
    for resolution in sorted(long["resolution"].unique()):
        for claim, first, second, column, better in CLAIMS:
            if column not in long.columns or long[column].isna().all():
                continue
            a, b = _values(long, resolution, first, column), _values(long, resolution, second, column)
            row = {"resolution": int(resolution), "claim": claim, "model": first, "versus": second,
                   "metric": column, "better": better}
            if not a or not b:
                rows.append({**row, "n_seeds": 0, "mean_diff": np.nan, "std_diff": np.nan, "p_value": np.nan,
                             "test": "", "verdict": "missing"})
                continue
            test = seed_test(a, b, min_seeds, paired=seeds_pair(long, resolution, first, second))
            rows.append({**row, **test, "verdict": "not testable" if np.isnan(test["p_value"]) else ""})
    claims = pd.DataFrame(rows)
    if claims.empty:
        return claims
    claims.insert(claims.columns.get_loc("p_value") + 1, "p_holm", holm(claims["p_value"].to_numpy()))
    for index, record in claims.iterrows():
        if record["verdict"]:
            continue
        if record["p_holm"] >= SIGNIFICANCE:
            claims.loc[index, "verdict"] = "not shown"
        else:
            claimed = record["mean_diff"] < 0 if record["better"] == "lower" else record["mean_diff"] > 0
            claims.loc[index, "verdict"] = "supported" if claimed else "contradicted"
    return claims


def metrics_json(table: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """{"64": {"vae": {"rmse_mean": ..., ...}}}: the METRICS_JSON_COLUMNS of each Table 1 row that has them, as
    numbers; a missing value is left out (no nulls, no strings), so `dvc metrics show` stays a short table."""
    nested: dict[str, dict[str, dict[str, float]]] = {}
    for record in table.to_dict(orient="records"):
        values = {key: float(record[key]) for key in METRICS_JSON_COLUMNS
                  if key in record and not pd.isna(record[key])}
        nested.setdefault(str(record["resolution"]), {})[str(record["model"])] = values
    return nested
