"""Which value of each metric is better: the one place the claims' verdicts (eval.table), the report's reading of
the results and its best-value marks (eval.report, eval.report_blocks) take a direction from.

Keys are the column names of Table 1 (`<metric>_mean`, `contrast_median`), of the per-image CSVs and of the
budget-curve and ablation tables. Costs (time, FLOPs, parameters) and trade-offs (rate) have no direction here:
the report does not rank them.

RECONSTRUCTION_METRICS is the table of per-image reconstruction metrics added to the built-in ones of
eval/metrics.py (RMSE, PSNR, SSIM, per-band R^2, contrast): a row there is computed by `evaluate` (and for the
reference rows) per test image, summarised into summary.json, carried into Table 1 and shown and ranked
by the report (docs/extending.md, "Adding a metric").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # only annotates: training jobs import this module and make no table
    import pandas as pd

LOWER, HIGHER, NEAR_ONE = "lower", "higher", "closer to 1"


@dataclass(frozen=True)
class ReconstructionMetric:
    """One per-image reconstruction metric of the table below."""

    name: str  # its per-image column (per-image CSVs, the ablations' tables)
    label: str  # the report's Table 1 header
    better: str  # LOWER, HIGHER or NEAR_ONE
    # "module:function", function(reference, reconstruction) -> (N,) tensor; both (N, 3, H, W) float in [0, 1],
    # the reconstruction quantised to 8 bits as its saved image holds it
    compute: str
    summary: str = "mean"  # over the test images: "mean" or "median"
    digits: int = 3  # the report's decimals

    @property
    def summary_column(self) -> str:
        """Its summary.json key and Table 1 column, e.g. `mae_mean`."""
        return f"{self.name}_{self.summary}"


RECONSTRUCTION_METRICS: tuple[ReconstructionMetric, ...] = (
    # Add a metric here (docs/extending.md, "Adding a metric"), e.g.
    # ReconstructionMetric("mae", "MAE", LOWER, "eval.metrics:mae_per_image"),
)

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
    # samples in which a face detector finds a face, over the test images' rate (eval/face_check.py): 1 is as
    # often as real faces; a fitted prior's smooth, frontal faces can pass real ones, which is no fault
    "face_ratio": HIGHER, "fitted_face_ratio": HIGHER,
    **{key: metric.better for metric in RECONSTRUCTION_METRICS for key in (metric.name, metric.summary_column)},
}

SYMBOLS = {LOWER: "↓", HIGHER: "↑", NEAR_ONE: "→1"}  # shown beside a ranked column's header

Values = TypeVar("Values", float, "pd.Series")


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
