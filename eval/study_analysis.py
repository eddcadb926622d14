"""The human study's analysis (`lapcvae analyze-study`): responses against key.csv, preference per model with a
binomial test against no preference, rater agreement (Fleiss' kappa), Table 2 as table2.csv and table2.json.

Participants are screened first (participants.csv beside table2.csv): one who answered less than
`human_study.attention_checks.min_correct` of their attention checks right, answered none of them, or (when the
codes they reported are given) reported a completion code that does not match their answers is dropped, with the
reason. Every step is one pass over the responses (and one assignment per participant), so the time grows
linearly with the number of responses.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import binomtest

from core.atomic import write_text
from eval.human_study import (
    ATTENTION,
    COMPARISON,
    DEGRADED,
    EXPERIMENTS,
    INTACT,
    RESPONSE_COLUMNS,
    ROLES,
    SIDES,
    Response,
    StudyPair,
    completion_code,
    participant_trials,
)
from eval.plotting import DISPLAY_NAMES, MODELS

logger = logging.getLogger(__name__)

TABLE_COLUMNS = (
    "experiment", "model", "display_name", "preference_mean", "preference_std", "preference_pooled",
    "chosen", "answers", "missing", "participants", "binomial_p",
    "fleiss_kappa", "pairwise_agreement", "multi_rated_pairs", "dropped_participants",
)
DESIGN_KEYS = ("assignment_seed", "pairs_per_participant", "attention_checks_per_experiment")
CODE_COLUMNS = ("participant", "completion_code")


@dataclass(frozen=True)
class Screening:
    """One row of participants.csv: a participant's attention checks and completion code, kept or dropped."""

    participant: str
    comparison_answers: int
    checks_answered: int
    checks_correct: int
    completion_code: str  # what study.html showed them for these answers
    reported_code: str  # what they reported ("" when no codes file was given or they are not in it)
    kept: bool
    reason: str  # why dropped ("" when kept)


def csv_records(path: Path, required: Sequence[str], what: str) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV file with a header naming at least `required`."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist: pass the path of an existing file")
    records = []
    with path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: spreadsheets may add a BOM
        reader = csv.DictReader(handle)
        try:
            missing = [column for column in required if column not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{what} {path} line 1: missing column(s) {', '.join(missing)}; "
                                 f"the header must name {', '.join(required)}")
            for row in reader:
                if None in row or None in row.values():
                    raise ValueError(f"{what} {path} line {reader.line_num}: wrong number of fields; "
                                     f"expected one per header column")
                records.append((reader.line_num, row))
        except UnicodeDecodeError as error:
            bad = error.object[error.start:error.end]
            raise ValueError(f"{what} {path} is not UTF-8 text ({error.reason}, byte {bad!r}); save it as UTF-8 CSV "
                             "(e.g. \"CSV UTF-8\" in a spreadsheet) and run again") from error
    return records


def read_key(path: Path) -> dict[str, StudyPair]:
    """key.csv as pair id -> StudyPair, checked: two models, known experiments, unique ids."""
    key: dict[str, StudyPair] = {}
    columns = [field.name for field in fields(StudyPair)]
    for line, row in csv_records(path, columns, "key"):
        where = f"key {path} line {line}"
        if row["experiment"] not in EXPERIMENTS:
            raise ValueError(f"{where}: experiment {row['experiment']!r} is not one of "
                             f"{', '.join(EXPERIMENTS)}; re-run `lapcvae export-study`")
        if row["pair_id"] in key:
            raise ValueError(f"{where}: pair_id {row['pair_id']} appears twice; "
                             "re-run `lapcvae export-study`")
        try:
            image_row = int(row["image_row"])
        except ValueError as error:
            raise ValueError(f"{where}: image_row {row['image_row']!r} is not an integer") from error
        if row["role"] not in ROLES:
            raise ValueError(f"{where}: role {row['role']!r} is not one of {', '.join(ROLES)}; "
                             "re-run `lapcvae export-study`")
        if row["role"] == ATTENTION and {row["left_model"], row["right_model"]} != {INTACT, DEGRADED}:
            raise ValueError(f"{where}: an attention check must show {INTACT} and {DEGRADED} images; "
                             "re-run `lapcvae export-study`")
        values = {column: row[column] for column in columns}
        key[row["pair_id"]] = StudyPair(**{**values, "image_row": image_row})
    models = study_models(key)
    comparisons = [pair for pair in key.values() if pair.role == COMPARISON]
    if len(models) != 2 or any(pair.left_model == pair.right_model for pair in comparisons):
        raise ValueError(f"key {path}: every pair must compare the same two different models, found "
                         f"{', '.join(models) or 'none'}; re-run `lapcvae export-study`")
    return key


def read_design(path: Path) -> dict[str, int]:
    """design.json of the export: the assignment seed, pairs per participant and attention checks per experiment."""
    if not path.is_file():
        raise FileNotFoundError(f"design {path} does not exist: it is written beside key.csv by "
                                "`lapcvae export-study` (re-run it, or pass --design)")
    try:
        design = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"design {path} is not JSON ({error}); re-run `lapcvae export-study`") from error
    if not isinstance(design, dict) or any(not isinstance(design.get(name), int) for name in DESIGN_KEYS):
        raise ValueError(f"design {path} must hold the integers {', '.join(DESIGN_KEYS)}; "
                         "re-run `lapcvae export-study`")
    return {name: design[name] for name in DESIGN_KEYS}


def read_codes(path: Path) -> dict[str, str]:
    """participant -> the completion code they reported, from a CSV with participant and completion_code columns."""
    codes: dict[str, str] = {}
    for line, row in csv_records(path, CODE_COLUMNS, "completion codes file"):
        participant = row["participant"].strip()
        if participant in codes:
            raise ValueError(f"completion codes file {path} line {line}: participant {participant} appears twice; "
                             "keep one code per participant")
        codes[participant] = row["completion_code"].strip().upper()
    return codes


def study_models(key: Mapping[str, StudyPair]) -> list[str]:
    """The compared models in Table 1's order (so the VAE row comes before LapCVAE, as in Table 2)."""
    models = {model for pair in key.values() if pair.role == COMPARISON
              for model in (pair.left_model, pair.right_model)}
    return sorted(models, key=lambda model: (MODELS.index(model) if model in MODELS else len(MODELS), model))


def response_problem(row: Mapping[str, str], key: Mapping[str, StudyPair]) -> str | None:
    """Why one response row does not match the key, or None when it does."""
    pair = key.get(row["pair_id"])
    if not row["participant"].strip():
        return "the participant id is empty"
    if pair is None:
        return f"pair_id {row['pair_id']!r} is not in the key (is the file from another export?)"
    if row["experiment"] != pair.experiment:
        return f"pair {pair.pair_id} belongs to experiment {pair.experiment}, not {row['experiment']!r}"
    if row["side"] not in SIDES:
        return f"side {row['side']!r} must be left or right"
    try:
        response_ms = float(row["response_ms"])
    except ValueError:
        response_ms = math.nan
    if not (math.isfinite(response_ms) and response_ms >= 0):
        return f"response_ms {row['response_ms']!r} must be a non-negative number of milliseconds"
    return None


def read_responses(paths: Sequence[Path], key: Mapping[str, StudyPair]) -> list[Response]:
    """Every answer of every response file; rejects rows that do not match the key and repeated answers."""
    responses = []
    answered: dict[tuple[str, str], str] = {}  # (participant, pair) -> "file line n", to name both places
    for path in paths:
        for line, row in csv_records(path, RESPONSE_COLUMNS, "responses file"):
            problem = response_problem(row, key)
            participant, pair_id = row["participant"].strip(), row["pair_id"]
            if problem is None and (participant, pair_id) in answered:
                first = answered[participant, pair_id]
                problem = f"participant {participant} already answered pair {pair_id} in {first}"
            if problem is not None:
                raise ValueError(f"responses file {path} line {line}: {problem}; fix or remove that line")
            answered[participant, pair_id] = f"{path} line {line}"
            pair = key[pair_id]
            chosen = pair.left_model if row["side"] == "left" else pair.right_model
            responses.append(Response(participant, row["experiment"], pair_id, row["side"],
                                      float(row["response_ms"]), chosen))
    return responses


def fleiss_kappa(counts: np.ndarray) -> tuple[float | None, float | None, int]:
    """Fleiss' kappa, mean pairwise agreement and item count, over the items rated at least twice.

    counts: (items, categories), how many raters chose each category for each item; raters may differ per item
    (the per-item agreement P_i then uses that item's own rater count).
    """
    raters = counts.sum(axis=1)  # (items,)
    counts, raters = counts[raters >= 2], raters[raters >= 2]
    if not len(counts):
        return None, None, 0
    item_agreement = (counts * (counts - 1)).sum(axis=1) / (raters * (raters - 1))  # (items,) P_i
    mean_agreement = float(item_agreement.mean())
    chance = float(((counts.sum(axis=0) / counts.sum()) ** 2).sum())  # sum_j p_j^2
    # Undefined when every answer picks the same model.
    kappa = None if chance == 1 else (mean_agreement - chance) / (1 - chance)
    return kappa, mean_agreement, len(counts)


def pair_ids_by_experiment(key: Mapping[str, StudyPair], role: str) -> dict[str, list[str]]:
    """Per experiment, the ids of the pairs of `role`, sorted as study.html lists them."""
    ids: dict[str, list[str]] = {experiment: [] for experiment in EXPERIMENTS}
    for pair_id, pair in key.items():
        if pair.role == role:
            ids[pair.experiment].append(pair_id)
    return {experiment: sorted(own) for experiment, own in ids.items()}


def screen_participants(
    key: Mapping[str, StudyPair], responses: Sequence[Response], design: Mapping[str, int], min_correct: float,
    reported_codes: Mapping[str, str] | None = None,
) -> list[Screening]:
    """Each participant's attention checks and completion code; who is kept and why the others are dropped.

    Refuses answers to pairs that study.html did not give that participant (another export, or a design.json
    that is not the export's). Share of checks right: over the checks the participant answered.
    """
    pairs, checks = pair_ids_by_experiment(key, COMPARISON), pair_ids_by_experiment(key, ATTENTION)
    own: dict[str, list[Response]] = defaultdict(list)
    for response in responses:
        own[response.participant].append(response)
    screenings = []
    for participant in sorted(own):
        answers = own[participant]
        trials = participant_trials(pairs, checks, design["pairs_per_participant"], design["assignment_seed"],
                                    participant)  # random draws: as many as the pairs given, like the answers
        assigned = {pair_id for shown in trials.values() for pair_id in shown}
        for answer in answers:
            if answer.pair_id not in assigned:
                raise ValueError(f"participant {participant} answered pair {answer.pair_id}, which study.html does "
                                 "not give them: analyse with the key.csv and design.json of the export they "
                                 "took part in")
        on_checks = [answer for answer in answers if key[answer.pair_id].role == ATTENTION]
        correct = sum(answer.chosen_model == INTACT for answer in on_checks)
        code = completion_code(participant, {answer.pair_id: answer.side for answer in answers})
        reported = "" if reported_codes is None else reported_codes.get(participant, "")
        reason = ""
        if checks[EXPERIMENTS[0]] and not on_checks:
            reason = "answered none of the attention checks"
        elif on_checks and correct < min_correct * len(on_checks):
            reason = (f"{correct} of {len(on_checks)} attention checks right, below the required share "
                      f"{min_correct:g}")
        elif reported_codes is not None and not reported:
            reason = "reported no completion code"
        elif reported_codes is not None and reported != code:
            reason = f"reported completion code {reported}, but their answers give {code}"
        screenings.append(Screening(participant, len(answers) - len(on_checks), len(on_checks), correct, code,
                                    reported, not reason, reason))
    return screenings


def summarize_experiment(
    pair_ids: Sequence[str], answers: Sequence[Response], participants: Sequence[str], models: Sequence[str],
    pairs_per_participant: int,
) -> dict[str, Any]:
    """Table 2 for one experiment: preference per model across participants, binomial test, agreement.

    One pass over `answers`: each participant's picks are counted as they come.
    """
    picks: dict[str, Counter[str]] = defaultdict(Counter)
    for answer in answers:
        picks[answer.participant][answer.chosen_model] += 1
    per_participant = {participant: {model: 100 * picks[participant][model] / picks[participant].total()
                                     for model in models}
                       for participant in participants if participant in picks}
    chosen_by_model = Counter(answer.chosen_model for answer in answers)
    preference = {}
    for model in models:
        values = np.array([shares[model] for shares in per_participant.values()])  # (participants,)
        chosen = chosen_by_model[model]
        preference[model] = {
            "mean": float(values.mean()) if len(values) else None,
            # The paper's +-: spread across participants (sample standard deviation).
            "std": float(values.std(ddof=1)) if len(values) > 1 else None,
            "pooled": 100 * chosen / len(answers) if answers else None,
            "chosen": chosen,
            "per_participant": {name: shares[model] for name, shares in per_participant.items()},
        }
    # H0: no preference, each answer picks models[-1] with probability 1/2 (two-sided, all answers pooled).
    tested = models[-1]
    binomial = {"model": tested, "successes": preference[tested]["chosen"], "answers": len(answers),
                "p_value": binomtest(preference[tested]["chosen"], len(answers)).pvalue if answers else None}
    index = {pair_id: row for row, pair_id in enumerate(pair_ids)}
    counts = np.zeros((len(pair_ids), len(models)), dtype=np.int64)  # (pairs, models)
    for answer in answers:
        counts[index[answer.pair_id], models.index(answer.chosen_model)] += 1
    kappa, agreement, multi_rated = fleiss_kappa(counts)
    return {
        "pairs": len(pair_ids), "participants": len(per_participant), "answers": len(answers),
        "missing": len(participants) * min(pairs_per_participant, len(pair_ids)) - len(answers),
        "preference": preference,
        # A quality check of the study itself: very fast answers suggest clicking through.
        "median_response_ms": float(np.median([answer.response_ms for answer in answers])) if answers else None,
        "binomial": binomial,
        "agreement": {"fleiss_kappa": kappa, "pairwise_agreement": agreement,
                      "multi_rated_pairs": multi_rated},
    }


def analyze(
    key: Mapping[str, StudyPair], responses: Sequence[Response], design: Mapping[str, int], min_correct: float,
    reported_codes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Table 2 from the answers of the participants who pass the screening (`screen_participants`)."""
    models = study_models(key)
    screenings = screen_participants(key, responses, design, min_correct, reported_codes)
    kept = {screening.participant for screening in screenings if screening.kept}
    dropped = {screening.participant: screening.reason for screening in screenings if not screening.kept}
    if dropped:
        logger.warning("dropped %d of %d participants: %s", len(dropped), len(screenings),
                       "; ".join(f"{name}: {reason}" for name, reason in dropped.items()))
    participants = sorted(kept)
    pair_ids = pair_ids_by_experiment(key, COMPARISON)
    answers: dict[str, list[Response]] = {experiment: [] for experiment in EXPERIMENTS}
    for response in responses:
        if response.participant in kept and key[response.pair_id].role == COMPARISON:
            answers[response.experiment].append(response)
    experiments = {experiment: summarize_experiment(pair_ids[experiment], answers[experiment], participants, models,
                                                    design["pairs_per_participant"])
                   for experiment in EXPERIMENTS}
    screening = {"attention_checks_per_experiment": design["attention_checks_per_experiment"],
                 "min_correct": min_correct, "participants": [asdict(row) for row in screenings],
                 "kept": len(kept), "dropped": dropped}
    return {"models": models, "participants": participants, "screening": screening, "experiments": experiments}


def table_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """table2.csv: one row per experiment and model; per-experiment statistics repeat on both rows."""
    rows = []
    for experiment, result in summary["experiments"].items():
        for model in summary["models"]:
            preference = result["preference"][model]
            rows.append({
                "experiment": experiment, "model": model, "display_name": DISPLAY_NAMES.get(model, model),
                "preference_mean": preference["mean"], "preference_std": preference["std"],
                "preference_pooled": preference["pooled"], "chosen": preference["chosen"],
                "answers": result["answers"], "missing": result["missing"],
                "participants": result["participants"],
                "binomial_p": result["binomial"]["p_value"], **result["agreement"],
                "dropped_participants": len(summary["screening"]["dropped"]),
            })
    return rows


def csv_text(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """CSV with a header; None is an empty cell."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([("" if row[column] is None else row[column]) for column in columns] for row in rows)
    return text.getvalue()


def write_table(out: Path, summary: Mapping[str, Any]) -> None:
    """table2.csv at `out`, table2.json and participants.csv (the screening) beside it."""
    write_text(out.with_suffix(".json"), json.dumps(summary, indent=2) + "\n")
    write_text(out.with_name("participants.csv"),
               csv_text([field.name for field in fields(Screening)], summary["screening"]["participants"]))
    write_text(out, csv_text(TABLE_COLUMNS, table_rows(summary)))
