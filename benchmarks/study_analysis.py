"""The human study's analysis (eval.study_analysis.analyze) at growing numbers of participants: time per response.

    .venv/bin/python benchmarks/study_analysis.py [--pairs 500] [--per-participant 500] [--participants 100 200 400]

Random answers of every participant to their own subset of `--per-participant` of `--pairs` pairs per experiment
(the page's assignment) plus 5 attention checks per experiment. A flat microseconds-per-response column means the
time grows linearly with the responses.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from eval.human_study import (
    ATTENTION,
    COMPARISON,
    DEGRADED,
    EXPERIMENTS,
    INTACT,
    Response,
    StudyPair,
    participant_trials,
)
from eval.study_analysis import analyze, pair_ids_by_experiment

CHECKS = 5  # attention checks per experiment


def study_key(pairs: int) -> dict[str, StudyPair]:
    key = {}
    for number, experiment in enumerate(EXPERIMENTS):
        for row in range(pairs + CHECKS):
            pair_id = f"{number}{row:011x}"
            role = COMPARISON if row < pairs else ATTENTION
            left, right = ("vae", "lapcvae") if role == COMPARISON else (INTACT, DEGRADED)
            key[pair_id] = StudyPair(pair_id, experiment, row, left, right, f"l{row}", f"r{row}", "", role)
    return key


def answers(key: dict[str, StudyPair], design: dict[str, int], participants: int,
            rng: np.random.Generator) -> list[Response]:
    pairs, checks = pair_ids_by_experiment(key, COMPARISON), pair_ids_by_experiment(key, ATTENTION)
    responses = []
    for number in range(participants):
        name = f"p{number}"
        trials = participant_trials(pairs, checks, design["pairs_per_participant"], design["assignment_seed"], name)
        for pair_id in (pair_id for shown in trials.values() for pair_id in shown):
            pair = key[pair_id]
            side = "left" if rng.random() < 0.5 else "right"
            chosen = pair.left_model if side == "left" else pair.right_model
            responses.append(Response(name, pair.experiment, pair_id, side, 800.0, chosen))
    return responses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=500, help="comparison pairs per experiment")
    parser.add_argument("--per-participant", type=int, default=500, help="of them, each participant's")
    parser.add_argument("--participants", type=int, nargs="+", default=[100, 200, 400])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    key = study_key(args.pairs)
    design = {"assignment_seed": 1, "pairs_per_participant": args.per_participant,
              "attention_checks_per_experiment": CHECKS}
    rng = np.random.default_rng(0)
    print(f"{args.pairs} pairs and {CHECKS} checks per experiment, {args.per_participant} pairs per participant")
    for participants in args.participants:
        responses = answers(key, design, participants, rng)
        timings = []
        for _ in range(args.repeats):  # the fastest: the least disturbed by other jobs on a shared machine
            started = time.perf_counter()
            analyze(key, responses, design, min_correct=0.0)
            timings.append(time.perf_counter() - started)
        seconds = min(timings)
        print(f"{participants:6d} participants {len(responses):9d} responses  {seconds:7.2f} s  "
              f"{seconds / len(responses) * 1e6:6.2f} us per response")


if __name__ == "__main__":
    main()
