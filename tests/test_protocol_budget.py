"""The budget rule: budget.epochs sets every model's and every LapCVAE level's epochs, and nothing else may."""

from __future__ import annotations

import copy

import pytest

from core.params import ParamsError, load_params, train_settings, validate
from core.registry import level_checkpoint, training_jobs
from training.lapcvae_jobs import level_settings
from workflow.pipeline import training_checkpoints


@pytest.mark.parametrize("overrides", [(), ("config/smoke.yaml",), ("config/paper.yaml",)])
def test_every_model_and_level_trains_budget_epochs(overrides):
    params = load_params(*overrides)
    params["budget"]["epochs"] = 7
    for res in params["data"]["resolutions"]:
        for model in ("vae", "vaegan"):
            assert train_settings(params, model, res)["epochs"] == 7
        for level in range(params["lapcvae"][str(res)]["levels"]):
            assert level_settings(params, res, level)["epochs"] == 7


@pytest.mark.parametrize("place", ["train", "vae", "level_epochs"])
def test_epochs_set_elsewhere_are_rejected(place):
    params = copy.deepcopy(load_params())
    if place == "train":
        params["train"]["epochs"] = 3
    elif place == "vae":
        params["vae"]["64"]["train"] = {"epochs": 3}
    else:
        params["lapcvae"]["64"]["level_epochs"] = [1, 2, 3, 4]
    with pytest.raises(ParamsError, match="budget.epochs"):
        validate(params)


def test_the_coarsest_level_is_one_checkpoint_for_both_variants():
    params = load_params()
    results = params["paths"]["results"]
    paths = training_checkpoints(params)
    assert len(paths) == len(set(paths))
    assert f"{results}/models/64/lapcvae_nom/level3.pt" not in paths
    assert level_checkpoint(results, 64, "lapcvae_nom", 3, 4) == f"{results}/models/64/lapcvae/level3.pt"
    nom = training_jobs(results, 64, "lapcvae_nom", 4)
    assert nom[-1] == f"{results}/models/64/lapcvae/level3.pt" and nom[0].endswith("lapcvae_nom/level0.pt")


@pytest.mark.parametrize(("change", "refused"), [
    ({"vae": {"64": {"train": {"optimizer": "adam", "matrix_lr": 0.02}}}}, "vae.64.train.matrix_lr"),
    ({"train": {"optimizer": "adam"}, "lapcvae": {"64": {"train": {"optimizer": "muon"}}}},
     "train.matrix_lr"),  # LapCVAE at 64 px reads its own matrix_lr; no model on Muon is left to read the global one
    ({"vae": {"64": {"train": {"optimizer": "adam"}}}}, None),
    ({"vaegan": {"64": {"train": {"optimizer": "rmsprop"}}}}, None),
])
def test_matrix_lr_is_refused_where_no_model_on_muon_reads_it(change, refused):
    """Muon's matrix_lr does nothing for Adam or RMSprop: set where no Muon model reads it, the params stop at load
    with the key; a global one that some Muon model reads is fine beside models on other optimizers."""
    from core.params import deep_merge

    params = deep_merge(load_params(), change)
    if refused is None:
        validate(params)
        return
    with pytest.raises(ParamsError, match=rf"^{refused}: .*set train.optimizer \(or that model's\) to muon"):
        validate(params)


def test_retraining_m_takes_its_own_epochs_rate_and_optimizer():
    """lapcvae.retrain_m's epochs, lr and optimizer override LapCVAE's own settings (the workflow's retrain-m job
    and the ablations both read them here); without an optimizer of its own it keeps LapCVAE's."""
    from core.params import train_settings
    from training.lapcvae_jobs import retrain_m_settings

    params = load_params()
    retrain = params["lapcvae"]["retrain_m"]
    retrain["optimizer"] = "adam"  # another family than LapCVAE's own
    settings = retrain_m_settings(params, 64)
    assert (settings["epochs"], settings["lr"], settings["optimizer"]) == (retrain["epochs"], retrain["lr"], "adam")
    assert train_settings(params, "lapcvae", 64)["optimizer"] == "muon"
    del retrain["optimizer"]
    assert retrain_m_settings(params, 64)["optimizer"] == "muon"
