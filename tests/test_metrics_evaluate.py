"""`lapcvae evaluate` end to end on a tiny stand-in model checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from core.params import load_params
from models import checkpoint
from workflow.commands.evaluate import evaluate_main

SIZE = 16
N_TEST = 10


class StandInModel(nn.Module):
    """A depthwise 3x3 blur plus a learned brightness offset; samples are seeded uniform noise."""

    kind = "lapcvae"  # registered under LapCVAE's kind, so that `evaluate --model lapcvae` accepts it

    def __init__(self, config: dict):
        super().__init__()
        self.config = config
        self.blur = nn.Conv2d(3, 3, 3, padding=1, groups=3, bias=False)
        nn.init.constant_(self.blur.weight, 1 / 9)
        self.offset = nn.Parameter(torch.tensor(config["offset"]))

    @classmethod
    def from_config(cls, config: dict) -> StandInModel:
        return cls(config)

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return (self.blur(images) + self.offset).clamp(0, 1)

    def sample(self, n: int, seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(n, 3, self.config["size"], self.config["size"], generator=generator)


@pytest.fixture
def stand_in_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setitem(checkpoint.MODEL_KINDS, "lapcvae", f"{__name__}:StandInModel")
    path = tmp_path / "model.pt"
    checkpoint.save_model(path, StandInModel({"offset": 0.05, "size": SIZE, "resolution": SIZE, "use_m": True}),
                          meta={"train_seconds": 12.5, "device": "cpu"})
    return path


def write_params(tmp_path: Path) -> Path:
    override = {"device": "cpu", "seed": 7,
                "eval": {"batch_size": 4, "bootstrap_samples": 50, "samples": 3}}  # 10 images -> 3 batches
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump(override))
    return path


def test_evaluate_writes_reconstructions_metrics_samples_and_summary(tmp_path, stand_in_checkpoint):
    test_images = np.random.default_rng(0).integers(0, 256, (N_TEST, 3, SIZE, SIZE), dtype=np.uint8)
    np.save(tmp_path / "test.npy", test_images)
    out_dir, per_image_path = tmp_path / "eval" / "16" / "lapcvae", tmp_path / "per_image" / "16_lapcvae.csv"
    evaluate_main(["--params", str(write_params(tmp_path)), "--res", str(SIZE), "--model", "lapcvae",
                  "--checkpoint", str(stand_in_checkpoint), "--test", str(tmp_path / "test.npy"),
                  "--out-dir", str(out_dir), "--per-image", str(per_image_path)])

    model = StandInModel({"offset": 0.05, "size": SIZE})
    with torch.no_grad():
        expected = model.reconstruct(torch.from_numpy(test_images).float() / 255)
    expected_uint8 = np.round(expected.numpy() * 255).astype(np.uint8)
    reconstructions = np.load(out_dir / "reconstructions.npy")
    assert reconstructions.dtype == np.uint8 and reconstructions.shape == test_images.shape
    assert np.abs(reconstructions.astype(int) - expected_uint8).max() <= 1  # float rounding at .5 only

    # The per-image RMSE is that of the saved uint8 reconstruction, in test order.
    per_image = pd.read_csv(per_image_path)
    assert list(per_image.columns) == ["image", "rmse", "psnr", "ssim", "r2_h0", "r2_h1", "contrast", "rate",
                                       "nelbo", "nelbo_kl", "nelbo_distortion"]
    assert per_image["image"].tolist() == list(range(N_TEST))
    difference = reconstructions.astype(np.float64) - test_images
    np.testing.assert_allclose(per_image["rmse"], np.sqrt((difference**2).mean(axis=(1, 2, 3))), rtol=1e-5)
    assert (per_image["r2_h0"] < 1).all()  # the stand-in blurs
    contrast = reconstructions.reshape(N_TEST, -1).std(1) / test_images.reshape(N_TEST, -1).std(1)
    np.testing.assert_allclose(per_image["contrast"], contrast, rtol=1e-4)  # of the saved uint8 reconstruction
    assert (per_image["contrast"] < 1).all()  # blurring noise lowers its contrast
    assert per_image["rate"].isna().all() and per_image["nelbo"].isna().all()  # it has no posterior

    samples = np.load(out_dir / "samples.npy")
    expected_samples = np.round(model.sample(3, seed=7).numpy() * 255).astype(np.uint8)
    np.testing.assert_array_equal(samples, expected_samples)  # params seed, eval.samples

    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["n_test"] == N_TEST and summary["resolution"] == SIZE and summary["model"] == "lapcvae"
    assert summary["rmse_mean"] == pytest.approx(per_image["rmse"].mean())
    assert summary["rmse_std"] == pytest.approx(per_image["rmse"].std(ddof=1))
    assert summary["contrast_median"] == pytest.approx(per_image["contrast"].median())
    low, high = summary["rmse_ci95"]
    assert low < summary["rmse_mean"] < high
    assert summary["parameters"] == 3 * 9 + 1
    assert summary["flops_per_image"] == 2 * 9 * 3 * SIZE * SIZE  # depthwise 3x3: 9 multiply-adds per output
    assert summary["train_seconds"] == 12.5 and summary["meta"]["device"] == "cpu"
    assert not list(out_dir.glob("*.tmp*"))


def test_evaluate_rejects_test_images_of_another_resolution(tmp_path, stand_in_checkpoint):
    np.save(tmp_path / "test.npy", np.zeros((2, 3, 8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="check --res"):
        evaluate_main(["--params", str(write_params(tmp_path)), "--res", str(SIZE), "--model", "lapcvae",
                      "--checkpoint", str(stand_in_checkpoint), "--test", str(tmp_path / "test.npy"),
                      "--out-dir", str(tmp_path / "out"), "--per-image", str(tmp_path / "p.csv")])
    assert not (tmp_path / "out").exists()


def test_evaluate_of_a_diverged_model_leaves_nothing_half_written(tmp_path, stand_in_checkpoint, monkeypatch):
    np.save(tmp_path / "test.npy", np.zeros((N_TEST, 3, SIZE, SIZE), dtype=np.uint8))
    monkeypatch.setattr(StandInModel, "reconstruct", lambda self, images: images * float("nan"))
    out_dir = tmp_path / "out"
    with pytest.raises(ValueError, match="diverged"):
        evaluate_main(["--params", str(write_params(tmp_path)), "--res", str(SIZE), "--model", "vae",
                      "--checkpoint", str(stand_in_checkpoint), "--test", str(tmp_path / "test.npy"),
                      "--out-dir", str(out_dir), "--per-image", str(tmp_path / "p.csv")])
    assert not out_dir.exists() or list(out_dir.iterdir()) == []  # the reconstructions' temporary memory map is gone
    assert not (tmp_path / "p.csv").exists()


def test_training_time_is_read_from_the_checkpoint_metadata() -> None:
    assert checkpoint.pyramid_train_seconds({"train_seconds": 5.0, "pyramid_train_seconds": 23.0}) == 23.0
    assert checkpoint.pyramid_train_seconds({"train_seconds": 4.0}) == 4.0  # a baseline: its own job


def test_evaluate_scores_its_samples_in_the_sample_embedding(tmp_path, stand_in_checkpoint):
    """--embedding: the saved samples, all eval.samples of them, scored against the test split (eval.sample_quality)."""
    from eval.sample_quality import fit_embedding, sample_metrics
    from workflow.commands.evaluate import sample_embedding_main

    rng = np.random.default_rng(1)
    np.save(tmp_path / "train.npy", rng.integers(0, 256, (40, 3, SIZE, SIZE), dtype=np.uint8))
    test_images = rng.integers(0, 256, (N_TEST, 3, SIZE, SIZE), dtype=np.uint8)
    np.save(tmp_path / "test.npy", test_images)
    params = tmp_path / "override.yaml"
    params.write_text(yaml.safe_dump({"device": "cpu", "seed": 7,
                                      "eval": {"batch_size": 4, "bootstrap_samples": 50, "samples": 12}}))
    embedding_path = tmp_path / "eval" / "16" / "sample_embedding.npz"
    sample_embedding_main(["--params", str(params), "--res", str(SIZE), "--train", str(tmp_path / "train.npy"),
                           "--test", str(tmp_path / "test.npy"), "--out", str(embedding_path),
                           "--reference-dir", str(tmp_path / "eval" / "16" / "training_images")])
    out_dir = tmp_path / "eval" / "16" / "lapcvae"
    evaluate_main(["--params", str(params), "--res", str(SIZE), "--model", "lapcvae",
                   "--checkpoint", str(stand_in_checkpoint), "--test", str(tmp_path / "test.npy"),
                   "--out-dir", str(out_dir), "--per-image", str(tmp_path / "p.csv"),
                   "--embedding", str(embedding_path)])

    samples = np.load(out_dir / "samples.npy")
    assert samples.shape == (12, 3, SIZE, SIZE)  # eval.samples, drawn in batches of eval.batch_size
    summary = json.loads((out_dir / "summary.json").read_text())
    settings = load_params(str(params))["eval"]["sample_quality"]
    embedding = fit_embedding(np.load(tmp_path / "train.npy"), settings, seed=7)  # the same fit, redone here
    expected = sample_metrics(embedding, test_images, samples, settings["k"])
    for key in ("sample_precision", "sample_recall", "fd_embedding", "sample_quality_generated"):
        assert summary[key] == pytest.approx(expected[key]), key
    assert summary["sample_count"] == 12
    reference = json.loads((tmp_path / "eval" / "16" / "training_images" / "summary.json").read_text())
    assert reference["kind"] == "reference" and reference["sample_quality_generated"] == 12
    assert 0.0 <= reference["sample_precision"] <= 1.0 and reference["fd_embedding"] >= 0.0
