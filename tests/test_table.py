"""Table 1 from fixture summaries and per-image CSVs, with the paired Wilcoxon test against the VAE."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eval.table import METRICS_JSON_COLUMNS, build_table1
from workflow.commands.evaluate import table_main

PARAMS = {"data": {"resolutions": [64, 128]}}


def write_model(tmp_path: Path, resolution: int, model: str, rmse: np.ndarray, shuffle: bool = False) -> None:
    """A summary.json and a per-image CSV as `evaluate` writes them."""
    per_image = pd.DataFrame({"image": np.arange(len(rmse)), "rmse": rmse, "psnr": 30.0, "ssim": 0.8,
                              "r2_h0": 0.5, "r2_h1": 0.6, "rate": 40.0})
    if shuffle:  # row order must not matter: the test pairs images by their index
        per_image = per_image.sample(frac=1.0, random_state=0)
    (tmp_path / "per_image").mkdir(exist_ok=True)
    per_image.to_csv(tmp_path / "per_image" / f"{resolution}_{model}.csv", index=False)
    summary = {"model": model, "resolution": resolution, "n_test": len(rmse), "rmse_mean": float(rmse.mean()),
               "rmse_std": float(rmse.std(ddof=1)), "rmse_ci95": [float(rmse.min()), float(rmse.max())],
               "psnr_mean": 30.0, "ssim_mean": 0.8, "parameters": 1000,
               "flops_per_image": 5000, "train_seconds": 3.0, "eval_seconds": 1.0}
    directory = tmp_path / "eval" / str(resolution) / model
    directory.mkdir(parents=True)
    (directory / "summary.json").write_text(json.dumps(summary))


def test_wilcoxon_of_a_model_better_on_every_image(tmp_path):
    vae = np.array([20.0, 22.0, 25.0, 21.0, 30.0, 24.0])
    lapcvae = vae - np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])  # better on all 6 images, distinct differences
    write_model(tmp_path, 64, "vae", vae)
    write_model(tmp_path, 64, "lapcvae", lapcvae, shuffle=True)
    frame = build_table1(PARAMS, tmp_path / "eval", tmp_path / "per_image")

    assert frame["model"].tolist() == ["vae", "lapcvae"]  # Table 1's order, only evaluated models
    row = frame.set_index("model").loc["lapcvae"]
    # All six signed ranks negative: W+ = 0 and the exact two-sided p-value is 2 / 2^6.
    assert row["wilcoxon_statistic"] == 0.0
    assert row["wilcoxon_p"] == pytest.approx(2 / 2**6)
    assert row["rmse_median_diff_vs_vae"] == pytest.approx(-3.5)
    assert row["paper_rmse_mean"] == 20.60
    assert np.isnan(frame.set_index("model").loc["vae", "wilcoxon_p"])


def test_wilcoxon_matches_scipy_on_noisy_fixture_csvs(tmp_path):
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(0)
    vae = rng.normal(22, 4, size=40)
    vaegan = vae + rng.normal(0.5, 2.0, size=40)
    write_model(tmp_path, 128, "vae", vae)
    write_model(tmp_path, 128, "vaegan", vaegan)
    row = build_table1(PARAMS, tmp_path / "eval", tmp_path / "per_image").set_index("model").loc["vaegan"]
    assert row["wilcoxon_p"] == pytest.approx(wilcoxon(vaegan, vae).pvalue)
    assert row["resolution"] == 128 and np.isnan(row["paper_rmse_mean"])  # the paper has no 128 px VAE/GAN


def test_table_command_writes_csv_and_nested_metrics_json(tmp_path):
    write_model(tmp_path, 64, "vae", np.array([20.0, 21.0, 22.0]))
    write_model(tmp_path, 64, "lapcvae_nom", np.array([19.0, 21.5, 20.0]))
    table_main(["--eval-dir", str(tmp_path / "eval"), "--per-image-dir", str(tmp_path / "per_image"),
                "--out-dir", str(tmp_path / "metrics")])
    table1 = pd.read_csv(tmp_path / "metrics" / "table1.csv")
    assert table1["model"].tolist() == ["vae", "lapcvae_nom"]
    assert table1["rmse_ci95_lo"].tolist() == [20.0, 19.0]
    nested = json.loads((tmp_path / "metrics" / "metrics.json").read_text())
    assert nested["64"]["lapcvae_nom"]["rmse_mean"] == pytest.approx(60.5 / 3)
    # only the numbers runs are compared on: no test statistics, parameter counts, strings or paper values
    assert table1["parameters"].tolist() == [1000, 1000] and "wilcoxon_p" in table1.columns
    for values in nested["64"].values():
        assert set(values) <= set(METRICS_JSON_COLUMNS) and "rmse_mean" in values
        assert all(isinstance(value, float) for value in values.values())


def test_table_without_any_evaluation_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="lapcvae evaluate"):
        build_table1(PARAMS, tmp_path / "eval", tmp_path / "per_image")


def test_per_image_csvs_of_different_test_sets_are_refused(tmp_path):
    write_model(tmp_path, 64, "vae", np.array([20.0, 21.0, 22.0]))
    write_model(tmp_path, 64, "lapcvae", np.array([19.0, 21.5]))
    with pytest.raises(ValueError, match="same split"):
        build_table1(PARAMS, tmp_path / "eval", tmp_path / "per_image")



def test_sample_quality_columns_and_the_real_image_row_reach_table1_and_metrics_json(tmp_path):
    """Each model's sample precision, recall and fd_embedding, and the training-images reference row, which has
    sample metrics but no reconstruction (no RMSE, no per-image CSV, no Wilcoxon test)."""
    write_model(tmp_path, 64, "vae", np.array([20.0, 21.0, 22.0]))
    write_model(tmp_path, 64, "lapcvae", np.array([19.0, 21.5, 20.0]))
    for model, (precision, recall, distance) in {"vae": (0.2, 0.1, 9.0), "lapcvae": (0.6, 0.4, 3.0)}.items():
        path = tmp_path / "eval" / "64" / model / "summary.json"
        summary = json.loads(path.read_text())
        path.write_text(json.dumps({**summary, "sample_precision": precision, "sample_recall": recall,
                                    "fd_embedding": distance}))
    real = tmp_path / "eval" / "64" / "training_images"
    real.mkdir(parents=True)
    real.joinpath("summary.json").write_text(json.dumps({
        "model": "training_images", "kind": "reference", "resolution": 64, "n_test": 3, "sample_precision": 0.9,
        "sample_recall": 0.95, "fd_embedding": 0.5}))
    table_main(["--eval-dir", str(tmp_path / "eval"), "--per-image-dir", str(tmp_path / "per_image"),
                "--out-dir", str(tmp_path / "metrics")])
    table1 = pd.read_csv(tmp_path / "metrics" / "table1.csv").set_index("model")
    assert table1.loc["training_images", "kind"] == "reference" and np.isnan(table1.loc["training_images",
                                                                                       "rmse_mean"])
    assert table1["sample_recall"].to_dict() == {"training_images": 0.95, "vae": 0.1, "lapcvae": 0.4}
    assert np.isnan(table1.loc["training_images", "wilcoxon_p"]) and np.isnan(table1.loc["training_images",
                                                                                       "seed_p_vs_vae"])
    assert pd.isna(table1.loc["training_images", "seed_test_vs_vae"])  # no RMSE: nothing to test against the VAE
    nested = json.loads((tmp_path / "metrics" / "metrics.json").read_text())
    # a value a row does not have is left out, not written as null
    assert nested["64"]["lapcvae"]["fd_embedding"] == 3.0 and "rmse_mean" not in nested["64"]["training_images"]
    assert None not in nested["64"]["training_images"].values()
    assert nested["64"]["training_images"]["sample_precision"] == 0.9
