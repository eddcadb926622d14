"""Training cost: FLOPs of a measured training step (forward and backward) times the images the jobs saw."""

from __future__ import annotations

import numpy as np
import torch

from baselines.train import train_baseline
from baselines.vae import VAE
from core.params import load_params
from eval.cost import training_cost
from eval.metrics import count_flops
from models.checkpoint import save_model
from models.flops import training_step_flops
from models.lapcvae import LapCVAE, LevelTrainable
from models.train_lapcvae import train_level


def test_vae_training_step_costs_about_three_forward_passes(tmp_path):
    torch.manual_seed(0)
    model = VAE(resolution=16, latent_dim=5, widths=[4, 8], kl_weight=1.0)
    forward = count_flops(model.reconstruct, torch.rand(1, 3, 16, 16))
    step = training_step_flops(model, 16)
    assert 2.5 * forward < step < 3.5 * forward  # backward ~ twice the forward
    save_model(tmp_path / "model.pt", model, {"steps": 10, "settings": {"batch_size": 4}, "train_seconds": 2.5})
    cost = training_cost([tmp_path / "model.pt"])
    assert cost["images_seen"] == 40 and cost["train_seconds"] == 2.5
    assert cost["train_flops"] == 40 * step


def test_lapcvae_cost_sums_its_level_jobs(tmp_path):
    config = {"resolution": 16, "levels": 2, "latent_dims": [4, 3], "kl_weights": [0.1, 1.0], "widths": [4, 8],
              "feature_size": 2, "m_hidden": 6, "use_m": True}
    coarse = LapCVAE(**config, trained_levels=1)
    whole = LapCVAE(**config)
    save_model(tmp_path / "level1.pt", coarse, {"steps": 4, "settings": {"batch_size": 2}, "train_seconds": 1.0})
    save_model(tmp_path / "level0.pt", whole, {"steps": 3, "settings": {"batch_size": 2}, "train_seconds": 2.0})
    cost = training_cost([tmp_path / "level1.pt", tmp_path / "level0.pt"])
    coarse_step, fine_step = (job["flops_per_image"] for job in cost["jobs"])
    assert fine_step == training_step_flops(LevelTrainable(whole, 0), 16) > coarse_step > 0
    assert cost["train_flops"] == 8 * coarse_step + 6 * fine_step and cost["train_seconds"] == 3.0


def test_the_vae_at_lapcvae_s_flops_trains_until_its_flops_match(tmp_path):
    """The equal-compute VAE row: its measured training FLOPs are LapCVAE's (every level's job) to within half an
    epoch of its own, and it trains more epochs than the budget rule gives every model."""
    params = load_params("config/smoke.yaml")
    params["device"] = "cpu"
    images = np.random.default_rng(0).integers(0, 256, (32, 3, 64, 64), dtype=np.uint8)
    _, meta = train_baseline(params, "vae_equal_flops", 64, images, tmp_path / "vae.pt")
    levels = params["lapcvae"]["64"]["levels"]
    for level in reversed(range(levels)):  # coarsest first, each level on the checkpoint of the one above
        coarser = None if level == levels - 1 else tmp_path / f"level{level + 1}.pt"
        train_level(params, 64, "lapcvae", level, coarser, images, tmp_path / f"level{level}.pt")
    vae_cost = training_cost([tmp_path / "vae.pt"])
    lapcvae_cost = training_cost([tmp_path / f"level{level}.pt" for level in reversed(range(levels))])
    assert vae_cost["jobs"][0]["epochs"] == meta["epochs"] > params["budget"]["epochs"]
    per_epoch = vae_cost["train_flops"] / meta["epochs"]
    assert abs(vae_cost["train_flops"] - lapcvae_cost["train_flops"]) <= 0.5 * per_epoch
