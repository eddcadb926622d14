"""Budget curves: each model retrained at multiples of the budget rule, scored beside its training FLOPs."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from conftest import dry_run_job_counts

from core.params import load_params, validate
from eval.report_studies import budget_curve_seed_means
from studies.budget_curve import budget_epochs, combine, curve, pca_rmse


@pytest.fixture(scope="module")
def tiny_params():
    params = copy.deepcopy(load_params())
    params["device"] = "cpu"
    params["budget"]["epochs"] = 1
    params["train"].update(batch_size=4, log_every=1, lr=0.01)
    params["lapcvae"]["16"] = {"levels": 2, "latent_dims": [4, 3], "kl_weights": [0.1, 1.0], "widths": [4, 8],
                               "feature_size": 2, "m_hidden": 6, "train": {}}
    params["vae"]["16"] = {"widths": [4, 8], "kl_weight": 0.01, "train": {}}
    params["budget_curve"] = {"resolutions": [16], "models": ["vae", "lapcvae"], "grid": [1, 3]}
    return params


@pytest.fixture(scope="module")
def faces():
    rng = np.random.default_rng(0)
    base = rng.integers(60, 200, size=(1, 3, 16, 16))
    images = np.clip(base + rng.integers(-40, 41, size=(20, 3, 16, 16)), 0, 255).astype(np.uint8)
    return images[:12], images[12:16], images[16:]


def test_budget_epochs_scale_the_rule_and_keep_at_least_one_epoch():
    params = {"budget": {"epochs": 6}}
    assert [budget_epochs(params, factor) for factor in (0.5, 1, 2, 8)] == [3, 6, 12, 48]
    assert budget_epochs(params, 0.01) == 1
    with pytest.raises(ValueError, match="positive"):
        budget_epochs(params, 0)


def test_each_point_trains_its_multiple_of_the_budget_and_costs_it(tiny_params, faces, tmp_path):
    train, val, test = faces
    tables = {}
    for model, jobs in (("vae", 1), ("lapcvae", 2)):
        table = tables[model] = curve(tiny_params, model, 16, train, val, test, tmp_path / model)
        assert list(table["epochs"]) == [1, 3]
        # Each job of the model sees 3x the images at factor 3 (12 images, batch 4: 3 steps an epoch) ...
        assert list(table["images_seen"]) == [jobs * 12, jobs * 36]
        # ... at the same FLOPs per image, so 3x the training FLOPs, counted from the checkpoints.
        assert table["train_flops"].iloc[1] == pytest.approx(3 * table["train_flops"].iloc[0])
        assert (table["train_flops"] > 0).all()
        # Two trained networks: longer training changes the reconstructions (and both scores are real RMSEs).
        assert table["rmse_mean"].iloc[0] != table["rmse_mean"].iloc[1]
        scores = table[["val_rmse", "rmse_mean"]]
        assert scores.gt(0).all().all() and scores.lt(255).all().all()
        assert sorted(path.name for path in (tmp_path / model / "x3").glob("*.pt")) == (
            ["model.pt"] if model == "vae" else ["level0.pt", "level1.pt"])
    # The same seed again reproduces its points exactly (the README compares runs to the digit); another training
    # seed trains another network on the same data, at the same cost.
    again = curve(tiny_params, "vae", 16, train, val, test, tmp_path / "vae-again", seed=0)
    other = curve(tiny_params, "vae", 16, train, val, test, tmp_path / "vae-seed1", seed=1)
    first = tables["vae"]
    assert list(again["rmse_mean"]) == list(first["rmse_mean"]) and list(again["val_rmse"]) == list(first["val_rmse"])
    assert list(other["seed"]) == [1, 1] and list(first["seed"]) == [0, 0]
    assert other["rmse_mean"].iloc[0] != first["rmse_mean"].iloc[0]
    assert list(other["train_flops"]) == list(first["train_flops"])


def test_pca_line_is_the_best_linear_code_of_lapcvae_s_latent_size(tiny_params, faces):
    train, _, test = faces
    pca = pca_rmse(tiny_params, 16, train, test)
    # Independently: numpy's SVD of the centred training images, 7 components (LapCVAE's 4 + 3 latent dims).
    flat_train = train.reshape(len(train), -1) / 255.0
    flat_test = test.reshape(len(test), -1) / 255.0
    mean = flat_train.mean(axis=0)
    basis = np.linalg.svd(flat_train - mean, full_matrices=False)[2][:7]
    projected = (flat_test - mean) @ basis.T @ basis + mean
    quantised = np.round(np.clip(projected, 0, 1) * 255) / 255
    expected = np.sqrt(((quantised - flat_test) ** 2).mean(axis=1)).mean() * 255
    assert pca == pytest.approx(expected, rel=1e-3)
    # Each point of the combined table is read against that line, as Table 1's "RMSE / PCA" column.
    curves = [pd.DataFrame([{"model": model, "seed": 0, "factor": 1, "epochs": 1, "rmse_mean": rmse}])
              for model, rmse in (("vae", 2 * pca), ("lapcvae", pca))]
    assert list(combine(curves, pca)["rmse_over_pca"]) == pytest.approx([2.0, 1.0])


def test_points_average_over_seeds_with_their_spread():
    table = pd.DataFrame({"model": ["vae"] * 4, "seed": [0, 1, 0, 1], "factor": [1, 1, 2, 2], "epochs": [6, 6, 12, 12],
                          "rmse_mean": [16.0, 18.0, 14.0, 14.0], "train_flops": [1.0, 1.0, 2.0, 2.0]})
    summary = budget_curve_seed_means(table).set_index("factor")
    assert summary.loc[1, "rmse_mean"] == 17.0 and summary.loc[1, "rmse_seed_std"] == pytest.approx(2 ** 0.5)
    assert summary.loc[2, "rmse_seed_std"] == 0.0 and list(summary["n_seeds"]) == [2, 2]
    assert list(summary["epochs"]) == [6, 12] and "seed" not in summary.columns


def test_schema_refuses_a_non_positive_factor_and_an_unknown_model():
    params = copy.deepcopy(load_params())
    params["budget_curve"]["grid"] = [1, 0]
    with pytest.raises(Exception, match="budget_curve"):
        validate(params)
    params["budget_curve"] = {"resolutions": [64], "models": ["pixelvae"], "grid": [1]}
    with pytest.raises(Exception, match="budget_curve"):
        validate(params)


def test_budget_curve_target_dry_run_on_smoke_params(tmp_path):
    counts = dry_run_job_counts("budget_curve", "--configfile", "config/smoke.yaml")
    models = len(load_params()["budget_curve"]["models"])
    assert counts["budget_curve_model"] == models and counts["budget_curve_resolution"] == 1
    # One job per model and training seed.
    override = tmp_path / "seeds.yaml"
    override.write_text("budget_curve: {resolutions: [64], models: [vae], grid: [1], seeds: [0, 1, 2]}\n")
    seeds = dry_run_job_counts("budget_curve", "--configfile", "config/smoke.yaml", str(override))
    assert seeds["budget_curve_model"] == 3
    assert "train_level" not in counts and "table" not in counts  # not the default DAG
