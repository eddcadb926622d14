"""`lapcvae results-doc`: Table 1 and the claims rendered from the CSVs `lapcvae table` writes, between markers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eval.report_blocks import p_value
from eval.results_doc import BEGIN_MARKER, END_MARKER
from workflow.commands.docs import results_doc_main
from workflow.commands.evaluate import table_main

SEEDS = (0, 1, 2)
# Per seed, the mean test RMSE of each row: LapCVAE is better than the VAE in every seed by 2-4.
RMSE = {"pca": (8.0, 8.0, 8.0), "vae": (13.0, 14.0, 15.5), "lapcvae": (10.0, 11.0, 12.0)}
FITTED_FD = {"vae": 2.0, "lapcvae": 0.5}  # seed 0's Frechet distance of the fitted prior's samples; +0.1 per seed
META = {"device": "cpu", "cpu": "Test CPU 9000", "cpu_threads": 1, "gpu": None, "precision": "bf16",
        "torch": "2.14.1"}


def write_run(root: Path) -> Path:
    """Three seeds' summary.json and per-image CSVs as `lapcvae evaluate` writes them; returns an override file."""
    for index, seed_dir in enumerate(root / f"seed{seed}" for seed in SEEDS):
        for model, means in RMSE.items():
            if model == "pca" and index > 0:
                continue  # as in a run: the reference rows are computed once, with the first seed's files
            rmse = means[index] + np.array([-1.0, 0.0, 1.0])  # three test images around the seed's mean
            (seed_dir / "per_image").mkdir(parents=True, exist_ok=True)
            (seed_dir / "per_image" / f"64_{model}.csv").write_text(
                "image,rmse\n" + "".join(f"{image},{value}\n" for image, value in enumerate(rmse)))
            summary = {"model": model, "resolution": 64, "n_test": 3, "rmse_mean": float(rmse.mean()),
                       "rmse_std": float(rmse.std(ddof=1)), "rmse_ci95": [float(rmse.min()), float(rmse.max())],
                       "psnr_mean": 25.0, "ssim_mean": 0.8, "r2_h0_mean": 0.4 if model == "lapcvae" else 0.1,
                       "parameters": 2_170_000, "flops_per_image": 5e6, "train_seconds": 70.0 + index,
                       "eval_seconds": 1.0}
            if model != "pca":  # one data-order seed per run for every model, as training.loop.paired_seeds gives
                summary["meta"] = {**META, "seed": 1000 + index}
                summary["fitted_fd_embedding"] = FITTED_FD[model] + 0.1 * index
            directory = seed_dir / "eval" / "64" / model
            directory.mkdir(parents=True)
            (directory / "summary.json").write_text(json.dumps(summary))
    # The real-image reference row, scored once as samples are (`lapcvae sample-embedding`).
    reference = root / "seed0" / "eval" / "64" / "training_images"
    reference.mkdir(parents=True)
    (reference / "summary.json").write_text(json.dumps({"model": "training_images", "kind": "reference",
                                                          "resolution": 64, "n_test": 3, "fd_embedding": 0.05}))
    override = root / "only64.yaml"
    override.write_text("data: {resolutions: [64]}\nseeds: [0, 1, 2]\n")
    table_main(["--params", str(override),
                "--eval-dir", *[str(root / f"seed{seed}" / "eval") for seed in SEEDS],
                "--per-image-dir", *[str(root / f"seed{seed}" / "per_image") for seed in SEEDS],
                "--seeds", *map(str, SEEDS), "--out-dir", str(root / "metrics")])
    return override


def table_row(document: str, model: str) -> list[str]:
    line = next(line for line in document.splitlines() if line.startswith(f"| 64 | {model} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_results_doc_renders_table1_and_claims_from_the_run_between_markers(tmp_path):
    override = write_run(tmp_path)
    out = tmp_path / "results.md"
    out.write_text(f"# Results\n\nProse before.\n\n{BEGIN_MARKER}\nstale numbers\n{END_MARKER}\n\nProse after.\n")
    argv = ["--params", str(override), "--metrics", str(tmp_path / "metrics"), "--eval-dir",
            str(tmp_path / "seed0" / "eval"), "--out", str(out), "--label", "three-seed test run"]
    results_doc_main(argv)
    document = out.read_text()

    assert document.startswith("# Results\n\nProse before.\n") and document.endswith("\n\nProse after.\n")
    assert "stale numbers" not in document
    # Mean over seeds ± std across seeds: (10 + 11 + 12) / 3 = 11, std 1; ratio to PCA 11 / 8.
    lapcvae = table_row(document, "LapCVAE")
    assert lapcvae[2:5] == ["3", "11.00 ± 1.00", "1.38x"]
    assert table_row(document, "PCA (reference)")[2:5] == ["1", "8.00", "1.00x"]
    assert "2.17 M" in lapcvae and "71 ± 1" in lapcvae  # parameters; training seconds 70, 71, 72
    assert "| 64 | VAE | 13.00, 14.00, 15.50 |" in document  # each seed's RMSE
    # The VAE minus LapCVAE is 3, 3, 3.5 per seed: LapCVAE's claim is supported by the paired t test.
    claim = next(line for line in document.splitlines()
                 if line.startswith("| LapCVAE reconstructs with lower RMSE than the VAE |"))
    assert "-3.17 ± 0.29 (rmse_mean)" in claim and claim.endswith("| supported |")
    # The Holm-adjusted p the verdict reads sits beside the raw one, as claims.csv has them.
    claims = pd.read_csv(tmp_path / "metrics" / "claims.csv").set_index("claim")
    raw, adjusted = claims.loc["LapCVAE reconstructs with lower RMSE than the VAE", ["p_value", "p_holm"]]
    assert [cell.strip() for cell in claim.strip("|").split("|")][2:4] == [p_value(raw), p_value(adjusted)]
    assert adjusted > raw and f"Holm's correction over the run's {len(claims)} claims" in document
    assert "Test CPU 9000" in document and f"params.yaml + {override}" in document
    assert "seeds [0, 1, 2]" in document and "three-seed test run" in document

    results_doc_main(argv)  # rendering again changes nothing
    assert out.read_text() == document


def test_results_doc_creates_a_new_file_and_refuses_one_without_markers(tmp_path):
    override = write_run(tmp_path)
    new = tmp_path / "docs" / "new.md"
    new.parent.mkdir()
    results_doc_main(["--params", str(override), "--metrics", str(tmp_path / "metrics"), "--out", str(new)])
    assert BEGIN_MARKER in new.read_text() and "| 64 | LapCVAE |" in new.read_text()

    unmarked = tmp_path / "unmarked.md"
    unmarked.write_text("# Results\n\nno markers here\n")
    with pytest.raises(ValueError, match="add them where the results go"):
        results_doc_main(["--params", str(override), "--metrics", str(tmp_path / "metrics"), "--out", str(unmarked)])
    assert unmarked.read_text() == "# Results\n\nno markers here\n"


def test_results_doc_without_a_table_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="lapcvae table"):
        results_doc_main(["--metrics", str(tmp_path / "metrics"), "--out", str(tmp_path / "results.md")])
    assert not (tmp_path / "results.md").exists()


def test_results_doc_refuses_a_table_without_its_columns(tmp_path):
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "table1.csv").write_text("resolution,model,rmse_mean\n64,vae,13.0\n")
    with pytest.raises(ValueError, match=r"lacks the columns \['kind', 'n_seeds'\].*lapcvae table"):
        results_doc_main(["--metrics", str(tmp_path / "metrics"), "--out", str(tmp_path / "results.md")])
    assert not (tmp_path / "results.md").exists()


def test_results_doc_shows_the_rate_distortion_points_and_matched_rate_claims(tmp_path):
    import pandas as pd

    override = write_run(tmp_path)
    metrics = tmp_path / "metrics"
    points = pd.DataFrame([{"model": model, "factor": factor, "seed": seed, "rate_nats": rate + seed,
                            "rmse_mean": rmse + 0.1 * seed, "sample_precision": 0.5, "sample_recall": 0.1}
                           for model, base_rate, base_rmse in [("vae", 100.0, 20.0), ("lapcvae", 80.0, 15.0)]
                           for factor, rate, rmse in [(0.1, 4 * base_rate, base_rmse - 4), (1.0, base_rate, base_rmse)]
                           for seed in (0, 1, 2)])
    points.to_csv(metrics / "rate_distortion_64.csv", index=False)
    pd.DataFrame([{"model": "lapcvae", "metric": "rmse_mean", "role": "pre-specified", "mean_diff": -2.5,
                   "p_value": 0.0004, "p_holm": 0.0008, "supported": True, "n_outside_range": 0,
                   "test": "paired t over 3 seeds"},
                  {"model": "vaegan", "metric": "rmse_mean", "role": "exploratory", "mean_diff": float("nan"),
                   "p_value": float("nan"), "p_holm": float("nan"), "supported": False, "n_outside_range": 3,
                   "test": "not testable: 0 seed(s) < 3"}]).to_csv(
        metrics / "rate_distortion_64_claims.csv", index=False)
    out = tmp_path / "results.md"
    results_doc_main(["--params", str(override), "--metrics", str(metrics), "--eval-dir",
                      str(tmp_path / "seed0" / "eval"), "--out", str(out)])
    document = out.read_text()
    section = document[document.index("### Rate-distortion"):]
    # Mean ± std over the three seeds: rates 80, 81, 82 -> 81.00 ± 1.00; RMSE 15.0, 15.1, 15.2 -> 15.10 ± 0.10.
    assert "| LapCVAE | x1 | 81.00 ± 1.00 | 15.10 ± 0.10 | 0.500 ± 0.000 | 0.100 ± 0.000 |" in section
    assert "| VAE | x0.1 | 401.00 ± 1.00 | 16.10 ± 0.10 |" in section
    claim = next(line for line in section.splitlines() if line.startswith("| LapCVAE against the VAE"))
    assert "-2.500" in claim and "< 0.001" in claim and claim.endswith("| supported |")
    untestable = next(line for line in section.splitlines() if line.startswith("| VAE/GAN against the VAE"))
    assert untestable.endswith("| – | – | – | not testable (3 seed(s) outside the VAE's swept rates) |")


def test_results_doc_writes_a_short_table1_and_the_claims_count_into_a_readme(tmp_path):
    override = write_run(tmp_path)
    docs, readme = tmp_path / "docs", tmp_path / "README.md"
    docs.mkdir()
    readme.write_text(f"# Tool\n\nUsage first.\n\n{BEGIN_MARKER}\nold summary\n{END_MARKER}\n\nMore manual.\n")
    results_doc_main(["--params", str(override), "--metrics", str(tmp_path / "metrics"), "--eval-dir",
                      str(tmp_path / "seed0" / "eval"), "--out", str(docs / "results.md"),
                      "--summary-out", str(readme), "--label", "three-seed test run"])
    summary = readme.read_text()
    assert summary.startswith("# Tool\n\nUsage first.\n") and summary.endswith("\n\nMore manual.\n")
    assert "old summary" not in summary and "three-seed test run" in summary
    rows = {cells[1]: cells for cells in (
        [cell.strip() for cell in line.strip("|").split("|")] for line in summary.splitlines()
        if line.startswith("| 64 |"))}
    assert rows["LapCVAE"][2:4] == ["11.00 ± 1.00", "1.38x"] and rows["PCA (reference)"][2:4] == ["8.00", "1.00x"]
    assert rows["LapCVAE"][4] == "0.60 ± 0.10" and rows["VAE"][4] == "2.10 ± 0.10"  # fitted FD 0.5, 0.6, 0.7
    assert set(rows) == {"PCA (reference)", "VAE", "LapCVAE"}  # the models and the kept references only
    assert "real training images score 0.05 at 64 px" in summary
    claims = pd.read_csv(tmp_path / "metrics" / "claims.csv")
    counts = claims["verdict"].value_counts()
    assert f"Holm's correction over all {len(claims)}: " + ", ".join(
        f"{count} {verdict}" for verdict, count in counts.items()) in summary
    assert "[docs/results.md](docs/results.md)" in summary
