"""The whole study at smoke scale, through Snakemake and through DVC (the study is shared: tests/conftest.py).

One copy runs `snakemake`, is killed in the middle of training and run again: it must produce complete artefacts,
and the checkpoints it wrote after the kill the same weights as an uninterrupted run. `dvc repro` right after it, in
a copy, must record the study without redoing it; `dvc repro` from scratch builds a light branch of the pipeline.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import (
    CORES,
    DVC_TRAINING_STAGES,
    SmokeDvcRepro,
    SmokeRun,
    checkpoint_hashes,
    run_command,
    smoke_copy,
    smoke_params,
)

from core import registry
from core.registry import models_at
from eval.sample_quality import TRAINING_IMAGES
from eval.table import REFERENCES as TABLE_REFERENCES
from workflow.pipeline import figures

pytestmark = pytest.mark.slow
SMOKE = smoke_params()


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


def weights(root: Path, paths: list[str]) -> dict[str, dict[str, torch.Tensor]]:
    return {path: torch.load(root / path, weights_only=True)["state_dict"] for path in paths}


def test_dvc_repro_from_scratch_builds_a_branch_and_then_nothing(tmp_path: Path) -> None:
    """DVC alone, from an empty copy: the data and the sample embedding at 64 px (three stages, every DVC mechanism
    a stage of the study uses: foreach, params, persistent outs), recorded in dvc.lock; then nothing to do."""
    root = smoke_copy(tmp_path / "dvc")
    first = run_command("dvc", "repro", "sample_embedding@64", cwd=root)
    assert first.count("Running stage") == 3, first
    embedding = root / "results/eval/64/sample_embedding.npz"
    assert embedding.is_file() and (root / "data/prepared/64/test.npy").is_file()
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert {"raw_data", "prepare", "sample_embedding@64"} <= set(lock)
    assert "Running stage" not in run_command("dvc", "repro", "sample_embedding@64", cwd=root)
    assert "up to date" in run_command("dvc", "status", "sample_embedding@64", cwd=root)


def test_snakemake_killed_mid_training_resumes_to_the_same_weights(smoke_run: SmokeRun, tmp_path: Path) -> None:
    root = smoke_run.root
    assert not smoke_run.report_before_rerun, "the run finished before it could be interrupted"
    assert smoke_run.locks_after_kill, "the kill left no lock to test the rerun against"
    assert "removed the lock a killed Snakemake left" in smoke_run.rerun_output
    check_artefacts(root, SMOKE)
    # The reference: the checkpoints at 64 px (the kill comes during that resolution's LapCVAE levels) that were not
    # written when it came, trained uninterrupted by Snakemake in a fresh copy.
    interrupted = [path for path in smoke_run.trained_after_kill if "/64/" in path]
    assert any(path.endswith("/64/lapcvae/level0.pt") for path in interrupted)  # the level the kill came during
    reference_root = smoke_copy(tmp_path / "reference")
    run_command("snakemake", "--cores", CORES, *interrupted, cwd=reference_root)
    resumed, reference = weights(root, interrupted), weights(reference_root, interrupted)
    for path, state in resumed.items():
        for name, tensor in state.items():
            assert torch.equal(tensor, reference[path][name]), f"{path}: {name} differs from the uninterrupted run"

    # One model's parameter reruns only what depends on it.
    override = tmp_path / "gamma.yaml"
    override.write_text(yaml.safe_dump({"vaegan": {"64": {"gamma": 0.25}}}))
    dry_run = run_command("snakemake", "-n", "--configfile", str(override), cwd=root)
    assert "train_baseline" in dry_run and "train_level" not in dry_run and "retrain_m" not in dry_run


def test_dvc_repro_right_after_snakemake_trains_nothing_again(smoke_run: SmokeRun,
                                                               smoke_dvc_repro: SmokeDvcRepro) -> None:
    """DVC's first run of the training stages over Snakemake's finished study (in a copy of it, beside the other
    tests: conftest.py) runs them and their data stages, records what is there and trains nothing again: a
    retrained checkpoint would differ in its recorded training time, so equal bytes mean no training. Then neither
    tool has anything to do."""
    root, output = smoke_dvc_repro.root, smoke_dvc_repro.output
    assert output.count("Running stage") == len(DVC_TRAINING_STAGES) + 2, output  # + raw_data and prepare
    assert "start train" not in output and "start retrain" not in output  # workflow/console.py's job lines
    assert smoke_dvc_repro.checkpoints_before == checkpoint_hashes(smoke_run.root, SMOKE)  # the resumed weights
    assert smoke_dvc_repro.checkpoints_after == smoke_dvc_repro.checkpoints_before
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    for stage in DVC_TRAINING_STAGES:  # the checkpoints' folders recorded
        assert lock[stage]["outs"][0]["path"].startswith("results/models/"), lock[stage]
    assert "Nothing to be done" in run_command("snakemake", "-n", cwd=root)
    assert "Running stage" not in run_command("dvc", "repro", *DVC_TRAINING_STAGES, cwd=root)
