"""The human study of section 5.1.2 (Table 2): blind image pairs, a self-contained study page, the analysis.

    lapcvae export-study --params config/paper.yaml --eval-dir results/eval --prepared data/prepared \
        --out results/human_study
    lapcvae analyze-study --key results/human_study/key.csv --responses a.csv b.csv \
        --out results/human_study/table2.csv

Two experiments share the same test images: "without_original" (which of two reconstructions has higher
quality) and "with_original" (which better matches the original shown above them). What participants see
(study.html, images/) carries opaque random ids only; key.csv maps every pair to its models and sides.

Each participant judges a subset of each experiment's pairs (`human_study.pairs_per_participant`) and every
attention check (a test face against a heavily blurred and noisy copy of it; the intact face is the right
answer), in an order of their own. Subset and order come from the participant id and the export's assignment
seed (design.json), computed by the same generator in study.html and here (`participant_trials`). At the end the
page shows a completion code derived from the id and the answers (`completion_code`), so the analysis can check
the code a participant reports against the answers they sent.

This module holds the study's vocabulary (experiments, a pair of key.csv, a response); the export is in
`eval.study_export` (pairs, images, key.csv, study.html) and the analysis in `eval.study_analysis` (responses,
binomial tests, agreement, table2.csv).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

EXPERIMENTS = ("without_original", "with_original")  # the order of one session, as in the paper
SIDES = ("left", "right")
ORIGINAL = "original"  # image source of the originals in the image table (models are the other sources)
RESPONSE_COLUMNS = ("participant", "experiment", "pair_id", "side", "response_ms")
COMPARISON, ATTENTION = "comparison", "attention"  # roles of a pair in key.csv
ROLES = (COMPARISON, ATTENTION)
INTACT, DEGRADED = "intact", "degraded"  # the two sides of an attention check; INTACT is the right answer
UINT32 = 0xFFFFFFFF
NEWLINE = "\n"  # joins the lines a completion code hashes


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
    role: str = COMPARISON  # ATTENTION: left/right models are INTACT and DEGRADED


@dataclass(frozen=True)
class StudyPlan:
    pairs: list[StudyPair]
    images: dict[str, tuple[str, int]]  # image id -> (model name, ORIGINAL or DEGRADED, test row)
    assignment_seed: int = 0  # with a participant id, fixes their subset and order (participant_trials)


@dataclass(frozen=True)
class Response:
    participant: str
    experiment: str
    pair_id: str
    side: str
    response_ms: float
    chosen_model: str


def hash_text(text: str) -> int:
    """32-bit FNV-1a over the code points of `text`: study.html's hashText, bit for bit."""
    value = 0x811C9DC5
    for character in text:
        value = ((value ^ ord(character)) * 0x01000193) & UINT32
    return value


def mulberry32(seed: int):
    """study.html's mulberry32 generator: a function returning floats in [0, 1), the same sequence for a seed."""
    state = seed & UINT32

    def imul(a: int, b: int) -> int:  # Math.imul: the low 32 bits of the product
        return (a * b) & UINT32

    def next_float() -> float:
        nonlocal state
        state = (state + 0x6D2B79F5) & UINT32
        value = imul(state ^ (state >> 15), state | 1)
        value ^= (value + imul(value ^ (value >> 7), value | 61)) & UINT32
        return ((value ^ (value >> 14)) & UINT32) / 4294967296

    return next_float


def shuffled(items: Sequence[str], random) -> list[str]:
    """Fisher-Yates from the last item down, as study.html's shuffle does."""
    items = list(items)
    for index in range(len(items) - 1, 0, -1):
        other = int(random() * (index + 1))
        items[index], items[other] = items[other], items[index]
    return items


def drawn(items: Sequence[str], count: int, random) -> list[str]:
    """`count` items without replacement: study.html's draw, a Fisher-Yates shuffle from the front stopped after
    `count` steps (so the random draws grow with `count`, not with the number of items)."""
    items = list(items)
    steps = min(count, len(items))
    for index in range(steps):
        other = index + int(random() * (len(items) - index))
        items[index], items[other] = items[other], items[index]
    return items[:steps]


def participant_trials(
    pairs: Mapping[str, Sequence[str]], checks: Mapping[str, Sequence[str]], per_participant: int,
    assignment_seed: int, participant: str,
) -> dict[str, list[str]]:
    """The pair ids one participant is shown, per experiment and in order (study.html's studyOrder).

    pairs / checks: per experiment, the comparison and attention pair ids sorted as the page lists them (by id).
    `per_participant` comparison pairs drawn without replacement, then a shuffle of those with every check.
    """
    random = mulberry32(hash_text(f"{assignment_seed}:{participant}"))
    trials = {}
    for experiment in EXPERIMENTS:
        chosen = drawn(pairs.get(experiment, ()), per_participant, random)
        trials[experiment] = shuffled([*chosen, *checks.get(experiment, ())], random)
    return trials


def completion_code(participant: str, answers: Mapping[str, str]) -> str:
    """The code study.html shows when a participant finishes: a CRC-32 of the id and every (pair id, side) answer."""
    lines = [participant, *(f"{pair_id}:{answers[pair_id]}" for pair_id in sorted(answers))]
    value = f"{zlib.crc32(NEWLINE.join(lines).encode('utf-8')):08X}"  # CRC-32: study.html's crc32, in C here
    return f"{value[:4]}-{value[4:]}"

