"""A toy data set, added the docs/extending.md way ("Adding a data set"): one module with one writer function.

Each image is a 178x218 JPEG of one flat colour with a darker square (the "face"), drawn from the seed; the
colour of image i is recorded in its name's attribute `Bright` (1 for light images) so that `prepare` has
something to carry into attributes.csv.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.atomic import atomic_directory
from data.celeba_format import ATTRIBUTES_FILE, IMAGE_DIR, image_name


def write_raw(out: Path, params: Mapping[str, Any], workers: int = 1) -> Path:
    """data.toyfaces.count images of seed params.seed as a CelebA-format tree in `out` (replaced atomically)."""
    count = params["data"]["toyfaces"]["count"]
    rng = np.random.default_rng(params["seed"])
    colours = rng.integers(0, 256, size=(count, 3), dtype=np.uint8)  # (N, 3)
    with atomic_directory(out, raw_data=True) as staging:
        (staging / IMAGE_DIR).mkdir()
        lines = [str(count), "Bright"]
        for index, colour in enumerate(colours):
            pixels = np.empty((218, 178, 3), np.uint8)  # (H, W, 3), CelebA's aligned size
            pixels[:] = colour
            pixels[80:150, 50:130] = colour // 2
            Image.fromarray(pixels).save(staging / IMAGE_DIR / image_name(index), format="JPEG", quality=95)
            lines.append(f"{image_name(index)} {1 if int(colour.sum()) > 381 else -1}")
        (staging / ATTRIBUTES_FILE).write_text("\n".join(lines) + "\n")
    return out
