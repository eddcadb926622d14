"""FID and KID (Heusel et al. 2017; Binkowski et al. 2018) of a model's samples and reconstructions against the
test split, computed by torchmetrics on the features of any network.

The standard numbers use the Inception-v3 network that torch-fidelity and torchmetrics use (the TensorFlow
"pt_inception-2015-12-05" weights converted to PyTorch). This suite never downloads it: a user who has the file
sets `eval.fid.inception_weights` to its path, and `evaluate` then adds to summary.json
    fid_samples, kid_samples_mean, kid_samples_std             (eval.samples prior samples vs the test split)
    fid_reconstructions, kid_reconstructions_mean, ..._std     (the test split's reconstructions vs the test split)
Without it no FID or KID is computed, and the report says how to get the file (INCEPTION_WEIGHTS_URL).

Each image set's features are extracted once (`image_features`) and the metrics computed from them
(`fid_kid_from_features`), so the test split's features serve both comparisons. Sets of a few dozen images give
a biased FID (it falls as the set grows): compare models at the same eval.samples only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

INCEPTION_WEIGHTS_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                         "weights-inception-2015-12-05-6726825d.pth")
HOW_TO_GET_WEIGHTS = (f"download the Inception-v3 weights that torch-fidelity and torchmetrics use (pt_inception-"
                      f"2015-12-05) from {INCEPTION_WEIGHTS_URL} and set eval.fid.inception_weights to the file's path")
FID_COLUMNS = ("fid_samples", "kid_samples_mean", "fid_reconstructions", "kid_reconstructions_mean")


def inception_network(weights_path: str | Path) -> nn.Module:
    """torchmetrics' Inception-v3 (2048 pooled features, uint8 (N, 3, H, W) images in) with weights from a file.

    Nothing is downloaded: a missing file is an error that says where to get it.
    """
    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(f"eval.fid.inception_weights: {path} does not exist; {HOW_TO_GET_WEIGHTS} (or set "
                                "it to null to skip FID and KID)")
    from torchmetrics.image.fid import NoTrainInceptionV3  # needs torch-fidelity (a dependency in pyproject.toml)

    return NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                              feature_extractor_weights_path=str(path))


@torch.inference_mode()
def image_features(images: np.ndarray, network: nn.Module, batch_size: int, device: torch.device) -> torch.Tensor:
    """(N, F) float64 features of uint8 images (N, 3, H, W) (a memmap is read batch by batch), on the CPU.

    network: any module taking a uint8 batch (B, 3, H, W) to (B, F) features, e.g. `inception_network`.
    """
    if images.ndim != 4 or images.shape[1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"FID/KID take uint8 images (N, 3, H, W), got {images.dtype} {images.shape}")
    network = network.to(device).eval()
    batches = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.array(images[start:start + batch_size])).to(device)  # (B, 3, H, W) uint8
        batches.append(network(batch).reshape(len(batch), -1).double().cpu())
    return torch.cat(batches)  # (N, F)


class _Precomputed(nn.Module):
    """The identity on features: lets torchmetrics' FID and KID run on features extracted once."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def fid_kid_from_features(real: torch.Tensor, generated: torch.Tensor, kid_subset_size: int, kid_subsets: int,
                          seed: int) -> dict[str, float]:
    """FID and KID (mean and std over `kid_subsets` random subsets) between two feature sets (N, F), (M, F).

    The KID subsets hold min(kid_subset_size, N, M) images each and are drawn from `seed`.
    """
    if len(real) < 2 or len(generated) < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {len(real)} real and {len(generated)} "
                         "generated; raise eval.samples")
    # Imported here: torchmetrics costs several seconds of every job that imports this module (eval.metrics).
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    identity = _Precomputed(real.shape[1])
    fid = FrechetInceptionDistance(feature=identity)
    fid.update(real, real=True)
    fid.update(generated, real=False)
    subset = min(kid_subset_size, len(real), len(generated))
    kid = KernelInceptionDistance(feature=identity, subsets=kid_subsets, subset_size=subset)
    kid.update(real, real=True)
    kid.update(generated, real=False)
    with torch.random.fork_rng(devices=[]):  # KID draws its subsets from torch's global generator
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid_mean": float(kid_mean), "kid_std": float(kid_std)}


def sample_quality(settings: Mapping[str, Any], test_images: np.ndarray, samples: np.ndarray,
                   reconstructions: np.ndarray, seed: int, device: torch.device,
                   network: nn.Module | None = None) -> dict[str, Any]:
    """summary.json's FID/KID entries for one model, or {} when eval.fid.inception_weights is null.

    settings: params `eval.fid`; network: a feature extractor to use instead of Inception (tests).
    """
    if network is None:
        if not settings.get("inception_weights"):
            return {}
        network = inception_network(settings["inception_weights"])
    batch_size, subset_size, subsets = (int(settings[key]) for key in ("batch_size", "kid_subset_size",
                                                                       "kid_subsets"))
    logger.info("FID/KID: features of %d test images, %d samples, %d reconstructions", len(test_images),
                len(samples), len(reconstructions))
    real = image_features(test_images, network, batch_size, device)
    results: dict[str, Any] = {"fid_test_images": len(real)}
    for name, images in (("samples", samples), ("reconstructions", reconstructions)):
        scores = fid_kid_from_features(real, image_features(images, network, batch_size, device), subset_size,
                                       subsets, seed)
        results.update({f"fid_{name}": scores["fid"], f"kid_{name}_mean": scores["kid_mean"],
                        f"kid_{name}_std": scores["kid_std"]})
    return results
