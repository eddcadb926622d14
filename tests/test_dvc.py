"""dvc.yaml against the Snakemake DAG (workflow/dvc_check.py): at the default params, under a params override as
`dvc exp run -S` applies it, and with drift put in on purpose."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ENV, REPO, SmokeDvcRepro, copy_repository, run_command
from test_training import SETTINGS as TRAINING
from test_training import level_trainable, train_images

from core import registry
from core.params import deep_merge, load_params
from eval.figures import write_curve_tables
from studies.ablations import validation_rmse
from training.loop import fit
from workflow.dvc_check import check, dvc_stages


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
        ('"vaegan.${item}",', ""),  # a model's params missing from training
        ('["${paths.results}/eval", "${paths.results}/metrics/per_image", core,',
         '["${paths.results}/eval", studies, core,'),  # a folder Table 1 reads, and a package it does not run
        ('"${paths.results}/priors/${item.res}", core, data/__init__.py, data/arrays.py, models, baselines,',
         '"${paths.results}/priors/${item.res}", core, data/__init__.py, data/arrays.py, models,'),  # model code
        (" ${paths.results}/editing/${item}/region\n", "\n"),  # a target no longer asked for
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
    assert "editing@64: its cmd does not build" in errors and "(rule edit_region)" in errors
    # code: evaluating the VAE/GAN runs baselines/vaegan.py (its registry class); Table 1 imports no study
    assert re.search(r"evaluate@64-vaegan: its jobs run \d+ file\(s\) that no code dep holds[^\n]*baselines/vaegan\.py",
                     errors)
    assert "evaluate@64-lapcvae: its jobs run" not in errors  # LapCVAE's evaluation imports nothing of baselines/
    assert "table: code dep studies holds no file its jobs run" in errors


@pytest.mark.slow
def test_metrics_and_plots_of_the_smoke_run_read_without_warnings(smoke_dvc_repro: SmokeDvcRepro,
                                                                   tmp_path: Path) -> None:
    """`dvc metrics show` on the smoke study DVC recorded: no load warning, each model's RMSE as Table 1 has it and
    only numbers; `dvc plots show`: a page with a line plot over steps for every training-curve table."""
    root = smoke_dvc_repro.root
    shown = run_command("dvc", "metrics", "show", cwd=root)
    assert "failed to load" not in shown.lower() and "warning" not in shown.lower(), shown
    assert "rmse_mean" in shown
    (workspace,) = json.loads(run_command("dvc", "metrics", "show", "--json", cwd=root)).values()
    values = workspace["data"]["results/metrics/metrics.json"]["data"]
    table = pd.read_csv(root / "results/metrics/table1.csv")
    reconstructing = table.dropna(subset=["rmse_mean"])
    assert {"vae", "lapcvae", "vaegan"} <= set(reconstructing["model"])
    for row in reconstructing.itertuples():
        assert values[str(row.resolution)][row.model]["rmse_mean"] == pytest.approx(row.rmse_mean), row.model
    assert all(isinstance(value, float) for models in values.values() for numbers in models.values()
               for value in numbers.values())

    plotted = run_command("dvc", "plots", "show", "-o", str(tmp_path / "plots"), cwd=root)
    assert "failed to load" not in plotted.lower() and "warning" not in plotted.lower(), plotted
    page = (tmp_path / "plots" / "index.html").read_text()
    curves = sorted((root / "results/curves").rglob("*.csv"))
    assert {"vae", "lapcvae", "vaegan"} <= {path.relative_to(root / "results/curves").parts[1] for path in curves}
    for path in curves:  # each one a plot of its own, its term over the steps
        assert path.relative_to(root).as_posix() in page, path
    assert '"field": "step"' in page and '"field": "kl"' in page


def curves_of_two_runs(root: Path, lr: float) -> dict[str, pd.DataFrame]:
    """A tiny LapCVAE level trained with validation, its training log as the figures job writes it for `dvc plots`
    (results/curves/64/...) and its validation curve where an ablation keeps one; {path: table} of what is there."""
    trainable = level_trainable()
    val_images = train_images(n=4)
    run = root.parent / f"run-{lr}"
    fit(trainable, train_images(), settings={**TRAINING, "lr": lr}, seed=0, output=run / "level0.pt",
        export=trainable.model, validate=lambda: {"val_rmse": validation_rmse(trainable.model, val_images)},
        validate_every=2)
    written = write_curve_tables({"lapcvae": {"level 0": run / "level0.log.csv"}}, root / "results/curves/64")
    validation = root / "results/ablations/64/greedy_latents/level0.val.csv"
    validation.parent.mkdir(parents=True, exist_ok=True)
    validation.write_bytes((run / "level0.val.csv").read_bytes())
    return {path.relative_to(root).as_posix(): pd.read_csv(path) for path in [*written, validation]}


def overlaid(root: Path, *arguments: str, not_made: tuple[str, ...] = ()) -> dict[str, dict]:
    """`dvc plots diff HEAD --json <arguments>`: {plot file: its one plot, both revisions}. DVC may fail to load only
    the declared plots under `not_made` (those this test does not make); anything else it failed to load fails."""
    result = subprocess.run(["dvc", "plots", "diff", "HEAD", "--json", *arguments], cwd=root, env=ENV,
                            capture_output=True, text=True, timeout=300)
    shown = json.loads(result.stdout)
    failed = {error["name"] for error in shown.get("errors", [])}
    assert result.returncode == 0 and all(name.startswith(not_made) for name in failed), shown.get("errors")
    if not failed:
        assert not result.stderr.strip(), result.stderr
    plots = {}
    for path, entries in shown["data"].items():
        if path not in failed:
            (plot,) = entries
            assert plot["type"] == "vega" and sorted(plot["revisions"]) == ["HEAD", "workspace"], path
            plots[path] = plot["content"]
    return plots


def test_dvc_plots_diff_overlays_two_runs_training_and_validation_curves(tmp_path: Path) -> None:
    """Two trainings (other learning rates) committed one after the other: `dvc plots diff` (no target: what
    dvc.yaml declares) draws each training curve table (a term over the steps), and with `-x step -y val_rmse` an
    ablation's validation curve (not declared: the ablations do not run by default, and a declared file that is
    not there is a warning on every call), with both runs' values on the same axes."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("dvc.yaml", "params.yaml", "core/figures.py"):  # dvc.yaml's vars: params and the figures table
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes((REPO / name).read_bytes())
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        run_command(*command, cwd=root)
    before = curves_of_two_runs(root, lr=1e-3)
    run_command("git", "add", "-A", cwd=root)
    run_command("git", "-c", "user.name=test", "-c", "user.email=test@example.org", "commit", "-qm", "run 1",
                cwd=root)
    after = curves_of_two_runs(root, lr=1e-2)
    validation = "results/ablations/64/greedy_latents/level0.val.csv"
    terms = {path: table.columns[-1] for path, table in after.items() if path != validation}
    assert set(terms.values()) == {"loss", "recon", "kl"} and set(before) == set(after)
    # every plot dvc.yaml declares: the figures and the 128 px curves are not made here
    plots = overlaid(root, not_made=("results/figures/", "results/curves/128"))
    plots.update(overlaid(root, "--targets", validation, "-x", "step", "-y", "val_rmse"))
    assert set(plots) == set(after)
    for path, content in plots.items():
        y = terms.get(path, "val_rmse")
        assert content["encoding"]["x"]["field"] == "step" and content["layer"][0]["encoding"]["y"]["field"] == y
        values = pd.DataFrame(content["data"]["values"])
        for rev, run in (("HEAD", before), ("workspace", after)):
            drawn = values[values["rev"] == rev]
            assert drawn["step"].astype(int).tolist() == run[path]["step"].tolist(), (path, rev)
            assert drawn[y].astype(float).tolist() == pytest.approx(run[path][y].tolist()), (path, rev)
        assert not np.allclose(before[path][y], after[path][y])  # two runs' lines, not one drawn twice
