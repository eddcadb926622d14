"""The one reader of the suite's image arrays: uint8 (N, 3, H, W) `.npy` files, memory-mapped."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


def load_image_array(
    path: str | Path, resolution: int | None = None, *, made_by: str = "`lapcvae prepare`"
) -> np.ndarray:
    """Memory-map a uint8 image array (N >= 1, 3, H, W), of `resolution` x `resolution` when given.

    Errors name the file, what is wrong, and `made_by`, the step that writes the file, to rerun.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run {made_by} first")
    try:
        images = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as error:
        raise ValueError(f"{path} is not a readable .npy array ({error}); delete it and rerun {made_by}") from error
    size = "H, W" if resolution is None else f"{resolution}, {resolution}"
    wrong_size = resolution is not None and images.ndim == 4 and images.shape[2:] != (resolution, resolution)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3 or len(images) == 0 or wrong_size:
        raise ValueError(
            f"{path} holds {images.dtype} {images.shape}, not uint8 images (N, 3, {size}): check --res (the "
            f"resolution) matches the file, or rerun {made_by}"
        )
    return images


def read_rows(images: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """images[indices] as a new array. From a memory-mapped file the rows are read with pread, not through the
    mapping, so the pages of the images a job has seen do not stay in its resident memory: a training job's peak
    memory does not grow with the size of its data set."""
    if not isinstance(images, np.memmap) or images.filename is None or not images.flags.c_contiguous:
        return np.asarray(images[indices])
    row_bytes = images[0].nbytes
    out = np.empty((len(indices), *images.shape[1:]), images.dtype)
    with open(images.filename, "rb", buffering=0) as handle:
        for position, row in enumerate(np.asarray(indices, np.int64)):
            start = images.offset + int(row) * row_bytes
            out[position] = np.frombuffer(os.pread(handle.fileno(), row_bytes, start), images.dtype).reshape(
                images.shape[1:])
    return out


# PIL modes of 16-bit (or 32-bit integer) samples: convert("RGB") clips them at 255 (a 16-bit PNG comes out white).
WIDE_INTEGER_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def rgb_pixels(image: Any, path: str | Path) -> np.ndarray:
    """A PIL image of any mode as (H, W, 3) uint8: 16-bit samples scaled to 8 bits (65535 -> 255), palettes,
    grey, CMYK and alpha converted (alpha dropped); a float or out-of-range image is refused naming `path`."""
    if image.mode in WIDE_INTEGER_MODES:
        samples = np.asarray(image)
        if samples.size and (samples.min() < 0 or samples.max() > 65535):
            raise ValueError(f"{path}: {image.mode} image with samples outside 0..65535; save it as an 8- or "
                             "16-bit PNG or a JPEG")
        grey = np.floor(samples.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)  # 16 -> 8 bits, rounded
        return np.repeat(grey[..., None], 3, axis=-1)
    if image.mode == "F":
        raise ValueError(f"{path}: floating-point ({image.mode}) image; save it as an 8- or 16-bit PNG or a JPEG")
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
