"""A toy figure for tests/test_adding_a_figure.py: each model's mean sample, one panel per model."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from eval.figures import FigureInputs, GridRows
from eval.plotting import DISPLAY_NAMES, image_grid


def mean_sample_rows(inputs: FigureInputs) -> tuple[GridRows, list[str], list[str]]:
    """One row: the pixel-wise mean of each model's samples (uint8, rounded)."""
    means = {model: np.rint(np.asarray(images, dtype=np.float64).mean(axis=0)).astype(np.uint8)
             for model, images in inputs.sample_sets.items()}
    return [list(means.values())], ["mean sample"], [DISPLAY_NAMES.get(model, model) for model in means]


def mean_samples_figure(inputs: FigureInputs) -> Figure:
    rows, row_labels, col_labels = mean_sample_rows(inputs)
    return image_grid(rows, row_labels, col_labels, title=f"Mean samples ({inputs.size})",
                      caption="The pixel-wise mean of each model's samples.")
