"""Table 1 across seeds: mean +- std over seed runs, references and cost columns, claims tested across seeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ttest_1samp, ttest_ind, ttest_rel

from eval.table import CLAIMS, build_table1, claims_table, holm, per_seed_table, seed_test

PARAMS = {"data": {"resolutions": [64]}, "seeds": [0, 1, 2]}


def write_run(root: Path, model: str, rmse: float, cost: dict | None = None, n: int = 4,
              train_seed: int | None = None, **extra: float) -> None:
    """One seed's summary.json (and per-image CSV, and optionally cost.json) of one model at 64 px; train_seed:
    the data-order seed its checkpoint's meta records (equal ones pair two models' seeds)."""
    per_image = pd.DataFrame({"image": np.arange(n), "rmse": rmse + np.arange(n) * 0.1, "psnr": 30.0,
                              "ssim": 0.8, "r2_h0": 0.5, "r2_h1": 0.6, "rate": 40.0})
    (root / "per_image").mkdir(parents=True, exist_ok=True)
    per_image.to_csv(root / "per_image" / f"64_{model}.csv", index=False)
    summary = {"n_test": n, "rmse_mean": rmse, "rmse_std": 1.0, "rmse_ci95": [rmse - 1, rmse + 1],
               "psnr_mean": 30.0, "ssim_mean": 0.8, "r2_h0_mean": rmse / 100,
               "parameters": 10, "flops_per_image": 100, "train_seconds": 1.0, "eval_seconds": 1.0, **extra,
               **({} if train_seed is None else {"meta": {"seed": train_seed}})}
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
    # Against the VAE: a test of per-seed mean RMSE, not a per-image test of two networks; nothing says the
    # two models' seeds share a data order, so the test is unpaired (Welch).
    expected = ttest_ind([30.0, 33.0, 31.0], [40.0, 42.0, 41.0], equal_var=False).pvalue
    assert table.loc["lapcvae", "seed_p_vs_vae"] == pytest.approx(expected)
    assert table.loc["lapcvae", "seed_test_vs_vae"].startswith("Welch t")
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
    assert claims.loc[("lapcvae", "vae", "rmse_mean"), "verdict"] == "supported"  # lower in every seed
    assert claims.loc[("lapcvae", "vae", "rmse_mean"), "test"].startswith("Welch t")  # the seeds do not pair
    # higher R^2 was claimed, LapCVAE's is lower in every seed: contradicted
    assert claims.loc[("lapcvae", "vae", "r2_h0_mean"), "verdict"] == "contradicted"
    assert claims.loc[("lapcvae", "pca", "rmse_mean"), "verdict"] == "missing"
    # M is judged on what it controls, not on RMSE; claims on columns no summary holds (rate, -ELBO, sample
    # metrics here) are left out
    assert ("lapcvae", "lapcvae_nom", "rmse_mean") not in claims.index
    assert not {"rate_mean", "nelbo_mean", "sample_precision", "sample_recall", "fd_embedding"} & set(
        claims.index.get_level_values("metric"))
    # trivial claims are not tested
    assert not {"mean_face", "lapcvae_coarsest"} & set(claims.index.get_level_values("versus"))


def test_holm_on_a_hand_computed_example():
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> 0.06 (monotone)
    adjusted = holm([0.01, 0.04, np.nan, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, np.nan, 0.06, 0.02])
    assert holm([0.6, 0.9])[1] == 1.0 and holm([0.6, 0.9])[0] == 1.0  # capped at 1


def constructed_long(precision: bool = True) -> pd.DataFrame:
    """A long table (one row per model and seed) whose claims have known outcomes: LapCVAE vs the VAE with
    seeds that pair (same data order), M on rate, -ELBO and samples, a reference computed once."""
    rows = []
    lapcvae = {"rmse_mean": [11.0, 11.2, 10.9, 11.1, 11.0], "r2_h0_mean": [0.50, 0.51, 0.52, 0.50, 0.51],
               "nelbo_mean": [900.0, 905.0, 898.0, 902.0, 901.0], "rate_mean": [330.0, 328.0, 335.0, 331.0, 329.0],
               "sample_precision": [0.60, 0.62, 0.61, 0.63, 0.60]}
    nom = {"rmse_mean": [11.0, 11.1, 11.0, 11.2, 10.9], "r2_h0_mean": [0.5] * 5,
           "nelbo_mean": [901.0, 903.0, 900.0, 902.0, 899.0], "rate_mean": [360.0, 365.0, 362.0, 361.0, 366.0],
           "sample_precision": [0.40, 0.42, 0.41, 0.39, 0.40]}
    vae = {"rmse_mean": [13.0, 13.5, 12.8, 13.2, 13.1], "r2_h0_mean": [0.17, 0.18, 0.16, 0.17, 0.19],
           "nelbo_mean": [950.0, 955.0, 948.0, 952.0, 951.0], "rate_mean": [580.0] * 5, "sample_precision": [0.1] * 5}
    for model, values, order in (("lapcvae", lapcvae, "shared"), ("lapcvae_nom", nom, "own"),
                                 ("vae", vae, "shared")):
        for seed in range(5):
            rows.append({"resolution": 64, "model": model, "seed": seed,
                         "train_seed": seed if order == "shared" else 100 + seed,
                         **{key: value[seed] for key, value in values.items()
                            if precision or key != "sample_precision"}})
    rows.append({"resolution": 64, "model": "pca", "seed": 0, "train_seed": np.nan, "rmse_mean": 8.2})
    return pd.DataFrame(rows)


def test_claims_on_a_constructed_long_table_give_the_expected_verdicts():
    long = constructed_long()
    claims = claims_table(long).set_index(["model", "versus", "metric"])
    verdict = claims["verdict"].to_dict()
    assert verdict[("lapcvae", "vae", "rmse_mean")] == "supported"
    assert verdict[("lapcvae", "vae", "r2_h0_mean")] == "supported"
    assert verdict[("lapcvae", "vae", "nelbo_mean")] == "supported"
    assert verdict[("lapcvae", "pca", "rmse_mean")] == "contradicted"  # PCA is better
    assert verdict[("lapcvae", "lapcvae_nom", "rate_mean")] == "supported"
    assert verdict[("lapcvae", "lapcvae_nom", "nelbo_mean")] == "not shown"  # within noise
    assert verdict[("lapcvae", "lapcvae_nom", "sample_precision")] == "supported"
    assert verdict[("lapcvae", "vae_equal_flops", "rmse_mean")] == "missing"
    # which test each claim used: the VAE shares LapCVAE's data order (paired), the without-M model does not
    # (Welch), PCA is computed once (one-sample)
    tests = claims["test"].to_dict()
    assert tests[("lapcvae", "vae", "rmse_mean")] == "paired t over 5 seeds"
    assert tests[("lapcvae", "lapcvae_nom", "rate_mean")].startswith("Welch t")
    assert tests[("lapcvae", "pca", "rmse_mean")] == "one-sample t over 5 seeds"
    lap, vae = np.array([11.0, 11.2, 10.9, 11.1, 11.0]), np.array([13.0, 13.5, 12.8, 13.2, 13.1])
    assert claims.loc[("lapcvae", "vae", "rmse_mean"), "p_value"] == pytest.approx(ttest_rel(lap, vae).pvalue)
    rates = np.array([330.0, 328.0, 335.0, 331.0, 329.0]), np.array([360.0, 365.0, 362.0, 361.0, 366.0])
    assert claims.loc[("lapcvae", "lapcvae_nom", "rate_mean"), "p_value"] == pytest.approx(
        ttest_ind(*rates, equal_var=False).pvalue)
    assert claims.loc[("lapcvae", "pca", "rmse_mean"), "p_value"] == pytest.approx(ttest_1samp(lap, 8.2).pvalue)
    # Holm over every claim tested, and the verdict reads the adjusted p
    tested = claims.dropna(subset=["p_value"])
    np.testing.assert_allclose(tested["p_holm"], holm(tested["p_value"].to_numpy()))
    assert (tested["p_holm"] >= tested["p_value"]).all()
    # without the sample metrics in the summaries, their claim is left out and the family is one smaller
    without = claims_table(constructed_long(precision=False))
    assert "sample_precision" not in set(without["metric"]) and len(without) == len(claims) - 1


def test_holm_turns_a_raw_significance_into_not_shown():
    """A claim with p < 0.05 alone is not shown once adjusted with ten others."""
    first = {seed: value for seed, value in enumerate([1.0, 1.3, 0.8])}
    second = {seed: value for seed, value in enumerate([2.0, 2.1, 2.05])}
    raw = seed_test(first, second)["p_value"]
    assert raw < 0.05
    assert holm([raw] + [0.5] * 10)[0] == pytest.approx(min(1.0, 11 * raw)) and 11 * raw > 0.05


def test_every_claim_names_a_direction_and_none_is_trivial():
    assert all(better in ("lower", "higher") for *_, better in CLAIMS)
    assert not [claim for claim in CLAIMS if claim[2] in ("mean_face", "lapcvae_coarsest")]


def test_seed_test_needs_three_seeds():
    assert seed_test({0: 1.0, 1: 2.0}, {0: 2.0, 1: 3.0})["test"].startswith("not testable")
    result = seed_test({0: 1.0, 1: 2.0, 2: 3.0}, {0: 2.0, 1: 3.0, 2: 4.0})  # the same difference every seed
    assert result["p_value"] == 0.0 and result["mean_diff"] == -1.0
