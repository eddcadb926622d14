"""The report's sections for the studies that are not part of `all` (`snakemake ablations`, `budget_curve`): each
renders the tables those studies wrote, and is empty when the study has not run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from eval.report_blocks import Heading, Paragraph, csv_table, display


def budget_curve_seed_means(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, factor): the mean over training seeds of every number, test RMSE's std across them
    (NaN with one seed) and the number of seeds."""
    groups = table.groupby(["model", "factor"], sort=False)
    means = groups.mean(numeric_only=True).drop(columns="seed")
    means["rmse_seed_std"] = groups["rmse_mean"].std()
    means["n_seeds"] = groups.size()
    return means.reset_index()


def budget_curve_section(results: Path) -> list[Any]:
    """The report's budget-curve tables (when `snakemake budget_curve` has run), as eval.report blocks."""
    paths = sorted((Path(results) / "metrics").glob("budget_curve_*.csv"))
    if not paths:
        return []
    blocks: list[Any] = [Heading(2, "Budget curves: RMSE against the training budget")]
    for path in paths:
        res = path.stem.removeprefix("budget_curve_")
        blocks.append(csv_table(path, f"{res}x{res}: each model retrained at `factor` x budget.epochs (every LapCVAE "
                                      "level too) from each training seed; RMSE on the validation and test splits, "
                                      "training FLOPs and seconds summed over the model's jobs; rmse_over_pca = test "
                                      "RMSE / PCA's."))
        ends = []
        for model, rows in budget_curve_seed_means(pd.read_csv(path)).groupby("model", sort=False):
            rows = rows.sort_values("factor")
            first, last = rows.iloc[0], rows.iloc[-1]
            seeds = int(last["n_seeds"])
            ends.append(f"{display(str(model))} {first['rmse_over_pca']:.2f}x PCA at {first['epochs']:g} epochs, "
                        f"{last['rmse_over_pca']:.2f}x at {last['epochs']:g} (mean of {seeds} seed{'s' * (seeds > 1)})")
        blocks.append(Paragraph(f"{res}x{res}: " + "; ".join(ends) + ". A curve still falling at the budget rule's "
                                "point says that model's Table 1 row is limited by the budget, not by the model."))
    return blocks


def ablations_section(results: Path) -> list[Any]:
    """The report's ablation tables (when `snakemake ablations` has run), as eval.report blocks."""
    paths = sorted((Path(results) / "ablations").glob("*.json"))
    if not paths:
        return []
    blocks: list[Any] = [Heading(2, "Ablations: greedy against joint training, decoder conditioning")]
    for path in paths:
        res = path.stem
        blocks.append(csv_table(path.with_suffix(".csv"),
                                f"{res}x{res}: LapCVAE variants (<training>_<conditioning>; latents = Eq. 11, image = "
                                "Eq. 10) on the test split; train seconds and FLOPs summed over each variant's jobs."))
        comparison = json.loads(path.read_text()).get("greedy_vs_joint", [])
        for row in comparison:
            blocks.append(Paragraph(
                f"{res}x{res}, conditioning {row['conditioning']}: to the validation RMSE "
                f"{_number(row['target_val_rmse'], 2)} (the worse final one) greedy training took "
                f"{_number(row['greedy_seconds_to_target'], 0)} s and {row['greedy_images_to_target']} images, joint "
                f"training {_number(row['joint_seconds_to_target'], 0)} s and {row['joint_images_to_target']} images: "
                f"greedy / joint = {_number(row['seconds_ratio_greedy_over_joint'], 2)} in time and "
                f"{_number(row.get('flops_ratio_greedy_over_joint'), 2)} in training FLOPs (the paper's claim: greedy "
                "training doubles the total training time, i.e. 2)."))
    return blocks


def _number(value: Any, digits: int) -> str:
    """A JSON number for the report; None (a NaN written as null) as "n/a"."""
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"
