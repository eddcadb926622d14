"""Reconstruction metrics of Table 1 (section 5.1) and the `evaluate` command that measures one trained model.

Every metric is computed on the reconstruction as a saved image would hold it: clamped to [0, 1] and quantised
to 8 bits (round(x * 255)), so the numbers match `reconstructions.npy` exactly. The paper's metric is the
per-image square root of the MSE with pixels in [0, 255]; PSNR, SSIM and a sharpness ratio are added.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from tqdm import tqdm

from data.arrays import load_image_array
from models.checkpoint import load_model
from models.pyramid import laplacian_pyramid
from models.training import resolve_device
from workflow.config import add_params_arguments, params_from_args

logger = logging.getLogger(__name__)

MODELS = ("vae", "vaegan", "lapcvae_nom", "lapcvae", "lapcvae_retrained_m")  # Table 1's row order
PER_IMAGE_COLUMNS = ("image", "rmse", "psnr", "ssim", "sharpness")
PIXEL_MAX = 255.0


def quantise(images: torch.Tensor) -> torch.Tensor:
    """Float images as an 8-bit file would store them: clamp to [0, 1], round(x * 255), back to [0, 1]."""
    return torch.round(images.clamp(0.0, 1.0) * PIXEL_MAX) / PIXEL_MAX


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) float in [0, 1] -> (N, 3, H, W) uint8 numpy array (clamped, rounded)."""
    return torch.round(images.clamp(0.0, 1.0) * PIXEL_MAX).to(torch.uint8).cpu().numpy()


def _check_pair(reference: torch.Tensor, reconstruction: torch.Tensor) -> None:
    if reference.shape != reconstruction.shape or reference.dim() != 4 or reference.shape[1] != 3:
        raise ValueError(
            f"reference {tuple(reference.shape)} and reconstruction {tuple(reconstruction.shape)} must both be "
            "(N, 3, H, W) of the same shape: pass the test images and the model's reconstructions of them"
        )
    if not torch.isfinite(reconstruction).all():
        raise ValueError("the reconstruction holds NaN or infinite values: the model diverged; retrain it")


def rmse_per_image(reference: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """(N,) square root of each image's MSE over pixels and channels, on the [0, 255] scale (Table 1's metric).

    reference, reconstruction: (N, 3, H, W) float in [0, 1]; the reconstruction is clamped and quantised to
    8 bits first. The reference comes from uint8 files, so round(reference * 255) is exact.
    """
    _check_pair(reference, reconstruction)
    reference_255 = torch.round(reference.double() * PIXEL_MAX)  # (N, 3, H, W), exact integers
    reconstruction_255 = torch.round(reconstruction.double().clamp(0.0, 1.0) * PIXEL_MAX)
    return (reconstruction_255 - reference_255).pow(2).mean(dim=(1, 2, 3)).sqrt().float()  # (N,)


def psnr_per_image(reference: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """(N,) PSNR in dB of the quantised reconstruction (torchmetrics; inf for a perfect reconstruction)."""
    _check_pair(reference, reconstruction)
    return peak_signal_noise_ratio(
        quantise(reconstruction), reference, data_range=1.0, reduction="none", dim=(1, 2, 3)
    )


def ssim_per_image(reference: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """(N,) SSIM (Gaussian 11x11 window, torchmetrics defaults) of the quantised reconstruction; images >= 11 px."""
    _check_pair(reference, reconstruction)
    return structural_similarity_index_measure(
        quantise(reconstruction), reference, data_range=1.0, reduction="none"
    )


def sharpness_ratio(reference: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """(N,) energy of the reconstruction's finest Laplacian band h_0 (Eq. 6) over the reference's.

    1.0: as much fine detail as the input; below 1: blurrier; NaN for a perfectly flat reference image.
    """
    _check_pair(reference, reconstruction)
    reference_detail = laplacian_pyramid(reference.double(), 2)[0]  # (N, 3, H, W), h_0
    reconstruction_detail = laplacian_pyramid(quantise(reconstruction.double()), 2)[0]
    reference_energy = reference_detail.pow(2).sum(dim=(1, 2, 3))  # (N,)
    reconstruction_energy = reconstruction_detail.pow(2).sum(dim=(1, 2, 3))
    ratio = reconstruction_energy / reference_energy
    return torch.where(reference_energy > 0, ratio, torch.full_like(ratio, math.nan)).float()


def bootstrap_mean_ci(
    values: np.ndarray, samples: int, seed: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (N,), from `samples` resamples with replacement."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"bootstrap needs a non-empty 1-D array of values, got shape {values.shape}")
    if samples < 1:
        raise ValueError(f"bootstrap samples must be >= 1, got {samples}; set eval.bootstrap_samples")
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    # Resample in blocks so that (block, N) indices stay ~32 MB even for the 40k-image CelebA test split.
    block = max(1, 4_000_000 // values.size)
    for start in range(0, samples, block):
        stop = min(samples, start + block)
        indices = rng.integers(0, values.size, size=(stop - start, values.size))
        means[start:stop] = values[indices].mean(axis=1)
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def count_flops(function: Callable[[torch.Tensor], Any], example: torch.Tensor) -> int:
    """FLOPs torch's FlopCounterMode counts (2 per multiply-add of matmuls and convolutions) of one call."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        function(example)
    return int(counter.get_total_flops())


def per_image_metrics(reference: torch.Tensor, reconstruction: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every per-image metric of one batch, each (N,) on the CPU."""
    return {
        "rmse": rmse_per_image(reference, reconstruction).cpu(),
        "psnr": psnr_per_image(reference, reconstruction).cpu(),
        "ssim": ssim_per_image(reference, reconstruction).cpu(),
        "sharpness": sharpness_ratio(reference, reconstruction).cpu(),
    }


def pyramid_train_seconds(checkpoint: str | Path, own_seconds: float | None) -> float | None:
    """Training time of the whole model a checkpoint holds.

    A LapCVAE is trained one job per level (level{k}.pt holds levels k..K), and M retraining starts from the
    finished pyramid, so their time is the sum over the jobs that built them; a baseline's is its own job's.
    """
    checkpoint = Path(checkpoint)
    if own_seconds is None or not (checkpoint.name.startswith("level") or checkpoint.name == "retrained_m.pt"):
        return own_seconds
    level = 0 if checkpoint.name == "retrained_m.pt" else int(checkpoint.stem.removeprefix("level"))
    total = own_seconds if checkpoint.name == "retrained_m.pt" else 0.0
    # The coarsest level is shared by both variants and lives in lapcvae/ (workflow.pipeline.level_checkpoint).
    found = {int(path.stem.removeprefix("level")): path for folder in (checkpoint.parent.parent / "lapcvae",
             checkpoint.parent) for path in sorted(folder.glob("level*.pt"))}
    for path in found.values():
        if int(path.stem.removeprefix("level")) >= level:
            seconds = torch.load(path, map_location="cpu", weights_only=True).get("meta", {}).get("train_seconds")
            total += seconds or 0.0
    return total


def load_images(path: str | Path, resolution: int) -> np.ndarray:
    """Memory-map a prepared uint8 split (N, 3, res, res)."""
    return load_image_array(path, resolution)


def evaluate_model(
    model: nn.Module, test_images: np.ndarray, batch_size: int, device: torch.device, reconstructions: np.ndarray
) -> pd.DataFrame:
    """Reconstruct every test image in batches into `reconstructions` (uint8, test order); per-image metrics.

    test_images, reconstructions: (N, 3, H, W) uint8, e.g. memory maps, so the split never sits in memory.
    """
    columns: dict[str, list[torch.Tensor]] = {name: [] for name in PER_IMAGE_COLUMNS[1:]}
    with torch.inference_mode():
        for start in tqdm(range(0, len(test_images), batch_size), desc="evaluate", unit="batch"):
            batch_uint8 = torch.from_numpy(np.array(test_images[start:start + batch_size]))
            reference = batch_uint8.to(device).float() / PIXEL_MAX  # (B, 3, H, W)
            reconstruction = model.reconstruct(reference)
            for name, values in per_image_metrics(reference, reconstruction).items():
                columns[name].append(values)
            reconstructions[start:start + len(reference)] = to_uint8(reconstruction)
    table = pd.DataFrame({name: torch.cat(values).double().numpy() for name, values in columns.items()})
    table.insert(0, "image", np.arange(len(test_images)))
    return table


def summarise(per_image: pd.DataFrame, bootstrap_samples: int, seed: int) -> dict[str, Any]:
    """Table 1's aggregate numbers of one model from its per-image metrics."""
    rmse = per_image["rmse"].to_numpy()
    finite_psnr = per_image["psnr"].replace([np.inf, -np.inf], np.nan)  # a perfect image has infinite PSNR
    return {
        "n_test": len(per_image),
        "rmse_mean": float(rmse.mean()),
        "rmse_std": float(rmse.std(ddof=1)) if len(rmse) > 1 else 0.0,
        "rmse_ci95": list(bootstrap_mean_ci(rmse, bootstrap_samples, seed)),
        "psnr_mean": float(finite_psnr.mean()),
        "ssim_mean": float(per_image["ssim"].mean()),
        "sharpness_mean": float(per_image["sharpness"].mean()),
    }


def json_ready(value: Any) -> Any:
    """Replace NaN/inf floats by None so that the file is strict JSON (dvc metrics, browsers)."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def atomic_write_json(path: str | Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(json_ready(value), indent=2, default=str) + "\n")


def atomic_write_csv(path: str | Path, table: pd.DataFrame) -> None:
    atomic_write_text(path, table.to_csv(index=False))


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp.npy")
    np.save(temporary, array)
    os.replace(temporary, path)


@contextlib.contextmanager
def atomic_npy_memmap(path: str | Path, shape: tuple[int, ...], dtype: type) -> Iterator[np.ndarray]:
    """A .npy file filled in place through a memory map at a temporary path, renamed to `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp.npy")
    try:
        array = np.lib.format.open_memmap(temporary, mode="w+", dtype=dtype, shape=shape)
        yield array
        array.flush()
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lapcvae evaluate", description=__doc__.splitlines()[0])
    add_params_arguments(parser)
    parser.add_argument("--res", type=int, required=True, help="image resolution, e.g. 64")
    parser.add_argument("--model", required=True, choices=MODELS, help="the model's name in Table 1")
    parser.add_argument("--checkpoint", required=True, help="e.g. results/models/64/lapcvae/level0.pt")
    parser.add_argument("--test", required=True, help="prepared test split, e.g. data/prepared/64/test.npy")
    parser.add_argument("--out-dir", required=True, help="e.g. results/eval/64/lapcvae")
    parser.add_argument("--per-image", required=True, help="e.g. results/metrics/per_image/64_lapcvae.csv")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    settings = params["eval"]
    device = resolve_device(params["device"])

    test_images = load_images(args.test, args.res)
    model = load_model(args.checkpoint, device)
    logger.info("evaluating %s (%s) on %d test images of %d px on %s", args.model, args.checkpoint,
                len(test_images), args.res, device)
    out_dir = Path(args.out_dir)
    started = time.perf_counter()
    with atomic_npy_memmap(out_dir / "reconstructions.npy", test_images.shape, np.uint8) as reconstructions:
        per_image = evaluate_model(model, test_images, settings["batch_size"], device, reconstructions)
    with torch.inference_mode():
        samples = to_uint8(model.sample(settings["samples"], seed=params["seed"]))  # same seed for every model
    eval_seconds = time.perf_counter() - started

    one_image = torch.from_numpy(np.array(test_images[:1])).to(device).float() / PIXEL_MAX  # (1, 3, H, W)
    meta = dict(getattr(model, "meta", {}))
    summary = {
        "model": args.model,
        "kind": model.kind,
        "resolution": args.res,
        **summarise(per_image, settings["bootstrap_samples"], params["seed"]),
        "parameters": count_parameters(model),
        "flops_per_image": count_flops(model.reconstruct, one_image),
        "eval_seconds": eval_seconds,
        "eval_device": str(device),
        "train_seconds": pyramid_train_seconds(args.checkpoint, meta.get("train_seconds")),
        "checkpoint": str(args.checkpoint),
        "meta": meta,
    }
    atomic_save_npy(out_dir / "samples.npy", samples)
    atomic_write_csv(args.per_image, per_image)
    atomic_write_json(out_dir / "summary.json", summary)  # last: its presence means the rest is complete
    print(f"{args.model} {args.res}px: RMSE {summary['rmse_mean']:.2f} +- {summary['rmse_std']:.2f} "
          f"(95% CI {summary['rmse_ci95'][0]:.2f}-{summary['rmse_ci95'][1]:.2f}) on {summary['n_test']} images")
