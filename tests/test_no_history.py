"""Library code, the profiles and params.yaml say why, not when: no dates, numbered rounds of work or issue numbers.

Where a value came from belongs in docs/tuning.md; such text in code goes stale the day after it is written.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LIBRARY = ("core", "data", "models", "baselines", "training", "eval", "studies", "workflow", "benchmarks", "config")
SUFFIXES = {".py", ".smk", ".yaml", ".yml", ".rst", ".md", ".toml", ".cfg", ".txt"}
TOP_LEVEL = ("params.yaml", "Snakefile")

ORDINALS = ("first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|"
            r"\d+(?:st|nd|rd|th)|previous|earlier|later|last")
# What each pattern finds, named in the failure message.
PATTERNS = {
    # A calendar date, also inside a file name (docs/tuning-2026-11-29.md).
    "a date": re.compile(r"(?<!\d)(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])(?!\d)"),
    # "the twelfth session", "previous round", "session 3", "round 4" (not Python's round(x) or "rounds of").
    "a numbered session or round": re.compile(
        rf"\b(?:{ORDINALS})\s+(?:session|round)s?\b|\b(?:session|round)s?\s+#?\d+\b", re.IGNORECASE),
    # "issue 12", "issues 3 and 4", "PR #7", "#12"; not a CSS colour ("color: #222;") or a URL's "issues/12".
    "an issue reference": re.compile(
        r"\b(?:issue|issues|PR|pull request|ticket)\s+#?\d+\b|(?<![\w&/#])#\d+\b(?![;}])", re.IGNORECASE),
}


def checked_files() -> list[Path]:
    """Every text file of the library packages, the benchmarks and the profiles, with params.yaml and the Snakefile."""
    files = [REPO / name for name in TOP_LEVEL if (REPO / name).is_file()]
    for package in LIBRARY:
        files += sorted(path for path in (REPO / package).rglob("*")
                        if path.is_file() and path.suffix in SUFFIXES and "__pycache__" not in path.parts)
    return files


# Dates that are part of a third-party name, not history: the TensorFlow Inception-v3 weights FID uses are named
# for their release (pt_inception-2015-12-05, weights-inception-2015-12-05-6726825d.pth).
THIRD_PARTY_NAMES = re.compile(r"2015-12-05")


def history_lines(text: str) -> list[tuple[int, str, str]]:
    """(line number, what was found, the line) for every line of `text` that narrates history."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        checked = THIRD_PARTY_NAMES.sub("", line)
        for what, pattern in PATTERNS.items():
            if pattern.search(checked):
                found.append((number, what, line.strip()))
    return found


def test_the_library_files_are_found() -> None:
    files = {path.relative_to(REPO).as_posix() for path in checked_files()}
    assert {"params.yaml", "core/params.py", "training/loop.py", "workflow/rules/train.smk",
            "config/paper.yaml", "core/schemas/train.schema.yaml"} <= files


@pytest.mark.parametrize("line", [
    "# validation RMSE 13.98 (docs/tuning-2026-11-29.md)",
    "# chosen on 2026-11-29 on the shared machine",
    "# the twelfth session's choice",
    "# see the previous round",
    "# Session 3 measured it",
    "# the best of round 4",
    "# (issue 12: VAE/GAN must keep half the contrast)",
    "# issues 3 and 4",
    "# fixed in #12",
    "# PR #7 moved it",
])
def test_narrations_are_found(line: str) -> None:
    assert history_lines(line), f"not flagged: {line!r}"


@pytest.mark.parametrize("line", [
    'INCEPTION_URL = "https://example.org/weights-inception-2015-12-05-6726825d.pth"',
    "# pt_inception-2015-12-05 weights",
    "return round(value, 3)",
    "# the PixelCNN's rounds of (m, n) matrix products; rounded half up",
    "# with Burt-Adelson filters that round trip of a spliced pyramid is exact",
    'EXPERIMENTS = ("without_original", "with_original")  # the order of one session, as in the paper',
    "body { color: #222; } th { background: #eee; }",
    "# often over quota: github.com/pytorch/vision/issues/1920",
    "# Eq. 13, section 5.1.3, Dorta et al. 2017, 0.000625 = 0.01 / 4^2",
    "seeds: [0, 1, 2]  # noqa: E501",
])
def test_legitimate_text_is_not_flagged(line: str) -> None:
    assert not history_lines(line), f"flagged: {line!r}"


def test_no_file_narrates_history() -> None:
    problems = []
    for path in checked_files():
        for number, what, line in history_lines(path.read_text(encoding="utf-8", errors="replace")):
            problems.append(f"{path.relative_to(REPO)}:{number}: {what}: {line}")
    assert not problems, ("code, comments and params.yaml say why, not when; move where a value came from to "
                          "docs/tuning.md and keep a one-line why:\n" + "\n".join(problems))
