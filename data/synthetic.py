"""`lapcvae generate-faces`: the procedural synthetic faces (data/faces.py) as a CelebA-format tree.

    lapcvae generate-faces --params P... --out data/raw/synthetic [--count N] [--workers N] [--preview PNG]

Writes `<out>/img_align_celeba/000001.jpg ...` (178x218 JPEG), `<out>/list_attr_celeba.txt`,
`<out>/list_eval_partition.txt` and `<out>/synthetic_extras.csv` (image_id, Sunglasses and the generator's
other hidden factors; CelebA has no sunglasses attribute, so sunglasses also set Eyeglasses = 1). Face i is a
pure function of (params.seed, i), so any worker count, order or subset gives the same bytes. The tree is built
in a temporary folder beside it (core/atomic.py) and renamed into place.
"""

from __future__ import annotations

import csv
import logging
import multiprocessing
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core import atomic
from core.atomic import atomic_directory
from core.progress import progress_bar
from data.celeba_format import (
    ATTRIBUTES_FILE,
    EXTRAS_FILE,
    IMAGE_DIR,
    PARTITION_FILE,
    image_name,
    write_attributes,
    write_partition,
)
from data.faces import FaceSpec, draw_face

logger = logging.getLogger(__name__)

EXTRA_COLUMNS = ("image_id", "Sunglasses", "hair_colour", "long_hair", "skin_r", "skin_g", "skin_b", "angle",
                 "scale", "offset_x", "offset_y", "background", "light_strength", "noise")


def partition_of(index: int) -> int:
    """CelebA-style partition label (0 train, 1 val, 2 test), 8:1:1 by index; `prepare` ignores it anyway."""
    return {8: 1, 9: 2}.get(index % 10, 0)


def extras_row(index: int, spec: FaceSpec) -> dict[str, Any]:
    return {
        "image_id": image_name(index), "Sunglasses": int(spec.sunglasses), "hair_colour": spec.hair,
        "long_hair": int(spec.long_hair), "skin_r": spec.skin[0], "skin_g": spec.skin[1], "skin_b": spec.skin[2],
        "angle": round(spec.angle, 3), "scale": round(spec.scale, 4), "offset_x": round(spec.offset[0], 3),
        "offset_y": round(spec.offset[1], 3), "background": spec.pattern,
        "light_strength": round(spec.light_strength, 4), "noise": round(spec.noise, 3),
    }


def _write_face(job: tuple[int, int, int, str]) -> tuple[int, FaceSpec]:
    seed, index, quality, image_dir = job
    pixels, spec = draw_face(seed, index)
    Image.fromarray(pixels).save(os.path.join(image_dir, image_name(index)), format="JPEG", quality=quality)
    return index, spec


def generate(out: str | Path, *, count: int, seed: int, jpeg_quality: int, workers: int = 1) -> Path:
    """Write `count` faces and their metadata to `out` (replacing it atomically); returns `out`."""
    if count < 1:
        raise ValueError(f"--count must be at least 1, got {count}")
    out = Path(out)
    with atomic_directory(out, raw_data=True) as staging:
        image_dir = staging / IMAGE_DIR
        image_dir.mkdir()
        jobs = [(seed, index, jpeg_quality, str(image_dir)) for index in range(count)]
        specs: list[FaceSpec | None] = [None] * count
        progress = progress_bar(total=count, desc="faces", unit="img")
        if workers > 1:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for index, spec in pool.imap_unordered(_write_face, jobs, chunksize=max(1, count // (8 * workers))):
                    specs[index] = spec
                    progress.update()
        else:
            for job in jobs:
                index, spec = _write_face(job)
                specs[index] = spec
                progress.update()
        progress.close()
        names = [image_name(index) for index in range(count)]
        write_attributes(staging / ATTRIBUTES_FILE, names, [spec.attributes() for spec in specs])
        write_partition(staging / PARTITION_FILE, names, [partition_of(index) for index in range(count)])
        with open(staging / EXTRAS_FILE, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=EXTRA_COLUMNS)
            writer.writeheader()
            writer.writerows(extras_row(index, spec) for index, spec in enumerate(specs))
    logger.info("wrote %d synthetic faces (seed %d) to %s", count, seed, out)
    return out


def write_raw(out: Path, params: Mapping[str, Any], workers: int = 1) -> Path:
    """The data-set writer (core/datasets.py): data.synthetic.count faces of seed `params.seed` in `out`."""
    synthetic = params["data"]["synthetic"]
    return generate(out, count=synthetic["count"], seed=params["seed"], jpeg_quality=synthetic["jpeg_quality"],
                    workers=workers)


def save_grid(image_dir: str | Path, path: str | Path, *, crop_box: tuple[int, int, int, int] | None = None,
              tile_size: int | None = None, rows: int = 8, columns: int = 8) -> None:
    """A rows x columns contact sheet (PNG) of the first images of `image_dir`, optionally cropped to
    `crop_box` (PIL's left, upper, right, lower) and resized to `tile_size` squares, as the models see them."""
    files = sorted(Path(image_dir).glob("*.jpg"))[: rows * columns]
    if not files:
        raise FileNotFoundError(f"no .jpg images in {image_dir}: generate the faces first")
    tiles = []
    for file in files:
        with Image.open(file) as image:
            tile = image.convert("RGB").crop(crop_box) if crop_box else image.convert("RGB")
            if tile_size:
                tile = tile.resize((tile_size, tile_size), Image.BICUBIC)
            tiles.append(np.asarray(tile))
    height, width = tiles[0].shape[:2]
    sheet = np.full((rows * height, columns * width, 3), 255, np.uint8)
    for position, tile in enumerate(tiles):
        row, column = divmod(position, columns)
        sheet[row * height : (row + 1) * height, column * width : (column + 1) * width] = tile
    atomic.save_image(Image.fromarray(sheet), path, format="PNG", optimize=True)
