"""Sample quality without downloads: improved precision and recall (Kynkaanniemi et al. 2019) and a Frechet
distance of a set of generated images against the test split, in an embedding fixed per data set and resolution
and fitted on the training split only (`lapcvae sample-embedding`, results/eval/{res}/sample_embedding.npz).

The embedding: each image's colour layout (the image average-pooled to layout_size^2 x 3 values) beside its fine
detail (log RMS of the Laplacian bands h_0 and h_1, Eq. 6, per channel on a detail_size^2 grid), each feature
standardised on the training split, each of the two blocks scaled to unit total variance, then PCA (training
split) to `dims` components. Why: layout sees wrong colours, shapes and collapse to a mean face; band energy
sees blur (it falls) and noise (it rises), which pixel-space PCA ranks among its smallest components.

Metrics (summary.json keys), real = the test split, generated = a model's prior samples:
- sample_precision: the fraction of generated images inside the real images' k-NN balls (the real manifold);
- sample_recall: the fraction of real images inside the generated images' k-NN balls (one image repeated: 0);
- fd_embedding: the Frechet distance between Gaussians fitted to the two sets' embeddings. It is computed in this
  embedding, not Inception's: never compare it with an FID (eval/fid.py computes FID where the weights exist).
k-NN radii and the Frechet distance depend on the set sizes: compare sets of equal size against the same split.
In tens of dimensions with a few hundred test images the k-NN balls cover the middle of the real cloud: a sample
with a face's layout and no detail of its own can score high precision, and a face whose fine detail carries a
systematic artefact low. The Frechet distance orders such sets as the eye does; read it, and the figure, first.
With a few dozen test images (the smoke data's 12) the balls cover the whole cloud, its centre included, so a
near-constant set can score precision 1: the numbers mean something from hundreds of images (MIN_IMAGES).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from core import registry
from core.atomic import atomic_path
from eval.metrics import PIXEL_MAX, to_uint8
from models.pyramid import laplacian_pyramid

logger = logging.getLogger(__name__)

DETAIL_BANDS = 2  # h_0 and h_1: the finest detail, which blur removes and noise adds
ENERGY_FLOOR = 1.0 / PIXEL_MAX  # one grey level: the log energy of a flat band stays finite
CHUNK = 1024  # query rows of a distance matrix held at once
MIN_IMAGES = 100  # fewer real or generated images: precision and recall are logged as unreliable
METRIC_KEYS = ("sample_precision", "sample_recall", "fd_embedding")
FITTED_PREFIX = "fitted_"  # the same metrics of the samples of a model's fitted prior (models/fitted_prior.py)
# Table 1's real-image reference row: eval.samples training images scored against the test split as samples are.
TRAINING_IMAGES = registry.TRAINING_IMAGES


def image_features(images: np.ndarray, layout_size: int, detail_size: int, batch_size: int = 256) -> np.ndarray:
    """(N, F) float64 raw features of uint8 images (N, 3, H, W), F = 3 layout_size^2 + 6 detail_size^2.

    Colour layout (area-averaged pixels in [0, 1]) then log RMS of bands h_0, h_1 per channel and grid cell.
    """
    if images.ndim != 4 or images.shape[1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"sample quality takes uint8 images (N, 3, H, W), got {images.dtype} {images.shape}")
    size = images.shape[-1]
    if images.shape[-2] != size or layout_size > size or detail_size > size >> (DETAIL_BANDS - 1):
        raise ValueError(f"{images.shape[-2]}x{size} images are too small for eval.sample_quality layout_size "
                         f"{layout_size} and detail_size {detail_size} (at most the side of band h_1, {size >> 1}); "
                         "lower them")
    batches = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.array(images[start:start + batch_size])).float() / PIXEL_MAX  # (B, 3, H, W)
        layout = F.adaptive_avg_pool2d(x, layout_size).flatten(1)  # (B, 3 s^2)
        bands = laplacian_pyramid(x, DETAIL_BANDS + 1)[:DETAIL_BANDS]  # h_0 (H), h_1 (H / 2)
        energy = [F.adaptive_avg_pool2d(band.pow(2), detail_size).sqrt().clamp_min(ENERGY_FLOOR).log().flatten(1)
                  for band in bands]  # (B, 3 d^2) each
        batches.append(torch.cat([layout, *energy], dim=1).double().numpy())
    return np.concatenate(batches) if batches else np.empty((0, 3 * layout_size**2 + 6 * detail_size**2))


@dataclass(frozen=True)
class SampleEmbedding:
    """The fitted embedding of one data set and resolution: features -> (x - mean) / scale -> basis projection."""

    resolution: int
    layout_size: int
    detail_size: int
    mean: np.ndarray  # (F,) training mean of each raw feature
    scale: np.ndarray  # (F,) training std of each feature times sqrt(its block's size)
    basis: np.ndarray  # (D, F) orthonormal principal directions, largest variance first
    variance: np.ndarray  # (D,) training variance along each direction
    fit_images: int  # training images the embedding was fitted on
    # The test split's embedding, computed once for every model of the resolution, and its images' SHA-256.
    test_embedded: np.ndarray | None = None
    test_sha256: str = ""

    @property
    def dims(self) -> int:
        return len(self.basis)

    def embed(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """(N, D) float64 embedding of uint8 images (N, 3, res, res)."""
        if images.shape[-1] != self.resolution:
            raise ValueError(f"the sample embedding was fitted at {self.resolution} px, the images are "
                             f"{images.shape[-1]} px: pass the embedding of their resolution")
        features = image_features(images, self.layout_size, self.detail_size, batch_size)
        return ((features - self.mean) / self.scale) @ self.basis.T

    def with_test_split(self, test_images: np.ndarray) -> SampleEmbedding:
        """This embedding holding the test split's embedding, which `embed_test` then reuses."""
        return dataclasses.replace(self, test_embedded=self.embed(test_images), test_sha256=split_hash(test_images))

    def embed_test(self, test_images: np.ndarray) -> np.ndarray:
        """(N, D) embedding of the test split: the stored one when it is of these very images."""
        if self.test_embedded is not None and len(self.test_embedded) == len(test_images) \
                and self.test_sha256 == split_hash(test_images):
            return self.test_embedded
        return self.embed(test_images)

    def save(self, path: str | Path) -> Path:
        """Atomically, as .npz (through a handle: np.savez would add `.npz` to the temporary name)."""
        test = {} if self.test_embedded is None else {"test_embedded": self.test_embedded,
                                                       "test_sha256": self.test_sha256}
        with atomic_path(path) as temporary, temporary.open("wb") as handle:
            np.savez(handle, resolution=self.resolution, layout_size=self.layout_size,
                     detail_size=self.detail_size, mean=self.mean, scale=self.scale, basis=self.basis,
                     variance=self.variance, fit_images=self.fit_images, **test)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, resolution: int | None = None) -> SampleEmbedding:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"sample embedding {path} does not exist: run `lapcvae sample-embedding` "
                                    "(snakemake rule sample_embedding) first")
        with np.load(path) as stored:
            test = stored.get("test_embedded")
            embedding = cls(int(stored["resolution"]), int(stored["layout_size"]), int(stored["detail_size"]),
                            stored["mean"], stored["scale"], stored["basis"], stored["variance"],
                            int(stored["fit_images"]), test, str(stored["test_sha256"]) if test is not None else "")
        if resolution is not None and embedding.resolution != resolution:
            raise ValueError(f"{path} was fitted at {embedding.resolution} px, not {resolution}: pass "
                             f"results/eval/{resolution}/sample_embedding.npz")
        return embedding


def split_hash(images: np.ndarray) -> str:
    """SHA-256 of a uint8 image array's shape and pixels (a memmap is read in chunks)."""
    digest = hashlib.sha256(str(images.shape).encode())
    for start in range(0, len(images), CHUNK):
        digest.update(np.ascontiguousarray(images[start:start + CHUNK]).tobytes())
    return digest.hexdigest()


def fit_embedding(train_images: np.ndarray, settings: Mapping[str, Any], seed: int) -> SampleEmbedding:
    """The embedding fitted on (a random subset of at most settings fit_images of) the training images.

    settings: params `eval.sample_quality` (dims, layout_size, detail_size, fit_images).
    """
    count = len(train_images)
    if count < 2:
        raise ValueError(f"the sample embedding needs at least 2 training images, got {count}")
    chosen = np.arange(count)
    if count > settings["fit_images"]:
        chosen = np.sort(np.random.default_rng(seed).choice(count, settings["fit_images"], replace=False))
    layout_size, detail_size = int(settings["layout_size"]), int(settings["detail_size"])
    features = np.concatenate([image_features(np.asarray(train_images[chosen[start:start + CHUNK]]), layout_size,
                                              detail_size) for start in range(0, len(chosen), CHUNK)])
    mean = features.mean(axis=0)
    std = np.maximum(features.std(axis=0), 1e-6)  # a constant feature (a flat border) carries nothing
    layout_features = 3 * layout_size**2
    block_size = np.where(np.arange(features.shape[1]) < layout_features, layout_features,
                          features.shape[1] - layout_features)
    scale = std * np.sqrt(block_size)  # each block: unit total variance, so both weigh the same in the PCA
    standardised = (features - mean) / scale
    values, vectors = np.linalg.eigh(standardised.T @ standardised / (len(chosen) - 1))  # ascending
    dims = min(int(settings["dims"]), len(chosen) - 1, features.shape[1])
    basis, variance = vectors[:, ::-1][:, :dims].T.copy(), values[::-1][:dims].copy()
    logger.info("sample embedding at %d px: %d features of %d training images, %d components keep %.0f%% of "
                "the variance", train_images.shape[-1], features.shape[1], len(chosen), dims,
                100 * variance.sum() / values.sum())
    return SampleEmbedding(int(train_images.shape[-1]), layout_size, detail_size, mean, scale, basis, variance,
                           len(chosen))


def _squared_distances(queries: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(Q, P) squared Euclidean distances, clamped at 0 against rounding."""
    products = queries @ points.T
    return np.maximum((queries**2).sum(1)[:, None] + (points**2).sum(1)[None, :] - 2 * products, 0.0)


def knn_radii(points: np.ndarray, k: int) -> np.ndarray:
    """(N,) distance of each point to its k-th nearest other point of the set (Kynkaanniemi et al.'s radius)."""
    if len(points) <= k:
        raise ValueError(f"k-NN radii with k = {k} need more than {k} images, got {len(points)}; lower "
                         "eval.sample_quality.k or raise eval.samples")
    radii = np.empty(len(points))
    for start in range(0, len(points), CHUNK):
        distances = _squared_distances(points[start:start + CHUNK], points)  # (c, N)
        distances[np.arange(len(distances)), np.arange(start, start + len(distances))] = np.inf  # not itself
        radii[start:start + CHUNK] = np.partition(distances, k - 1, axis=1)[:, k - 1]
    return np.sqrt(radii)


def coverage(queries: np.ndarray, points: np.ndarray, radii: np.ndarray) -> float:
    """Fraction of `queries` within radii[j] of some points[j] (a ball's boundary counts as inside)."""
    inside = np.zeros(len(queries), bool)
    for start in range(0, len(queries), CHUNK):
        distances = _squared_distances(queries[start:start + CHUNK], points)  # (c, P)
        inside[start:start + CHUNK] = (distances <= radii[None, :] ** 2).any(axis=1)
    return float(inside.mean())


def precision_recall(real: np.ndarray, generated: np.ndarray, k: int) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of embedded sets (N, D), (M, D) with k-NN balls."""
    precision = coverage(generated, real, knn_radii(real, k))
    recall = coverage(real, generated, knn_radii(generated, k))
    return precision, recall


def frechet_distance(real: np.ndarray, generated: np.ndarray) -> float:
    """|mu_r - mu_g|^2 + tr(S_r + S_g - 2 (S_r S_g)^(1/2)) of Gaussians fitted to (N, D) and (M, D) embeddings.

    tr (S_r S_g)^(1/2) = sum of the square roots of the eigenvalues of S_r^(1/2) S_g S_r^(1/2) (symmetric, PSD),
    which needs no non-symmetric matrix square root.
    """
    if len(real) < 2 or len(generated) < 2:
        raise ValueError(f"a Frechet distance needs at least 2 images per set, got {len(real)} real and "
                         f"{len(generated)} generated; raise eval.samples")
    mean_difference = real.mean(0) - generated.mean(0)
    cov_real, cov_generated = np.cov(real, rowvar=False), np.cov(generated, rowvar=False)
    values, vectors = np.linalg.eigh(cov_real)
    root_real = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    cross = np.linalg.eigvalsh(root_real @ cov_generated @ root_real)
    trace_root = np.sqrt(np.clip(cross, 0.0, None)).sum()
    return float(mean_difference @ mean_difference + np.trace(cov_real) + np.trace(cov_generated) - 2 * trace_root)


def sample_metrics(embedding: SampleEmbedding, test_images: np.ndarray, generated: np.ndarray, k: int
                   ) -> dict[str, Any]:
    """summary.json's sample-quality entries (METRIC_KEYS, plus the set sizes) of `generated` against the test
    split (whose embedding the artefact holds, `SampleEmbedding.with_test_split`, or is computed here)."""
    real = embedding.embed_test(test_images)
    fake = embedding.embed(generated)
    if min(len(real), len(fake)) < MIN_IMAGES:
        logger.warning("sample precision and recall of %d generated against %d test images: below %d images the "
                       "k-NN balls cover most of the embedding, and the numbers say little", len(fake), len(real),
                       MIN_IMAGES)
    precision, recall = precision_recall(real, fake, k)
    return {"sample_precision": precision, "sample_recall": recall, "fd_embedding": frechet_distance(real, fake),
            "sample_quality_test_images": len(real), "sample_quality_generated": len(fake),
            "sample_quality_k": k, "sample_embedding_dims": embedding.dims}


def chunk_seed(seed: int, chunk: int) -> int:
    """The seed of the chunk-th batch of prior samples: `seed` itself for the first batch (so a model's first
    samples are model.sample(n, seed)'s), then a stream of its own per (seed, chunk)."""
    if chunk == 0:
        return seed
    return int(np.random.SeedSequence([seed, chunk]).generate_state(1)[0])


def draw_samples(sample: Callable[[int, int], torch.Tensor], count: int, batch_size: int, seed: int) -> np.ndarray:
    """(count, 3, H, W) uint8 samples of `sample(n, seed)` (a GenerativeModel's `sample`, or a fitted prior's),
    drawn batch_size at a time (memory), every model with the same seeds (chunk_seed)."""
    batches = []
    with torch.inference_mode():
        for chunk, start in enumerate(range(0, count, batch_size)):
            images = sample(min(batch_size, count - start), chunk_seed(seed, chunk))
            batches.append(to_uint8(images))
    return np.concatenate(batches)


def repeated(image: np.ndarray, count: int) -> np.ndarray:
    """(count, 3, H, W) copies of one uint8 image (3, H, W): a set with no diversity, e.g. the mean face."""
    return np.repeat(image[None], count, axis=0)


def training_reference(train_images: np.ndarray, count: int, seed: int) -> np.ndarray:
    """`count` training images (all of them when there are fewer), drawn with `seed`: real images that are not
    the test split, scored as a model's samples are, so a reader sees what real faces score at that set size."""
    chosen = np.arange(len(train_images))
    if len(train_images) > count:
        chosen = np.sort(np.random.default_rng(seed).choice(len(train_images), count, replace=False))
    return np.asarray(train_images[chosen])
