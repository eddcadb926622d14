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
        mean, basis, spectrum = fit_pca(images, components=3, chunk=7)
        assert basis.shape == (3, 3 * size * size)
        assert torch.allclose(basis @ basis.T, torch.eye(3, dtype=torch.float64), atol=1e-8)  # orthonormal
        exact = rmse_per_image(tensors, PCACode(mean, basis).reconstruct(tensors))
        assert exact.max() == 0  # the quantised reconstruction is the image
        _, fewer, _ = fit_pca(images, components=2, chunk=7)
        truncated = rmse_per_image(tensors, PCACode(mean, fewer).reconstruct(tensors))
        assert truncated.mean() > 1  # two components cannot hold three independent directions
        # The best rank-2 code: its squared error is the smallest singular value's share, as numpy's SVD says.
        centred = images.reshape(count, -1) / 255.0 - mean.numpy()
        singular = np.linalg.svd(centred, compute_uv=False)
        residual = centred - (centred @ fewer.numpy().T) @ fewer.numpy()
        assert np.isclose((residual ** 2).sum(), (singular[2:] ** 2).sum())
        # The spectrum is the covariance's: numpy's squared singular values over the image count, descending.
        assert np.allclose(spectrum.numpy()[:len(singular)], singular ** 2 / count, atol=1e-12)


def test_reference_is_scored_like_a_model():
    images = low_rank_images(10, rank=2, size=16)
    per_image, summary = evaluate_reference(MeanFace(mean_face(images)), images, batch_size=4,
                                            bootstrap_samples=10, seed=0)
    expected = rmse_per_image(torch.from_numpy(images).float() / 255,
                              mean_face(images).float().expand(10, 3, 16, 16)).double().numpy()
    assert np.allclose(per_image["rmse"].to_numpy(), expected, atol=1e-4)
    assert summary["n_test"] == 10 and np.isclose(summary["rmse_mean"], expected.mean(), atol=1e-4)


def test_reverse_water_filling_matches_the_closed_forms():
    """Isotropic source: R = d/2 ln(sigma^2 / D_per_dim), so RMSE = sigma exp(-R / d); rate 0 codes nothing (the
    RMSE of the mean); a rate that covers only the strongest component leaves the weak ones whole."""
    from eval.gaussian_bound import PIXEL_SCALE, gaussian_rmse_at_rate

    sigma, dims = 0.2, 50
    variances = np.full(dims, sigma ** 2)
    for rate in (0.0, 10.0, 100.0):
        expected = PIXEL_SCALE * sigma * np.exp(-rate / dims)
        assert np.isclose(gaussian_rmse_at_rate(variances, dims, rate), expected, rtol=1e-6)
    strong, weak = 1.0, 1e-4
    two = np.array([strong, weak])
    rate = 0.5 * np.log(strong / 1e-3)  # theta = 1e-3 > weak: only the strong component is coded
    assert np.isclose(gaussian_rmse_at_rate(two, 4, rate), PIXEL_SCALE * np.sqrt((1e-3 + weak) / 4), rtol=1e-6)
    rates = [1.0, 5.0, 20.0, 80.0]
    rmses = [gaussian_rmse_at_rate(np.linspace(1.0, 0.01, 30), 40, rate) for rate in rates]
    assert all(later < earlier for earlier, later in zip(rmses, rmses[1:], strict=False))  # more rate, less error
