"""dvc.yaml against the Snakemake DAG (workflow/dvc_check.py): at the default params, under a params override as
`dvc exp run -S` applies it, and with drift put in on purpose."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import copy_repository, run_command

from core import registry
from core.params import deep_merge, load_params
from workflow.dvc_check import check, dvc_stages

REPO = Path(__file__).resolve().parent.parent


def repository_copy(destination: Path, params: dict | None = None) -> Path:
    """The repository's files (as git sees them), optionally with other params in params.yaml."""
    copy_repository(destination)
    if params is not None:
        (destination / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return destination


def test_dvc_yaml_is_templated_and_short() -> None:
    text = (REPO / "dvc.yaml").read_text()
    assert len(text.splitlines()) <= 400
    stages = yaml.safe_load(text)["stages"]
    # No resolution or model is spelled in a stage: they come from params.yaml and the `models` var.
    body = yaml.safe_dump(stages)
    for res in load_params()["data"]["resolutions"]:
        assert f"/{res}/" not in body and f"_{res}" not in body
    assert "${data.resolutions}" in stages["train"]["foreach"]
    assert stages["evaluate"]["matrix"] == {"res": "${data.resolutions}", "model": "${models}"}


def test_dvc_yaml_follows_the_snakemake_dag() -> None:
    assert check(REPO) == []


def test_the_ablations_pipeline_follows_its_target_and_stays_out_of_dvc_repro() -> None:
    """`snakemake ablations` has its own dvc.yaml: checked like the main one, and no stage of the main one
    (what a plain `dvc repro` runs) writes ablation results."""
    assert check(REPO, "workflow/ablations/dvc.yaml") == []
    assert not any("ablations" in out for stage in dvc_stages(REPO) for out in stage.outs)
    assert {stage.name for stage in dvc_stages(REPO, "workflow/ablations/dvc.yaml")} == {
        f"ablations@{res}" for res in load_params()["ablations"]["resolutions"]}


def test_a_resolution_override_gives_the_matching_stages(tmp_path: Path) -> None:
    """What `dvc exp run -S data.resolutions='[64]'` sees, at the smoke scale: stages for 64 px only, still
    matching the DAG Snakemake builds from the same params (the human study follows to 64 px)."""
    params = deep_merge(load_params("config/smoke.yaml"), {"data": {"resolutions": [64]}})
    root = repository_copy(tmp_path, params)
    assert check(root) == []
    names = {stage.name for stage in dvc_stages(root)}
    # models that run at every resolution share the `evaluate` matrix; PixelVAE (64 px only) has its own stage
    assert {f"evaluate@64-{model}" for model in registry.names() if model != "pixelvae"} <= names
    assert "evaluate_pixelvae@64" in names and "evaluate@64-pixelvae" not in names
    assert "train@64" in names and not any("128" in name for name in names)


def test_the_check_names_each_kind_of_drift(tmp_path: Path) -> None:
    root = repository_copy(tmp_path)
    text = (root / "dvc.yaml").read_text()
    for old, new in [
        (", lapcvae_retrained_m", ""),  # a model missing from the matrix
        ('"vaegan.${item}", ', ""),  # a model's params missing from training
        ('["${paths.results}/eval", "${paths.results}/metrics/per_image", core,',
         '["${paths.results}/eval", studies, core,'),  # a folder Table 1 reads, and a package it does not run
        ('"${paths.results}/priors/${item.res}", core, data/__init__.py, data/arrays.py, models, baselines,',
         '"${paths.results}/priors/${item.res}", core, data/__init__.py, data/arrays.py, models,'),  # model code
        ("${paths.results}/figures/fig6_neighbours_${item}.png\n", "\n"),  # a target no longer asked for
        ("        - ${paths.results}/metrics/per_image/${key}_pixelvae.csv: {persist: true}\n", ""),  # 64 px only
    ]:
        assert old in text, old
        text = text.replace(old, new, 1)
    (root / "dvc.yaml").write_text(text)
    errors = "\n".join(check(root))
    assert "vars `models`" in errors
    assert "results/eval/64/lapcvae_retrained_m (rule" not in errors  # no evaluate stage: its files have none
    assert "results/eval/64/lapcvae_retrained_m/summary.json (rule evaluate) is an out of 0" in errors
    assert "train@64: params miss ['vaegan.64." in errors
    assert "file(s) that no dep holds: results/metrics/per_image/128_lapcvae.csv" in errors
    assert "results/metrics/per_image/64_pixelvae.csv (rule evaluate) is an out of 0" in errors
    assert "128_pixelvae" not in errors  # PixelVAE runs at 64 px only: nothing at 128 px is missing
    assert "figures@64: its cmd does not build" in errors and "(rule neighbours)" in errors
    # code: evaluating the VAE/GAN runs baselines/vaegan.py (its registry class); Table 1 imports no study
    assert re.search(r"evaluate@64-vaegan: its jobs run \d+ file\(s\) that no code dep holds[^\n]*baselines/vaegan\.py",
                     errors)
    assert "evaluate@64-lapcvae: its jobs run" not in errors  # LapCVAE's evaluation imports nothing of baselines/
    assert "table: code dep studies holds no file its jobs run" in errors


@pytest.mark.slow
def test_metrics_and_plots_of_the_smoke_run_read_without_warnings(dvc_run: Path, tmp_path: Path) -> None:
    """`dvc metrics show` on the smoke DVC run: no load warning, each model's RMSE as Table 1 has it and only
    numbers; `dvc plots show`: a page with a line plot over steps for every training-curve table."""
    shown = run_command("dvc", "metrics", "show", cwd=dvc_run)
    assert "failed to load" not in shown.lower() and "warning" not in shown.lower(), shown
    assert "rmse_mean" in shown
    (workspace,) = json.loads(run_command("dvc", "metrics", "show", "--json", cwd=dvc_run)).values()
    values = workspace["data"]["results/metrics/metrics.json"]["data"]
    table = pd.read_csv(dvc_run / "results/metrics/table1.csv")
    reconstructing = table.dropna(subset=["rmse_mean"])
    assert {"vae", "lapcvae", "vaegan"} <= set(reconstructing["model"])
    for row in reconstructing.itertuples():
        assert values[str(row.resolution)][row.model]["rmse_mean"] == pytest.approx(row.rmse_mean), row.model
    assert all(isinstance(value, float) for models in values.values() for numbers in models.values()
               for value in numbers.values())

    plotted = run_command("dvc", "plots", "show", "-o", str(tmp_path / "plots"), cwd=dvc_run)
    assert "failed to load" not in plotted.lower() and "warning" not in plotted.lower(), plotted
    page = (tmp_path / "plots" / "index.html").read_text()
    curves = sorted((dvc_run / "results/curves").rglob("*.csv"))
    assert {"vae", "lapcvae", "vaegan"} <= {path.relative_to(dvc_run / "results/curves").parts[1] for path in curves}
    for path in curves:  # each one a plot of its own, its term over the steps
        assert path.relative_to(dvc_run).as_posix() in page, path
    assert '"field": "step"' in page and '"field": "kl"' in page
