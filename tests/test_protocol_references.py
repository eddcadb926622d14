"""Reference rows: the mean face, and PCA exact on data of known rank (both Gram-matrix branches)."""

from __future__ import annotations

import numpy as np
import torch

from eval.metrics import rmse_per_image
from eval.references import MeanFace, PCACode, evaluate_reference, fit_pca, mean_face


def low_rank_images(count: int, rank: int, size: int, seed: int = 0) -> np.ndarray:
    """uint8 (count, 3, size, size) images = 100 + integer combinations of `rank` integer patterns: exact rank."""
    rng = np.random.default_rng(seed)
    patterns = rng.integers(-8, 9, size=(rank, 3 * size * size))
    coefficients = rng.integers(-3, 4, size=(count, rank))
    flat = 100 + coefficients @ patterns  # within 100 +- rank * 24
    return flat.reshape(count, 3, size, size).astype(np.uint8)


def test_mean_face_is_the_pixelwise_mean():
    images = np.random.default_rng(1).integers(0, 256, size=(7, 3, 4, 4), dtype=np.uint8)
    face = mean_face(images, chunk=3)  # chunking must not change the result
    assert torch.allclose(face, torch.from_numpy(images.mean(axis=0) / 255.0))
    reconstruction = MeanFace(face).reconstruct(torch.zeros(2, 3, 4, 4))
    assert torch.allclose(reconstruction[1].double(), face)


def test_pca_reconstructs_data_of_its_rank_exactly_and_no_better_with_fewer_components():
    for count, size in ((20, 4), (60, 2)):  # fewer images than pixels (48), then more than pixels (12)
        images = low_rank_images(count, rank=3, size=size)
        tensors = torch.from_numpy(images).float() / 255.0
        mean, basis = fit_pca(images, components=3, chunk=7)
        assert basis.shape == (3, 3 * size * size)
        assert torch.allclose(basis @ basis.T, torch.eye(3, dtype=torch.float64), atol=1e-8)  # orthonormal
        exact = rmse_per_image(tensors, PCACode(mean, basis).reconstruct(tensors))
        assert exact.max() == 0  # the quantised reconstruction is the image
        _, fewer = fit_pca(images, components=2, chunk=7)
        truncated = rmse_per_image(tensors, PCACode(mean, fewer).reconstruct(tensors))
        assert truncated.mean() > 1  # two components cannot hold three independent directions
        # The best rank-2 code: its squared error is the smallest singular value's share, as numpy's SVD says.
        centred = images.reshape(count, -1) / 255.0 - mean.numpy()
        singular = np.linalg.svd(centred, compute_uv=False)
        residual = centred - (centred @ fewer.numpy().T) @ fewer.numpy()
        assert np.isclose((residual ** 2).sum(), (singular[2:] ** 2).sum())


def test_reference_is_scored_like_a_model():
    images = low_rank_images(10, rank=2, size=16)
    per_image, summary = evaluate_reference(MeanFace(mean_face(images)), images, batch_size=4,
                                            bootstrap_samples=10, seed=0)
    expected = rmse_per_image(torch.from_numpy(images).float() / 255,
                              mean_face(images).float().expand(10, 3, 16, 16)).double().numpy()
    assert np.allclose(per_image["rmse"].to_numpy(), expected, atol=1e-4)
    assert summary["n_test"] == 10 and np.isclose(summary["rmse_mean"], expected.mean(), atol=1e-4)
