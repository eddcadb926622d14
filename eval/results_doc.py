"""Table 1 and the claims of a run as Markdown for the docs (`lapcvae results-doc`), written between two markers.

The block is rendered from the run's own files (`table1.csv`, `claims.csv`, `table1_seeds.csv` of
`results/metrics`, and each model's `summary.json` for the hardware it trained on), never typed by hand, and says
where it came from: the params files, the settings that size the run, and the CPU, GPU and precision of training.
Everything outside the markers is left as it is, so a document keeps its own prose around the numbers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from core.atomic import write_text
from core.registry import RECONSTRUCTION_REFERENCES, SEED_REFERENCES, TRAINING_IMAGES
from eval.report_blocks import MISSING, display, engineering, number, p_value
from eval.report_render import markdown_cell

BEGIN_MARKER = "<!-- results-doc:begin (written by `lapcvae results-doc`: edit outside the markers) -->"
END_MARKER = "<!-- results-doc:end -->"
TABLE1_REQUIRED = ("resolution", "model", "kind", "n_seeds", "rmse_mean")
CLAIMS_REQUIRED = ("resolution", "claim", "metric", "n_seeds", "mean_diff", "p_value", "verdict")
PCA = "pca"  # the reference row each model's RMSE is divided by (the best linear code of LapCVAE's latent size)
# (column, header, cell format) of Table 1 after the model, its seeds, RMSE and RMSE / PCA
TABLE1_COLUMNS = (
    ("r2_h0_mean", "R² h0", 3), ("r2_h1_mean", "R² h1", 3), ("contrast_median", "contrast", 3),
    ("rate_mean", "rate (nats)", 1), ("ssim_mean", "SSIM", 3), ("parameters", "parameters", None),
    ("train_seconds", "training (s)", 0), ("train_flops", "training FLOPs", None),
    ("sample_seconds", "sampling (s)", 2),
)
# (column, header, cell format) of the second table: samples of both priors, rate against the linear-Gaussian code,
# and the compute split that the equal-compute row matches
SAMPLES_RATE_COLUMNS = (
    ("sample_precision", "precision N(0, I)", 3), ("sample_recall", "recall N(0, I)", 3),
    ("fd_embedding", "FD N(0, I)", 2), ("fitted_sample_precision", "precision fitted", 3),
    ("fitted_sample_recall", "recall fitted", 3), ("fitted_fd_embedding", "FD fitted", 2),
    ("face_ratio", "faces N(0, I) (x test)", 2), ("fitted_face_ratio", "faces fitted (x test)", 2),
    ("nelbo_bits_per_dim", "-ELBO (bits/dim)", 3), ("gaussian_rmse_at_rate", "linear-Gaussian RMSE at the rate", 2),
    ("network_flops", "network FLOPs", None), ("optimizer_flops", "optimizer FLOPs", None),
)


def read_csv(path: Path, required: Sequence[str], how_to_make: str) -> pd.DataFrame:
    """A CSV of `lapcvae table` with the columns this page shows; a missing file or column names the fix."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {how_to_make}")
    frame = pd.read_csv(path)
    if missing := [column for column in required if column not in frame.columns]:
        raise ValueError(f"{path} lacks the columns {missing}: {how_to_make}")
    return frame


def cell(value: Any, digits: int | None) -> str:
    """A number with `digits` decimals, or engineering notation (2.17 M, 4.58 T) when digits is None."""
    return engineering(value) if digits is None else number(value, digits)


def with_spread(record: Mapping[str, Any], column: str, digits: int | None) -> str:
    """'mean ± std across seeds' where the table has several seeds, else the one value."""
    value, spread = cell(record.get(column), digits), record.get(f"{column}_seed_std")
    if value == MISSING or spread is None or pd.isna(spread):
        return value.replace(MISSING, "–")
    return f"{value} ± {cell(spread, digits)}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(map(markdown_cell, header)) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(map(markdown_cell, row)) + " |" for row in rows]


def model_name(record: Mapping[str, Any]) -> str:
    return display(str(record["model"])) + (" (reference)" if record.get("kind") == "reference" else "")


def pca_ratio(record: Mapping[str, Any], resolution_rows: pd.DataFrame) -> str:
    """The record's RMSE over the PCA reference row of its resolution, e.g. '1.38x'."""
    pca_rmse = resolution_rows.loc[resolution_rows["model"] == PCA, "rmse_mean"]
    if not len(pca_rmse) or not pca_rmse.iloc[0] > 0 or pd.isna(record["rmse_mean"]):
        return "–"
    return f"{record['rmse_mean'] / pca_rmse.iloc[0]:.2f}x"


def table1_lines(table: pd.DataFrame) -> list[str]:
    """Table 1: one row per resolution and model, each number the mean over seeds ± its std across them; then
    the samples, rate and compute of the same rows where the table has them."""
    columns = [(column, header, digits) for column, header, digits in TABLE1_COLUMNS if column in table.columns]
    rows = []
    for res, group in table.groupby("resolution", sort=True):
        for record in group.to_dict(orient="records"):
            rows.append([str(res), model_name(record), str(int(record["n_seeds"])),
                         with_spread(record, "rmse_mean", 2), pca_ratio(record, group),
                         *[with_spread(record, column, digits) for column, _, digits in columns]])
    header = ["res", "model", "seeds", "RMSE", "RMSE / PCA", *[header for _, header, _ in columns]]
    lines = markdown_table(header, rows)
    extra = [(column, header, digits) for column, header, digits in SAMPLES_RATE_COLUMNS if column in table.columns]
    if not extra:
        return lines
    rows = [[str(record["resolution"]), model_name(record),
             *[with_spread(record, column, digits) for column, _, digits in extra]]
            for record in table.sort_values("resolution", kind="stable").to_dict(orient="records")
            if any(not pd.isna(record.get(column)) for column, _, _ in extra)]
    return [*lines, "", "Samples (600 per model, against the test split in the training split's embedding: "
            "precision, recall, Frechet distance), from the N(0, I) prior and from the prior fitted to the training "
            "posteriors; the test -ELBO; the RMSE a linear-Gaussian code of the training covariance reaches at the "
            "model's rate; training FLOPs split into network and optimizer:", "",
            *markdown_table(["res", "model", *[header for _, header, _ in extra]], rows)]


def per_seed_lines(per_seed: pd.DataFrame) -> list[str]:
    """Each seed's test RMSE per model, in seed order (models trained with several seeds only)."""
    seeds = sorted(per_seed["seed"].unique())
    if len(seeds) < 2:
        return []
    rows = []
    for (res, model), group in per_seed.groupby(["resolution", "model"], sort=False):
        by_seed = group.set_index("seed")["rmse_mean"]
        if len(by_seed) < 2:
            continue
        rows.append([str(res), display(str(model)), ", ".join(number(by_seed.get(seed)) for seed in seeds)])
    if not rows:
        return []
    return ["Test RMSE of each training seed (" + ", ".join(map(str, seeds)) + "):", "",
            *markdown_table(["res", "model", "RMSE per seed"], rows)]


def rate_verdict(record: dict) -> str:
    """A matched-rate claim's verdict; a model whose rate lies outside the VAE's swept rates in every seed has no
    matched value to test (the test column of rate_distortion_{res}_claims.csv says so)."""
    if str(record.get("test", "")).startswith("not testable"):
        outside = record.get("n_outside_range", 0)
        return (f"not testable ({int(outside)} seed(s) outside the VAE's swept rates)" if outside and outside > 0
                else "not testable")
    return "supported" if bool(record["supported"]) else "not shown"


def claims_lines(claims: pd.DataFrame) -> list[str]:
    """Each claim, per resolution: the mean over seeds of the per-seed difference, the paired t test, its Holm
    adjustment (where claims.csv has it), the verdict."""
    lines: list[str] = []
    for res, group in claims.groupby("resolution", sort=True):
        n_seeds = int(group["n_seeds"].max())
        rows = []
        for record in group.to_dict(orient="records"):
            difference = f"{record['mean_diff']:+.2f}" if not pd.isna(record["mean_diff"]) else "–"
            if not pd.isna(record.get("std_diff", float("nan"))):
                difference += f" ± {record['std_diff']:.2f}"
            holm = [p_value(record["p_holm"]).replace(MISSING, "–")] if "p_holm" in claims.columns else []
            rows.append([str(record["claim"]), f"{difference} ({record['metric']})",
                         p_value(record["p_value"]).replace(MISSING, "–"), *holm, str(record["verdict"])])
        lines += [f"{res} px:", "", *markdown_table(
            ["claim", f"mean difference over {n_seeds} seed{'s' * (n_seeds != 1)} (± std)", "p (paired t)",
             *(["p (Holm)"] if "p_holm" in claims.columns else []), "verdict"], rows), ""]
    return lines[:-1]


def rate_distortion_lines(metrics_dir: Path) -> list[str]:
    """The rate-distortion study's points (mean ± std over seeds) and its matched-rate claims, per resolution, from
    `rate_distortion_{res}.csv` and `rate_distortion_{res}_claims.csv` (`snakemake rate_distortion`); [] without."""
    lines: list[str] = []
    for path in sorted(metrics_dir.glob("rate_distortion_*.csv")):
        res = path.stem.removeprefix("rate_distortion_")
        if not res.isdigit():
            continue
        how = "run `snakemake rate_distortion`"
        points = read_csv(path, ("model", "factor", "seed", "rate_nats", "rmse_mean"), how)
        columns = [column for column in ("rate_nats", "rmse_mean", "sample_precision", "sample_recall")
                   if column in points.columns]
        summary = points.groupby(["model", "factor"], sort=False)[columns].agg(["mean", "std"])
        rows = [[display(str(model)), f"x{factor:g}",
                 *(f"{number(row[(column, 'mean')], 3 if column.startswith('sample') else 2)} ± "
                   f"{number(row[(column, 'std')], 3 if column.startswith('sample') else 2)}" for column in columns)]
                for (model, factor), row in summary.iterrows()]
        seeds = points["seed"].nunique()
        lines += [f"{res} px, {seeds} seed{'s' * (seeds != 1)}: each model retrained with its KL weight(s) times the "
                  "factor (x1: as params sets it), scored on the test split; figure "
                  f"`results/figures/rate_distortion_{res}.png`.", "",
                  *markdown_table(["model", "KL weights", "rate (nats)", "RMSE",
                                   *("sample precision", "sample recall")[:len(columns) - 2]], rows), ""]
        claims_path = metrics_dir / f"rate_distortion_{res}_claims.csv"
        if claims_path.is_file():
            claims = read_csv(claims_path, ("model", "metric", "role", "mean_diff", "p_value", "p_holm", "supported"),
                              how)
            rows = [[f"{display(str(record['model']))} against the VAE at its rate ({record['metric']}, "
                     f"{record['role']})", f"{record['mean_diff']:+.3f}" if not pd.isna(record["mean_diff"]) else "–",
                     p_value(record["p_value"]).replace(MISSING, "–"), p_value(record["p_holm"]).replace(MISSING, "–"),
                     rate_verdict(record)] for record in claims.to_dict(orient="records")]
            lines += ["At matched rate (the VAE's swept points of the same seed, interpolated in log rate at the "
                      "model's x1 rate; paired t over seeds, Holm over the rows):", "",
                      *markdown_table(["claim", "mean difference (model minus VAE)", "p", "p (Holm)", "verdict"],
                                      rows), ""]
    return lines


def training_hardware(eval_dir: Path, table: pd.DataFrame) -> list[str]:
    """The distinct machines the table's models trained on, from each summary.json's checkpoint meta."""
    machines: dict[str, list[str]] = {}
    for record in table.to_dict(orient="records"):
        path = eval_dir / str(record["resolution"]) / str(record["model"]) / "summary.json"
        if record.get("kind") == "reference" or not path.is_file():
            continue
        try:
            meta = json.loads(path.read_text()).get("meta") or {}
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON ({error}): rerun `lapcvae evaluate` for that model") from error
        device = meta.get("device", MISSING)
        where = f"GPU {meta['gpu']}" if meta.get("gpu") else f"CPU {meta.get('cpu', MISSING)}"
        threads = f", {meta['cpu_threads']} thread(s) per job" if meta.get("cpu_threads") else ""
        machine = f"{where} ({device}{threads}), {meta.get('precision', MISSING)}, torch {meta.get('torch', MISSING)}"
        machines.setdefault(machine, []).append(f"{record['resolution']} {record['model']}")
    return [f"{machine}: {len(models)} model(s)" for machine, models in machines.items()]


def run_settings(params: Mapping[str, Any]) -> str:
    """The settings that size a run: data, resolutions, budget, seeds, optimizer and precision."""
    data = params["data"]
    source = data["source"]
    count = (data.get(source) or {}).get("count")
    seeds = params.get("seeds") or [params["seed"]]
    return (f"data.source {source}" + (f" ({count} images)" if count else "")
            + f", data.resolutions {list(data['resolutions'])}, budget.epochs {params['budget']['epochs']}, "
            f"seeds {list(seeds)}, train.optimizer {params['train']['optimizer']}, "
            f"train.bf16 {str(params['train']['bf16']).lower()}")


def results_block(metrics_dir: Path, eval_dir: Path, params: Mapping[str, Any], params_files: Sequence[str],
                  label: str, cpu: str) -> str:
    """The Markdown between the markers: provenance, Table 1, per-seed RMSE, claims."""
    how = "run `lapcvae table` (or the DAG) first"
    table = read_csv(metrics_dir / "table1.csv", TABLE1_REQUIRED, how)
    claims = read_csv(metrics_dir / "claims.csv", CLAIMS_REQUIRED, how)
    per_seed_path = metrics_dir / "table1_seeds.csv"
    per_seed = (read_csv(per_seed_path, ("resolution", "model", "seed", "rmse_mean"), how)
                if per_seed_path.is_file() else None)
    n_test = sorted({int(value) for value in table.get("n_test", pd.Series(dtype=float)).dropna()})
    provenance = [
        f"- Run: **{label}**; params: `{' + '.join(['params.yaml', *params_files])}`.",
        f"- Settings: {run_settings(params)}; test images: {', '.join(map(str, n_test)) or MISSING}.",
        *[f"- Trained on: {machine}." for machine in training_hardware(eval_dir, table)],
        f"- Rendered on: {cpu}, from `{metrics_dir}/table1.csv` and `claims.csv` by "
        f"`lapcvae results-doc` (training seconds depend on the machine and its load; FLOPs do not).",
    ]
    legend = ("RMSE is on [0, 255] over the test split; each number is the mean over seeds ± its standard deviation "
              "across seeds (one value with one seed). RMSE / PCA divides by the PCA reference row. R² hk is the "
              "aligned R² of the reconstruction's Laplacian band h_k (1 exact, 0 no detail). Contrast: median of "
              "the reconstruction's pixel std over the original's. Rate: KL nats per image. Training time and "
              "FLOPs sum a model's jobs; sampling is the wall time of one batch of `eval.samples` prior samples.")
    lines = [*provenance, "", "### Table 1", "", legend, "", *table1_lines(table), ""]
    if per_seed is not None and (seed_lines := per_seed_lines(per_seed)):
        lines += [*seed_lines, ""]
    lines += ["### Claims", "", "Paired t test over seeds of the per-seed means (first model minus the second), "
              f"Holm's correction over the run's {len(claims)} claims (both resolutions), which the verdict reads; "
              "with fewer than 3 seeds a claim is *not testable*.", "", *claims_lines(claims)]
    if rate_lines := rate_distortion_lines(metrics_dir):
        lines += ["", "### Rate-distortion", "", *rate_lines[:-1]]
    return "\n".join(lines) + "\n"


# (column, header, cell format) of the summary a README shows: what each model is for, side by side
SUMMARY_COLUMNS = (("fitted_fd_embedding", "FD of fitted-prior samples", 2),
                   ("face_ratio", "faces N(0, I) (x test)", 2), ("fitted_face_ratio", "faces fitted (x test)", 2),
                   ("nelbo_bits_per_dim", "-ELBO (bits/dim)", 3), ("network_flops", "network FLOPs", None),
                   ("optimizer_flops", "optimizer FLOPs", None))
# The reference rows a summary keeps (not a seed's own): the mean face (no model) and PCA (the best linear code)
SUMMARY_REFERENCES = tuple(name for name in RECONSTRUCTION_REFERENCES if name not in SEED_REFERENCES)


def summary_block(metrics_dir: Path, label: str, cpu: str, full: str) -> str:
    """A short Table 1 for a README (reconstruction, samples, -ELBO and compute of each model beside the mean
    face and PCA) and the count of the claims' verdicts, pointing to the full block in `full`."""
    how = "run `lapcvae table` (or the DAG) first"
    table = read_csv(metrics_dir / "table1.csv", TABLE1_REQUIRED, how)
    claims = read_csv(metrics_dir / "claims.csv", CLAIMS_REQUIRED, how)
    columns = [(column, header, digits) for column, header, digits in SUMMARY_COLUMNS if column in table.columns]
    rows = []
    for res, group in table.groupby("resolution", sort=True):
        for record in group.to_dict(orient="records"):
            if record.get("kind") == "reference" and record["model"] not in SUMMARY_REFERENCES:
                continue
            rows.append([str(res), model_name(record), with_spread(record, "rmse_mean", 2), pca_ratio(record, group),
                         *[with_spread(record, column, digits) for column, _, digits in columns]])
    seeds = int(table["n_seeds"].max())
    real = table[table["model"] == TRAINING_IMAGES].to_dict(orient="records")
    real_scores = ", ".join(f"{number(record['fd_embedding'], 2)} at {record['resolution']} px"
                            for record in real if not pd.isna(record.get("fd_embedding", float("nan"))))
    verdicts = claims["verdict"].value_counts()
    counted = ", ".join(f"{count} {verdict}" for verdict, count in verdicts.items())
    contradicted = "; ".join(f"{record['claim']} ({record['resolution']} px)"
                             for record in claims.to_dict(orient="records") if record["verdict"] == "contradicted")
    return "\n".join([
        f"{label}, rendered on {cpu}: test RMSE (0-255) as mean ± std over {seeds} seed{'s' * (seeds != 1)}, the "
        "Frechet distance of samples from the prior fitted to the training posteriors (in the training split's "
        "embedding" + (f"; real training images score {real_scores}" if real_scores else "")
        + "), how often a face detector finds a face in the samples of each prior relative to the test images "
        "(N(0, I) and fitted), the test -ELBO and the training FLOPs of the network and of the optimizer.", "",
        *markdown_table(["res", "model", "RMSE", "RMSE / PCA", *[header for _, header, _ in columns]], rows), "",
        f"Claims, tested across seeds with Holm's correction over all {len(claims)}: {counted}"
        + (f" (contradicted: {contradicted})" if contradicted else "") + f". Everything else: [{full}]({full}).",
    ]) + "\n"


def replace_between_markers(document: str, block: str, source: str) -> str:
    """`document` with the text between its begin and end markers replaced by `block`."""
    begin, end = document.find(BEGIN_MARKER), document.find(END_MARKER)
    if begin < 0 or end < 0 or end < begin or document.count(BEGIN_MARKER) > 1 or document.count(END_MARKER) > 1:
        raise ValueError(f"{source} must hold the line {BEGIN_MARKER!r} once and, after it, {END_MARKER!r} once: "
                         "add them where the results go (or pass a new file to --out)")
    return document[:begin + len(BEGIN_MARKER)] + "\n" + block + document[end:]


def write_results_doc(out: Path, block: str, title: str) -> None:
    """Replace the block between the markers of `out`; a new file gets a title and the two markers."""
    document = out.read_text() if out.is_file() else f"# {title}\n\n{BEGIN_MARKER}\n{END_MARKER}\n"
    write_text(out, replace_between_markers(document, block, str(out)))
