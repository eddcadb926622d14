"""Reference rows of Table 1: what a model must beat to have learned anything, on the same split.

- `mean_face`: every test image reconstructed as the mean training face (no code at all).
- `pca`: PCA fitted on the training split with as many components as LapCVAE has latent dimensions at that
  resolution, sum(lapcvae.{res}.latent_dims): the best linear code of that size (in squared error, on the
  training images).
- `lapcvae_coarsest`: LapCVAE's coarsest level alone (`lapcvae/level{K}.pt`, shared by both variants),
  its coarsest image upsampled through the pyramid to full size: what the finer levels have to improve on.

Each reference is scored exactly as `evaluate` scores a model (eval.metrics.per_image_metrics on the 8-bit
quantised reconstruction, eval.metrics.summarise), and written where `evaluate` writes a model's numbers:
`<eval-dir>/{res}/{name}/summary.json` and `<per-image-dir>/{res}_{name}.csv`, so `table` reads them alike.

    lapcvae references --res 64 --train data/prepared/64/train.npy --test data/prepared/64/test.npy \\
        --coarsest results/models/64/lapcvae/level3.pt --eval-dir results/eval --per-image-dir results/metrics/per_image
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core import registry
from eval.metrics import evaluate_model, summarise
from models.checkpoint import load_model

logger = logging.getLogger(__name__)

REFERENCES = registry.RECONSTRUCTION_REFERENCES  # the reference rows this module computes
CHUNK = 1024  # images (or pixel columns) converted to float64 at a time


def _flat(images: np.ndarray) -> np.ndarray:
    """(N, 3, H, W) uint8 (possibly a memmap) -> (N, D) view, D = 3 H W."""
    return images.reshape(len(images), -1)


def mean_face(train_images: np.ndarray, chunk: int = CHUNK) -> torch.Tensor:
    """(3, H, W) float64 mean of the uint8 training images, in [0, 1], accumulated chunk by chunk."""
    if len(train_images) == 0:
        raise ValueError("the training split is empty: prepare the data first (lapcvae prepare)")
    total = np.zeros(train_images.shape[1:], np.float64)
    for start in range(0, len(train_images), chunk):
        total += np.asarray(train_images[start:start + chunk], np.float64).sum(axis=0)
    return torch.from_numpy(total / len(train_images) / 255.0)


def fit_pca(train_images: np.ndarray, components: int, chunk: int = CHUNK
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PCA of the training images (pixels in [0, 1]): (mean (D,), orthonormal basis (k, D), the covariance's
    whole spectrum (min(N, D),), descending: the variance along every principal direction), float64.

    Exact, through the smaller of the two Gram matrices of the centred data X (N, D): X X^T (N, N) when there
    are fewer images than pixels (thousands of 64 or 128 px faces), else X^T X (D, D); either is accumulated a
    chunk at a time, so the float copy of the images never sits in memory. k = min(components, N - 1, D).
    """
    flat = _flat(train_images)  # (N, D) uint8
    count, dims = flat.shape
    if count < 2:
        raise ValueError(f"PCA needs at least 2 training images, got {count}")
    k = min(components, count - 1, dims)
    mean = mean_face(train_images, chunk).reshape(-1)  # (D,)
    if count <= dims:
        gram = torch.zeros(count, count, dtype=torch.float64)
        for start in range(0, dims, chunk * 4):  # pixel columns
            columns = torch.from_numpy(np.asarray(flat[:, start:start + chunk * 4], np.float64)) / 255.0
            columns -= mean[start:start + chunk * 4]  # (N, c), centred
            gram += columns @ columns.T
        values, vectors = torch.linalg.eigh(gram)  # ascending
        spectrum = values.flip(0).clamp_min(0.0) / count  # the covariance X^T X / N shares X X^T's eigenvalues
        values, vectors = values.flip(0)[:k], vectors.flip(1)[:, :k]  # (k,), (N, k)
        scale = values.clamp_min(1e-12).rsqrt()  # right singular vectors: X^T u / s
        basis = torch.empty(k, dims, dtype=torch.float64)
        for start in range(0, dims, chunk * 4):
            columns = torch.from_numpy(np.asarray(flat[:, start:start + chunk * 4], np.float64)) / 255.0
            columns -= mean[start:start + chunk * 4]
            basis[:, start:start + chunk * 4] = (columns.T @ vectors * scale).T
    else:
        covariance = torch.zeros(dims, dims, dtype=torch.float64)
        for start in range(0, count, chunk):
            rows = torch.from_numpy(np.asarray(flat[start:start + chunk], np.float64)) / 255.0 - mean  # (c, D)
            covariance += rows.T @ rows
        values, vectors = torch.linalg.eigh(covariance)
        spectrum = values.flip(0).clamp_min(0.0) / count
        basis = vectors.flip(1)[:, :k].T.contiguous()  # (k, D)
    return mean, basis, spectrum


class MeanFace(nn.Module):
    """Reconstructs every image as the mean training face."""

    kind = "reference"

    def __init__(self, face: torch.Tensor):
        super().__init__()
        self.register_buffer("face", face.float())  # (3, H, W)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.face.to(x.device).expand_as(x).clone()


class PCACode(nn.Module):
    """Projects images onto the PCA basis and back: x_hat = m + B^T B (x - m)."""

    kind = "reference"

    def __init__(self, mean: torch.Tensor, basis: torch.Tensor, spectrum: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("mean", mean)  # (D,) float64
        self.register_buffer("basis", basis)  # (k, D) float64
        self.spectrum = spectrum  # (min(N, D),) the training covariance's eigenvalues (eval.gaussian_bound)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.double().reshape(len(x), -1) - self.mean  # (B, D)
        projected = (flat @ self.basis.T) @ self.basis + self.mean
        return projected.reshape(x.shape).float()


def build_references(params: dict[str, Any], resolution: int, train_images: np.ndarray,
                     coarsest: str | Path | None, names: Collection[str] = REFERENCES) -> dict[str, nn.Module]:
    """{name: an object with reconstruct(x)} for each of `names` the inputs allow (coarsest needs a checkpoint)."""
    unknown = set(names) - set(REFERENCES)
    if unknown:
        raise ValueError(f"unknown references {sorted(unknown)}; known: {', '.join(REFERENCES)}")
    latent = sum(params["lapcvae"][str(resolution)]["latent_dims"])
    references: dict[str, nn.Module] = {}
    if "mean_face" in names:
        references["mean_face"] = MeanFace(mean_face(train_images))
    if "pca" in names:
        started = time.perf_counter()
        mean, basis, spectrum = fit_pca(train_images, latent)
        logger.info("PCA with %d components on %d training images in %.1f s", len(basis), len(train_images),
                    time.perf_counter() - started)
        references["pca"] = PCACode(mean, basis, spectrum)
    if coarsest is not None and "lapcvae_coarsest" in names:
        model = load_model(coarsest, torch.device("cpu"))
        if getattr(model, "first_level", None) != getattr(model, "coarsest", -1):
            raise ValueError(f"--coarsest {coarsest} holds more than LapCVAE's coarsest level; pass level{{K}}.pt")
        references["lapcvae_coarsest"] = model
    return references


def evaluate_reference(reference: nn.Module, test_images: np.ndarray, batch_size: int, bootstrap_samples: int,
                       seed: int) -> tuple[Any, dict[str, Any]]:
    """(per-image metrics DataFrame, summary dict) of one reference on the test split, as `evaluate` scores."""
    reconstructions = np.empty(test_images.shape, np.uint8)  # (N, 3, H, W)
    per_image = evaluate_model(reference, test_images, batch_size, torch.device("cpu"), reconstructions)
    return per_image, summarise(per_image, bootstrap_samples, seed)
