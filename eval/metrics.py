"""Reconstruction metrics of Table 1 (section 5.1) and the `evaluate` command that measures one trained model.

Every metric is computed on the reconstruction as a saved image would hold it: clamped to [0, 1] and quantised
to 8 bits (round(x * 255)), so the numbers match `reconstructions.npy` exactly. The paper's metric is the
per-image square root of the MSE with pixels in [0, 255]; PSNR, SSIM, per-band R^2, contrast and the rate are
added:
- r2_h{k}: how much of the original's Laplacian band h_k (Eq. 6) the reconstruction reproduces, aligned:
  1 - |h_k(x_hat) - h_k(x)|^2 / |h_k(x)|^2. 1 is exact, 0 is no detail at all (a flat band), below 0 is detail
  in the wrong place. Unlike an energy ratio it cannot be fooled by high-frequency noise.
- contrast: the reconstruction's pixel std over the original's; a model that averages to grey scores near 0,
  which RMSE alone can hide (Table 1 reports its median over images).
- rate: KL(q(z|x) || p(z)) in nats per image, the model's `rate(x)` (LapCVAE: summed over levels against the
  prior each level trained with; NaN for models without a posterior).
- nelbo: the test -ELBO in nats per image on one discretised Gaussian likelihood for every model, with its KL and
  distortion terms (eval/elbo.py; NaN for models without a posterior).
A model whose registry entry says reconstructs=False (PixelVAE) keeps its per-image values, but its summary
withholds the reconstruction metrics (`withhold_reconstruction_metrics`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core import atomic, registry
from core.progress import progress_bar
from data.arrays import load_image_array
from eval.elbo import NELBO_COLUMNS, negative_elbo
from eval.metric_directions import RECONSTRUCTION_METRICS
from models.pyramid import laplacian_pyramid

if TYPE_CHECKING:  # imported where a table is made: training jobs, which import this module, never make one
    import pandas as pd

logger = logging.getLogger(__name__)

MODELS = tuple(registry.names())  # Table 1's row order (core/registry.py)
R2_BANDS = 2  # h_0 and h_1: the bands LapCVAE's two finest levels must reconstruct
PER_IMAGE_COLUMNS = ("image", "rmse", "psnr", "ssim", *(f"r2_h{k}" for k in range(R2_BANDS)), "contrast",
                     *(metric.name for metric in RECONSTRUCTION_METRICS), "rate", *NELBO_COLUMNS)
# summary.json's reconstruction metrics, withheld (null) for a model whose `reconstruct` is no reconstruction
RECONSTRUCTION_SUMMARY_KEYS = ("rmse_mean", "rmse_std", "rmse_ci95", "psnr_mean", "ssim_mean",
                               *(f"r2_h{k}_mean" for k in range(R2_BANDS)), "contrast_median",
                               *(metric.summary_column for metric in RECONSTRUCTION_METRICS))
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
    """(N,) PSNR in dB of the quantised reconstruction, 10 log10(1 / MSE) on [0, 1] (inf for a perfect one).

    The formula and float32 arithmetic of torchmetrics' peak_signal_noise_ratio(data_range=1, dim=(1, 2, 3))
    (tests/test_metrics.py compares them), without importing torchmetrics: it pulls torchvision and
    torch._dynamo into every job that imports it.
    """
    _check_pair(reference, reconstruction)
    difference = quantise(reconstruction) - reference.to(reconstruction.dtype)  # (N, 3, H, W)
    mse = (difference * difference).sum(dim=(1, 2, 3)) / difference[0].numel()  # (N,)
    return -torch.log(mse) * (10.0 / math.log(10.0))  # 2 log(data_range) = 0


SSIM_SIGMA = 1.5  # Wang et al. 2004's Gaussian window
SSIM_WINDOW = 11  # int(3.5 sigma + 0.5) * 2 + 1 taps, as torchmetrics sizes it
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _ssim_window(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(SSIM_WINDOW,) normalised 1-D Gaussian; the 2-D window is its outer product with itself."""
    distance = torch.arange((1 - SSIM_WINDOW) / 2, (1 + SSIM_WINDOW) / 2, 1, dtype=dtype, device=device)
    gauss = torch.exp(-torch.pow(distance / SSIM_SIGMA, 2) / 2)
    return gauss / gauss.sum()


def ssim_per_image(reference: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """(N,) SSIM (Gaussian 11x11 window, sigma 1.5, K1 0.01, K2 0.03) of the quantised reconstruction.

    Wang et al. 2004 per channel, averaged over every pixel and channel, with torchmetrics' conventions (which
    this replaced; tests/test_metrics.py compares them): reflect padding of 5 px so the map is H x W, variances
    clamped at 0. The Gaussian window is separable: two 1-D passes (22 taps) replace the 2-D one (121 taps).
    Images >= 6 px (reflect padding).
    """
    _check_pair(reference, reconstruction)
    prediction = quantise(reconstruction)
    target = reference.to(prediction.dtype)
    channels, pad = prediction.shape[1], (SSIM_WINDOW - 1) // 2
    window = _ssim_window(prediction.dtype, prediction.device)
    # Contiguous kernels on channels-last input: oneDNN's fast depthwise path on CPUs (~3x torchmetrics' 2-D pass).
    vertical = window.view(1, 1, -1, 1).expand(channels, 1, SSIM_WINDOW, 1).contiguous()
    horizontal = window.view(1, 1, 1, -1).expand(channels, 1, 1, SSIM_WINDOW).contiguous()
    prediction = F.pad(prediction, (pad, pad, pad, pad), mode="reflect")
    target = F.pad(target, (pad, pad, pad, pad), mode="reflect")
    stacked = torch.cat((prediction, target, prediction * prediction, target * target, prediction * target))
    stacked = stacked.contiguous(memory_format=torch.channels_last)  # (5N, 3, H + 10, W + 10)
    local = F.conv2d(F.conv2d(stacked, vertical, groups=channels), horizontal, groups=channels)  # (5N, 3, H, W)
    mu_p, mu_t, mean_pp, mean_tt, mean_pt = local.split(len(reference))
    mu_pp, mu_tt, mu_pt = mu_p.pow(2), mu_t.pow(2), mu_p * mu_t
    var_p, var_t = (mean_pp - mu_pp).clamp(min=0.0), (mean_tt - mu_tt).clamp(min=0.0)
    covariance = mean_pt - mu_pt
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # data range 1
    ssim_map = ((2 * mu_pt + c1) * (2 * covariance + c2)) / ((mu_pp + mu_tt + c1) * (var_p + var_t + c2))
    return ssim_map.reshape(len(ssim_map), -1).mean(-1)  # (N,)


def band_r2(reference: torch.Tensor, reconstruction: torch.Tensor, bands: int = R2_BANDS) -> torch.Tensor:
    """(N, bands) R^2 of the reconstruction's Laplacian bands h_0..h_{bands-1} against the reference's.

    R^2_k = 1 - |h_k(x_hat) - h_k(x)|^2 / |h_k(x)|^2 per image, summed over pixels and channels, on the quantised
    reconstruction; NaN where the reference's band is all zero (a flat image).

    The pyramids are float32 (faster than float64 on CPUs; the binomial weights are exact, so a band is off
    by a few float32 roundings of values <= 1), the sums float64: R^2 within ~1e-6 of an all-float64 computation.
    """
    _check_pair(reference, reconstruction)
    reference_bands = laplacian_pyramid(reference.float(), bands + 1)[:bands]  # [h_0, ..], (N, 3, h, w) each
    reconstruction_bands = laplacian_pyramid(quantise(reconstruction.double()).float(), bands + 1)[:bands]
    scores = []
    for original32, rebuilt32 in zip(reference_bands, reconstruction_bands, strict=True):
        original, rebuilt = original32.double(), rebuilt32.double()
        energy = original.pow(2).sum(dim=(1, 2, 3))  # (N,)
        error = (rebuilt - original).pow(2).sum(dim=(1, 2, 3))
        scores.append(torch.where(energy > 0, 1.0 - error / energy, torch.full_like(energy, math.nan)))
    return torch.stack(scores, dim=1).float()  # (N, bands)


def contrast_per_image(reference: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """(N,) the quantised reconstruction's pixel std over the reference's, over pixels and channels: 1 keeps the
    original's contrast, near 0 is a grey (averaged) image; NaN where the reference is flat."""
    _check_pair(reference, reconstruction)
    original = reference.double().flatten(1)  # (N, 3 * H * W)
    rebuilt = quantise(reconstruction.double()).flatten(1)
    original_std = original.std(dim=1)
    return torch.where(original_std > 0, rebuilt.std(dim=1) / original_std, torch.full_like(original_std, math.nan))


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


def per_image_metrics(reference: torch.Tensor, reconstruction: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every per-image distortion metric of one batch, each (N,) on the CPU."""
    r2 = band_r2(reference, reconstruction).cpu()  # (N, R2_BANDS)
    return {
        "rmse": rmse_per_image(reference, reconstruction).cpu(),
        "psnr": psnr_per_image(reference, reconstruction).cpu(),
        "ssim": ssim_per_image(reference, reconstruction).cpu(),
        **{f"r2_h{k}": r2[:, k] for k in range(R2_BANDS)},
        "contrast": contrast_per_image(reference, reconstruction).float().cpu(),
        # eval.metric_directions.RECONSTRUCTION_METRICS, on the reconstruction as its 8-bit file holds it
        **{metric.name: registry.load_class(metric.compute)(reference, quantise(reconstruction)).float().cpu()
           for metric in RECONSTRUCTION_METRICS},
    }


def rate_per_image(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(N,) the model's KL in nats per image (`model.rate`), NaN for models that have none."""
    rate = getattr(model, "rate", None)
    if rate is None:
        return torch.full((images.shape[0],), math.nan)
    return rate(images).float().cpu()


def expected_checkpoint(model: str, resolution: int) -> dict[str, Any]:
    """What the checkpoint of Table 1's `model` at `resolution` must hold (load_model's expected_* arguments):
    its kind, resolution, variant (LapCVAE's use_m), the whole model (every pyramid level) and the training job
    that wrote it (`meta["name"]`, core.registry.training_label: tells vae from vae_equal_flops, level0.pt from
    retrained_m.pt)."""
    spec = registry.spec(model)
    expected: dict[str, Any] = {"expected_kind": spec.kind, "expected_resolution": resolution,
                                "expected_whole": True, "expected_name": registry.training_label(model, resolution)}
    if "use_m" in spec.options:
        expected["expected_config"] = {"use_m": spec.options["use_m"]}
    return expected


def load_images(path: str | Path, resolution: int) -> np.ndarray:
    """Memory-map a prepared uint8 split (N, 3, res, res)."""
    return load_image_array(path, resolution)


def evaluate_model(
    model: nn.Module, test_images: np.ndarray, batch_size: int, device: torch.device, reconstructions: np.ndarray,
    elbo_sigma: float | None = None, seed: int = 0,
) -> pd.DataFrame:
    """Reconstruct every test image in batches into `reconstructions` (uint8, test order); per-image metrics.

    test_images, reconstructions: (N, 3, H, W) uint8, e.g. memory maps, so the split never sits in memory.
    elbo_sigma: the -ELBO's likelihood std (eval/elbo.py), its posterior draws seeded with `seed`; None leaves
    the -ELBO columns NaN.
    """
    columns: dict[str, list[torch.Tensor]] = {name: [] for name in PER_IMAGE_COLUMNS[1:]}
    generator = torch.Generator().manual_seed(seed)  # the -ELBO's posterior draws, one stream over the batches
    with torch.inference_mode():
        for start in progress_bar(range(0, len(test_images), batch_size), desc="evaluate", unit="batch"):
            batch_uint8 = torch.from_numpy(np.array(test_images[start:start + batch_size]))
            reference = batch_uint8.to(device).float() / PIXEL_MAX  # (B, 3, H, W)
            reconstruction = model.reconstruct(reference)
            for name, values in per_image_metrics(reference, reconstruction).items():
                columns[name].append(values)
            columns["rate"].append(rate_per_image(model, reference))
            terms = negative_elbo(model, reference, elbo_sigma, generator)
            for name, values in terms.items():
                columns[name].append(values)
            reconstructions[start:start + len(reference)] = to_uint8(reconstruction)
    import pandas as pd

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
        **{f"r2_h{k}_mean": float(per_image[f"r2_h{k}"].mean()) for k in range(R2_BANDS)},
        # median: a near-flat original makes one image's ratio large (the contrast goal: keep at least half)
        "contrast_median": float(per_image["contrast"].median()),
        "rate_mean": float(per_image["rate"].mean()),  # nats per image; NaN for models without a posterior
        **{metric.summary_column: float(per_image[metric.name].agg(metric.summary))
           for metric in RECONSTRUCTION_METRICS},
    }


def withhold_reconstruction_metrics(summary: dict[str, Any], why: str) -> dict[str, Any]:
    """The summary with its reconstruction metrics null and `reconstruction_withheld` saying why."""
    return {**summary, **dict.fromkeys(RECONSTRUCTION_SUMMARY_KEYS), "reconstruction_withheld": why}


# The writers live in core.atomic (the one atomic writer); these names stay for code that imports them from here.
json_ready = atomic.json_ready
atomic_write_text = atomic.write_text
atomic_write_json = atomic.write_json
atomic_write_csv = atomic.write_csv
atomic_save_npy = atomic.save_npy
atomic_npy_memmap = atomic.npy_memmap
