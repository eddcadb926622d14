"""Figures 4, 5, 7, 8 of the paper and the training curves, for one resolution (command `lapcvae figures`).

- Figure 4: test images and every model's reconstruction of them (rows: models, columns: images).
- Figure 5: eval.figure_samples samples of every model (all drawn with the same seeds by `evaluate`);
  `prior_sample_rows` puts each model's samples from its fitted prior (models/fitted_prior.py) under those from N(0, I).
- Figure 7: LapCVAE partial sampling: the coarsest levels of one test image fixed, the finer ones sampled.
- Figure 8: LapCVAE samples before and after retraining M (section 5.1.3), same seeds.
- Training curves: reconstruction and KL terms over steps from each checkpoint's `.log.csv`; with --curves-dir
  also one CSV per logged term (`write_curve_tables`), the line plots of `dvc plots show` and `dvc plots diff`.
Each `*_rows` function returns the image grid as plain arrays, so tests can check pixels directly; each
`*_figure` / `*_plot` function draws one figure of core/figures.py's `figures` group from `FigureInputs`, and
`write_figures` draws every figure of that table.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from core import figures as figure_table
from core import registry
from core.atomic import atomic_directory
from core.progress import progress_bar
from data.arrays import load_image_array
from eval.metrics import expected_checkpoint
from eval.plotting import (
    DEFAULT_DPI,
    DISPLAY_NAMES,
    add_caption,
    caption_height,
    image_grid,
    save_figure,
)
from models.checkpoint import load_model

logger = logging.getLogger(__name__)

GridRows = list[list[np.ndarray | None]]
NON_LOSS_COLUMNS = ("step", "epoch")
FILE_NAME_PART = re.compile(r"[A-Za-z0-9_]+")  # a log term, as the name of its curve file
# Log columns plotted as curves, by the start of their name: reconstruction terms ("recon", "reconstruction";
# VAE/GAN's reconstruction is its feature-space Dis_l error) drawn solid, then KL terms ("kl", "kl_level2")
# dashed, as the training loop logs them.
RECONSTRUCTION_TERMS = ("rec", "dis_l")
KL_TERMS = ("kl",)
LEVEL_IN_NAME = re.compile(r"level\s*(\d+)")
# Curves are smoothed with a running mean over this fraction of the steps, so trends read through the noise.
SMOOTHING_FRACTION = 0.02


class PartialSampler(Protocol):
    levels: int

    def partial_sample(
        self, x: torch.Tensor, fixed_levels: int, n: int, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


def load_function(import_path: str) -> Callable[[FigureInputs], Figure]:
    """A drawing function named "module:function" (core/figures.py's `draw`)."""
    return registry.load_class(import_path)  # any "module:attribute"


def load_images(path: str | Path) -> np.ndarray:
    """A uint8 (N, 3, H, W) image array from .npy, memory-mapped (only the rows used are read)."""
    return load_image_array(path, made_by="the step that writes it (see docs/ARCHITECTURE.md)")


def first_images(images: np.ndarray, n: int, source: str) -> np.ndarray:
    """The first n images as an in-memory (n, 3, H, W) uint8 array; ValueError if there are fewer."""
    if len(images) < n:
        raise ValueError(f"{source} holds {len(images)} images but the figure shows {n}; "
                         "lower eval.figure_images (eval.figure_samples for Figure 5) or evaluate more images")
    return np.array(images[:n])


def reconstruction_rows(
    originals: np.ndarray, reconstructions: Mapping[str, np.ndarray]
) -> tuple[GridRows, list[str], list[str]]:
    """Figure 4: first row the originals (n, 3, H, W), then one row per model's reconstructions of them."""
    rows: GridRows = [list(originals)]
    for model, images in reconstructions.items():
        if images.shape != originals.shape:
            raise ValueError(f"{model}'s reconstructions have shape {images.shape}, the originals "
                             f"{originals.shape}; re-evaluate {model} on the same test split")
        rows.append(list(images))
    row_labels = ["Original", *(DISPLAY_NAMES.get(model, model) for model in reconstructions)]
    col_labels = [f"test {i}" for i in range(len(originals))]
    return rows, row_labels, col_labels


# Figure 5's row names for the two priors a model's samples come from (models/fitted_prior.py).
PRIOR_NAMES = {"standard": "N(0, I) prior", "fitted": "fitted prior"}


def sample_rows(samples: Mapping[str, np.ndarray], per_row: int | None = None,
                fitted: Mapping[str, np.ndarray] | None = None) -> tuple[GridRows, list[str], list[str]]:
    """Figure 5: each model's samples (n, 3, H, W) in rows of `per_row` (default: one row), labelled once; where
    `fitted` has the model, its fitted prior's samples (same seeds) follow in as many rows, each set named by its
    prior so that the paper's N(0, I) model stays visible beside the fitted one."""
    fitted = fitted or {}
    unknown = sorted(set(fitted) - set(samples))
    if unknown:
        raise ValueError(f"fitted-prior samples of {unknown} have no N(0, I) samples beside them; evaluate "
                         "those models (samples.npy) or drop their samples_fitted.npy")
    rows: GridRows = []
    row_labels: list[str] = []

    def add(images: np.ndarray, label: str) -> None:
        width = per_row or len(images)
        for start in range(0, len(images), width):
            rows.append(list(images[start:start + width]))
            row_labels.append(label if start == 0 else "")

    for model, images in samples.items():
        name = DISPLAY_NAMES.get(model, model)
        if model not in fitted:
            add(images, name)
            continue
        if fitted[model].shape != images.shape:
            raise ValueError(f"{model}'s fitted-prior samples have shape {fitted[model].shape}, its N(0, I) "
                             f"samples {images.shape}; re-evaluate {model} so that both hold as many")
        add(images, f"{name}, {PRIOR_NAMES['standard']}")
        add(fitted[model], f"{name}, {PRIOR_NAMES['fitted']}")
    col_labels = [f"sample {i + 1}" for i in range(max((len(row) for row in rows), default=0))]
    return rows, row_labels, col_labels


def retrained_m_rows(before: np.ndarray, after: np.ndarray) -> tuple[GridRows, list[str], list[str]]:
    """Figure 8: LapCVAE samples before (first row) and after (second row) retraining M, same seeds."""
    if before.shape != after.shape:
        raise ValueError(f"samples before ({before.shape}) and after ({after.shape}) retraining M differ in "
                         "shape; evaluate both with the same params")
    rows: GridRows = [list(before), list(after)]
    col_labels = [f"sample {i + 1}" for i in range(len(before))]
    return rows, ["Before retraining M", "After retraining M"], col_labels


def partial_sample_rows(
    model: PartialSampler, image: np.ndarray, samples: int, seed: int
) -> tuple[GridRows, list[str], list[str]]:
    """Figure 7: one row per number of fixed coarsest levels f = 1 .. K (K + 1 = model.levels).

    Each row is the "Base" (what the f fixed levels of `image` alone produce) then `samples` images with the
    finer levels sampled. f = K + 1 (every level fixed) is left out: it has nothing left to sample.
    image: uint8 (3, H, W).
    """
    coarsest = model.levels - 1  # K
    if coarsest < 1:
        raise ValueError(f"partial sampling needs a LapCVAE with at least 2 levels, got {model.levels}")
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).unsqueeze(0)  # (1, 3, H, W)
    rows: GridRows = []
    row_labels = []
    with torch.no_grad():
        for fixed in progress_bar(range(1, coarsest + 1), desc="partial sampling", unit="row"):
            generated, base = model.partial_sample(x, fixed, samples, seed)  # (n, 3, H, W), (1, 3, H, W)
            rows.append([base[0].cpu().numpy(), *generated.cpu().numpy()])
            first_fixed = coarsest - fixed + 1
            fixed_range = f"z{coarsest}" if fixed == 1 else f"z{first_fixed}..z{coarsest}"
            row_labels.append(f"{fixed_range} fixed")
    col_labels = ["Base", *(f"sample {i + 1}" for i in range(samples))]
    return rows, row_labels, col_labels


def training_logs(models_dir: Path, res: int, models: Sequence[str]) -> dict[str, dict[str, Path]]:
    """Each model's training logs {model: {line label: path}}, one line per LapCVAE level; missing skipped."""
    folder = models_dir / str(res)
    candidates: dict[str, dict[str, Path]] = {
        model: {"": Path(registry.training_log(registry.checkpoint(str(models_dir.parent), res, model)))}
        for model in registry.names() if registry.spec(model).trained_by != registry.TRAIN_PER_LEVEL
    }
    for model in registry.trained_by(registry.TRAIN_PER_LEVEL):
        level_logs = sorted((folder / model).glob("level*.log.csv"),
                            key=lambda path: int(path.name.removeprefix("level").removesuffix(".log.csv")))
        candidates[model] = {path.name.removesuffix(".log.csv").replace("level", "level "): path
                             for path in level_logs}
    found: dict[str, dict[str, Path]] = {}
    for model in models:
        logs = {label: path for label, path in candidates.get(model, {}).items() if path.is_file()}
        if logs:
            found[model] = logs
        else:
            logger.warning("no training log for %s under %s; its curve panel is left out", model, folder)
    return found


def write_curve_tables(logs: Mapping[str, Mapping[str, Path]], out_dir: Path) -> list[Path]:
    """Each training log as one CSV per logged term, `<out_dir>/<model>/<job>/<term>.csv` (step, epoch, the term),
    replacing the folder whole. `dvc plots show` draws each as a line over steps (its last column) and `dvc plots
    diff` overlays two runs' lines; the logs themselves sit beside the checkpoints, which DVC cannot read as plots."""
    written: list[Path] = []
    with atomic_directory(out_dir) as temporary:
        for model, lines in logs.items():
            for path in lines.values():
                log = read_log(path)
                job = path.name.removesuffix(".log.csv")
                axes = [column for column in NON_LOSS_COLUMNS if column in log.columns]
                for term in (column for column in log.columns if column not in NON_LOSS_COLUMNS):
                    if not FILE_NAME_PART.fullmatch(term):
                        raise ValueError(f"training log {path} has a column {term!r} that cannot name a file; "
                                         "log terms are letters, digits and _ (training/loop.py)")
                    target = temporary / model / job / f"{term}.csv"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    log[[*axes, term]].to_csv(target, index=False)
                    written.append(out_dir / model / job / f"{term}.csv")
    return written


def read_log(path: Path) -> pd.DataFrame:
    """One training log: step, epoch, one column per logged term."""
    try:
        log = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ValueError(f"training log {path} is not a readable CSV ({error}); retrain the model") from error
    if "step" not in log.columns:
        raise ValueError(f"training log {path} has no 'step' column (columns: {list(log.columns)}); "
                         "it must come from training/loop.py")
    return log


def term_style(column: str) -> str | None:
    """Line style of a log column: solid for reconstruction, dashed for KL, None for anything else."""
    name = column.lower()
    if name.startswith(RECONSTRUCTION_TERMS):
        return "-"
    return "--" if name.startswith(KL_TERMS) else None


def curve_columns(log: pd.DataFrame) -> list[str]:
    """The reconstruction and KL columns of a log; every loss column if none is named that way."""
    losses = [column for column in log.columns if column not in NON_LOSS_COLUMNS]
    terms = [column for column in losses if term_style(column)]
    return terms or losses


def level_colour(*names: str) -> str:
    """One colour per pyramid level, read from "level 2" / "kl_level2"; C0 when no level is named."""
    for name in names:
        match = LEVEL_IN_NAME.search(name)
        if match:
            return f"C{int(match.group(1)) % 10}"
    return "C0"


def smooth(values: pd.Series) -> pd.Series:
    window = max(1, int(len(values) * SMOOTHING_FRACTION))
    return values.rolling(window, min_periods=1).mean()


def training_curves_figure(logs: Mapping[str, Mapping[str, pd.DataFrame]], res: int) -> Figure:
    """One panel per model; one line per (level, term): colour = level, line style = term."""
    if not logs:
        raise FileNotFoundError("no training logs found: train the models first (their .log.csv files)")
    columns = min(3, len(logs))
    rows = math.ceil(len(logs) / columns)
    caption = ("Training losses per step (running mean over 2% of the steps): reconstruction terms solid (VAE/GAN: "
               "its feature-space Dis_l error), KL terms dashed; each LapCVAE level its own colour. The y axis is "
               "logarithmic where a panel's values are positive and span more than a decade.")
    width = 4.6 * columns
    bottom = caption_height(caption, width)
    fig = Figure(figsize=(width, 3.4 * rows + bottom + 0.5), dpi=DEFAULT_DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(bottom=(bottom + 0.55) / fig.get_figheight(), top=1 - 0.75 / fig.get_figheight(),
                        hspace=0.45, wspace=0.3)
    for index, (model, lines) in enumerate(logs.items()):
        axes = fig.add_subplot(rows, columns, index + 1)
        positive, values_seen = True, []
        for label, log in lines.items():
            for column in curve_columns(log):
                points = log[["step", column]].dropna()
                curve = smooth(points[column])
                axes.plot(points["step"], curve, color=level_colour(label, column),
                          linestyle=term_style(column) or ":", linewidth=1.2, label=f"{label} {column}".strip())
                positive &= bool((curve > 0).all())
                values_seen.extend(curve.tolist())
        if values_seen and positive and max(values_seen) > 10 * min(values_seen):
            axes.set_yscale("log")
        axes.set_title(DISPLAY_NAMES.get(model, model), fontsize=10)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("step")
        axes.set_ylabel("loss")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=6, ncol=2 if len(axes.lines) > 4 else 1)
    fig.suptitle(f"Training curves ({res}x{res})", fontsize=11, fontweight="bold")
    add_caption(fig, caption, bottom)
    return fig


def grid_figure(rows: GridRows, labels: tuple[list[str], list[str]], title: str, caption: str) -> Figure:
    return image_grid(rows, labels[0], labels[1], title=title, caption=caption)


class FigureInputs:
    """What `lapcvae figures` draws from at one resolution, each file read once, when a figure first needs it
    (core/figures.py INPUTS: `test`, `samples`, `reconstructions`, `checkpoint`, `training_logs`)."""

    def __init__(self, params: Mapping[str, Any], res: int, eval_dir: Path, models_dir: Path, test: Path,
                 models: Sequence[str]) -> None:
        self.params, self.res, self.eval_dir, self.models_dir, self.test = params, res, eval_dir, models_dir, test
        self.models = list(models)
        self.n = params["eval"]["figure_images"]
        self.seed = params["seed"]
        self.size = f"{res}x{res}"
        self.results = {model: eval_dir / str(res) / model for model in self.models}

    def check(self, inputs: Sequence[str]) -> None:
        """Read the inputs given now, so that a missing or broken file stops the command before it draws."""
        readers = {"test": "originals", "samples": "sample_sets", "reconstructions": "reconstructions",
                   "training_logs": "log_paths"}
        for name in inputs:
            if name in readers:
                getattr(self, readers[name])

    @functools.cached_property
    def originals(self) -> np.ndarray:
        """The first eval.figure_images test images."""
        return first_images(load_images(self.test), self.n, str(self.test))

    @functools.cached_property
    def reconstructions(self) -> dict[str, np.ndarray]:
        # A model registered reconstructs=False (PixelVAE's greedy decoding) has no reconstruction to show, as in
        # Table 1.
        return {model: first_images(load_images(folder / "reconstructions.npy"), self.n, str(folder))
                for model, folder in self.results.items() if registry.spec(model).reconstructs}

    @functools.cached_property
    def sample_sets(self) -> dict[str, np.ndarray]:
        return {model: load_images(folder / "samples.npy") for model, folder in self.results.items()}

    @functools.cached_property
    def samples(self) -> dict[str, np.ndarray]:
        """Each model's first eval.figure_images samples."""
        return {model: first_images(images, self.n, str(self.results[model]))
                for model, images in self.sample_sets.items()}

    def checkpoint(self, model: str) -> Any:
        return load_model(registry.checkpoint(str(self.models_dir.parent), self.res, model),
                          **expected_checkpoint(model, self.res))

    @functools.cached_property
    def log_paths(self) -> dict[str, dict[str, Path]]:
        return training_logs(self.models_dir, self.res, self.models)


def reconstructions_figure(inputs: FigureInputs) -> Figure:
    rows, row_labels, col_labels = reconstruction_rows(inputs.originals, inputs.reconstructions)
    return grid_figure(rows, (row_labels, col_labels), f"Figure 4: reconstructions of test images ({inputs.size})",
                       f"Top row: the first {inputs.n} test images; each further row: one model's reconstructions "
                       "of them.")


def samples_figure(inputs: FigureInputs) -> Figure:
    shown = inputs.params["eval"]["figure_samples"]
    fitted = {model: first_images(load_images(folder / "samples_fitted.npy"), shown, str(folder))
              for model, folder in inputs.results.items() if (folder / "samples_fitted.npy").is_file()}
    rows, row_labels, col_labels = sample_rows(
        {model: first_images(images, shown, str(inputs.results[model]))
         for model, images in inputs.sample_sets.items()}, inputs.n, fitted)
    return grid_figure(rows, (row_labels, col_labels), f"Figure 5: samples ({inputs.size})",
                       f"The first {shown} samples of each model, {inputs.n} per row, with seeds from {inputs.seed} "
                       "(the same for every model): from N(0, I), the prior it was trained with (the paper's "
                       "model), then from a Gaussian fitted to its training posterior means (per level for "
                       "LapCVAE).")


def partial_figure(inputs: FigureInputs) -> Figure:
    count = inputs.params["eval"]["partial_sample"]["samples"]
    rows, row_labels, col_labels = partial_sample_rows(inputs.checkpoint("lapcvae"), inputs.originals[0], count,
                                                       inputs.seed)
    return grid_figure(rows, (row_labels, col_labels), f"Figure 7: LapCVAE partial sampling ({inputs.size})",
                       "The latents of the coarsest levels of test image 0 are kept (row label); the finer levels "
                       f"are sampled (seed {inputs.seed}). Base: the image the fixed levels alone produce, "
                       "upsampled. Fewer variations are expected as more levels are fixed.")


def retrained_m_figure(inputs: FigureInputs) -> Figure:
    rows, row_labels, col_labels = retrained_m_rows(inputs.samples["lapcvae"], inputs.samples["lapcvae_retrained_m"])
    return grid_figure(rows, (row_labels, col_labels), f"Figure 8: LapCVAE samples before and after retraining M "
                       f"({inputs.size})", f"Same latent seeds ({inputs.seed}) in both rows; only the M networks "
                       "differ (section 5.1.3).")


def training_curves_plot(inputs: FigureInputs) -> Figure:
    logs = {model: {label: read_log(log_path) for label, log_path in lines.items()}
            for model, lines in inputs.log_paths.items()}
    return training_curves_figure(logs, inputs.res)


def write_figures(params: Mapping[str, Any], res: int, eval_dir: Path, models_dir: Path, test: Path,
                  out_dir: Path, models: Sequence[str], curves_dir: Path | None = None) -> list[Path]:
    """Every figure of core/figures.py's `figures` group whose models run here (each drawn by its `draw`
    function, saved as its file in `out_dir`), and with `curves_dir` the training curves as tables
    (`write_curve_tables`, for `dvc plots`); returns the paths written."""
    inputs = FigureInputs(params, res, eval_dir, models_dir, test, models)
    drawn = [figure for figure in figure_table.specs(figure_table.FIGURES_COMMAND) if figure.shown_with(models)]
    inputs.check([name for figure in drawn for name in figure.inputs])
    written = []
    for figure in drawn:
        path = out_dir / figure_table.file_name(figure.name, res)
        logger.info("drawing %s (%s)", figure.name, figure.draw)
        save_figure(load_function(figure.draw)(inputs), path)
        written.append(path)
    if curves_dir is not None:
        written.extend(write_curve_tables(inputs.log_paths, curves_dir))
    return written
