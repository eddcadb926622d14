"""The whole study at smoke scale, in temporary copies of the repository, through Snakemake and through DVC.

One copy runs `snakemake`, is killed in the middle of training and run again; another runs `dvc repro` from
scratch. Both must produce complete artefacts and the same weights; neither tool may redo the other's work.
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from core.params import load_params
from workflow.pipeline import MODELS, REFERENCES, figures, training_checkpoints

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
SMOKE = load_params("config/smoke.yaml")


def run(*command: str, cwd: Path, timeout: int = 900) -> str:
    result = subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout + result.stderr


def smoke_copy(destination: Path) -> Path:
    """The repository's files (as git sees them) with the smoke params written into params.yaml."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    (destination / "params.yaml").write_text(yaml.safe_dump(SMOKE, sort_keys=False))
    run("git", "init", "-q", cwd=destination)
    return destination


def check_artefacts(root: Path) -> None:
    table = pd.read_csv(root / "results/metrics/table1.csv")
    expected = {(model, res) for model in (*REFERENCES, *MODELS) for res in SMOKE["data"]["resolutions"]}
    assert set(zip(table["model"], table["resolution"], strict=True)) == expected
    assert all(math.isfinite(value) for value in table["rmse_mean"])
    html = (root / "results/report.html").read_text()
    assert "Table 1" in html
    assert html.count("data:image/png;base64,") >= len(figures(SMOKE))
    assert "http://" not in html and "https://" not in html.replace("https://doi.org", "")
    assert (root / "results/human_study/study.html").is_file()


def weights(root: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {
        path: torch.load(root / path, weights_only=True)["state_dict"]
        for path in training_checkpoints(SMOKE)
    }


@pytest.fixture(scope="module")
def dvc_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = smoke_copy(tmp_path_factory.mktemp("dvc"))
    # DVC runs its ~75 stages one after another, each starting Snakemake and a command (10-20 s apiece).
    run("dvc", "repro", cwd=root, timeout=2700)
    return root


def test_dvc_repro_runs_the_whole_study_and_then_nothing(dvc_run: Path) -> None:
    check_artefacts(dvc_run)
    assert "Nothing to be done" in run("snakemake", "-n", cwd=dvc_run)
    second = run("dvc", "repro", cwd=dvc_run, timeout=1800)
    assert "Running stage" not in second
    assert "rmse_mean" in run("dvc", "metrics", "show", cwd=dvc_run)


def test_snakemake_killed_mid_training_resumes_to_the_same_weights(dvc_run: Path, tmp_path: Path) -> None:
    root = smoke_copy(tmp_path / "snakemake")
    process = subprocess.Popen(
        ["snakemake", "--cores", "2"], cwd=root, env=ENV, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    first_levels = root / "results/models/64/lapcvae/level2.pt"
    deadline = time.monotonic() + 300
    while not first_levels.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)  # the whole Snakemake process group, jobs included
    process.wait()
    assert not (root / "results/report.html").exists(), "the run finished before it could be interrupted"

    # As a user would: the same command again, no `--unlock` (the killed run's lock is removed as stale).
    assert any((root / ".snakemake/locks").glob("*.lock")), "the kill left no lock to test the rerun against"
    rerun = run("snakemake", "--cores", "2", cwd=root)
    assert "removed the lock a killed Snakemake left" in rerun
    check_artefacts(root)
    resumed, reference = weights(root), weights(dvc_run)
    for path, state in resumed.items():
        for name, tensor in state.items():
            assert torch.equal(tensor, reference[path][name]), f"{path}: {name} differs from the DVC run"

    # DVC right after Snakemake: it records what is there and trains nothing again (a retrained checkpoint
    # would differ in its recorded training time, so equal bytes mean no training).
    before = {path: hashlib.sha256((root / path).read_bytes()).hexdigest() for path in resumed}
    output = run("dvc", "repro", cwd=root, timeout=1800)
    assert "localrule train" not in output and "localrule retrain" not in output
    assert {path: hashlib.sha256((root / path).read_bytes()).hexdigest() for path in resumed} == before

    # One model's parameter reruns only what depends on it.
    override = tmp_path / "gamma.yaml"
    override.write_text(yaml.safe_dump({"vaegan": {"64": {"gamma": 0.25}}}))
    dry_run = run("snakemake", "-n", "--configfile", str(override), cwd=root)
    assert "train_baseline" in dry_run and "train_level" not in dry_run and "retrain_m" not in dry_run
