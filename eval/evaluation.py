"""One trained model evaluated on the test split: what `lapcvae evaluate` writes for a Table 1 row.

`evaluate_checkpoint` reconstructs every test image (eval/metrics.py: RMSE, PSNR, SSIM, per-band R^2, contrast,
the -ELBO of eval/elbo.py), draws `eval.samples` prior samples with the seeds every model shares (and as many from
the fitted prior, models/fitted_prior.py), scores them in the sample embedding (eval/sample_quality.py) and, when
Inception weights are configured, by FID and KID (eval/fid.py), and returns the per-image table and the summary
(summary.json's entries). It writes the arrays it produces into `out_dir`: reconstructions.npy, samples.npy and
samples_fitted.npy.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from core import registry
from core.atomic import npy_memmap, save_npy
from eval.elbo import elbo_summary
from eval.fid import sample_quality as fid_kid
from eval.metrics import (
    PIXEL_MAX,
    count_parameters,
    evaluate_model,
    load_images,
    summarise,
    withhold_reconstruction_metrics,
)
from eval.sample_quality import FITTED_PREFIX, METRIC_KEYS, SampleEmbedding, draw_samples, sample_metrics
from models.checkpoint import pyramid_train_seconds
from models.fitted_prior import FittedPrior, sample_fitted
from training.flops import count_flops

logger = logging.getLogger(__name__)


def evaluate_checkpoint(model: nn.Module, name: str, resolution: int, test_images: np.ndarray,
                        params: dict[str, Any], device: torch.device, out_dir: Path, *,
                        embedding: SampleEmbedding | None = None, prior: FittedPrior | None = None,
                        checkpoint: str = "") -> tuple[pd.DataFrame, dict[str, Any]]:
    """Evaluate `model` (Table 1's `name`) on the uint8 test images; (per-image metrics, summary)."""
    settings = params["eval"]
    logger.info("evaluating %s (%s) on %d test images of %d px on %s", name, checkpoint, len(test_images),
                resolution, device)
    started = time.perf_counter()
    with npy_memmap(out_dir / "reconstructions.npy", test_images.shape, np.uint8) as reconstructions:
        per_image = evaluate_model(model, test_images, settings["batch_size"], device, reconstructions,
                                   elbo_sigma=settings["elbo_sigma"], seed=params["seed"])
    if settings["samples"] < len(test_images):
        logger.warning("eval.samples (%d) is below the %d test images: sample precision and recall then compare "
                       "sets of unequal size; raise eval.samples", settings["samples"], len(test_images))
    sampling_started = time.perf_counter()
    # the same seeds for every model (eval/sample_quality.py chunk_seed)
    samples = draw_samples(model.sample, settings["samples"], settings["batch_size"], params["seed"])
    sample_seconds = time.perf_counter() - sampling_started  # all eval.samples prior samples
    fitted = None
    if prior is not None:  # the same seeds from the prior fitted to the training posteriors, beside N(0, I)'s
        fitted_started = time.perf_counter()
        fitted = draw_samples(lambda n, seed: sample_fitted(model, prior, n, seed), settings["samples"],
                              settings["batch_size"], params["seed"])
        fitted_seconds = time.perf_counter() - fitted_started
    eval_seconds = time.perf_counter() - started

    one_image = torch.from_numpy(np.array(test_images[:1])).to(device).float() / PIXEL_MAX  # (1, 3, H, W)
    meta = dict(getattr(model, "meta", {}))
    summary = {
        "model": name,
        "kind": model.kind,
        "resolution": resolution,
        **summarise(per_image, settings["bootstrap_samples"], params["seed"]),
        **elbo_summary(per_image, int(np.prod(test_images.shape[1:])), settings["elbo_sigma"]),
        "parameters": count_parameters(model),
        "flops_per_image": count_flops(model.reconstruct, one_image),
        "eval_seconds": eval_seconds,
        "sample_seconds": sample_seconds,
        "sample_count": int(settings["samples"]),
        "eval_device": str(device),
        "train_seconds": pyramid_train_seconds(meta),
        "checkpoint": str(checkpoint),
        "meta": meta,
    }
    if not registry.spec(name).reconstructs:
        summary = withhold_reconstruction_metrics(summary, registry.RECONSTRUCTION_WITHHELD)
    if embedding is not None:  # precision, recall and Frechet distance in the training split's embedding
        summary.update(sample_metrics(embedding, test_images, samples, settings["sample_quality"]["k"]))
    if fitted is not None:
        summary["fitted_sample_seconds"] = fitted_seconds
        if embedding is not None:
            summary.update({f"{FITTED_PREFIX}{key}": value for key, value in sample_metrics(
                embedding, test_images, fitted, settings["sample_quality"]["k"]).items() if key in METRIC_KEYS})
        save_npy(out_dir / "samples_fitted.npy", fitted)
    # FID and KID of the same samples against the test split, when the user supplied the Inception weights.
    summary.update(fid_kid(settings.get("fid") or {}, test_images, samples,
                           load_images(out_dir / "reconstructions.npy", resolution), params["seed"], device))
    save_npy(out_dir / "samples.npy", samples)
    return per_image, summary
