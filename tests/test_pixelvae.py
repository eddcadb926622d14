"""PixelVAE baseline (baselines/pixelvae.py): shapes, autoregressive causality, exact windowed decoding, training."""

from __future__ import annotations

import torch

from baselines.pixelvae import MaskedConv2d, PixelVAE
from core.params import load_params
from training.loop import fit

TINY = {"resolution": 16, "latent_dim": 4, "widths": [4, 8], "condition_channels": 3, "pixelcnn_hidden": 6,
        "pixelcnn_layers": 3, "first_kernel": 5, "kernel": 3, "kl_weight": 0.01, "sample_temperature": 1.0}


def tiny_model(seed: int = 0) -> PixelVAE:
    torch.manual_seed(seed)
    return PixelVAE.from_config(TINY).eval()


def test_shapes_and_range() -> None:
    model = tiny_model()
    images = torch.rand(2, 3, 16, 16)
    step = model.training_step(images)
    assert step.objectives["pixelvae"].dim() == 0 and torch.isfinite(step.objectives["pixelvae"])
    for output in (model.reconstruct(images), model.sample(3, seed=1)):
        assert output.shape[1:] == (3, 16, 16) and output.min() >= 0 and output.max() <= 1
    assert model.rate(images).shape == (2,)
    assert torch.equal(model.sample(2, seed=5), model.sample(2, seed=5))


def test_the_output_at_a_pixel_does_not_depend_on_it_or_later_pixels() -> None:
    model = tiny_model()
    condition = torch.randn(1, 3, 16, 16)
    images = torch.rand(1, 3, 16, 16, requires_grad=True)
    row, column = 7, 9
    model.pixelcnn(images, condition)[0, :, row, column].sum().backward()
    influence = images.grad[0].abs().sum(dim=0)  # (H, W): which inputs the output at (row, column) depends on
    flat = influence.flatten()
    position = row * 16 + column
    assert flat[position:].sum() == 0  # itself and everything after it in raster order: no influence
    assert flat[position - 1] > 0 and influence[row - 1, column + 1] > 0  # its left and upper-right neighbours do


def test_mask_b_sees_the_centre_but_mask_a_does_not() -> None:
    for mask_type, sees_centre in (("A", False), ("B", True)):
        conv = MaskedConv2d(1, 1, 3, mask_type)
        assert bool(conv.mask[0, 0, 1, 1]) is sees_centre and conv.mask[0, 0, 2].sum() == 0


def test_wavefront_decoding_on_crops_equals_raster_decoding_on_the_full_image() -> None:
    model = tiny_model()
    condition = model.decoder(torch.randn(2, 4))
    windowed = model.generate(condition, 0.05, torch.Generator().manual_seed(3), wavefront=True)
    full = model.generate(condition, 0.05, torch.Generator().manual_seed(3), wavefront=False)
    torch.testing.assert_close(windowed, full, atol=1e-5, rtol=0)


def test_the_loss_decreases_with_the_shared_training_loop(tmp_path) -> None:
    torch.manual_seed(0)
    images = (torch.rand(1, 3, 16, 16).repeat(32, 1, 1, 1) * 255).to(torch.uint8).numpy()  # one image, 32 times
    model = PixelVAE.from_config(TINY)
    # Adam at a constant rate: the model and the loop are under test here, not the default optimizer's settings.
    settings = {**load_params()["train"], "batch_size": 8, "epochs": 6, "log_every": 1, "lr": 0.01, "bf16": False,
                "optimizer": "adam", "schedule": None}
    fit(model, images, settings=settings, seed=0, output=tmp_path / "model.pt", device="cpu", name="pixelvae-test")
    import pandas as pd

    log = pd.read_csv(tmp_path / "model.log.csv")
    assert log["loss"].tail(4).mean() < 0.75 * log["loss"].head(4).mean()


def test_evaluate_withholds_greedy_reconstruction_metrics_but_keeps_elbo_and_sampling_time(tmp_path) -> None:
    import json

    import numpy as np
    import yaml

    from core import registry
    from models import checkpoint
    from workflow.commands.evaluate import evaluate_main

    checkpoint.save_model(tmp_path / "model.pt", tiny_model(), meta={"train_seconds": 1.0, "device": "cpu"})
    test = np.random.default_rng(0).integers(0, 256, (4, 3, 16, 16), dtype=np.uint8)
    np.save(tmp_path / "test.npy", test)
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"device": "cpu", "eval": {"batch_size": 2, "bootstrap_samples": 20,
                                                                   "samples": 2}}))
    out_dir = tmp_path / "eval" / "16" / "pixelvae"
    evaluate_main(["--params", str(override), "--res", "16", "--model", "pixelvae", "--checkpoint",
                   str(tmp_path / "model.pt"), "--test", str(tmp_path / "test.npy"), "--out-dir", str(out_dir),
                   "--per-image", str(tmp_path / "16_pixelvae.csv")])
    summary = json.loads((out_dir / "summary.json").read_text())
    assert not registry.spec("pixelvae").reconstructs and registry.spec("vae").reconstructs
    for key in ("rmse_mean", "rmse_ci95", "psnr_mean", "ssim_mean", "r2_h0_mean", "contrast_median"):
        assert summary[key] is None, key
    assert summary["reconstruction_withheld"] == registry.RECONSTRUCTION_WITHHELD
    assert summary["nelbo_mean"] > 0 and summary["nelbo_bits_per_dim"] > 0 and summary["sample_seconds"] > 0
    assert (out_dir / "reconstructions.npy").is_file()  # still drawn for Figure 4, not scored
