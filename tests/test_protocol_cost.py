"""Training cost: FLOPs of a measured training step (forward and backward) times the images the jobs saw."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from baselines.vae import VAE
from core.params import load_params
from eval.cost import training_cost
from models.checkpoint import save_model
from models.interface import StepResult
from models.lapcvae import LapCVAE, LevelTrainable
from training.baseline_jobs import build_baseline, lapcvae_flops_epochs, train_baseline
from training.flops import count_flops, training_step_flops
from training.lapcvae_jobs import train_level


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


def test_muon_s_newton_schulz_products_count_in_the_training_flops(tmp_path):
    """Muon multiplies matrices every step whatever the batch: the cost adds what FlopCounterMode measures in one
    optimizer step (batch-independent) and its eigendecompositions, times the job's steps; Adam adds nothing."""
    from models.interface import io_parameters
    from training.optimizers import EIGH_FLOPS_PER_CUBE, Muon, muon_step_flops

    torch.manual_seed(0)
    model = VAE(resolution=16, latent_dim=5, widths=[4, 8], kl_weight=1.0)
    io = io_parameters(model)
    optimizer = Muon(model.parameters(), io_parameters=io, lr=1e-3)
    (loss,) = model.training_step(torch.rand(4, 3, 16, 16)).objectives.values()
    loss.backward()
    with FlopCounterMode(display=False) as measured:
        optimizer.step()
    per_step = muon_step_flops(model.parameters(), io)
    # The counter sees the matrix products; the eigendecompositions (LAPACK) are added by their textbook count.
    sides = [min(param.shape[0], param[0].numel()) for param in model.parameters() if Muon.orthogonalizes(param, io)]
    assert per_step == measured.get_total_flops() + EIGH_FLOPS_PER_CUBE * sum(side ** 3 for side in sides) > 0
    step = training_step_flops(model, 16)
    for name, extra in (("muon", 10 * per_step), ("adam", 0)):
        save_model(tmp_path / f"{name}.pt", model, {"steps": 10, "settings": {"batch_size": 4, "optimizer": name}})
        cost = training_cost([tmp_path / f"{name}.pt"])
        assert cost["train_flops"] == 40 * step + extra
        assert cost["jobs"][0]["optimizer_flops"] == extra


@pytest.mark.parametrize("skipped", ["discriminator", "decoder"])
def test_vaegan_counts_a_full_step_wherever_its_balancing_rule_stands(skipped):
    """Table 1's VAE/GAN FLOPs must not depend on which update the trained weights' balance state would skip
    on the measured batch (it did: 764 M or 532 M per 64 px image for two runs of the same network)."""
    from baselines.vaegan import VAEGAN

    config = {"resolution": 16, "latent_dim": 8, "widths": [4, 8], "dis_hidden": 8, "dis_layer": 1, "gamma": 0.5}
    # Equilibrium 100: every BCE is below it, the discriminator is skipped; equilibrium 0: the decoder is.
    balance = {"enabled": True, "margin": 0.0, "equilibrium": 100.0 if skipped == "discriminator" else 0.0}
    torch.manual_seed(0)
    balanced = VAEGAN.from_config({**config, "balance": balance})
    torch.manual_seed(0)
    unbalanced = VAEGAN.from_config({**config, "balance": {**balance, "enabled": False}})
    assert balanced.training_step(torch.rand(2, 3, 16, 16)).objectives[skipped] is None  # the rule is in force
    assert training_step_flops(balanced, 16) == training_step_flops(unbalanced, 16)
    assert balanced.training_step(torch.rand(2, 3, 16, 16)).objectives[skipped] is None  # and still is after


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


@pytest.mark.parametrize("lapcvae_optimizer", ["adam", "muon"])
def test_the_vae_at_lapcvae_s_flops_trains_until_its_flops_match(tmp_path, lapcvae_optimizer):
    """The equal-compute VAE row: its measured network training FLOPs are LapCVAE's (every level's job) to within
    half an epoch of its own, and it trains more epochs than the budget rule gives every model; also when LapCVAE's
    optimizer spends FLOPs of its own each step (Muon), which the match leaves out and the cost reports apart."""
    params = load_params("config/smoke.yaml")
    params["device"] = "cpu"
    params["lapcvae"]["64"].setdefault("train", {})["optimizer"] = lapcvae_optimizer
    images = np.random.default_rng(0).integers(0, 256, (32, 3, 64, 64), dtype=np.uint8)
    _, meta = train_baseline(params, "vae_equal_flops", 64, images, tmp_path / "vae.pt")
    levels = params["lapcvae"]["64"]["levels"]
    for level in reversed(range(levels)):  # coarsest first, each level on the checkpoint of the one above
        coarser = None if level == levels - 1 else tmp_path / f"level{level + 1}.pt"
        train_level(params, 64, "lapcvae", level, coarser, images, tmp_path / f"level{level}.pt")
    vae_cost = training_cost([tmp_path / "vae.pt"])
    lapcvae_cost = training_cost([tmp_path / f"level{level}.pt" for level in reversed(range(levels))])
    assert vae_cost["jobs"][0]["epochs"] == meta["epochs"] > params["budget"]["epochs"]
    per_epoch = vae_cost["network_flops"] / meta["epochs"]
    assert abs(vae_cost["network_flops"] - lapcvae_cost["network_flops"]) <= 0.5 * per_epoch
    for cost in (vae_cost, lapcvae_cost):
        assert cost["train_flops"] == cost["network_flops"] + cost["optimizer_flops"]
    assert (sum(job["optimizer_flops"] for job in lapcvae_cost["jobs"]) > 0) is (lapcvae_optimizer == "muon")


def test_the_vae_at_lapcvae_s_flops_matches_network_flops_whatever_the_optimizer():
    """The match counts the networks' forward and backward passes only: with Muon on both sides the matched epochs
    are those of Adam (the optimizer's FLOPs depend on its matrix shapes, not on what the network computes), and
    they buy LapCVAE's network FLOPs per image to within half an epoch of the VAE's."""
    from training.flops import lapcvae_step_flops, training_step_flops

    params = load_params()
    matched = {}
    for optimizer in ("adam", "muon"):
        for section in ("vae", "lapcvae"):
            params[section]["64"]["train"]["optimizer"] = optimizer
        matched[optimizer] = lapcvae_flops_epochs(params, "vae_equal_flops", 64)
    assert matched["adam"] == matched["muon"] > params["budget"]["epochs"]
    vae_flops = training_step_flops(build_baseline(params, "vae_equal_flops", 64), 64)
    lapcvae_flops = lapcvae_step_flops(params, 64)
    assert abs(matched["adam"] * vae_flops - params["budget"]["epochs"] * lapcvae_flops) <= 0.5 * vae_flops


class ConvThenLinear(nn.Module):
    """One 3x3 convolution (3 -> 4 channels, 8x8, padded) and one linear layer (256 -> 5): a trainable whose
    FLOPs are counted by hand."""

    kind, config = "toy", {}

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.linear = nn.Linear(4 * 8 * 8, 5)

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.relu(self.conv(images)).flatten(1))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"all": list(self.parameters())}

    def training_step(self, images: torch.Tensor) -> StepResult:
        loss = self.reconstruct(images).square().sum()
        return StepResult(objectives={"all": loss}, logs={})


def test_flop_counts_of_one_conv_and_one_linear_layer_are_the_hand_computed_ones():
    """2 FLOPs per multiply-add. Forward: the convolution's 4 x 64 outputs of 3 x 3 x 3 inputs, the linear layer's
    5 outputs of 256. The backward pass of a training step computes the convolution's weight gradient (its input,
    the image, needs none: as many FLOPs as its forward) and the linear layer's weight and input gradients (twice
    its forward); biases, ReLU and the loss cost no multiply-adds."""
    conv = 2 * 4 * 8 * 8 * 3 * 3 * 3
    linear = 2 * 4 * 8 * 8 * 5
    model = ConvThenLinear()
    assert count_flops(model.reconstruct, torch.rand(1, 3, 8, 8)) == conv + linear
    assert training_step_flops(model, 8) == 2 * conv + 3 * linear
