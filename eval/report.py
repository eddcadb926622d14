"""The comparison report (`lapcvae report`): results/report.md and a self-contained results/report.html.

The report is built once as a list of blocks (headings, paragraphs, tables, figures, preformatted text) and
rendered twice: Markdown (figures linked by relative path) and HTML (figures embedded as base64 data URIs,
inline CSS, no scripts, fonts or style sheets from elsewhere, so it opens offline).

This module holds the report's content (its sections, in reading order, and `build_report`). The block types
and cell formats are in `eval.report_blocks`, the renderers in `eval.report_render`, the provenance section in
`eval.report_provenance`. A new section is a function returning a list of blocks, added to `build_report`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from core import figures as figure_table
from core import registry
from eval.metric_directions import BETTER, RECONSTRUCTION_METRICS, badness
from eval.paper import (
    PAPER_PIXELVAE_SAMPLING_BATCH,
    PAPER_PIXELVAE_SAMPLING_MINUTES,
    PAPER_TABLE1,
    PAPER_TABLE2,
    PAPER_TABLE2_RESOLUTION,
)
from eval.plotting import MODELS
from eval.report_blocks import (
    MISSING,
    Block,
    Bullets,
    FigureBlock,
    Heading,
    Paragraph,
    Table,
    across_seeds,
    csv_table,
    display,
    engineering,
    number,
    p_value,
    read_json,
)
from eval.report_provenance import provenance_section
from eval.report_render import render_html, render_markdown, write_text_atomically
from eval.report_studies import ablations_section, budget_curve_section
from eval.table import MIN_SEEDS, REFERENCES, paired_wilcoxon

logger = logging.getLogger(__name__)

SIGNIFICANCE = 0.05  # two-sided level at which a Wilcoxon p-value is called significant
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TABLE1_REQUIRED = ("resolution", "model", "rmse_mean", "rmse_std")
# (summary column, per-image column, label); which value is better: eval.metric_directions.BETTER
METRICS = (
    ("rmse_mean", "rmse", "RMSE"),
    ("psnr_mean", "psnr", "PSNR"),
    ("ssim_mean", "ssim", "SSIM"),
    ("r2_h0_mean", "r2_h0", "R² of band h0"),  # aligned finest detail: 1 exact, <= 0 none
    *((metric.summary_column, metric.name, metric.label) for metric in RECONSTRUCTION_METRICS),
)


def read_table1(path: Path) -> pd.DataFrame:
    """results/metrics/table1.csv as `lapcvae table` writes it (one row per resolution and model)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run `lapcvae table` first")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a readable CSV ({error}); rerun `lapcvae table`") from error
    missing = [column for column in TABLE1_REQUIRED if column not in table.columns]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing}; rerun `lapcvae table`")
    return table


def read_per_image(per_image_dir: Path, res: int, model: str, column: str) -> pd.Series | None:
    """One per-image metric of one model indexed by test image row; None (logged) when unavailable."""
    path = per_image_dir / f"{res}_{model}.csv"
    if not path.is_file():
        logger.warning("no %s: the report cannot test %s's %s per image", path, model, column)
        return None
    table = pd.read_csv(path)
    if not {"image", column} <= set(table.columns):
        raise ValueError(f"{path} lacks the image/{column} columns; rerun `lapcvae evaluate` for {model}")
    return table.set_index("image")[column].sort_index()


def paired_p(first: pd.Series, second: pd.Series) -> float:
    """Two-sided Wilcoxon signed-rank p-value over the test images both have finite values for."""
    both = pd.concat([first, second], axis=1, join="inner")  # (N, 2), aligned on the test image row
    both = both.replace([float("inf"), float("-inf")], float("nan")).dropna()
    return paired_wilcoxon(both.iloc[:, 0], both.iloc[:, 1])["wilcoxon_p"]


def metric_winners(rows: pd.DataFrame, res: int, per_image_dir: Path) -> list[str]:
    """For each metric: the best model, the runner-up and the paired test between them, one sentence each."""
    sentences = []
    for summary_column, per_image_column, label in METRICS:
        if summary_column not in rows.columns:
            continue
        judged = BETTER[summary_column]
        # Retraining M leaves encoders and decoders untouched, so its reconstructions equal LapCVAE's exactly:
        # rank distinct models only, or the "runner-up" would be the winner's twin.
        ranked = rows.dropna(subset=[summary_column]).drop_duplicates(subset=[summary_column])
        if len(ranked) < 2:
            continue
        ranked = ranked.assign(_badness=badness(ranked[summary_column], judged)).sort_values("_badness")
        best, second = ranked.iloc[0], ranked.iloc[1]
        sentence = (f"{label} ({judged} is better): {display(best['model'])} is best with "
                    f"{number(best[summary_column], 3)}, ahead of {display(second['model'])} "
                    f"({number(second[summary_column], 3)})")
        best_values = read_per_image(per_image_dir, res, best["model"], per_image_column)
        second_values = read_per_image(per_image_dir, res, second["model"], per_image_column)
        if best_values is None or second_values is None:
            sentences.append(sentence + "; no per-image values to test the difference.")
            continue
        p = paired_p(badness(best_values, judged), badness(second_values, judged))
        verdict = "significant" if p < SIGNIFICANCE else "not significant"
        sentences.append(f"{sentence}; paired Wilcoxon signed-rank test p = {p_value(p)} ({verdict} at "
                         f"{SIGNIFICANCE:.0%} for these trained networks; claims about methods are tested "
                         "across seeds below).")
    return sentences


def lapcvae_versus_vae(rows: pd.DataFrame, res: int, per_image_dir: Path) -> str:
    """The paper's claim (Table 1, section 5.1.1): LapCVAE reconstructs with lower RMSE, sharper than VAE."""
    by_model = rows.set_index("model")
    missing = [display(model) for model in ("lapcvae", "vae") if model not in by_model.index]
    if missing:
        return (f"The paper's claim that LapCVAE beats the VAE cannot be checked at {res}x{res}: "
                f"{' and '.join(missing)} not evaluated.")
    vae, lapcvae = by_model.loc["vae"], by_model.loc["lapcvae"]
    paper = PAPER_TABLE1.get(str(res), {})
    claim = ("The paper reports a lower RMSE for LapCVAE than for the VAE"
             + (f" ({paper['lapcvae']['rmse_mean']:.2f} vs {paper['vae']['rmse_mean']:.2f} on CelebA)"
                if {"vae", "lapcvae"} <= set(paper) else "") + " and sharper reconstructions.")
    # Only a test across training seeds compares the methods; a per-image test compares two trained networks.
    seed_p, seed_test = lapcvae.get("seed_p_vs_vae"), lapcvae.get("seed_test_vs_vae")
    seed_difference = lapcvae.get("seed_rmse_diff_vs_vae")
    n_seeds = int(lapcvae.get("n_seeds", 1)) if not pd.isna(lapcvae.get("n_seeds", 1)) else 1
    if seed_p is None or pd.isna(seed_p):
        outcome = (f"with {n_seeds} training seed(s) the claim is not testable here (the protocol tests claims "
                   f"across at least {MIN_SEEDS} seeds), so no conclusion is drawn")
    elif seed_p >= SIGNIFICANCE:
        outcome = (f"across {n_seeds} seeds the difference is not significant ({seed_test}, p = "
                   f"{p_value(seed_p)}), so this run neither confirms nor refutes the claim")
    elif seed_difference < 0:
        outcome = (f"LapCVAE beats the VAE on RMSE here, as the paper claims ({seed_test}, p = "
                   f"{p_value(seed_p)} before the claims table's Holm adjustment)")
    else:
        outcome = (f"the VAE beats LapCVAE on RMSE here, contrary to the paper's claim ({seed_test}, p = "
                   f"{p_value(seed_p)} before the claims table's Holm adjustment)")
    p = lapcvae.get("wilcoxon_p")
    median_difference = lapcvae.get("rmse_median_diff_vs_vae")
    networks = ("" if p is None or pd.isna(p) else
                f"; for these two trained networks the median per-image difference is {number(median_difference)} "
                f"(Wilcoxon p = {p_value(p)}, which describes the networks, not the methods)")
    text = (f"{claim} Here: LapCVAE {number(lapcvae['rmse_mean'])} vs VAE {number(vae['rmse_mean'])}"
            f"{networks}: {outcome}.")
    if "r2_h0_mean" in by_model.columns:
        sharper = "LapCVAE" if lapcvae["r2_h0_mean"] > vae["r2_h0_mean"] else "the VAE"
        text += (" Aligned fine detail, R² of the finest Laplacian band h0 (1 = exact, <= 0 = none): LapCVAE "
                 f"{number(lapcvae['r2_h0_mean'], 3)}, VAE {number(vae['r2_h0_mean'], 3)}, so "
                 f"{sharper} keeps more aligned fine detail on this run")
        lap_values = read_per_image(per_image_dir, res, "lapcvae", "r2_h0")
        vae_values = read_per_image(per_image_dir, res, "vae", "r2_h0")
        text += (f" (per-image Wilcoxon p = {p_value(paired_p(lap_values, vae_values))}, which describes the "
                 "two networks)." if lap_values is not None and vae_values is not None else ".")
    return text


def reading_section(table: pd.DataFrame, per_image_dir: Path, source: str) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Reading of the results")]
    if source != "celeba":
        blocks.append(Paragraph(f"These results are on the '{source}' data, not CelebA: compare directions "
                                "with the paper, not values.", note=True))
    for res in sorted(table["resolution"].unique()):
        rows = table[table["resolution"] == res]
        models = rows[~rows["model"].isin(REFERENCES)]  # the reference rows are yardsticks, not contenders
        sentences = metric_winners(models, int(res), per_image_dir)
        sentences.append(lapcvae_versus_vae(models, int(res), per_image_dir))
        sentences += reference_sentences(rows)
        blocks.append(Heading(3, f"{res}x{res}"))
        blocks.append(Bullets(sentences))
    return blocks


def reference_sentences(rows: pd.DataFrame) -> list[str]:
    """Whether each model beats the reference rows (mean face, PCA of the same code size, coarsest level)."""
    by_model = rows.set_index("model")
    references = [name for name in REFERENCES if name in by_model.index  # those with a reconstruction error
                  and not pd.isna(by_model.loc[name, "rmse_mean"])]
    if not references:
        return []
    sentences = []
    for model in by_model.index:
        if model in REFERENCES or pd.isna(by_model.loc[model, "rmse_mean"]):  # no RMSE: nothing to compare
            continue
        rmse = by_model.loc[model, "rmse_mean"]
        def named(names: list[str]) -> str:
            return ", ".join(f"{display(name)} ({number(by_model.loc[name, 'rmse_mean'])})" for name in names)

        beaten = [name for name in references if rmse < by_model.loc[name, "rmse_mean"]]
        missed = [name for name in references if rmse >= by_model.loc[name, "rmse_mean"]]
        sentences.append(f"{display(model)} (RMSE {number(rmse)}) beats: {named(beaten) or 'no reference row'}; "
                         f"does not beat: {named(missed) or 'none'} (mean RMSE; the claims table tests this "
                         "across seeds).")
    return sentences


def claims_section(claims_path: Path) -> list[Block]:
    """The comparison's claims, each with the cross-seed test that supports or contradicts it (eval.table)."""
    blocks: list[Block] = [Heading(2, "Claims tested across training seeds")]
    if not claims_path.is_file():
        return [*blocks, Paragraph(f"No {claims_path} (rerun `lapcvae table`).", note=True)]
    claims = pd.read_csv(claims_path)
    rows = [[f"{record['resolution']}x{record['resolution']}", str(record["claim"]), str(record["n_seeds"]),
             number(record.get("mean_diff"), 3), p_value(record.get("p_value")), p_value(record.get("p_holm")),
             str(record.get("test") if not pd.isna(record.get("test")) else ""), str(record["verdict"])]
            for record in claims.to_dict(orient="records")]
    tested = int(claims["p_holm"].notna().sum()) if "p_holm" in claims.columns else 0
    blocks.append(Table(["Resolution", "Claim", "Seeds", "Mean difference", "p", "p (Holm)", "Test", "Verdict"],
                        rows, "Each claim compares per-seed means (the first model minus the second; the claim "
                        "says which direction is better). Test: Student's paired t where both models' runs of a "
                        "seed read the training data in the same order, Welch's unpaired t where they do not, a "
                        "one-sample t against a reference computed once; each needs at least "
                        f"{MIN_SEEDS} seeds, with fewer the claim is 'not testable'. p (Holm): adjusted by "
                        f"Holm's method over the {tested} claims tested; verdicts use p (Holm) < {SIGNIFICANCE}."))
    return blocks


def tuning_seeds(chosen: Mapping[str, Any]) -> str:
    """How a tuning run's trials were seeded, for its caption (files written before `tune.seeds` do not say)."""
    seeds = chosen.get("seeds")
    if not seeds:
        return ""
    if len(seeds) == 1:
        return f" from seed {seeds[0]}"
    return f" from each of seeds {', '.join(map(str, seeds))} (scores: the mean over them)"


def protocol_section(params: Mapping[str, Any], results: Path, prepared: Path) -> list[Block]:
    """How the models were compared (docs/protocol.md, "How models are compared"), with this run's numbers."""
    manifest_path = prepared / "manifest.json"
    counts = json.loads(manifest_path.read_text()).get("counts", {}) if manifest_path.is_file() else {}
    seeds = params.get("seeds") or [params["seed"]]
    items = [
        f"Splits: {counts.get('train', MISSING)} training, {counts.get('val', MISSING)} validation, "
        f"{counts.get('test', MISSING)} test images; models train on the training images, every tuning choice "
        "is scored on validation, only evaluation reads the test split.",
        f"Budget rule: every model, and every LapCVAE level, trains {params.get('budget', {}).get('epochs', MISSING)} "
        "epochs over the training images (budget.epochs)"
        + "".join(f", except {display(model)}, which trains the epochs that give it LapCVAE's network FLOPs"
                  for model in registry.flops_matched())
        + "; Table 1 gives each model's training time and FLOPs.",
        f"Seeds: {len(seeds)} ({', '.join(map(str, seeds))}); claims are tested across seeds (paired t test "
        f"where the seeds pair, Welch's otherwise; at least {MIN_SEEDS} seeds), Holm-adjusted over all claims.",
        "Reference rows: the mean training face, PCA fitted on the training images with as many components as "
        "LapCVAE has latent dimensions, and LapCVAE's coarsest level alone upsampled to full size.",
    ]
    blocks: list[Block] = [Heading(2, "Protocol"), Bullets(items)]
    tuning = sorted((results / "tuning").glob("*/*.json"))
    if not tuning:
        blocks.append(Paragraph("No tuning results (results/tuning/): the settings in params.yaml were not chosen "
                                "by `snakemake tune` in this results tree.", note=True))
    for path in tuning:
        chosen = read_json(path, "rerun `snakemake tune`")
        scores = chosen.get("scores_of_chosen", {})
        blocks.append(Table(["Setting", "Chosen value", "Validation fit", "Sample precision", "Sample recall"],
                            [[key, str(value), *(number(scores.get(key, {}).get(column))
                                                 for column in ("fit", "sample_precision", "sample_recall"))]
                             for key, value in chosen.get("chosen", {}).items()],
                            f"{display(chosen.get('model', path.stem))} tuned at {chosen.get('resolution')} px on "
                            f"the validation split, {chosen.get('trials_per_key')} trials per setting, "
                            f"{chosen.get('epochs')} epochs each{tuning_seeds(chosen)}; fit is the RMSE (-ELBO in "
                            f"nats where the reconstruction is not scored), chosen as the best fit among trials within "
                            f"{chosen.get('sample_margin')} of the best sample precision and recall "
                            f"({path.parent.name}/{path.name})."))
    return blocks


def table1_section(table: pd.DataFrame) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Table 1: reconstruction error, sample quality and model complexity")]
    paper_rows = [
        [f"{res}x{res}", display(model) + ("*" if values["trained_on_metric"] else ""),
         f"{values['rmse_mean']:.2f} ± {values['rmse_std']:.2f}", engineering(values["network_parameters"])]
        for res, models in PAPER_TABLE1.items() for model, values in models.items()
    ]
    blocks.append(Table(["Resolution", "Model", "RMSE mean ± std", "Network parameters (as published)"],
                        paper_rows, "THE PAPER'S published numbers (Dorta et al. 2017, Table 1, CelebA), not "
                        "measured by this suite. * trained with this error metric."))
    optional = [(column, label, digits) for column, label, digits in OPTIONAL_TABLE1_COLUMNS
                if column in table.columns and table[column].notna().any()]
    # (header, the metric it shows when the column is ranked by eval.metric_directions)
    columns = [("Model", ""), ("RMSE mean ± std", "rmse_mean"), ("RMSE across seeds", "rmse_mean"), ("RMSE 95% CI", ""),
               ("PSNR (dB)", "psnr_mean"), ("SSIM", "ssim_mean"), *[(label, column) for column, label, _ in optional],
               ("Parameters", ""), ("FLOPs / image", ""), ("Training (s)", ""),
               ("Training FLOPs: network + optimizer", ""), ("ΔRMSE vs VAE (seeds)", ""), ("p vs VAE (seeds)", ""),
               ("Paper RMSE", "")]
    header = [label for label, _ in columns]
    for res in sorted(table["resolution"].unique()):
        rows = []
        records = table[table["resolution"] == res].to_dict(orient="records")
        for record in records:
            rows.append([
                display(record["model"]) + (" (reference)" if record["model"] in REFERENCES else ""),
                f"{number(record['rmse_mean'])} ± {number(record['rmse_std'])}",
                across_seeds(record, "rmse_mean"),
                f"[{number(record.get('rmse_ci95_lo'))}, {number(record.get('rmse_ci95_hi'))}]",
                number(record.get("psnr_mean")), number(record.get("ssim_mean"), 3),
                *[across_seeds(record, column, digits) for column, _, digits in optional],
                engineering(record.get("parameters")), engineering(record.get("flops_per_image")),
                number(record.get("train_seconds"), 1), training_flops(record),
                number(record.get("seed_rmse_diff_vs_vae")),
                p_value(record.get("seed_p_vs_vae")) if not pd.isna(record.get("seed_p_vs_vae", float("nan")))
                else ("not testable" if isinstance(record.get("seed_test_vs_vae"), str)
                      and record["seed_test_vs_vae"].startswith("not testable") else MISSING),
                number(record.get("paper_rmse_mean")),
            ])
        ranking = {"better": [BETTER.get(column) for _, column in columns],
                   "yardstick_rows": frozenset(row for row, record in enumerate(records)
                                               if record["model"] in REFERENCES)}
        blocks.append(Table(header, rows, f"Ours, {res}x{res}: RMSE on the [0, 255] scale over the test "
                            "split (mean ± std over test images; across seeds: mean ± std of the seeds' means, "
                            "and the number of seeds), 95% interval of the mean (bootstrap over images with one "
                            "seed, t over seeds with several), contrast (median over test images of the "
                            "reconstruction's pixel std over the original's: 1 keeps it, near 0 is grey), "
                            "training time and FLOPs (every training job of "
                            "the model), and the paired test across seeds of mean RMSE against the VAE. "
                            + SAMPLE_QUALITY_CAPTION, **ranking))
    return blocks


SAMPLE_QUALITY_CAPTION = (
    "Sample precision and recall (Kynkaanniemi et al. 2019, k-NN balls) and FD (embedding), a Frechet distance, "
    "score a model's eval.samples prior samples against the test split in an embedding fitted on the training "
    "split only (colour layout and Laplacian-band energy, PCA; eval/sample_quality.py), not Inception's: FD "
    "(embedding) is no FID. Precision: the share of samples that look like some test image; recall: the share of "
    "test images some sample resembles; both in [0, 1], higher is better; FD lower is better. Training images "
    "(real faces), scored as samples, show what real faces reach; the mean face, repeated, what no diversity gives. "
    "With a few hundred test images the k-NN balls cover the middle of the real cloud, so precision can rate a "
    "detail-free sample high and a face with a systematic artefact low: read FD first, and Figure 5 beside it. "
    "Faces (x test): the share of samples in which OpenCV's frontal-face detector, trained on photographs and on "
    "nothing of this suite, finds a face, over the share of test images in which it does (eval/face_check.py): "
    "whether samples are faces at all, which FD and recall cannot say; not their variety or detail.")


# Columns shown in Table 1 when the table has them (per-band R^2 and rate come from eval.metrics when it has them).
OPTIONAL_TABLE1_COLUMNS = (("r2_h0_mean", "R² h0", 3), ("r2_h1_mean", "R² h1", 3), ("r2_h0", "R² h0", 3),
                           ("r2_h1", "R² h1", 3),
                           # median over test images of the reconstruction's pixel std over the original's
                           ("contrast_median", "Contrast", 3),
                           ("rate_mean", "Rate (nats)", 1), ("rate", "Rate (nats)", 1), ("rate_nats", "Rate (nats)", 1),
                           # eval.gaussian_bound: the best code of a Gaussian of the training covariance at that rate
                           ("gaussian_rmse_at_rate", "Linear-Gaussian RMSE at that rate", 2),
                           # Time to draw eval.samples prior samples in `evaluate`.
                           ("sample_seconds", "Sampling (s)", 2),
                           # eval/sample_quality.py: samples against the test split in the training split's embedding
                           ("sample_precision", "Sample precision", 3), ("sample_recall", "Sample recall", 3),
                           ("fd_embedding", "FD (embedding)", 2),
                           # the same of the samples of the prior fitted to the training posteriors
                           ("fitted_sample_precision", "Precision, fitted prior", 3),
                           ("fitted_sample_recall", "Recall, fitted prior", 3),
                           ("fitted_fd_embedding", "FD, fitted prior", 2),
                           # eval/face_check.py: samples with a face, over the test images' rate, both priors
                           ("face_ratio", "Faces (x test)", 2),
                           ("fitted_face_ratio", "Faces, fitted prior (x test)", 2),
                           # the test -ELBO on one likelihood for every model (eval/elbo.py)
                           ("nelbo_mean", "-ELBO (nats)", 1), ("nelbo_bits_per_dim", "-ELBO (bits/dim)", 4),
                           # eval.metric_directions.RECONSTRUCTION_METRICS
                           *((metric.summary_column, metric.label, metric.digits) for metric in RECONSTRUCTION_METRICS))


# Table 1's cell for a reconstruction metric a model's summary withholds (registry reconstructs=False); the mark
# leads its footnote.
WITHHELD_CELL = f"{MISSING} †"
RECONSTRUCTION_HEADERS = {"RMSE mean ± std", "RMSE across seeds", "RMSE 95% CI", "PSNR (dB)", "SSIM", "R² h0",
                          "R² h1", "Contrast", *(metric.label for metric in RECONSTRUCTION_METRICS)}


def table1_notes(blocks: list[Block], table: pd.DataFrame) -> list[Block]:
    """Table 1's blocks with what its -ELBO columns mean and, for a model registered reconstructs=False
    (PixelVAE), its reconstruction cells marked n/a † and the footnote saying why (core/registry.py)."""
    withheld = {display(model) for model in table["model"].unique()
                if model in registry.MODELS and not registry.spec(model).reconstructs}
    for block in blocks:
        if not isinstance(block, Table) or not block.caption.startswith("Ours"):
            continue
        marked = [row for row in block.rows if row[0] in withheld]
        for row in marked:
            row[:] = [WITHHELD_CELL if header in RECONSTRUCTION_HEADERS else cell
                      for header, cell in zip(block.header, row, strict=True)]
        block.caption += elbo_caption(table) + "".join(
            f" {WITHHELD_CELL[-1]} {row[0]}: {registry.RECONSTRUCTION_WITHHELD}." for row in marked)
    return blocks


def elbo_caption(table: pd.DataFrame) -> str:
    """Table 1's words on its -ELBO columns: the one likelihood every model is scored with."""
    if "nelbo_mean" not in table.columns or table["nelbo_mean"].isna().all():
        return ""
    sigmas = table["nelbo_sigma"].dropna().unique() if "nelbo_sigma" in table.columns else []
    likelihood = (f"std {sigmas[0]:.4f} ({sigmas[0] * 255:.1f} grey levels)" if len(sigmas) == 1
                  else "the std of eval.elbo_sigma")
    return (" -ELBO: on the test split in nats per image and bits per dimension, every model scored with the "
            f"same likelihood (eval/elbo.py: a Gaussian of {likelihood} on [0, 1] pixels, discretised to the 256 "
            "levels; one posterior draw per image). The test against the VAE is unadjusted; the claims table "
            "gives the Holm-adjusted verdicts.")


def sampling_and_fid_section(params: Mapping[str, Any], table: pd.DataFrame) -> list[Block]:
    """Each model's time to draw a batch of samples (PixelVAE's is autoregressive) and, when the user supplied
    the Inception weights (eval.fid.inception_weights), FID and KID against the test split (eval/fid.py)."""

    samples = params["eval"]["samples"]
    blocks: list[Block] = [Heading(2, "Sampling time and sample quality (FID, KID)")]
    models = table[table["model"].isin(MODELS)]
    has_fid = "fid_samples" in models.columns and models["fid_samples"].notna().any()
    header = ["Resolution", "Model", f"Sampling {samples} images (s)"]
    if has_fid:
        header += ["FID samples", "KID samples (×1000)", "FID reconstructions", "KID reconstructions (×1000)"]
    rows = []
    for record in models.to_dict(orient="records"):
        row = [f"{record['resolution']}x{record['resolution']}", display(record["model"]),
               number(record.get("sample_seconds"), 2)]
        if has_fid:
            row += [number(record.get("fid_samples")), number(_thousandths(record.get("kid_samples_mean"))),
                    number(record.get("fid_reconstructions")),
                    number(_thousandths(record.get("kid_reconstructions_mean")))]
        rows.append(row)
    blocks.append(Table(header, rows, f"Wall time of `evaluate`'s call drawing eval.samples = {samples} prior "
                        "samples on the evaluation device (summary.json's sample_seconds). PixelVAE draws them "
                        "pixel by pixel; the paper reports about "
                        f"{PAPER_PIXELVAE_SAMPLING_MINUTES} minutes for a batch of {PAPER_PIXELVAE_SAMPLING_BATCH} "
                        "with the authors' PixelVAE on their GPU, the reason it has no RMSE in its Table 1."
                        + (" FID and KID: against the test split, Inception-v3 pool features (torchmetrics); "
                           "sets of a few dozen samples bias FID upwards, so compare models at the same "
                           "eval.samples only." if has_fid else "")))
    if not has_fid:
        configured = (params["eval"].get("fid") or {}).get("inception_weights")
        why = (f"eval.fid.inception_weights is set ({configured}) but no summary.json holds FID: rerun "
               "`lapcvae evaluate`." if configured else "No FID or KID: they need the Inception-v3 weights file, "
               "which this suite never downloads: docs/protocol.md, 'FID and KID', says where to get the file "
               "(pt_inception-2015-12-05) and how to set eval.fid.inception_weights.")
        blocks.append(Paragraph(why, note=True))
    return blocks


def _thousandths(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else 1000.0 * float(value)


def check_png(path: Path) -> None:
    with path.open("rb") as handle:
        if handle.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
            raise ValueError(f"figure {path} is not a PNG file; delete it and rerun the step that draws it")


def figures_section(figures_dir: Path, resolutions: Sequence[int]) -> list[Block]:
    """Every figure of core/figures.py's table at every resolution, the paper's in its order (a note for each
    missing one), then any other PNG in the folder."""
    blocks: list[Block] = [Heading(2, "Figures")]
    shown = set()
    for res in resolutions:
        blocks.append(Heading(3, f"{res}x{res}"))
        missing = []
        for figure in figure_table.in_report_order():
            path = figures_dir / figure_table.file_name(figure.name, res)
            if path.is_file():
                check_png(path)
                blocks.append(FigureBlock(path, f"{figure.full_caption} ({res}x{res})"))
                shown.add(path.name)
            else:
                missing.append(path.name)
        if missing:
            blocks.append(Paragraph(f"Not produced (skipped): {', '.join(missing)}.", note=True))
    others = sorted(path for path in figures_dir.glob("*.png") if path.name not in shown) \
        if figures_dir.is_dir() else []
    if others:
        blocks.append(Heading(3, "Other figures"))
        for path in others:
            check_png(path)
            blocks.append(FigureBlock(path, path.stem.replace("_", " ")))
    return blocks


def training_flops(record: Mapping[str, Any]) -> str:
    """Table 1's training FLOPs split into the network's forward and backward passes and the optimizer's."""
    if pd.isna(record.get("network_flops", float("nan"))):
        return engineering(record.get("train_flops"))
    return f"{engineering(record['network_flops'])} + {engineering(record.get('optimizer_flops'))}"


def neighbours_section(neighbours_dir: Path, resolutions: Sequence[int]) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Nearest neighbours (memorisation check)")]
    for res in resolutions:
        path = neighbours_dir / f"{res}_summary.csv"
        if path.is_file():
            blocks.append(csv_table(path, f"{res}x{res}: MSE of each sample to its nearest training image, "
                                    "vs held-out test images (test_reference). Ratios well below 1 would "
                                    "suggest memorisation."))
        else:
            blocks.append(Paragraph(f"{res}x{res}: no {path} (run `lapcvae neighbours`).", note=True))
    return blocks


def human_study_section(table2: Path) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Table 2: human study")]
    paper_rows = [[display(model),
                   f"{values['without_original_mean']:.2f} ± {values['without_original_std']:.2f}",
                   f"{values['with_original_mean']:.2f} ± {values['with_original_std']:.2f}"]
                  for model, values in PAPER_TABLE2.items()]
    header = ["Model", "Preferred without original (%)", "Preferred with original (%)"]
    blocks.append(Table(header, paper_rows,
                        f"THE PAPER'S published numbers (Table 2, {PAPER_TABLE2_RESOLUTION}x"
                        f"{PAPER_TABLE2_RESOLUTION} CelebA reconstructions), not measured by this suite."))
    if table2.is_file():
        blocks.append(csv_table(table2, "Ours: preference per experiment and model (mean ± std across "
                                "participants), binomial test against no preference, rater agreement; participants "
                                "who failed the attention checks are dropped (participants.csv says why).",
                                ["experiment", "display_name", "preference_mean", "preference_std", "answers",
                                 "participants", "dropped_participants", "binomial_p", "fleiss_kappa"]))
    else:
        blocks.append(Paragraph(f"No {table2}: no study responses analysed yet (`lapcvae analyze-study`).",
                                note=True))
    return blocks


def build_report(params: Mapping[str, Any], results: Path, prepared: Path) -> list[Block]:
    """Every block of the report, in reading order."""
    table = read_table1(results / "metrics" / "table1.csv")
    resolutions = params["data"]["resolutions"]
    return [
        Heading(1, "LapCVAE benchmark: comparison report"),
        Paragraph("LapCVAE (Dorta et al., CVMP 2017) against the VAE and VAE/GAN baselines. Numbers labelled "
                  "as the paper's are copied from the paper; every other number is measured by this suite."),
        *protocol_section(params, results, prepared),
        *reading_section(table, results / "metrics" / "per_image", params["data"]["source"]),
        *claims_section(results / "metrics" / "claims.csv"),
        *table1_notes(table1_section(table), table),
        *sampling_and_fid_section(params, table),
        *figures_section(results / "figures", resolutions),
        *neighbours_section(results / "neighbours", resolutions),
        *human_study_section(results / "human_study" / "table2.csv"),
        *budget_curve_section(results),  # only when `snakemake budget_curve` ran
        *ablations_section(results),  # only when `snakemake ablations` ran
        *provenance_section(params, results, prepared),
    ]


__all__ = ["build_report", "render_html", "render_markdown", "write_text_atomically"]
