"""The whole study at smoke scale, through Snakemake and through DVC (the runs are shared: tests/conftest.py).

One copy runs `snakemake`, is killed in the middle of training and run again; another runs `dvc repro` from
scratch, at 64 px only (conftest.DVC_OVERRIDES). Both must produce complete artefacts and the same weights where
both trained them (64 px, where the kill comes); neither tool may redo the other's work.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import DVC_OVERRIDES, SmokeDvcRepro, SmokeRun, checkpoint_hashes, run_command, smoke_params

from core import registry
from core.registry import models_at
from eval.sample_quality import TRAINING_IMAGES
from eval.table import REFERENCES as TABLE_REFERENCES
from workflow.dvc_check import dvc_stages
from workflow.pipeline import figures, training_checkpoints

pytestmark = pytest.mark.slow
SMOKE = smoke_params()  # the Snakemake run's params
SMOKE_DVC = smoke_params(DVC_OVERRIDES)  # the DVC run's: 64 px only


def check_artefacts(root: Path, params: dict) -> None:
    table = pd.read_csv(root / "results/metrics/table1.csv")
    expected = {(model, res) for res in params["data"]["resolutions"]
                for model in (*TABLE_REFERENCES, *models_at(params, res))}  # core/registry.py: PixelVAE at 64 px only
    assert set(zip(table["model"], table["resolution"], strict=True)) == expected
    # every row that reconstructs has an RMSE: not the real-image reference, nor PixelVAE (registry reconstructs)
    reconstructing = [model not in registry.MODELS and model != TRAINING_IMAGES or model in registry.MODELS
                      and registry.spec(model).reconstructs for model in table["model"]]
    assert all(math.isfinite(value) for value in table.loc[reconstructing, "rmse_mean"])
    assert table.loc[[not flag for flag in reconstructing], "rmse_mean"].isna().all()
    for res in params["data"]["resolutions"]:  # each model's training cost, written by its evaluate job
        for model in models_at(params, res):
            cost = json.loads((root / f"results/eval/{res}/{model}/cost.json").read_text())
            assert cost["train_flops"] > 0 and cost["images_seen"] > 0 and cost["jobs"], f"{res} {model}: {cost}"
    html = (root / "results/report.html").read_text()
    assert "Table 1" in html
    assert html.count("data:image/png;base64,") >= len(figures(params))
    assert "http://" not in html and "https://" not in html.replace("https://doi.org", "")
    assert (root / "results/human_study/study.html").is_file()


def weights(root: Path, params: dict) -> dict[str, dict[str, torch.Tensor]]:
    return {
        path: torch.load(root / path, weights_only=True)["state_dict"]
        for path in training_checkpoints(params)
    }


def test_dvc_repro_runs_the_whole_study_and_then_nothing(dvc_run: Path) -> None:
    check_artefacts(dvc_run, SMOKE_DVC)
    assert "Nothing to be done" in run_command("snakemake", "-n", cwd=dvc_run)
    second = run_command("dvc", "repro", cwd=dvc_run)
    assert "Running stage" not in second
    assert "rmse_mean" in run_command("dvc", "metrics", "show", cwd=dvc_run)


def test_snakemake_killed_mid_training_resumes_to_the_same_weights(smoke_run: SmokeRun, dvc_run: Path,
                                                                   tmp_path: Path) -> None:
    root = smoke_run.root
    assert not smoke_run.report_before_rerun, "the run finished before it could be interrupted"
    assert smoke_run.locks_after_kill, "the kill left no lock to test the rerun against"
    assert "removed the lock a killed Snakemake left" in smoke_run.rerun_output
    check_artefacts(root, SMOKE)
    resumed, reference = weights(root, SMOKE), weights(dvc_run, SMOKE_DVC)
    assert any("/64/lapcvae/level0.pt" in path for path in reference)  # a level the kill interrupted (conftest)
    for path, state in resumed.items():
        if path not in reference:  # 128 px: trained by Snakemake only
            continue
        for name, tensor in state.items():
            assert torch.equal(tensor, reference[path][name]), f"{path}: {name} differs from the DVC run"

    # One model's parameter reruns only what depends on it.
    override = tmp_path / "gamma.yaml"
    override.write_text(yaml.safe_dump({"vaegan": {"64": {"gamma": 0.25}}}))
    dry_run = run_command("snakemake", "-n", "--configfile", str(override), cwd=root)
    assert "train_baseline" in dry_run and "train_level" not in dry_run and "retrain_m" not in dry_run


def test_dvc_repro_right_after_snakemake_trains_nothing_again(smoke_run: SmokeRun,
                                                               smoke_dvc_repro: SmokeDvcRepro) -> None:
    """DVC's first run over Snakemake's finished study (in a copy of it, beside the other tests: conftest.py) runs
    every stage, records what is there and trains nothing again: a retrained checkpoint would differ in its
    recorded training time, so equal bytes mean no training."""
    output = smoke_dvc_repro.output
    stages = len(dvc_stages(smoke_dvc_repro.root))
    assert output.count("Running stage") == stages > 2 * len(SMOKE["data"]["resolutions"])
    assert "start train" not in output and "start retrain" not in output  # workflow/console.py's job lines
    assert smoke_dvc_repro.checkpoints_before == checkpoint_hashes(smoke_run.root, SMOKE)  # the resumed weights
    assert smoke_dvc_repro.checkpoints_after == smoke_dvc_repro.checkpoints_before
