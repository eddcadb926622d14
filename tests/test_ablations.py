"""Ablations (studies/ablations.py): joint training, the decoder's conditioning (Eq. 10 / 11), time to target, DAG."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import dry_run_job_counts, with_random_band_outputs

from models import lapcvae as lapcvae_module
from models.lapcvae import JointTrainable, LapCVAE, LevelTrainable
from models.pyramid import laplacian_pyramid
from studies.ablations import compare_training, time_to_target
from training.loop import fit

REPO = Path(__file__).resolve().parent.parent


def tiny_model(conditioning: str = "latents", seed: int = 0, trained_levels: int | None = None) -> LapCVAE:
    """A 3-level 16 px model with M: levels of 16, 8 and 4 px, band decoders' output layers random."""
    torch.manual_seed(seed)
    return with_random_band_outputs(LapCVAE(
        resolution=16, levels=3, latent_dims=[6, 5, 4], kl_weights=[0.01, 0.1, 1.0], widths=[4, 8], feature_size=2,
        m_hidden=8, use_m=True, trained_levels=trained_levels, conditioning=conditioning))


def images(n: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_joint_loss_is_the_sum_of_the_greedy_level_losses(monkeypatch: pytest.MonkeyPatch) -> None:
    # Posterior means instead of noise, and batch norm on running statistics, so both paths are deterministic.
    monkeypatch.setattr(lapcvae_module, "reparameterize", lambda mean, log_var: mean)
    model = tiny_model()
    batch = images()
    joint = JointTrainable(model).eval().training_step(batch).objectives["levels"]
    per_level = []
    for k in range(model.levels):
        levels_k_to_K = LapCVAE.from_config({**model.config, "trained_levels": model.levels - k})
        levels_k_to_K.load_state_dict(model.state_dict(), strict=False)  # the same weights, levels k..K
        per_level.append(LevelTrainable(levels_k_to_K, k).eval().training_step(batch).objectives[f"level{k}"])
    assert all(loss > 0 for loss in per_level)
    torch.testing.assert_close(joint, torch.stack(per_level).sum())


def test_joint_training_updates_every_level_and_records_validation(tmp_path: Path) -> None:
    model = tiny_model()
    trainable = JointTrainable(model).train()
    grads = torch.autograd.grad(trainable.training_step(images()).objectives["levels"],
                                trainable.parameter_groups()["levels"], allow_unused=True)
    names = [name for name, _ in model.named_parameters()]
    untouched = [name for name, grad in zip(names, grads, strict=True) if grad is None or not grad.abs().sum() > 0]
    assert not untouched  # every level's encoder, decoder and M get a gradient from the summed loss
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    data = np.random.default_rng(0).integers(0, 256, (8, 3, 16, 16), dtype=np.uint8)
    calls = []

    def validate() -> dict[str, float]:
        calls.append(model.training)
        return {"val_rmse": float(len(calls))}

    settings = {"lr": 1e-3, "batch_size": 4, "epochs": 2, "log_every": 1, "bf16": False, "grad_clip": None}
    fit(trainable, data, settings=settings, seed=0, output=tmp_path / "joint.pt", export=model,
        validate=validate, validate_every=1)
    for k in range(model.levels):
        level = [name for name in names if name.startswith(f"level_vaes.{k}.")]
        assert level and all(not torch.equal(before[name], dict(model.named_parameters())[name]) for name in level)
    rows = list(csv.DictReader((tmp_path / "joint.val.csv").open()))
    # before step 1, after steps 1..4 (2 steps an epoch: mid-epoch at odd steps, epoch ends at even ones)
    assert [int(row["step"]) for row in rows] == [0, 1, 2, 3, 4]
    assert [int(row["images_seen"]) for row in rows] == [0, 4, 8, 12, 16]
    seconds = [float(row["train_seconds"]) for row in rows]
    assert seconds == sorted(seconds) and seconds[0] == 0.0 < seconds[-1]
    assert calls and not any(calls)  # validation runs in eval mode


@pytest.mark.parametrize("conditioning", ["latents", "image", "both"])
def test_decoder_conditioning_follows_the_option(conditioning: str) -> None:
    model = tiny_model(conditioning).eval()
    generator = torch.Generator().manual_seed(1)
    z = [torch.randn(2, dim, generator=generator) for dim in model.config["latent_dims"]]
    other_z = [torch.randn(2, dim, generator=generator) for dim in model.config["latent_dims"]]
    coarse = torch.rand(2, 3, 16, 16, generator=generator)
    other_coarse = torch.rand(2, 3, 16, 16, generator=generator)
    with torch.no_grad():
        reference = model.decode_level(0, z, coarse)
        with_other_latents = model.decode_level(0, [z[0], *other_z[1:]], coarse)
        with_other_image = model.decode_level(0, z, other_coarse)
        with_other_own_latent = model.decode_level(0, [other_z[0], *z[1:]], coarse)
    assert not torch.allclose(reference, with_other_own_latent)  # z_k always matters
    uses_latents = not torch.allclose(reference, with_other_latents)
    uses_image = not torch.allclose(reference, with_other_image)
    assert (uses_latents, uses_image) == {"latents": (True, False), "image": (False, True),
                                          "both": (True, True)}[conditioning]
    if conditioning != "latents":
        with pytest.raises(ValueError, match="upsampled_coarse"):
            model.decode_level(0, z)
    # the whole pyramid still reconstructs and samples with every option
    assert model.reconstruct(images(2)).shape == (2, 3, 16, 16)
    assert model.sample(2, seed=0).shape == (2, 3, 16, 16)
    assert len(laplacian_pyramid(images(2), 3)) == 3


def test_conditioning_survives_a_checkpoint(tmp_path: Path) -> None:
    from models.checkpoint import load_model, save_model

    model = tiny_model("image").eval()
    save_model(tmp_path / "m.pt", model, {})
    loaded = load_model(tmp_path / "m.pt", torch.device("cpu"))
    assert loaded.config["conditioning"] == "image"
    torch.testing.assert_close(loaded.reconstruct(images(2)), model.reconstruct(images(2)))
    with pytest.raises(ValueError, match="conditioning"):
        LapCVAE.from_config({**model.config, "conditioning": "pixels"})


def test_time_to_target_reads_the_first_measurement_at_or_below_the_worse_final_loss() -> None:
    def curve(points: list[tuple[float, int, float]], jobs: list[str]) -> list[dict[str, float]]:
        return [{"job": job, "train_seconds": s, "images_seen": n, "val_rmse": v}
                for (s, n, v), job in zip(points, jobs, strict=True)]

    greedy = {"conditioning": "latents", "curve": curve([(0, 0, 40.0), (10, 100, 30.0), (30, 300, 20.0),
                                                        (40, 400, 18.0)], ["level1", "level1", "level0", "level0"]),
              "jobs": [{"job": "level1", "train_seconds": 15.0, "images_seen": 100, "flops_per_image": 1},
                       {"job": "level0", "train_seconds": 25.0, "images_seen": 300, "flops_per_image": 4},
                       {"job": "retrain_m", "train_seconds": 5.0, "images_seen": 10, "flops_per_image": 1}]}
    joint = {"conditioning": "latents", "curve": curve([(0, 0, 40.0), (5, 50, 25.0), (10, 100, 21.0)],
                                                       ["joint"] * 3),
             "jobs": [{"job": "joint", "train_seconds": 10.0, "images_seen": 100, "flops_per_image": 5},
                      {"job": "retrain_m", "train_seconds": 5.0, "images_seen": 10, "flops_per_image": 1}]}
    assert time_to_target(greedy["curve"], 21.0) == (30.0, 300)
    assert np.isnan(time_to_target(joint["curve"], 1.0)[0])
    row = compare_training(greedy, joint)
    assert row["target_val_rmse"] == 21.0  # joint's final value is the worse one
    assert (row["greedy_seconds_to_target"], row["joint_seconds_to_target"]) == (30.0, 10.0)
    assert row["seconds_ratio_greedy_over_joint"] == 3.0 and row["images_ratio_greedy_over_joint"] == 3.0
    assert (row["greedy_total_seconds"], row["joint_total_seconds"]) == (40.0, 10.0)  # retrain-M left out
    # greedy reaches 21 at 300 images: 100 of level 1 at 1 FLOP, 200 of level 0 at 4; joint at 100 x 5
    assert (row["greedy_flops_to_target"], row["joint_flops_to_target"]) == (900.0, 500.0)


def test_ablations_target_dry_run_on_smoke_params() -> None:
    counts = dry_run_job_counts("ablations", "--configfile", "config/smoke.yaml")
    assert counts["ablation_train"] == 4 and counts["ablations_table"] == 1  # four variants, one resolution
    assert "train_level" not in counts and "table" not in counts  # not the default DAG
