"""The human study's export (`lapcvae export-study`): blind pairs, their images, key.csv and study.html.

What participants see (study.html, images/) carries opaque random ids only; key.csv maps every pair to its
models and sides. The vocabulary (experiments, StudyPair) is in `eval.human_study`.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
from PIL import Image

from core.atomic import atomic_directory
from core.progress import progress_bar
from data.arrays import load_image_array
from eval.human_study import EXPERIMENTS, ORIGINAL, StudyPair, StudyPlan

logger = logging.getLogger(__name__)

EXPORT_ENTRIES = ("images", "key.csv", "study.html")
TEMPLATE = Path(__file__).with_name("study_page.html")
DATA_PLACEHOLDER = "/*STUDY_DATA*/null"
# Salt of the study's random stream, so that its draws differ from other steps that use the same global seed.
STUDY_SEED_SALT = 512
ID_HEX_DIGITS = 12  # 48 random bits: collisions are drawn away, and hex ids can never spell a model name


def load_images(path: Path, how_to_make: str) -> np.ndarray:
    """A uint8 (N, 3, H, W) .npy array, memory-mapped; errors name the file and the step that makes it."""
    return load_image_array(path, made_by=how_to_make)


def load_study_inputs(
    eval_dir: Path, prepared_dir: Path, resolution: int, models: Sequence[str]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The test originals and each model's reconstructions of them, checked to line up image for image."""
    res = str(resolution)
    originals = load_images(prepared_dir / res / "test.npy", "`lapcvae prepare`")  # (N, 3, H, W)
    if originals.shape[2:] != (resolution, resolution):
        raise ValueError(f"{prepared_dir / res / 'test.npy'} holds {originals.shape[2:]} images, not "
                         f"{resolution}x{resolution}: set human_study.resolution to one of data.resolutions")
    reconstructions = {}
    for model in models:
        path = eval_dir / res / model / "reconstructions.npy"
        images = load_images(path, f"`lapcvae evaluate` for {model} at {res} px")
        if images.shape != originals.shape:
            raise ValueError(f"{path} holds {images.shape} but the test split has {originals.shape}: "
                             f"re-run `lapcvae evaluate` for {model} on the current data")
        reconstructions[model] = images
    return originals, reconstructions


def opaque_ids(rng: np.random.Generator, count: int) -> list[str]:
    """`count` distinct random hex ids: they sort in an order unrelated to model, side or test row."""
    values = rng.choice(16**ID_HEX_DIGITS, size=count, replace=False)
    return [f"{value:0{ID_HEX_DIGITS}x}" for value in values]


def plan_study(test_size: int, models: Sequence[str], pairs: int, seed: int) -> StudyPlan:
    """Which test rows are compared and which model is on the left, for both experiments; all from `seed`."""
    if test_size < 1:
        raise ValueError("the test split is empty: prepare the data with a non-zero data.test_fraction")
    count = min(pairs, test_size)
    if count < pairs:
        logger.info("human_study.pairs is %d but the test split has %d images: exporting %d pairs per "
                    "experiment", pairs, test_size, count)
    rng = np.random.default_rng([seed, STUDY_SEED_SALT])
    rows = np.sort(rng.choice(test_size, size=count, replace=False))  # (count,)
    ids = iter(opaque_ids(rng, count * (len(models) + 1 + len(EXPERIMENTS))))
    images: dict[str, tuple[str, int]] = {}
    image_of: dict[tuple[str, int], str] = {}
    for row in rows.tolist():
        for source in (ORIGINAL, *models):
            image_id = next(ids)
            images[image_id] = (source, row)
            image_of[source, row] = image_id
    study_pairs = []
    for experiment in EXPERIMENTS:
        swapped = rng.integers(0, 2, size=count).astype(bool)  # (count,) left/right order, drawn per pair
        for row, swap in zip(rows.tolist(), swapped.tolist(), strict=True):
            left, right = (models[1], models[0]) if swap else (models[0], models[1])
            original = image_of[ORIGINAL, row] if experiment == "with_original" else ""
            study_pairs.append(StudyPair(next(ids), experiment, row, left, right,
                                         image_of[left, row], image_of[right, row], original))
    return StudyPlan(study_pairs, images)


def image_path(image_id: str) -> str:
    """Where study.html finds an image: relative, so the folder can be copied anywhere."""
    return f"images/{image_id}.png"


def render_page(pairs: Sequence[StudyPair], display_size: int) -> str:
    """study.html: the template with the pairs (ids and relative image paths only) embedded as JSON."""
    experiments = []
    for experiment in EXPERIMENTS:
        # Sorted by the random pair id: the file's order says nothing about test rows or sides.
        shown = sorted((pair for pair in pairs if pair.experiment == experiment), key=lambda p: p.pair_id)
        experiments.append({"name": experiment, "pairs": [
            {"id": pair.pair_id, "left": image_path(pair.left_image), "right": image_path(pair.right_image),
             "original": image_path(pair.original_image) if pair.original_image else None}
            for pair in shown
        ]})
    data = json.dumps({"displaySize": display_size, "experiments": experiments}, separators=(",", ":"))
    template = TEMPLATE.read_text(encoding="utf-8")
    # "</" inside a <script> would end it early; JSON allows the escaped form.
    return template.replace(DATA_PLACEHOLDER, data.replace("</", "<\\/"))


def write_key(path: Path, pairs: Sequence[StudyPair]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[field.name for field in fields(StudyPair)])
        writer.writeheader()
        writer.writerows(asdict(pair) for pair in pairs)


def keep_others(out: Path, staging: Path) -> None:
    """Copy into `staging` what others put in `out` (responses), so that replacing `out` keeps it."""
    if not out.is_dir():
        return
    for entry in out.iterdir():
        if entry.name not in EXPORT_ENTRIES:
            logger.warning("keeping %s from the previous export; it may refer to the old key.csv", entry)
            copy = shutil.copytree if entry.is_dir() else shutil.copy2
            copy(entry, staging / entry.name)


def export_study(
    out: Path, plan: StudyPlan, originals: np.ndarray, reconstructions: Mapping[str, np.ndarray],
    display_size: int,
) -> None:
    """Write images/, key.csv and study.html into a temporary folder beside `out`, then rename it to `out`."""
    with atomic_directory(out) as staging:
        (staging / "images").mkdir()
        for image_id, (source, row) in progress_bar(sorted(plan.images.items()), desc="study images", unit="png"):
            image = originals[row] if source == ORIGINAL else reconstructions[source][row]  # (3, H, W)
            pixels = np.ascontiguousarray(image.transpose(1, 2, 0))  # (H, W, 3)
            Image.fromarray(pixels).save(staging / image_path(image_id))
        write_key(staging / "key.csv", plan.pairs)
        (staging / "study.html").write_text(render_page(plan.pairs, display_size), encoding="utf-8")
        keep_others(out, staging)
    logger.info("wrote %d pairs and %d images to %s", len(plan.pairs), len(plan.images), out)
