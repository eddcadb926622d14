"""The human study of section 5.1.2 (Table 2): blind image pairs, a self-contained study page, the analysis.

    lapcvae export-study --params config/paper.yaml --eval-dir results/eval --prepared data/prepared \
        --out results/human_study
    lapcvae analyze-study --key results/human_study/key.csv --responses a.csv b.csv \
        --out results/human_study/table2.csv

Two experiments share the same test images: "without_original" (which of two reconstructions has higher
quality) and "with_original" (which better matches the original shown above them). What participants see
(study.html, images/) carries opaque random ids only; key.csv maps every pair to its models and sides.

This module holds the study's vocabulary (experiments, a pair of key.csv, a response); the export is in
`eval.study_export` (pairs, images, key.csv, study.html) and the analysis in `eval.study_analysis` (responses,
binomial tests, agreement, table2.csv).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)

EXPERIMENTS = ("without_original", "with_original")  # the order of one session, as in the paper
SIDES = ("left", "right")
ORIGINAL = "original"  # image source of the originals in the image table (models are the other sources)
RESPONSE_COLUMNS = ("participant", "experiment", "pair_id", "side", "response_ms")


@dataclass(frozen=True)
class StudyPair:
    """One row of key.csv: a pair shown in one experiment, and which model is on which side."""

    pair_id: str
    experiment: str
    image_row: int  # row of the test split (data/prepared/{res}/test.npy)
    left_model: str
    right_model: str
    left_image: str
    right_image: str
    original_image: str  # "" in the experiment without original


@dataclass(frozen=True)
class StudyPlan:
    pairs: list[StudyPair]
    images: dict[str, tuple[str, int]]  # image id -> (model name or ORIGINAL, test row)


@dataclass(frozen=True)
class Response:
    participant: str
    experiment: str
    pair_id: str
    side: str
    response_ms: float
    chosen_model: str
