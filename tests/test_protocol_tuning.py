"""Tuning: the same number of trials per setting, scored on validation reconstructions and samples, chosen by one
rule; LapCVAE greedy."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from core.params import load_params
from models.checkpoint import load_model
from studies.tuning import (
    SCORE_COLUMNS,
    candidate_factors,
    candidates,
    choose_trial,
    over_seeds,
    override_file,
    tune,
    validation_rmse,
)


@pytest.fixture(scope="module")
def tiny_params():
    params = copy.deepcopy(load_params())
    params["device"] = "cpu"
    # Adam at a constant rate: a few steps that separate the candidates; the tuning logic is under test here.
    params["train"].update(batch_size=4, log_every=1, lr=0.01, optimizer="adam", schedule=None)
    del params["train"]["matrix_lr"]
    params["lapcvae"]["16"] = {"levels": 2, "latent_dims": [4, 3], "kl_weights": [0.1, 1.0], "widths": [4, 8],
                               "feature_size": 2, "m_hidden": 6, "train": {}}
    params["vaegan"]["16"] = {**params["vaegan"]["64"], "widths": [4, 8, 8], "latent_dim": 4, "dis_hidden": 8,
                              "dis_layer": 1, "gamma": 0.01, "train": {}}
    # Two trials per weight; LapCVAE's second candidate is a KL weight of 10^4, which collapses the posterior.
    params["tune"] = {"resolutions": [16], "trials": 2, "span": 1.0, "epochs": 2, "lr_factors": [1.0, 0.1],
                      "sample_margin": 1.0, "grid": {"lapcvae": [1.0, 1e4], "vaegan": [1.0, 10.0]}}
    params["eval"]["sample_quality"].update(dims=8, layout_size=4, detail_size=4)
    return params


def faces_16px(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """12 training and 4 validation images of one 16 px face with noise."""
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 200, size=(1, 3, 16, 16))
    images = np.clip(base + rng.integers(-40, 41, size=(16, 3, 16, 16)), 0, 255).astype(np.uint8)
    return images[:12], images[12:]


def test_candidates_are_log_spaced_around_the_current_value():
    assert candidate_factors(3, 1.0) == pytest.approx([0.1, 1.0, 10.0])
    assert candidates(0.5, [0.1, 1.0, 10.0], upper=1.0) == pytest.approx([0.05, 0.5, 1.0])
    with pytest.raises(ValueError, match="positive"):
        candidates(0.0, [1.0])


def test_the_rule_takes_the_best_fit_among_trials_whose_samples_are_near_the_best():
    scores = pd.DataFrame([[10.0, 0.20, 0.05], [11.0, 0.60, 0.10], [12.0, 0.65, 0.02], [9.0, 0.10, 0.00]],
                          columns=["fit", "sample_precision", "sample_recall"])
    values = [0.1, 1.0, 10.0, 100.0]
    assert choose_trial(scores, 0.1, values, current=1.0) == 1  # 0 and 3 sample too badly; 1 fits better than 2
    assert choose_trial(scores, 1.0, values, current=1.0) == 3  # a margin of 1 leaves the best fit
    ties = scores.assign(fit=[5.0, 5.0, 5.0, 5.0])
    assert choose_trial(ties, 1.0, values, current=10.0) == 2  # a tie stays at the current value
    diverged = scores.assign(fit=[np.nan, 11.0, np.inf, 9.0], sample_precision=np.nan, sample_recall=np.nan)
    assert choose_trial(diverged, 0.1, values, current=1.0) == 3  # no sample scores: the best finite fit


def test_tune_scores_every_trial_and_chooses_by_the_rule_greedily(tiny_params, tmp_path):
    train, val = faces_16px(0)
    trials, chosen = tune(tiny_params, 16, train, val, tmp_path, models=("lapcvae", "vaegan"))
    # The same number of trials for every tuned setting: the learning rate, then 2 per LapCVAE level and 2 each
    # for VAE/GAN's gamma and KL weight.
    assert trials.groupby("key").size().to_dict() == {
        "lapcvae.16.train.lr": 2, "lapcvae.16.kl_weights.0": 2, "lapcvae.16.kl_weights.1": 2,
        "vaegan.16.train.lr": 2, "vaegan.16.gamma": 2, "vaegan.16.kl_weight": 2}
    assert list(trials["key"][:6]) == (["lapcvae.16.train.lr"] * 2 + ["lapcvae.16.kl_weights.1"] * 2
                                       + ["lapcvae.16.kl_weights.0"] * 2)  # the rate, then coarse first
    assert trials[list(SCORE_COLUMNS)].drop(columns="val_nelbo").notna().all().all()
    assert trials["sample_precision"].between(0, 1).all() and trials["sample_recall"].between(0, 1).all()
    for _, group in trials.groupby("key"):  # a margin of 1 admits every trial: the best fit wins
        assert group["chosen"].sum() == 1
        assert group.loc[group["chosen"], "fit"].iloc[0] == group["fit"].min()
    assert (trials["fit"] == trials["val_rmse"]).all()  # both models reconstruct
    weights = chosen["lapcvae.16.kl_weights"]
    picked = trials[trials["chosen"]].set_index("key")["value"]
    assert weights == [picked["lapcvae.16.kl_weights.0"], picked["lapcvae.16.kl_weights.1"]]
    assert weights[1] == 1.0  # a KL weight of 10^4 at the coarsest level loses on validation
    assert chosen["vaegan.16.train.lr"] == picked["vaegan.16.train.lr"]
    # The recorded score is the validation RMSE of the trial's checkpoint.
    finest = sorted(tmp_path.glob("trials/lapcvae-level0-trial*/seed0/level0.pt"))  # seed 0: the run's seed
    assert len(finest) == 2
    model = load_model(finest[0])
    first = trials[trials["key"] == "lapcvae.16.kl_weights.0"].iloc[0]
    torch.manual_seed(0)
    assert validation_rmse(model, val) == pytest.approx(first["val_rmse"])
    assert override_file(chosen)["lapcvae"]["16"]["kl_weights"] == weights
    assert override_file(chosen)["vaegan"]["16"]["train"]["lr"] == chosen["vaegan.16.train.lr"]


def test_every_trial_trains_from_each_seed_and_is_scored_by_their_mean(tiny_params, tmp_path):
    params = copy.deepcopy(tiny_params)
    params["tune"] = {**params["tune"], "seeds": [3, 4], "lr_factors": [1.0]}
    train, val = faces_16px(0)
    trials, _ = tune(params, 16, train, val, tmp_path, models=("lapcvae",))
    assert len(trials) == 1 + 2 + 2  # the seeds do not add trials: each trial trains once per seed
    for _, trial in trials.iterrows():  # the rate's trial trains both levels; a level's trial that level
        level = int(trial["key"].rsplit(".", 1)[1]) if "kl_weights" in trial["key"] else 0
        label = f"level{level}" if "kl_weights" in trial["key"] else "train.lr"
        folder = tmp_path / "trials" / f"lapcvae-{label}-trial{trial['trial']}"
        torch.manual_seed(0)
        per_seed = [validation_rmse(load_model(folder / f"seed{seed}" / f"level{level}.pt"), val) for seed in (3, 4)]
        assert per_seed[0] != per_seed[1]  # two trainings, not one scored twice
        assert trial["fit"] == pytest.approx(np.mean(per_seed))
        assert trial["fit_sd"] == pytest.approx(np.std(per_seed, ddof=1))
    # Each seed's finest level trains on that seed's chosen coarsest level, whose weights it holds unchanged.
    coarse = trials[(trials["key"] == "lapcvae.16.kl_weights.1") & trials["chosen"]].iloc[0]
    finest = trials[(trials["key"] == "lapcvae.16.kl_weights.0")].iloc[0]
    for seed in (3, 4):
        coarsest = load_model(tmp_path / f"trials/lapcvae-level1-trial{coarse['trial']}/seed{seed}/level1.pt")
        whole = load_model(tmp_path / f"trials/lapcvae-level0-trial{finest['trial']}/seed{seed}/level0.pt")
        for name, tensor in coarsest.level_vaes["1"].state_dict().items():
            assert torch.equal(whole.level_vaes["1"].state_dict()[name], tensor), name


def test_one_diverged_seed_makes_the_trial_nan_and_stops_its_other_seeds():
    from training.loop import NonFiniteLossError

    trained = []

    def score_one(seed: int) -> dict[str, float]:
        trained.append(seed)
        if seed == 1:
            raise NonFiniteLossError("objective 'loss' is nan at step 3")
        return {column: float(seed + 10) for column in SCORE_COLUMNS}

    assert over_seeds("trial", [0, 2], score_one) == pytest.approx(
        {**{column: 11.0 for column in SCORE_COLUMNS}, "fit_sd": np.std([10.0, 12.0], ddof=1)})
    scores = over_seeds("trial", [0, 1, 2], score_one)
    assert set(scores) == {*SCORE_COLUMNS, "fit_sd"} and all(np.isnan(value) for value in scores.values())
    assert trained == [0, 2, 0, 1]  # seed 2 of the diverged trial is not trained


def test_a_diverged_trial_is_scored_nan_and_never_chosen(tiny_params, tmp_path, monkeypatch):
    from studies import tuning
    from training.loop import NonFiniteLossError

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(16, 3, 16, 16), dtype=np.uint8)
    trained = tuning.train_model

    def diverging(params, model, resolution, train_images, out_dir):
        if params["vae"]["16"]["train"]["lr"] > 0.05:  # the 10x candidate below
            raise NonFiniteLossError("objective 'loss' is nan at step 3")
        return trained(params, model, resolution, train_images, out_dir)

    monkeypatch.setattr(tuning, "train_model", diverging)
    params = copy.deepcopy(tiny_params)
    params["vae"]["16"] = {"widths": [4, 8], "kl_weight": 0.01, "train": {"lr": 0.01}}
    params["lapcvae"]["16"]["latent_dims"] = [4, 3]
    params["tune"].update(lr_factors=[10.0, 1.0], grid={"vae": [1.0, 2.0]})
    trials, chosen = tune(params, 16, images[:12], images[12:], tmp_path, models=("vae",))
    rates = trials[trials["key"] == "vae.16.train.lr"].set_index("value")
    assert np.isnan(rates.loc[0.1, "fit"]) and np.isfinite(rates.loc[0.01, "fit"])
    assert chosen["vae.16.train.lr"] == 0.01
    assert len(trials) == 4  # the KL weight's trials still ran, on the chosen rate
