"""The report: every table's numbers, every figure embedded, nothing external, an honest reading of the claim."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import registry
from core.params import REPO_ROOT, load_params
from eval import report
from eval.metrics import summarise
from eval.plotting import image_grid, save_figure
from eval.study_analysis import TABLE_COLUMNS
from workflow.commands.evaluate import report_main, table_main

SMOKE = str(REPO_ROOT / "config" / "smoke.yaml")
RES = 64
N_TEST = 40
MODELS = ("vae", "lapcvae_nom", "lapcvae")


def write_eval(results: Path, lapcvae_gain: float, seeds: tuple[int, ...] = (0,), pixelvae: bool = False) -> None:
    """Per-image metrics and summary.json of three models; LapCVAE's RMSE is the VAE's minus `lapcvae_gain`.

    One seed: results/eval and results/metrics/per_image; several: one results/seed{s}/... tree per seed. Every
    model of a seed trains on the same data order (meta seed), so seeds pair. pixelvae: a fourth model whose
    summary withholds its reconstruction metrics, as `evaluate` writes PixelVAE's.
    """
    from eval.elbo import elbo_summary
    from eval.metrics import withhold_reconstruction_metrics

    params = load_params(SMOKE)
    eval_dirs, per_image_dirs = [], []
    for seed in seeds:
        root = results if len(seeds) == 1 else results / f"seed{seed}"
        rng = np.random.default_rng(seed)
        vae_rmse = rng.uniform(15, 30, N_TEST)
        rmse = {"vae": vae_rmse, "lapcvae_nom": vae_rmse + rng.normal(0, 1, N_TEST),
                "lapcvae": vae_rmse - lapcvae_gain + rng.normal(0, 0.5, N_TEST)}
        rmse["pixelvae"] = vae_rmse + 30
        for index, model in enumerate((*MODELS, "pixelvae") if pixelvae else MODELS):
            rate = rng.uniform(50, 80, N_TEST)
            per_image = pd.DataFrame({"image": np.arange(N_TEST), "rmse": rmse[model],
                                      "psnr": 20 * np.log10(255 / rmse[model]),
                                      "ssim": rng.uniform(0.5, 0.9, N_TEST),
                                      "r2_h0": 0.2 * index + rng.normal(0, 0.05, N_TEST),
                                      "r2_h1": 0.3 + 0.2 * index + rng.normal(0, 0.05, N_TEST),
                                      "contrast": rng.uniform(0.4, 1.1, N_TEST),
                                      "rate": rate, "nelbo": rate + 41000.0 + 100 * index, "nelbo_kl": rate,
                                      "nelbo_distortion": 41000.0 + 100 * index})
            per_image_path = root / "metrics" / "per_image" / f"{RES}_{model}.csv"
            per_image_path.parent.mkdir(parents=True, exist_ok=True)
            per_image.to_csv(per_image_path, index=False)
            summary = {"model": model, "resolution": RES,
                       **summarise(per_image, params["eval"]["bootstrap_samples"], params["seed"]),
                       **elbo_summary(per_image, 3 * RES * RES, params["eval"]["elbo_sigma"]),
                       "parameters": 1_000_000 + index, "flops_per_image": 2.5e9, "eval_seconds": 3.0,
                       "eval_device": "cpu", "train_seconds": 123.4 + index, "sample_seconds": 0.5 + index,
                       "meta": {"device": "cpu", "steps": 77, "precision": "bf16" if model == "lapcvae" else "fp32",
                                "seed": 1000 + seed}}
            if model == "pixelvae":
                summary = withhold_reconstruction_metrics(summary, registry.RECONSTRUCTION_WITHHELD)
            folder = root / "eval" / str(RES) / model
            folder.mkdir(parents=True)
            (folder / "summary.json").write_text(json.dumps(summary))
        eval_dirs.append(str(root / "eval"))
        per_image_dirs.append(str(root / "metrics" / "per_image"))
    table_main(["--params", SMOKE, "--eval-dir", *eval_dirs, "--per-image-dir", *per_image_dirs,
                "--seeds", *map(str, seeds), "--out-dir", str(results / "metrics")])


def write_figures(results: Path) -> list[Path]:
    rng = np.random.default_rng(1)
    paths = []
    for name in ("fig4_reconstructions", "training_curves", "extra_diagnostic"):
        fig = image_grid([[rng.integers(0, 256, (3, 8, 8), dtype=np.uint8)]], ["row"], ["col"], name, "caption")
        paths.append(save_figure(fig, results / "figures" / f"{name}_{RES}.png"))
    return paths


def write_fixture(root: Path, lapcvae_gain: float = 3.0, seeds: tuple[int, ...] = (0,)) -> dict[str, Path]:
    results, prepared = root / "results", root / "data" / "prepared"
    write_eval(results, lapcvae_gain, seeds)
    figures = write_figures(results)
    (results / "neighbours").mkdir(parents=True)
    pd.DataFrame({"model": ["lapcvae", "test_reference"], "n": [8, 8], "nearest_mse_median": [412.345, 398.765],
                  "median_ratio_to_test_reference": [1.034, 1.0]}).to_csv(
        results / "neighbours" / f"{RES}_summary.csv", index=False)
    study = pd.DataFrame([{column: None for column in TABLE_COLUMNS} | {
        "experiment": experiment, "model": model, "display_name": model.upper(), "preference_mean": share,
        "preference_std": 4.321, "answers": 16, "participants": 2, "binomial_p": 0.0213}
        for experiment in ("without_original", "with_original")
        for model, share in (("vae", 31.25), ("lapcvae", 68.75))])
    (results / "human_study").mkdir(parents=True)
    study.to_csv(results / "human_study" / "table2.csv", index=False)
    prepared.mkdir(parents=True)
    (prepared / "manifest.json").write_text(json.dumps({"source": "synthetic", "sha256": "feedc0ffee1234"}))
    return {"results": results, "prepared": prepared, "md": results / "report.md",
            "html": results / "report.html", "figures": figures}


def run_report(paths: dict[str, Path]) -> tuple[str, str]:
    report_main(["--params", SMOKE, "--results", str(paths["results"]), "--prepared", str(paths["prepared"]),
                 "--out-md", str(paths["md"]), "--out-html", str(paths["html"])])
    return paths["md"].read_text(encoding="utf-8"), paths["html"].read_text(encoding="utf-8")


def test_report_holds_every_table_and_embeds_every_figure(tmp_path):
    paths = write_fixture(tmp_path)
    markdown, page = run_report(paths)
    table1 = pd.read_csv(paths["results"] / "metrics" / "table1.csv")
    for document in (markdown, page):
        for record in table1.to_dict(orient="records"):
            assert f"{record['rmse_mean']:.2f} ± {record['rmse_std']:.2f}" in document
            assert f"[{record['rmse_ci95_lo']:.2f}, {record['rmse_ci95_hi']:.2f}]" in document
            assert f"{record['ssim_mean']:.3f}" in document
            assert f"{record['contrast_median']:.3f}" in document  # Table 1's contrast column
        assert "not testable" in document  # one seed: no claim about the methods is tested
        assert "22.78 ± 4.64" in document and "THE PAPER" in document  # the paper's Table 1, labelled
        assert "84.39 ± 8.14" in document and "68.750" in document and "4.321" in document  # Table 2
        assert "412.345" in document and "1.034" in document  # nearest-neighbour summary
        assert "feedc0ffee1234" in document and "figure_images: 4" in document  # manifest, merged params
        assert "123.4" in document  # training time from summary.json
        assert "fig9_region_64.png" in document  # missing figures are named, not silently dropped
    embedded = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert sorted(embedded) == sorted(base64.b64encode(path.read_bytes()).decode() for path in paths["figures"])
    for external in ('src="http', "<link", "<script src", "url(", "@import"):  # one inline script, nothing fetched
        assert external not in page
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert (paths["md"].parent / link).is_file()


def test_provenance_names_each_model_s_training_precision_and_whether_this_cpu_has_bf16(tmp_path, monkeypatch):
    """The same code trains in bf16 on a CPU with native bf16 and in fp32 elsewhere: a reader must see which."""
    from eval import report_provenance

    write_eval(tmp_path, lapcvae_gain=1.0)
    table = report_provenance.training_time_table(tmp_path / "eval", [RES])
    precision = {row[1]: row[table.header.index("Precision")] for row in table.rows}
    assert sorted(precision.values()) == ["bf16", "fp32", "fp32"] and precision[report.display("lapcvae")] == "bf16"
    for native, words in ((True, "bf16 native"), (False, "bf16 emulated")):
        monkeypatch.setattr(report_provenance, "cpu_has_native_bf16", lambda native=native: native)
        assert words in report_provenance.hardware()[0]


def test_reading_confirms_the_claim_only_across_seeds(tmp_path):
    markdown, _ = run_report(write_fixture(tmp_path, lapcvae_gain=3.0, seeds=(0, 1, 2)))
    assert "LapCVAE beats the VAE on RMSE here, as the paper claims (paired t over 3 seeds" in markdown
    assert re.search(r"RMSE \(lower is better\): LapCVAE is best", markdown)
    assert "| 64x64 | LapCVAE reconstructs with lower RMSE than the VAE | 3 |" in markdown  # the claims table
    assert "supported" in markdown


def test_one_seed_draws_no_conclusion_about_the_methods(tmp_path):
    markdown, _ = run_report(write_fixture(tmp_path, lapcvae_gain=3.0))
    assert "with 1 training seed(s) the claim is not testable here" in markdown
    assert "LapCVAE beats the VAE" not in markdown  # however large the per-image difference of two networks


def test_pixelvae_row_shows_elbo_and_sampling_time_but_no_reconstruction_metrics(tmp_path):
    results = tmp_path / "results"
    write_eval(results, lapcvae_gain=3.0, seeds=(0, 1, 2), pixelvae=True)
    table = report.read_table1(results / "metrics" / "table1.csv").set_index("model")
    assert np.isnan(table.loc["pixelvae", "rmse_mean"]) and np.isnan(table.loc["pixelvae", "seed_p_vs_vae"])
    blocks = report.table1_notes(report.table1_section(table.reset_index()), table.reset_index())
    ours = next(block for block in blocks if isinstance(block, report.Table) and block.caption.startswith("Ours"))
    row = next(row for row in ours.rows if row[0] == "PixelVAE")
    cells = dict(zip(ours.header, row, strict=True))
    for column in ("RMSE mean ± std", "RMSE across seeds", "RMSE 95% CI", "PSNR (dB)", "SSIM", "R² h0",
                   "Contrast"):
        assert cells[column] == report.WITHHELD_CELL, column
    nelbo = table.loc["pixelvae", "nelbo_mean"]
    assert cells["-ELBO (nats)"].startswith(f"{nelbo:.1f} ± ")
    assert cells["Sampling (s)"].startswith("3.50")
    assert cells["-ELBO (bits/dim)"].startswith(f"{nelbo / (3 * RES * RES * np.log(2)):.4f}")
    assert "† PixelVAE: no reconstruction metrics" in ours.caption and "grey levels" in ours.caption
    # the reading compares only models with an RMSE
    assert not [line for line in report.reference_sentences(table.reset_index()) if line.startswith("PixelVAE")]


def test_claims_table_shows_raw_and_holm_p_and_the_test_each_claim_used(tmp_path):
    markdown, _ = run_report(write_fixture(tmp_path, lapcvae_gain=3.0, seeds=(0, 1, 2)))
    claims = pd.read_csv(tmp_path / "results" / "metrics" / "claims.csv")
    assert {"p_value", "p_holm", "test"} <= set(claims.columns)
    assert "| Resolution | Claim | Seeds | Mean difference | p | p (Holm) | Test | Verdict |" in markdown
    assert "paired t over 3 seeds" in markdown and "Holm" in markdown
    assert report.p_value(0.0004) == "< 0.001" and report.p_value(0.0012) == "0.001"
    assert "0.000 " not in markdown and "e-0" not in markdown  # tiny p-values read "< 0.001"


def test_reading_says_so_when_the_vae_is_better(tmp_path):
    markdown, _ = run_report(write_fixture(tmp_path, lapcvae_gain=-3.0, seeds=(0, 1, 2)))
    assert "the VAE beats LapCVAE on RMSE here, contrary to the paper's claim" in markdown
    assert "LapCVAE beats the VAE" not in markdown


def test_missing_table_or_corrupt_figure_leaves_nothing_behind(tmp_path):
    paths = write_fixture(tmp_path)
    paths["figures"][0].write_bytes(b"not a png")
    with pytest.raises(ValueError, match="not a PNG"):
        run_report(paths)
    (paths["results"] / "metrics" / "table1.csv").unlink()
    with pytest.raises(FileNotFoundError, match="lapcvae table"):
        run_report(paths)
    assert not paths["md"].exists() and not paths["html"].exists()
    assert not [path for path in paths["results"].rglob("*") if ".tmp" in path.name]  # no temporary files either


def test_reading_says_when_the_claim_cannot_be_checked(tmp_path):
    rows = pd.DataFrame([{"resolution": 128, "model": "vae", "rmse_mean": 20.0, "rmse_std": 1.0}])
    sentence = report.lapcvae_versus_vae(rows, 128, tmp_path)
    assert sentence == "The paper's claim that LapCVAE beats the VAE cannot be checked at 128x128: LapCVAE not " \
                       "evaluated."


def test_protocol_names_the_model_that_trains_for_lapcvae_s_flops_not_its_epochs(tmp_path):
    """The budget rule's exception (registry option budget: lapcvae_flops) is stated beside the rule itself."""
    from core import registry
    from eval.report_blocks import Bullets

    params = load_params()
    bullets = next(block for block in report.protocol_section(params, tmp_path, tmp_path)
                   if isinstance(block, Bullets))
    budget = next(item for item in bullets.items if item.startswith("Budget rule"))
    assert f"trains {params['budget']['epochs']} epochs" in budget
    assert registry.flops_matched() == ["vae_equal_flops"]
    assert "except VAE at LapCVAE's network FLOPs, which trains the epochs that give it LapCVAE's" in budget


def test_the_protocol_says_which_seeds_each_tuning_trial_trained_from(tmp_path):
    from eval.report_blocks import Table

    (tmp_path / "tuning/128").mkdir(parents=True)
    for model, seeds in (("vae", [0, 1, 2]), ("lapcvae", [3])):
        (tmp_path / f"tuning/128/{model}.json").write_text(json.dumps({
            "resolution": 128, "model": model, "epochs": 2, "trials_per_key": 3, "sample_margin": 0.1,
            "seeds": seeds, "chosen": {f"{model}.128.train.lr": 0.001},
            "scores_of_chosen": {f"{model}.128.train.lr": {"fit": 15.5, "sample_precision": 0.5,
                                                           "sample_recall": 0.1}}}))
    captions = {table.caption.split(" tuned")[0]: table.caption
                for table in report.protocol_section(load_params(), tmp_path, tmp_path) if isinstance(table, Table)}
    assert "2 epochs each from each of seeds 0, 1, 2 (scores: the mean over them);" in captions["VAE"]
    assert "2 epochs each from seed 3;" in captions["LapCVAE"]


def test_report_shows_budget_curves_when_they_were_run(tmp_path):
    paths = write_fixture(tmp_path)
    markdown, _ = run_report(paths)
    assert "Budget curves" not in markdown  # `snakemake budget_curve` is not part of `all`
    curve = pd.DataFrame({"model": ["vae", "vae", "lapcvae", "lapcvae"], "seed": 0, "factor": [1, 4, 1, 4],
                          "epochs": [6, 24, 6, 24], "val_rmse": [16.8, 14.1, 12.7, 11.2],
                          "rmse_mean": [16.4, 13.8, 12.5, 10.9], "train_flops": [2.5e11, 1e12, 7e11, 2.8e12],
                          "images_seen": [1, 4, 4, 16], "train_seconds": [15.0, 60.0, 47.0, 188.0]})
    # A second training seed 0.82 worse everywhere: the reading gives the means over the two seeds.
    curve = pd.concat([curve, curve.assign(seed=1, rmse_mean=curve["rmse_mean"] + 0.82)], ignore_index=True)
    curve["rmse_over_pca"] = curve["rmse_mean"] / 8.2
    curve.to_csv(paths["results"] / "metrics" / f"budget_curve_{RES}.csv", index=False)
    markdown, page = run_report(paths)
    for document in (markdown, page):
        assert "Budget curves" in document and "13.800" in document  # the table, numbers as the CSV has them
        # The reading: each model's RMSE over PCA at the budget rule and at the largest budget.
        assert "VAE 2.05x PCA at 6 epochs, 1.73x at 24 (mean of 2 seeds)" in document
        assert "LapCVAE 1.57x PCA at 6 epochs, 1.38x at 24 (mean of 2 seeds)" in document


def test_best_values_are_marked_by_each_metric_s_direction_among_models_not_references(tmp_path):
    """The direction of each column comes from eval.metric_directions; ties are all marked; reference rows are shown
    but never marked; the HTML and the Markdown mark the same cells."""
    from eval.report_blocks import Table, best_cells
    from eval.report_render import render_html, render_markdown

    table = pd.DataFrame({"resolution": 64, "model": ["pca", "vae", "lapcvae", "lapcvae_retrained_m"],
                          "rmse_mean": [9.0, 21.0, 18.0, 18.0], "rmse_std": 1.0, "psnr_mean": [30.0, 21.5, 22.5, 22.5],
                          "ssim_mean": [0.9, 0.61, 0.6, 0.6], "contrast_median": [1.0, 0.93, 1.09, 1.09]})
    ours = [block for block in report.table1_section(table) if isinstance(block, Table)][-1]
    marked: dict[str, set[str]] = {}
    for row, column in best_cells(ours):
        marked.setdefault(ours.header[column], set()).add(ours.rows[row][0])
    lapcvae = {report.display("lapcvae"), report.display("lapcvae_retrained_m")}  # equal reconstructions: a tie
    assert marked == {"RMSE mean ± std": lapcvae, "RMSE across seeds": lapcvae, "PSNR (dB)": lapcvae,
                      "SSIM": {"VAE"}, "Contrast": {"VAE"}}  # PCA's better RMSE is a yardstick; 0.93 is nearer 1
    page = render_html([ours])
    assert page.count('class="best"') == 8 and page.count("<td") == len(ours.rows) * len(ours.header)
    assert re.search(r'<td data-value="18\.0" class="best" title="best: lower is better">18\.00 ± 1\.00</td>', page)
    assert '<td data-value="9.0">9.00 ± 1.00</td>' in page  # PCA's row: shown, sortable, not marked
    markdown = render_markdown([ours], tmp_path)
    assert markdown.count("**") == 2 * 8 and "| **18.00 ± 1.00** |" in markdown and "RMSE mean ± std ↓" in markdown


def test_html_contents_link_every_section_to_a_unique_anchor(tmp_path):
    _, page = run_report(write_fixture(tmp_path))
    contents = page[page.index('<nav id="contents">'):page.index("</nav>")]
    links = re.findall(r'<a href="#([^"]+)">', contents)
    anchors = re.findall(r'<h[23] id="([^"]+)">', page)
    assert links == anchors and len(set(anchors)) == len(anchors) > 8
    assert "figures-64x64" in anchors and "reading-of-the-results-64x64" in anchors  # same title, two sections
    assert page.count('<div class="table-scroll"><table class="sortable">') == page.count("<table")
