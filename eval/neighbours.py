"""Nearest training images of model samples (Figure 6, section 5.1.3): does a model memorise its training set?

Distances are the paper's pixel-space mean squared error, on the [0, 255] scale (MSE in 255^2 units).
The search is exact and streams the memory-mapped uint8 training array chunk by chunk: only one chunk is ever
converted to float64, so full CelebA at 128 px (162k images, 8 GB as uint8) never sits in memory as floats.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core.progress import progress_bar
from eval.metrics import MODELS
from eval.plotting import DISPLAY_NAMES, image_grid, save_figure

logger = logging.getLogger(__name__)

_LAPCVAE_FIRST = ("lapcvae", "lapcvae_retrained_m", "lapcvae_nom")
FIGURE_ORDER = (*_LAPCVAE_FIRST, *(name for name in MODELS if name not in _LAPCVAE_FIRST))  # LapCVAE's rows first
TEST_REFERENCE = "test_reference"
ROW_LABELS = {**DISPLAY_NAMES, TEST_REFERENCE: "Test image"}


def _flat_float64(images: np.ndarray) -> np.ndarray:
    """(n, 3, H, W) uint8 -> (n, D) float64; integer values, so every dot product below is exact."""
    return np.asarray(images).reshape(len(images), -1).astype(np.float64)


def nearest_neighbours(
    queries: np.ndarray, train: np.ndarray, k: int, chunk: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest training images of each query by pixel MSE on the [0, 255] scale.

    queries: (Q, 3, H, W) uint8; train: (N, 3, H, W) uint8, typically np.load(..., mmap_mode="r").
    Returns (distances (Q, k) float64, MSE in 255^2 units, ascending; indices (Q, k) int64 into train).
    ||a - b||^2 = ||a||^2 - 2 a.b + ||b||^2 in float64: with uint8 pixels every term is an integer far below
    2^53, so the sums are exact and equal a brute-force search, ties included; ties go to the lower index.
    """
    queries = np.asarray(queries)
    if queries.dtype != np.uint8 or train.dtype != np.uint8:
        raise ValueError(f"queries ({queries.dtype}) and train ({train.dtype}) must be uint8 images; "
                         "pass the arrays as saved, not converted to float")
    if queries.ndim != 4 or train.ndim != 4 or queries.shape[1:] != train.shape[1:]:
        raise ValueError(f"queries {queries.shape} and train {train.shape} must be (n, 3, H, W) of the same "
                         "image size: compare samples and training images of one resolution")
    if not 1 <= k <= len(train):
        raise ValueError(f"k = {k} must be between 1 and the number of training images ({len(train)})")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}; set eval.neighbours.chunk")
    pixels = int(np.prod(train.shape[1:]))
    n_train = len(train)
    # Each candidate is one int64 key, squared distance * N + index: ordering keys orders by distance and then
    # by index, so ties go to the lower index with a plain partition (a stable sort of every chunk is far slower).
    if 255**2 * pixels * n_train >= 2**62:
        raise ValueError(f"{n_train} training images of {pixels} values overflow the int64 keys; split train")
    query_vectors = _flat_float64(queries)  # (Q, D)
    query_norms = np.einsum("ij,ij->i", query_vectors, query_vectors)[:, None]  # (Q, 1)
    best_keys = np.empty((len(queries), 0), dtype=np.int64)  # (Q, <=k)
    for start in progress_bar(range(0, n_train, chunk), desc="neighbours", unit="chunk", leave=False):
        train_vectors = _flat_float64(train[start:start + chunk])  # (C, D), the only float copy
        products = (torch.from_numpy(query_vectors) @ torch.from_numpy(train_vectors).T).numpy()  # (Q, C)
        squared = query_norms - 2.0 * products + np.einsum("ij,ij->i", train_vectors, train_vectors)  # exact
        keys = np.rint(squared).astype(np.int64) * n_train + np.arange(start, start + len(train_vectors))
        candidates = np.concatenate([best_keys, keys], axis=1)
        if candidates.shape[1] > k:
            candidates = np.partition(candidates, k - 1, axis=1)[:, :k]
        best_keys = np.sort(candidates, axis=1)
    return (best_keys // n_train) / pixels, best_keys % n_train


def neighbour_table(distances: np.ndarray, indices: np.ndarray) -> pd.DataFrame:
    """Long format: one row per (sample, rank) with the training index and its MSE; rank 1 is the nearest."""
    n_queries, k = distances.shape
    return pd.DataFrame({
        "sample": np.repeat(np.arange(n_queries), k),
        "rank": np.tile(np.arange(1, k + 1), n_queries),
        "train_index": indices.reshape(-1),
        "mse": distances.reshape(-1),
    })


def summary_table(nearest: dict[str, np.ndarray]) -> pd.DataFrame:
    """Nearest-neighbour MSE of each model's samples against that of held-out test images.

    Test images are real faces the model never saw; samples much closer to the training set than test images
    are (ratio well below 1, many samples under the closest test image) would suggest memorisation.
    """
    reference = nearest[TEST_REFERENCE]
    rows = []
    for name, values in nearest.items():
        rows.append({
            "model": name,
            "n": len(values),
            "nearest_mse_median": float(np.median(values)),
            "nearest_mse_mean": float(values.mean()),
            "nearest_mse_min": float(values.min()),
            "median_ratio_to_test_reference": float(np.median(values) / np.median(reference)),
            "below_test_reference_min": int((values < reference.min()).sum()),
        })
    return pd.DataFrame(rows)


def neighbours_figure(
    queries: dict[str, np.ndarray], results: dict[str, tuple[np.ndarray, np.ndarray]], train: np.ndarray,
    rows_per_model: int, resolution: int, path: str | Path,
) -> None:
    """Figure 6: each row a sample, then its 1st..kth nearest training images, each labelled with its MSE."""
    rows, labels, distances = [], [], []
    for name in [*FIGURE_ORDER, TEST_REFERENCE]:
        if name not in results:
            continue
        mse, indices = results[name]
        for sample in range(min(rows_per_model, len(indices))):
            rows.append([queries[name][sample], *(train[index] for index in indices[sample])])
            labels.append(f"{ROW_LABELS[name]} #{sample}")
            distances.append(mse[sample])
    k = len(distances[0])
    figure = image_grid(
        rows, row_labels=labels, col_labels=["Sample", *(f"NN {rank}" for rank in range(1, k + 1))],
        title=f"Figure 6: nearest training images of samples, {resolution}x{resolution}",
        caption=(f"Each row: a sample (or, in the last rows, a held-out test image as the reference) and its {k} "
                 "nearest training images by pixel MSE (0-255 scale, printed on each neighbour). Samples as far "
                 "from the training set as unseen test images are not memorised."),
    )
    axes = figure.axes[0]
    height, width = train.shape[2:]
    padding = 2  # image_grid's default spacing between cells
    for row, row_distances in enumerate(distances):
        for rank, mse in enumerate(row_distances, start=1):
            axes.text(rank * (width + padding) + width / 2, row * (height + padding) + height - 2, f"MSE {mse:.0f}",
                      ha="center", va="bottom", fontsize=7, color="black",
                      bbox={"facecolor": "white", "alpha": 0.8, "pad": 1, "linewidth": 0})
    save_figure(figure, path)
