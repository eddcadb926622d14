"""Table 1 across seeds: mean +- std over seed runs, references and cost columns, claims tested across seeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ttest_rel

from eval.table import build_table1, claims_table, per_seed_table, seed_test

PARAMS = {"data": {"resolutions": [64]}, "seeds": [0, 1, 2]}


def write_run(root: Path, model: str, rmse: float, cost: dict | None = None, n: int = 4) -> None:
    """One seed's summary.json (and per-image CSV, and optionally cost.json) of one model at 64 px."""
    per_image = pd.DataFrame({"image": np.arange(n), "rmse": rmse + np.arange(n) * 0.1, "psnr": 30.0,
                              "ssim": 0.8, "r2_h0": 0.5, "r2_h1": 0.6, "rate": 40.0})
    (root / "per_image").mkdir(parents=True, exist_ok=True)
    per_image.to_csv(root / "per_image" / f"64_{model}.csv", index=False)
    summary = {"n_test": n, "rmse_mean": rmse, "rmse_std": 1.0, "rmse_ci95": [rmse - 1, rmse + 1],
               "psnr_mean": 30.0, "ssim_mean": 0.8, "r2_h0_mean": rmse / 100,
               "parameters": 10, "flops_per_image": 100, "train_seconds": 1.0, "eval_seconds": 1.0}
    folder = root / "eval" / "64" / model
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    if cost is not None:
        (folder / "cost.json").write_text(json.dumps(cost))


def three_seeds(tmp_path: Path) -> list[Path]:
    roots = [tmp_path / f"seed{seed}" for seed in range(3)]
    vae, lapcvae, nom = [40.0, 42.0, 41.0], [30.0, 33.0, 31.0], [30.5, 32.0, 31.5]
    for seed, root in enumerate(roots):
        write_run(root, "vae", vae[seed], cost={"train_seconds": 10.0 + seed, "images_seen": 100,
                                                "train_flops": 1e9})
        write_run(root, "lapcvae", lapcvae[seed])
        write_run(root, "lapcvae_nom", nom[seed])
    write_run(roots[0], "mean_face", 55.0)  # a seed-independent reference, computed once
    return roots


def test_rows_are_means_and_stds_over_seeds(tmp_path):
    roots = three_seeds(tmp_path)
    table = build_table1(PARAMS, [r / "eval" for r in roots], [r / "per_image" for r in roots])
    table = table.set_index("model")
    assert list(table.index) == ["mean_face", "vae", "lapcvae_nom", "lapcvae"]  # references first
    assert table.loc["lapcvae", "rmse_mean"] == pytest.approx(np.mean([30.0, 33.0, 31.0]))
    assert table.loc["lapcvae", "rmse_mean_seed_std"] == pytest.approx(np.std([30.0, 33.0, 31.0], ddof=1))
    assert table.loc["lapcvae", "n_seeds"] == 3 and table.loc["mean_face", "n_seeds"] == 1
    assert table.loc["vae", "train_seconds"] == pytest.approx(11.0)  # cost.json replaces the summary's time
    assert table.loc["vae", "train_flops"] == pytest.approx(1e9)
    assert table.loc["lapcvae", "r2_h0_mean"] == pytest.approx(np.mean([0.30, 0.33, 0.31]))
    low, high = table.loc["lapcvae", ["rmse_ci95_lo", "rmse_ci95_hi"]]
    assert low < table.loc["lapcvae", "rmse_mean"] < high  # a t interval over the seeds' means
    # Against the VAE: a paired t test of per-seed mean RMSE, not a per-image test of two networks.
    expected = ttest_rel([30.0, 33.0, 31.0], [40.0, 42.0, 41.0]).pvalue
    assert table.loc["lapcvae", "seed_p_vs_vae"] == pytest.approx(expected)
    assert table.loc["lapcvae", "seed_rmse_diff_vs_vae"] == pytest.approx(-29 / 3)
    assert np.isnan(table.loc["lapcvae", "wilcoxon_p"])


def test_one_seed_keeps_the_single_run_table_and_says_the_claims_are_not_testable(tmp_path):
    roots = three_seeds(tmp_path)
    table = build_table1({**PARAMS, "seeds": [0]}, roots[0] / "eval", roots[0] / "per_image").set_index("model")
    assert table.loc["lapcvae", "rmse_mean"] == 30.0 and np.isnan(table.loc["lapcvae", "rmse_mean_seed_std"])
    assert table.loc["lapcvae", "seed_test_vs_vae"].startswith("not testable")
    long = per_seed_table(PARAMS, [roots[0] / "eval"], [roots[0] / "per_image"], [0])
    claims = claims_table(long).set_index("claim")
    assert set(claims["verdict"]) <= {"not testable", "missing"}


def test_claims_across_seeds(tmp_path):
    roots = three_seeds(tmp_path)
    long = per_seed_table(PARAMS, [r / "eval" for r in roots], [r / "per_image" for r in roots], [0, 1, 2])
    claims = claims_table(long).set_index(["model", "versus", "metric"])
    assert claims.loc[("lapcvae", "vae", "rmse_mean"), "verdict"] == "supported"  # lower in every seed, p < .05
    assert claims.loc[("lapcvae", "lapcvae_nom", "rmse_mean"), "verdict"] == "not shown"  # -0.5, +1, -0.5
    # higher R^2 was claimed, LapCVAE's is lower in every seed: contradicted
    assert claims.loc[("lapcvae", "vae", "r2_h0_mean"), "verdict"] == "contradicted"
    assert claims.loc[("vae", "mean_face", "rmse_mean"), "n_seeds"] == 3  # the reference applies to every seed
    assert claims.loc[("lapcvae", "pca", "rmse_mean"), "verdict"] == "missing"


def test_seed_test_needs_three_seeds():
    assert seed_test({0: 1.0, 1: 2.0}, {0: 2.0, 1: 3.0})["test"].startswith("not testable")
    result = seed_test({0: 1.0, 1: 2.0, 2: 3.0}, {0: 2.0, 1: 3.0, 2: 4.0})  # the same difference every seed
    assert result["p_value"] == 0.0 and result["mean_diff"] == -1.0
