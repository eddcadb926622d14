"""The human study's analysis (`lapcvae analyze-study`): responses against key.csv, preference per model with a
binomial test against no preference, rater agreement (Fleiss' kappa), Table 2 as table2.csv and table2.json.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import binomtest

from core.atomic import write_text
from eval.human_study import EXPERIMENTS, RESPONSE_COLUMNS, SIDES, Response, StudyPair
from eval.plotting import DISPLAY_NAMES, MODELS

logger = logging.getLogger(__name__)

TABLE_COLUMNS = (
    "experiment", "model", "display_name", "preference_mean", "preference_std", "preference_pooled",
    "chosen", "answers", "missing", "participants", "binomial_p",
    "fleiss_kappa", "pairwise_agreement", "multi_rated_pairs",
)


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
        values = {column: row[column] for column in columns}
        key[row["pair_id"]] = StudyPair(**{**values, "image_row": image_row})
    models = study_models(key)
    if len(models) != 2 or any(pair.left_model == pair.right_model for pair in key.values()):
        raise ValueError(f"key {path}: every pair must compare the same two different models, found "
                         f"{', '.join(models) or 'none'}; re-run `lapcvae export-study`")
    return key


def study_models(key: Mapping[str, StudyPair]) -> list[str]:
    """The compared models in Table 1's order (so the VAE row comes before LapCVAE, as in Table 2)."""
    models = {model for pair in key.values() for model in (pair.left_model, pair.right_model)}
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


def summarize_experiment(
    pair_ids: Sequence[str], answers: Sequence[Response], participants: Sequence[str], models: Sequence[str]
) -> dict[str, Any]:
    """Table 2 for one experiment: preference per model across participants, binomial test, agreement."""
    per_participant: dict[str, dict[str, float]] = {}
    for participant in participants:
        own = [answer.chosen_model for answer in answers if answer.participant == participant]
        if own:
            per_participant[participant] = {model: 100 * own.count(model) / len(own) for model in models}
    preference = {}
    for model in models:
        values = np.array([shares[model] for shares in per_participant.values()])  # (participants,)
        chosen = sum(answer.chosen_model == model for answer in answers)
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
        "missing": len(participants) * len(pair_ids) - len(answers), "preference": preference,
        # A quality check of the study itself: very fast answers suggest clicking through.
        "median_response_ms": float(np.median([answer.response_ms for answer in answers])) if answers else None,
        "binomial": binomial,
        "agreement": {"fleiss_kappa": kappa, "pairwise_agreement": agreement,
                      "multi_rated_pairs": multi_rated},
    }


def analyze(key: Mapping[str, StudyPair], responses: Sequence[Response]) -> dict[str, Any]:
    models = study_models(key)
    participants = sorted({response.participant for response in responses})
    experiments = {}
    for experiment in EXPERIMENTS:
        pair_ids = [pair_id for pair_id, pair in key.items() if pair.experiment == experiment]
        answers = [response for response in responses if response.experiment == experiment]
        experiments[experiment] = summarize_experiment(pair_ids, answers, participants, models)
    return {"models": models, "participants": participants, "experiments": experiments}


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
            })
    return rows


def write_table(out: Path, summary: Mapping[str, Any]) -> None:
    """table2.csv at `out` and table2.json beside it (None is an empty CSV cell and JSON null)."""
    rows = table_rows(summary)
    lines = [",".join(TABLE_COLUMNS)]
    lines += [",".join("" if row[column] is None else str(row[column]) for column in TABLE_COLUMNS)
              for row in rows]
    json_path = out.with_suffix(".json")
    write_text(json_path, json.dumps(summary, indent=2) + "\n")
    write_text(out, "\n".join(lines) + "\n")
