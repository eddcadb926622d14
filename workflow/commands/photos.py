"""Any face photo as a model input: decoded, turned upright, cropped to a square and resized to the model's side.

Two crops (`lapcvae reconstruct|partial-sample --crop`):
- `centre` (default): the largest centred square of any photo; put the face in the middle of the frame.
- `celeba`: the authors' box of an aligned 178x218 CelebA image (params `data.crop`, rows 40:188 and columns
  15:163), the crop the models were trained on, so a CelebA image or one of the synthetic faces comes out exactly
  as `lapcvae prepare` makes it.
Both resize as `lapcvae prepare` does (antialiased bicubic, `data.prepare.resize`). Only the model commands use
this, so it lives beside them rather than in the data package, whose files every data job's rerun check reads.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from data.arrays import rgb_pixels
from data.prepare import CELEBA_SIZE, Crop, resize

logger = logging.getLogger(__name__)

CROPS = ("centre", "celeba")
def decode_rgb(path: Path) -> np.ndarray:
    """A photo file as (H, W, 3) uint8 RGB, upright per its EXIF orientation; ValueError naming the file if it is
    not an image PIL can decode."""
    if path.is_dir():
        raise ValueError(f"image {path} is a folder: pass an image file (PNG, JPEG, ...)")
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist: pass an existing image file")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)  # phone photos are stored sideways with a rotation tag
            return rgb_pixels(image, path)  # (H, W, 3): 16-bit samples scaled to 8 bits, float images refused
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError(f"image {path} cannot be decoded ({error}); pass a valid PNG or JPEG") from error


def square_crop(pixels: np.ndarray, crop: str, celeba_box: Crop, path: Path) -> np.ndarray:
    """(H, W, 3) -> (S, S, 3): the centred square, or the CelebA box of an aligned 178x218 image."""
    height, width = pixels.shape[:2]
    if crop == "celeba":
        if (width, height) != CELEBA_SIZE:
            raise ValueError(f"image {path} is {width}x{height}, but --crop celeba takes an aligned "
                             f"{CELEBA_SIZE[0]}x{CELEBA_SIZE[1]} CelebA image (box {celeba_box.box}); use --crop "
                             "centre for other photos")
        return pixels[celeba_box.top: celeba_box.top + celeba_box.size,
                      celeba_box.left: celeba_box.left + celeba_box.size]
    if crop != "centre":
        raise ValueError(f"crop {crop!r} is not one of {', '.join(CROPS)}")
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return pixels[top: top + side, left: left + side]


def load_photo(path: str | Path, resolution: int, crop: str = "centre", celeba_box: Crop | None = None) -> torch.Tensor:
    """A face photo -> (1, 3, resolution, resolution) float in [0, 1]: cropped by `crop`, then resized.

    celeba_box: the CelebA crop (params `data.crop`); needed for crop="celeba".
    """
    path = Path(path)
    if crop == "celeba" and celeba_box is None:
        raise ValueError("--crop celeba needs the crop box: pass data.crop from params")
    pixels = square_crop(decode_rgb(path), crop, celeba_box, path)  # (S, S, 3)
    square = torch.from_numpy(np.array(pixels)).permute(2, 0, 1)[None]  # (1, 3, S, S) uint8, a writable copy
    if square.shape[-1] != resolution:
        square = resize(square, resolution)
    logger.info("%s: %s crop of %dx%d, resized to %dx%d", path, crop, pixels.shape[1], pixels.shape[0],
                resolution, resolution)
    return square.float() / 255.0
