"""FID and KID (eval/fid.py) on a feature network built here: identical sets score ~0, noise raises the score."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from eval.fid import INCEPTION_WEIGHTS_URL, fid_kid_from_features, image_features, inception_network, sample_quality

DEVICE = torch.device("cpu")
SETTINGS = {"inception_weights": None, "batch_size": 16, "kid_subset_size": 50, "kid_subsets": 20}


class TinyFeatures(nn.Module):
    """uint8 (B, 3, H, W) -> (B, 8): a fixed random conv net, as a stand-in for Inception."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.Tanh(), nn.Conv2d(8, 8, 3), nn.Tanh(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.float() / 255.0)


def smooth_faces(count: int, seed: int) -> np.ndarray:
    """(count, 3, 16, 16) uint8 images: random 4x4 colour layouts, upsampled (structure for the features)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 4, 4, generator=generator)
    images = nn.functional.interpolate(coarse, size=16, mode="bilinear", align_corners=False)
    return (images * 255).round().to(torch.uint8).numpy()


def with_noise(images: np.ndarray, grey_levels: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, grey_levels, images.shape)
    return np.clip(images.astype(np.float64) + noise, 0, 255).round().astype(np.uint8)


def scores(real: np.ndarray, generated: np.ndarray) -> dict[str, float]:
    """FID and KID with one KID subset of every image (a random subset would add noise to the comparison)."""
    network = TinyFeatures()
    return fid_kid_from_features(image_features(real, network, 16, DEVICE),
                                 image_features(generated, network, 16, DEVICE), len(real), 1, seed=0)


def test_identical_sets_score_zero() -> None:
    images = smooth_faces(120, seed=1)
    result = scores(images, images.copy())
    assert abs(result["fid"]) < 1e-6
    # KID compares random subsets of the two sets, so identical sets give ~0, not exactly 0.
    assert abs(result["kid_mean"]) < 1e-3


def test_more_noise_gives_higher_fid_and_kid() -> None:
    images = smooth_faces(120, seed=1)
    results = [scores(images, with_noise(images, level, seed=2)) for level in (0, 8, 24, 64)]
    fids = [result["fid"] for result in results]
    kids = [result["kid_mean"] for result in results]
    assert all(a < b for a, b in zip(fids, fids[1:], strict=False)), fids
    assert all(a < b for a, b in zip(kids, kids[1:], strict=False)), kids
    assert fids[-1] > 100 * max(fids[0], 1e-9)


def test_another_distribution_scores_higher_than_the_same_one() -> None:
    test = smooth_faces(120, seed=1)
    same_distribution = smooth_faces(120, seed=3)
    darker = (smooth_faces(120, seed=3) // 2).astype(np.uint8)
    assert scores(test, same_distribution)["fid"] < scores(test, darker)["fid"]


def test_sample_quality_fills_summary_keys_and_is_off_without_weights() -> None:
    test = smooth_faces(60, seed=1)
    samples, reconstructions = smooth_faces(20, seed=4), with_noise(test, 4, seed=5)
    assert sample_quality(SETTINGS, test, samples, reconstructions, 0, DEVICE) == {}  # no weights: no numbers
    result = sample_quality(SETTINGS, test, samples, reconstructions, 0, DEVICE, network=TinyFeatures())
    assert result["fid_test_images"] == 60
    assert result["fid_reconstructions"] < result["fid_samples"]  # reconstructions are close to the test images
    assert {"kid_samples_mean", "kid_samples_std", "kid_reconstructions_mean"} <= set(result)


def test_a_missing_weights_file_says_where_to_get_it(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="inception_weights") as error:
        inception_network(tmp_path / "missing.pth")
    assert INCEPTION_WEIGHTS_URL in str(error.value)


def test_inception_loads_from_a_weights_file_without_downloading(tmp_path, monkeypatch) -> None:
    """The Inception path end to end, offline: a randomly initialised state dict saved to a file, then loaded."""
    from torch_fidelity import feature_extractor_inceptionv3 as fidelity

    def no_download(*args, **kwargs):
        raise AssertionError("the Inception weights must never be downloaded")

    monkeypatch.setattr(fidelity, "load_state_dict_from_url", no_download)
    empty = tmp_path / "empty.pth"
    torch.save({}, empty)
    with monkeypatch.context() as patch:  # build a randomly initialised network to get a complete state dict
        patch.setattr(fidelity.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        random_weights = fidelity.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], str(empty))
    weights = tmp_path / "weights-inception-random.pth"
    torch.save(random_weights.state_dict(), weights)
    features = image_features(smooth_faces(2, seed=1), inception_network(weights), 2, DEVICE)
    assert features.shape == (2, 2048) and torch.isfinite(features).all()
