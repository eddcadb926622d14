"""The human study's export (`lapcvae export-study`): blind pairs, attention checks, their images, key.csv,
design.json and study.html.

What participants see (study.html, images/) carries opaque random ids only; key.csv maps every pair to its
models and sides (and marks the attention checks); design.json holds what the analysis needs to recompute each
participant's subset (`eval.human_study.participant_trials`). The vocabulary (experiments, StudyPair) is in
`eval.human_study`.
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
from scipy.ndimage import gaussian_filter

from core.atomic import atomic_directory
from core.progress import progress_bar
from data.arrays import load_image_array
from eval.human_study import ATTENTION, COMPARISON, DEGRADED, EXPERIMENTS, INTACT, ORIGINAL, StudyPair, StudyPlan

logger = logging.getLogger(__name__)

EXPORT_ENTRIES = ("images", "key.csv", "design.json", "study.html")
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


def attention_rows(rng: np.random.Generator, test_size: int, compared: np.ndarray, count: int) -> list[int]:
    """Test rows of the attention checks' faces: rows not compared when the split has enough, else any rows."""
    if count == 0:
        return []
    spare = np.setdiff1d(np.arange(test_size), compared)  # (spare,)
    candidates = spare if len(spare) >= count else np.arange(test_size)
    return np.sort(rng.choice(candidates, size=count, replace=count > len(candidates))).tolist()


def plan_study(test_size: int, models: Sequence[str], pairs: int, seed: int, attention_checks: int = 0) -> StudyPlan:
    """Which test rows are compared, which model is on the left, and the attention checks, for both experiments;
    all from `seed`. Each check pairs a test face (INTACT) with its degraded copy, in random sides."""
    if test_size < 1:
        raise ValueError("the test split is empty: prepare the data with a non-zero data.test_fraction")
    count = min(pairs, test_size)
    if count < pairs:
        logger.info("human_study.pairs is %d but the test split has %d images: exporting %d pairs per "
                    "experiment", pairs, test_size, count)
    rng = np.random.default_rng([seed, STUDY_SEED_SALT])
    rows = np.sort(rng.choice(test_size, size=count, replace=False))  # (count,)
    check_rows = attention_rows(rng, test_size, rows, attention_checks)
    per_experiment = count + len(check_rows)
    ids = iter(opaque_ids(rng, count * (len(models) + 1) + 2 * len(check_rows) + per_experiment * len(EXPERIMENTS)))
    images: dict[str, tuple[str, int]] = {}
    image_of: dict[tuple[str, int], str] = {}
    sources = [(source, row) for row in rows.tolist() for source in (ORIGINAL, *models)]
    sources += [(source, row) for row in check_rows for source in (ORIGINAL, DEGRADED)]
    for source, row in sources:
        if (source, row) not in image_of:  # a check may reuse a compared face's original when the split is small
            image_id = next(ids)
            images[image_id] = (source, row)
            image_of[source, row] = image_id
    image_of.update({(INTACT, row): image_of[ORIGINAL, row] for row in check_rows})
    study_pairs = []
    for experiment in EXPERIMENTS:
        trials = [(row, models, COMPARISON) for row in rows.tolist()]
        trials += [(row, (INTACT, DEGRADED), ATTENTION) for row in check_rows]
        swapped = rng.integers(0, 2, size=len(trials)).astype(bool)  # (trials,) left/right order, drawn per pair
        for (row, compared, role), swap in zip(trials, swapped.tolist(), strict=True):
            left, right = (compared[1], compared[0]) if swap else (compared[0], compared[1])
            original = image_of[ORIGINAL, row] if experiment == "with_original" else ""
            study_pairs.append(StudyPair(next(ids), experiment, row, left, right,
                                         image_of[left, row], image_of[right, row], original, role))
    assignment_seed = int(rng.integers(0, 2**31))
    return StudyPlan(study_pairs, images, assignment_seed)


def degrade(image: np.ndarray, blur_sigma: float, noise_std: float, seed: int) -> np.ndarray:
    """An attention check's degraded face: Gaussian blur (sigma a fraction of the side), then Gaussian noise.

    image: (3, H, W) uint8; returns the same shape and type. The noise is drawn from `seed`.
    """
    pixels = image.astype(np.float64) / 255.0
    sigma = blur_sigma * image.shape[-1]
    blurred = gaussian_filter(pixels, sigma=(0, sigma, sigma), mode="reflect")
    noisy = blurred + np.random.default_rng(seed).normal(0.0, noise_std, size=pixels.shape)
    return np.round(np.clip(noisy, 0.0, 1.0) * 255).astype(np.uint8)


def image_path(image_id: str) -> str:
    """Where study.html finds an image: relative, so the folder can be copied anywhere."""
    return f"images/{image_id}.png"


def render_page(plan: StudyPlan, display_size: int, pairs_per_participant: int) -> str:
    """study.html: the template with the pairs (ids and relative image paths only) embedded as JSON.

    Each experiment lists its comparison pairs and its attention checks apart (the page gives every participant
    all checks and a subset of the pairs), each sorted by the random pair id, so the file's order says nothing
    about test rows or sides.
    """
    def shown(pair: StudyPair) -> dict[str, str | None]:
        return {"id": pair.pair_id, "left": image_path(pair.left_image), "right": image_path(pair.right_image),
                "original": image_path(pair.original_image) if pair.original_image else None}

    experiments = []
    for experiment in EXPERIMENTS:
        own = sorted((pair for pair in plan.pairs if pair.experiment == experiment), key=lambda p: p.pair_id)
        experiments.append({"name": experiment,
                            "pairs": [shown(pair) for pair in own if pair.role != ATTENTION],
                            "checks": [shown(pair) for pair in own if pair.role == ATTENTION]})
    data = json.dumps({"displaySize": display_size, "assignmentSeed": plan.assignment_seed,
                       "pairsPerParticipant": pairs_per_participant, "experiments": experiments},
                      separators=(",", ":"))
    template = TEMPLATE.read_text(encoding="utf-8")
    # "</" inside a <script> would end it early; JSON allows the escaped form.
    return template.replace(DATA_PLACEHOLDER, data.replace("</", "<\\/"))


def study_design(plan: StudyPlan, pairs_per_participant: int) -> dict[str, int]:
    """design.json: what the analysis needs to recompute each participant's subset and to judge the checks."""
    checks = sum(pair.role == ATTENTION for pair in plan.pairs if pair.experiment == EXPERIMENTS[0])
    pool = sum(pair.role != ATTENTION for pair in plan.pairs if pair.experiment == EXPERIMENTS[0])
    return {"assignment_seed": plan.assignment_seed, "pairs_per_participant": min(pairs_per_participant, pool),
            "attention_checks_per_experiment": checks}


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
    display_size: int, pairs_per_participant: int, attention: Mapping[str, float] | None = None,
) -> None:
    """Write images/, key.csv, design.json and study.html into a temporary folder beside `out`, then rename it.

    attention: `blur_sigma` and `noise_std` of the attention checks' degraded faces (human_study.attention_checks).
    """
    if any(source == DEGRADED for source, _ in plan.images.values()) and attention is None:
        raise ValueError("the plan has attention checks: pass their blur_sigma and noise_std "
                         "(human_study.attention_checks)")
    design = study_design(plan, pairs_per_participant)
    with atomic_directory(out) as staging:
        (staging / "images").mkdir()
        for image_id, (source, row) in progress_bar(sorted(plan.images.items()), desc="study images", unit="png"):
            if source == DEGRADED:  # noise drawn from the image's own random id: fixed by the study's seed
                image = degrade(originals[row], attention["blur_sigma"], attention["noise_std"], int(image_id, 16))
            else:
                image = originals[row] if source == ORIGINAL else reconstructions[source][row]  # (3, H, W)
            pixels = np.ascontiguousarray(image.transpose(1, 2, 0))  # (H, W, 3)
            Image.fromarray(pixels).save(staging / image_path(image_id))
        write_key(staging / "key.csv", plan.pairs)
        (staging / "design.json").write_text(json.dumps(design, indent=2) + "\n", encoding="utf-8")
        (staging / "study.html").write_text(render_page(plan, display_size, design["pairs_per_participant"]),
                                            encoding="utf-8")
        keep_others(out, staging)
    logger.info("wrote %d pairs (%d attention checks per experiment; %d pairs per participant and experiment) "
                "and %d images to %s", len(plan.pairs), design["attention_checks_per_experiment"],
                design["pairs_per_participant"], len(plan.images), out)
