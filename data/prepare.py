"""`lapcvae prepare`: crop, resize and split a CelebA-format tree into memory-mappable uint8 arrays.

    lapcvae prepare --params P... --raw data/raw/synthetic --out data/prepared [--workers N]

Writes `<out>/{res}/train.npy` and `test.npy` (uint8, (N, 3, res, res), rows in image-file order within each
split), `<out>/attributes.csv` (split, row, image_id, then every attribute the raw tree has, as 0/1, plus
Sunglasses when synthetic_extras.csv exists) and `<out>/manifest.json` (source, counts, seed, crop,
resolutions, resize method, SHA-256 of each array).

- Crop: rows top:top+size, columns left:left+size (params data.crop; the authors' 40:188, 15:163).
- Resize: each JPEG is decoded once, cropped, and resized to every resolution from that crop with an
  antialiased bicubic filter whose support widens by the downscale factor (PIL's BICUBIC, the antialiasing PIL
  used to call ANTIALIAS; computed by torch's uint8 interpolate), so no separate blur is needed. (The authors
  blur with sigma = sqrt(148 / size) / 2, then resize cubically.)
- Split: the paper's random 80/20 split of all images, ignoring CelebA's official partition: a permutation
  from params.seed, n_test = floor(test_fraction * N + 0.5) (half rounds up), the rest train. Full CelebA:
  floor(0.2 * 202,599 + 0.5) = floor(40,520.3) = 40,520 test, 162,079 train.
- Validation: the next n_val = floor(validation_fraction * n_train_pool + 0.5) images of the same permutation
  are carved out of those training images into `val.npy`; `train.npy` holds the rest. Models train on
  `train.npy`, every tuning choice is scored on `val.npy`, and only evaluation reads `test.npy`. The test
  split is the same with or without a validation split (it is the permutation's first n_test images).
- Workers write straight into the arrays (np.lib.format.open_memmap) inside a temporary folder beside `<out>`
  (core/atomic.py), renamed into place at the end, so the full dataset is never in memory, and a corrupt image
  stops the step with its name and leaves nothing behind.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from core.atomic import atomic_directory
from core.params import rounded_share
from core.progress import progress_bar
from data.arrays import rgb_pixels
from data.celeba_format import ATTRIBUTES_FILE, EXTRAS_FILE, IMAGE_DIR, JPEG_SUFFIXES, read_attributes

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
RESIZE_METHOD = "crop, then antialiased bicubic resize (torch uint8 interpolate, PIL's BICUBIC filter)"
CHUNK = 64  # images per task sent to a worker, resized as one batch
MIN_TEST_IMAGES = 2  # a spread (Table 1's +-) and a bootstrap interval need two test images at least
CELEBA_SIZE = (178, 218)  # (width, height) of CelebA's aligned images, which data.crop's coordinates assume


@dataclass(frozen=True)
class Crop:
    top: int
    left: int
    size: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        """PIL's (left, upper, right, lower)."""
        return (self.left, self.top, self.left + self.size, self.top + self.size)


def n_test_images(total: int, test_fraction: float) -> int:
    """Test-split size: test_fraction * total rounded half up (202,599 * 0.2 = 40,519.8 -> 40,520); the same rule
    the params check uses to know the split sizes before any work (core.params.known_split_sizes)."""
    return rounded_share(total, test_fraction)


def split_indices(total: int, test_fraction: float, seed: int,
                  validation_fraction: float = 0.0) -> dict[str, np.ndarray]:
    """{'train', 'test'[, 'val']: sorted indices}, disjoint, covering range(total), fixed by `seed`.

    'val' (only when validation_fraction > 0) is carved from the training images, after the test split is
    drawn, so the test split does not depend on validation_fraction.
    """
    n_test = n_test_images(total, test_fraction)
    if n_test < 1 or n_test >= total:
        raise ValueError(f"{total} images with data.test_fraction {test_fraction} give {n_test} test and "
                         f"{total - n_test} training images; both need at least one (use more images)")
    order = np.random.default_rng(seed).permutation(total)
    splits = {"train": np.sort(order[n_test:]), "test": np.sort(order[:n_test])}
    if validation_fraction > 0:
        n_val = n_test_images(total - n_test, validation_fraction)
        if n_val < 1 or n_val >= total - n_test:
            raise ValueError(f"{total - n_test} training images with data.validation_fraction {validation_fraction} "
                             f"give {n_val} validation images; both parts need at least one (use more images or "
                             "another fraction)")
        splits["val"] = np.sort(order[n_test:n_test + n_val])
        splits["train"] = np.sort(order[n_test + n_val:])
    return splits


def read_crop(path: Path, crop: Crop, odd_sizes: list[tuple[str, int, int]] | None = None) -> np.ndarray:
    """Decode one JPEG and return its (size, size, 3) uint8 crop; ValueError naming the file if unreadable.

    odd_sizes: where to note (path, width, height) of an image that is not CelebA's 178x218.
    """
    try:
        with Image.open(path) as image:
            image.load()
            pixels = rgb_pixels(image, path)  # (H, W, 3) uint8, whatever the file's mode
    except (OSError, SyntaxError, Image.DecompressionBombError) as error:  # truncated, non-image or bomb files
        raise ValueError(f"{path}: cannot read this image ({error}); the file is corrupt or not a JPEG: "
                         "replace it (re-extract or regenerate the raw data) and run prepare again") from error
    height, width = pixels.shape[:2]
    if width < crop.left + crop.size or height < crop.top + crop.size:
        raise ValueError(f"{path}: {width}x{height} image is too small for the crop box {crop.box} "
                         "(data.crop); is it an aligned 178x218 CelebA image?")
    if odd_sizes is not None and (width, height) != CELEBA_SIZE:
        odd_sizes.append((str(path), width, height))
    return pixels[crop.top : crop.top + crop.size, crop.left : crop.left + crop.size]


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, S, S) uint8 -> (B, 3, size, size) uint8, antialiased bicubic.

    PyTorch's uint8 antialiased bicubic follows PIL's resize(BICUBIC) (its support widens with the downscale
    factor), agreeing within 2 grey levels, and is several times faster on CPU; one call per batch keeps its
    thread start-up cost negligible against the work.
    """
    return F.interpolate(images, size=(size, size), mode="bicubic", antialias=True)


def load_batch(paths: Sequence[Path], crop: Crop, resolutions: Sequence[int],
               odd_sizes: list[tuple[str, int, int]] | None = None) -> list[np.ndarray]:
    """Decode each JPEG once; one (N, 3, res, res) uint8 array per resolution."""
    crops = np.empty((len(paths), crop.size, crop.size, 3), np.uint8)  # (N, S, S, 3)
    for position, path in enumerate(paths):
        crops[position] = read_crop(Path(path), crop, odd_sizes)
    batch = torch.from_numpy(crops).permute(0, 3, 1, 2)  # (N, 3, S, S), channels-last in memory
    return [resize(batch, size).numpy() for size in resolutions]


# Per-worker state: memory maps of the arrays being written, opened once per process.
_arrays: dict[tuple[int, str], np.ndarray] = {}
_settings: dict[str, object] = {}


def _open_arrays(staging: str, resolutions: Sequence[int], crop: Crop, splits: Sequence[str]) -> None:
    _settings.update(crop=crop, resolutions=tuple(resolutions), splits=tuple(splits))
    for size in resolutions:
        for split in _settings["splits"]:
            _arrays[(size, split)] = np.load(Path(staging) / str(size) / f"{split}.npy", mmap_mode="r+")


# A worker process starts by importing torch: on a 2-core machine a second process only pays off for some 10,000
# images or more (benchmarks/prepare.py measures both), so small sets stay in one process.
MIN_IMAGES_PER_WORKER = 5000


def _init_worker(staging: str, resolutions: Sequence[int], crop: Crop, splits: Sequence[str]) -> None:
    """A pool process: one torch thread, since the processes are the parallelism (more would oversubscribe)."""
    torch.set_num_threads(1)
    _open_arrays(staging, resolutions, crop, splits)


def _process(job: tuple[str, int, list[str]]) -> tuple[int, list[tuple[str, int, int]]]:
    """Prepare one chunk: consecutive rows `start ...` of one split; returns the number of images and the
    (path, width, height) of those that are not CelebA's size."""
    split, start, paths = job
    odd_sizes: list[tuple[str, int, int]] = []
    batches = load_batch(paths, _settings["crop"], _settings["resolutions"], odd_sizes)
    for size, batch in zip(_settings["resolutions"], batches, strict=True):
        _arrays[(size, split)][start : start + len(paths)] = batch
    return len(paths), odd_sizes


def warn_odd_sizes(odd_sizes: list[tuple[str, int, int]], total: int, crop: Crop) -> None:
    """data.crop holds CelebA's coordinates: say so when other images were cut with them."""
    if odd_sizes:
        path, width, height = odd_sizes[0]
        logger.warning("%d of %d images are not CelebA's aligned %dx%d (e.g. %s is %dx%d), yet were cropped at "
                       "CelebA's coordinates %s (data.crop): align and crop them like CelebA, or set data.crop "
                       "for their size", len(odd_sizes), total, *CELEBA_SIZE, path, width, height, crop.box)


def check_split_sizes(splits: dict[str, np.ndarray], batch_size: int | None) -> None:
    """Refuse splits too small for statistics (a one-image test split gives an RMSE spread of 0) or a batch."""
    n_train, n_test = len(splits["train"]), len(splits["test"])
    if n_test < MIN_TEST_IMAGES:
        raise ValueError(f"{n_train + n_test} images give a test split of {n_test}: Table 1's spread and "
                         f"confidence intervals need at least {MIN_TEST_IMAGES} test images; use more images "
                         "(or a larger data.test_fraction)")
    if batch_size is not None and n_train < batch_size:
        logger.warning("%d training images are fewer than one batch (train.batch_size %d): every step sees the "
                       "same %d images; use more images or a smaller batch size", n_train, batch_size, n_train)


def _preallocate(path: Path) -> None:
    """Reserve a memory-mapped file's blocks now: on a full disk this raises ENOSPC here, where writing
    through the memory map later would kill the process with SIGBUS and no message."""
    size = path.stat().st_size
    free = shutil.disk_usage(path.parent).free
    message = (f"not enough free space for {path.name} in {path.parent} ({size / 2**20:.1f} MiB needed, "
               f"{free / 2**20:.1f} MiB free); free some space or point paths.prepared at another disk")
    if size > free:
        raise OSError(errno.ENOSPC, message)
    try:
        with open(path, "r+b") as handle:
            os.posix_fallocate(handle.fileno(), 0, size)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise OSError(error.errno, message) from error
        if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system without fallocate: go on
            raise


def _jobs(paths: list[Path], splits: dict[str, np.ndarray]) -> list[tuple[str, int, list[str]]]:
    """Chunks of CHUNK consecutive rows of one split each."""
    return [(split, start, [str(paths[index]) for index in splits[split][start : start + CHUNK]])
            for split in SPLITS if split in splits for start in range(0, len(splits[split]), CHUNK)]


def file_sha256(path: Path, chunk_size: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def _attribute_table(raw: Path, names: list[str]) -> tuple[list[str], dict[str, dict[str, int]]]:
    """Attribute columns (0/1) per image: CelebA's 40 when the list file exists, plus Sunglasses from extras."""
    columns: list[str] = []
    table: dict[str, dict[str, int]] = {name: {} for name in names}
    attributes_path = raw / ATTRIBUTES_FILE
    if attributes_path.is_file():
        attributes = read_attributes(attributes_path)
        missing = [name for name in names if name not in attributes]
        if missing:
            raise ValueError(f"{attributes_path}: no attributes for {len(missing)} images, first {missing[0]}; "
                             "the list does not belong to these images: copy the matching list file or remove it")
        columns = list(next(iter(attributes.values())))
        for name in names:
            table[name].update({key: int(value > 0) for key, value in attributes[name].items()})
    else:
        logger.info("%s not found: attributes.csv gets split, row and image_id only", attributes_path)
    extras_path = raw / EXTRAS_FILE
    if extras_path.is_file():
        with open(extras_path, newline="") as handle:
            sunglasses = {row["image_id"]: int(row["Sunglasses"]) for row in csv.DictReader(handle)}
        missing = [name for name in names if name not in sunglasses]
        if missing:
            raise ValueError(f"{extras_path}: no row for {missing[0]} ({len(missing)} images missing); "
                             "regenerate the synthetic faces")
        columns.append("Sunglasses")
        for name in names:
            table[name]["Sunglasses"] = sunglasses[name]
    return columns, table


def prepare(raw: str | Path, out: str | Path, *, crop: Crop, resolutions: Sequence[int], test_fraction: float,
            seed: int, source: str, workers: int = 1, min_images_per_worker: int = MIN_IMAGES_PER_WORKER,
            batch_size: int | None = None, validation_fraction: float = 0.0) -> dict:
    """Build the prepared dataset in `out` (replaced atomically); returns the manifest.

    validation_fraction > 0 also writes `val.npy`, carved from the training images (see split_indices).
    """
    raw, out = Path(raw), Path(out)
    image_dir = raw / IMAGE_DIR
    paths = sorted(path for path in image_dir.glob("*") if path.suffix.lower() in JPEG_SUFFIXES)  # .JPG too
    if not paths:
        raise FileNotFoundError(f"no JPEG images in {image_dir}: run `lapcvae generate-faces` or "
                                "`lapcvae fetch-celeba` first (or pass the right --raw)")
    if workers > 1 and len(paths) < workers * min_images_per_worker:
        workers = max(1, len(paths) // min_images_per_worker)
        logger.info("%d images: preparing them in %d process(es), which is faster here", len(paths), workers)
    names = [path.name for path in paths]
    splits = split_indices(len(paths), test_fraction, seed, validation_fraction)
    check_split_sizes(splits, batch_size)
    split_names = [split for split in SPLITS if split in splits]
    columns, attributes = _attribute_table(raw, names)
    resolutions = [int(size) for size in resolutions]

    with atomic_directory(out) as staging:
        for size in resolutions:
            (staging / str(size)).mkdir()
            for split in split_names:
                shape = (len(splits[split]), 3, size, size)  # (N, C, H, W)
                np.lib.format.open_memmap(staging / str(size) / f"{split}.npy", mode="w+", dtype=np.uint8,
                                          shape=shape).flush()
                _preallocate(staging / str(size) / f"{split}.npy")
        jobs = _jobs(paths, splits)
        odd_sizes: list[tuple[str, int, int]] = []
        with progress_bar(total=len(paths), desc="prepare", unit="img") as progress:
            if workers > 1:
                context = multiprocessing.get_context("spawn")
                with context.Pool(workers, initializer=_init_worker,
                                  initargs=(str(staging), resolutions, crop, split_names)) as pool:
                    for done, odd in pool.imap_unordered(_process, jobs):
                        progress.update(done)
                        odd_sizes += odd
            else:
                _open_arrays(str(staging), resolutions, crop, split_names)
                try:
                    for job in jobs:
                        done, odd = _process(job)
                        progress.update(done)
                        odd_sizes += odd
                finally:
                    _arrays.clear()

        warn_odd_sizes(odd_sizes, len(paths), crop)
        with open(staging / "attributes.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["split", "row", "image_id", *columns])
            for split in split_names:
                for row, index in enumerate(splits[split]):
                    name = names[index]
                    writer.writerow([split, row, name, *(attributes[name][column] for column in columns)])

        manifest = {
            "source": source,
            "raw": str(raw),
            "seed": seed,
            "test_fraction": test_fraction,
            "validation_fraction": validation_fraction,
            "counts": {"total": len(paths), **{split: len(splits[split]) for split in split_names}},
            "crop": {"top": crop.top, "left": crop.left, "size": crop.size},
            "resolutions": resolutions,
            "resize": RESIZE_METHOD,
            "attributes": columns,
            "arrays": {
                f"{size}/{split}.npy": {
                    "shape": [len(splits[split]), 3, size, size],
                    "dtype": "uint8",
                    "sha256": file_sha256(staging / str(size) / f"{split}.npy"),
                }
                for size in resolutions for split in split_names
            },
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    logger.info("prepared %d train and %d test images at %s px in %s", len(splits["train"]),
                len(splits["test"]), ", ".join(map(str, resolutions)), out)
    return manifest
