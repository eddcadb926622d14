"""docs/extending.md's "Adding a model", followed to the letter in a copy of the repository, with a toy autoencoder.

Steps (docs/extending.md): the model file (tests/toy/toy.py -> models/toy.py), one entry in core/registry.py's MODELS,
its params section in params.yaml and its schema fragment in core/schemas/. Nothing else is edited: the DAG must
train and evaluate it, and Table 1 and the report must show it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import CORES, SmokeRun, copy_repository

from core.params import deep_merge, load_params
from workflow.dvc_check import parse_dry_run

REPO = Path(__file__).resolve().parent.parent
TOY = Path(__file__).resolve().parent / "toy"
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
REGISTRY_MARK = "    # Add a model here"
TOY_ENTRY = '    ModelSpec("toy", "Toy AE", "models.toy:ToyAutoencoder", "toy"),\n'


def run(*command: str, cwd: Path, fails: bool = False) -> str:
    """Run in the copy, with the copy's packages (not this checkout's) first on the import path."""
    env = {**ENV, "PYTHONPATH": str(cwd)}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if fails:
        assert result.returncode != 0, f"{' '.join(command)} passed"
    else:
        assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout + result.stderr


def copy_with_toy_model(destination: Path) -> Path:
    """The repository (as git sees it) at smoke scale, 64 px only, with the toy model added the documented way."""
    copy_repository(destination)
    # 1. the model file
    (destination / "models/toy.py").write_text((TOY / "toy.py").read_text())
    # 2. one registry entry
    registry = destination / "core/registry.py"
    text = registry.read_text()
    assert REGISTRY_MARK in text, "core/registry.py lost the line new models are added above"
    registry.write_text(text.replace(REGISTRY_MARK, TOY_ENTRY + REGISTRY_MARK, 1))
    # 3. its params section (here merged over the smoke params, restricted to one resolution to stay cheap)
    params = deep_merge(load_params("config/smoke.yaml"),
                        {"data": {"resolutions": [64]}, "human_study": {"resolution": 64},
                         "toy": {"64": {"latent_dim": 8, "train": {}}}})
    (destination / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # 4. its schema fragment
    (destination / "core/schemas/toy.schema.yaml").write_text((TOY / "toy.schema.yaml").read_text())
    run("git", "init", "-q", cwd=destination)
    return destination


def test_a_registered_model_joins_every_step_of_the_dag(tmp_path: Path) -> None:
    root = copy_with_toy_model(tmp_path)
    plan = run("snakemake", "-n", "--forceall", "results/report.html", cwd=root)
    assert "results/models/64/toy/model.pt" in plan  # trained by train_baseline
    assert "results/eval/64/toy/summary.json" in plan  # evaluated, and so an input of Table 1
    assert "results/metrics/per_image/64_toy.csv" in plan
    # the nearest-neighbour job reads its samples (and writes results/neighbours/64_toy.csv, undeclared: the
    # models differ between resolutions, a rule's outputs cannot)
    neighbours = [job for job in parse_dry_run(plan) if job.rule == "neighbours"]
    assert neighbours and "results/eval/64/toy/samples.npy" in neighbours[0].inputs
    # dvc.yaml: the model in the `models` var and its params section in the train and report stages (docs);
    # then DVC's stages match the DAG again.
    assert "toy" in run(sys.executable, "-m", "workflow.dvc_check", fails=True, cwd=root)
    dvc_file = root / "dvc.yaml"
    text = dvc_file.read_text()
    # The three lines 'Adding a model' names: the `models` var, the train stage's and the report's params.
    for pattern, addition in [(r"(- models: \[[^\]]*)\]", r"\1, toy]"),
                              (r'(params: \[[^\]]*"vaegan\.\$\{item\}"[^\]]*)\]', r'\1, "toy.${item}"]'),
                              (r"(params: \[[^\]]*vaegan, lapcvae, )", r"\1toy, ")]:
        text, count = re.subn(pattern, addition, text, count=1)
        assert count == 1, f"dvc.yaml lost the line {pattern!r} that 'Adding a model' (docs) refers to"
    dvc_file.write_text(text)
    run(sys.executable, "-m", "workflow.dvc_check", cwd=root)
    assert "toy" in run("lapcvae", "evaluate", "--help", cwd=root)


@pytest.mark.slow
def test_a_registered_model_reaches_table1_and_the_report(smoke_run: SmokeRun, tmp_path: Path) -> None:
    """Added beside the models a smoke study already trained and evaluated (tests/conftest.py), the toy model is
    trained and evaluated, and joins Table 1 and the report; the models already there are not trained again."""
    root = copy_with_toy_model(tmp_path)
    # The data, the checkpoints and the evaluations, without Snakemake's records (.snakemake/ is not copied), so
    # nothing copied reruns for a changed fingerprint: the toy's jobs run, then every step after evaluation
    # (Table 1, neighbours, figures, editing, human study, report). copy2 keeps modification times.
    for folder in ("data", "results/models", "results/eval", "results/metrics/per_image"):
        shutil.copytree(smoke_run.root / folder, root / folder, dirs_exist_ok=True)
    output = run("snakemake", "--cores", CORES, "results/report.html", cwd=root)
    assert "start train_baseline " in output and "start train_level " not in output  # workflow/console.py's lines
    assert output.count("start evaluate ") == 1, "only the toy is evaluated: the others' files are there"
    table = pd.read_csv(root / "results/metrics/table1.csv")
    toy = table[table["model"] == "toy"]
    assert len(toy) == 1 and toy["rmse_mean"].notna().all() and (toy["rmse_mean"] > 0).all()
    html = (root / "results/report.html").read_text()
    assert "Toy AE" in html
