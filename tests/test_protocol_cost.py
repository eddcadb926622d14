"""Training cost: FLOPs of a measured training step (forward and backward) times the images the jobs saw."""

from __future__ import annotations

import torch

from baselines.vae import VAE
from eval.cost import training_cost, training_step_flops
from eval.metrics import count_flops
from models.checkpoint import save_model
from models.lapcvae import LapCVAE, LevelTrainable


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
