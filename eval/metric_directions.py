"""Which value of each metric is better: the one place the claims' verdicts (eval.table), the report's reading of
the results and its best-value marks (eval.report, eval.report_blocks) take a direction from.

Keys are the column names of Table 1 (`<metric>_mean`, `contrast_median`), of the per-image CSVs and of the
budget-curve and ablation tables. Costs (time, FLOPs, parameters) and trade-offs (rate) have no direction here:
the report does not rank them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import pandas as pd

LOWER, HIGHER, NEAR_ONE = "lower", "higher", "closer to 1"

BETTER: dict[str, str] = {
    "rmse_mean": LOWER, "rmse": LOWER, "val_rmse": LOWER, "rmse_over_pca": LOWER,
    "psnr_mean": HIGHER, "psnr": HIGHER,
    "ssim_mean": HIGHER, "ssim": HIGHER,
    # R^2 of a Laplacian band of the reconstruction against the original's: 1 exact, <= 0 no aligned detail
    "r2_h0_mean": HIGHER, "r2_h0": HIGHER, "r2_h1_mean": HIGHER, "r2_h1": HIGHER,
    # the reconstruction's pixel std over the original's: 1 keeps the contrast, near 0 is grey, above 1 too harsh
    "contrast_median": NEAR_ONE, "contrast": NEAR_ONE,
    "fid_samples": LOWER, "fid_reconstructions": LOWER, "kid_samples_mean": LOWER, "kid_reconstructions_mean": LOWER,
    # samples against the test split in the training split's embedding (eval/sample_quality.py), both priors
    "sample_precision": HIGHER, "sample_recall": HIGHER, "fd_embedding": LOWER,
    "nelbo_mean": LOWER, "nelbo_bits_per_dim": LOWER,  # the test -ELBO on one likelihood (eval/elbo.py)
    "fitted_sample_precision": HIGHER, "fitted_sample_recall": HIGHER, "fitted_fd_embedding": LOWER,
}

SYMBOLS = {LOWER: "↓", HIGHER: "↑", NEAR_ONE: "→1"}  # shown beside a ranked column's header

Values = TypeVar("Values", float, pd.Series)


def badness(values: Values, direction: str) -> Values:
    """`values` turned into "lower is better", so that every metric ranks the same way."""
    if direction == LOWER:
        return values
    if direction == HIGHER:
        return -values
    if direction == NEAR_ONE:
        return abs(values - 1.0)
    raise ValueError(f"unknown direction {direction!r}: use one of {LOWER!r}, {HIGHER!r}, {NEAR_ONE!r}")


def best_positions(values: Sequence[float | None], direction: str) -> set[int]:
    """Positions of the best of `values` (every tied one; None is missing); empty with fewer than two values."""
    present = {index: badness(value, direction) for index, value in enumerate(values) if value is not None}
    if len(present) < 2:
        return set()
    best = min(present.values())
    return {index for index, value in present.items() if value == best}
