"""The linear-Gaussian reference for rate: the least distortion any code can reach at a given rate on a Gaussian
source with the training split's covariance (reverse water-filling on its PCA spectrum; Cover and Thomas,
Elements of Information Theory, Theorem 10.3.3).

A Gaussian has the largest rate-distortion function of all sources of one covariance, so the faces themselves can
be coded at least this well: a VAE whose RMSE at its rate (KL in nats per image) lies above this curve spends its
rate worse than a linear code of the training split's principal components.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

SPECTRUM_FILE = "spectrum.npy"  # beside the PCA reference's summary.json: results/eval/{res}/pca/spectrum.npy
PIXEL_SCALE = 255.0  # Table 1's RMSE is on the 8-bit scale; spectra are stored for pixels in [0, 1]
BISECTION_STEPS = 200


def water_level(variances: np.ndarray, rate_nats: float) -> float:
    """The water level theta of reverse water-filling at `rate_nats`: sum over components with variance above
    theta of 1/2 ln(variance / theta) equals the rate. Bisection in log theta (the rate falls monotonically)."""
    positive = np.asarray(variances, np.float64)
    positive = positive[positive > 0]
    if positive.size == 0:
        raise ValueError("the covariance spectrum has no positive variance: is the training split constant?")
    if rate_nats <= 0:
        return float(positive.max())
    low, high = np.log(positive.min()) - 2.0 * rate_nats / positive.size - 1.0, np.log(positive.max())
    for _ in range(BISECTION_STEPS):
        middle = 0.5 * (low + high)
        rate = 0.5 * np.log(positive / np.exp(middle)).clip(min=0).sum()
        low, high = (middle, high) if rate > rate_nats else (low, middle)
    return float(np.exp(0.5 * (low + high)))


def gaussian_rmse_at_rate(variances: np.ndarray, dims: int, rate_nats: float) -> float:
    """RMSE on the 0-255 scale of the best code at `rate_nats` per image for a Gaussian with these component
    variances (pixels in [0, 1]) over `dims` pixel values; components beyond the spectrum have zero variance."""
    theta = water_level(variances, rate_nats)
    distortion = np.minimum(np.asarray(variances, np.float64), theta).clip(min=0).sum()  # per image, summed
    return float(PIXEL_SCALE * np.sqrt(distortion / dims))


def with_gaussian_bound(table: pd.DataFrame, eval_dir: str | Path, resolutions: Sequence[int]) -> pd.DataFrame:
    """Table 1 with `gaussian_rmse_at_rate`: for every row with a rate, the RMSE of the best code of a Gaussian
    with the training split's covariance at that rate (the PCA reference's spectrum under `eval_dir`); NaN where
    a row has no rate or the spectrum was not written."""
    table = table.copy()
    table["gaussian_rmse_at_rate"] = np.nan
    for resolution in resolutions:
        path = Path(eval_dir) / str(resolution) / "pca" / SPECTRUM_FILE
        if not path.is_file():
            continue
        variances = np.load(path)
        dims = 3 * int(resolution) ** 2
        rows = (table["resolution"] == int(resolution)) & table["rate_mean"].notna()
        table.loc[rows, "gaussian_rmse_at_rate"] = [gaussian_rmse_at_rate(variances, dims, rate)
                                                    for rate in table.loc[rows, "rate_mean"]]
    return table
