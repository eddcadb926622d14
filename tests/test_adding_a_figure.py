"""docs/extending.md's "Adding a figure", followed with a toy figure: each model's mean sample.

Steps (docs/extending.md): its drawing function (tests/toy/toyfigure.py) and one row in core/figures.py's
`figures` group. Nothing else is edited: `lapcvae figures` must draw it, the report show it with its caption, the
DAG ask for it (workflow/pipeline.py's targets, the `figures` rule's outputs) and dvc.yaml give it a stage.
"""

from __future__ import annotations

import html
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import copy_repository
from test_figures import SIZE, StandInLapCVAE, run_cli, write_fixture_tree
from test_report import run_report, write_fixture

from core import figures as figure_table
from core.params import deep_merge, load_params
from eval import figures
from eval.plotting import grid_array
from workflow.dvc_check import parse_dry_run
from workflow.pipeline import figures as figure_targets

TOY = Path(__file__).resolve().parent / "toy"
TABLE_MARK = "        # Add a figure here"
ROW = {"title": "Mean samples", "caption": "the pixel-wise mean of each model's samples.",
       "draw": "toy.toyfigure:mean_samples_figure", "inputs": ["samples"]}


def add_toy_row(monkeypatch, **changes: object) -> None:
    monkeypatch.setitem(figure_table.FIGURES[figure_table.FIGURES_COMMAND], "mean_samples", {**ROW, **changes})


def test_a_table_row_is_drawn_by_the_figures_command_from_the_evaluation_files(tmp_path, monkeypatch):
    add_toy_row(monkeypatch)
    paths = write_fixture_tree(tmp_path)
    monkeypatch.setattr(figures, "load_model", lambda path, **expected: StandInLapCVAE(levels=3))
    drawn = {}
    save = figures.save_figure
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: drawn.setdefault(Path(path).name, fig)
                        and save(fig, path))
    run_cli(paths)
    written = paths["out"] / f"mean_samples_{SIZE}.png"
    assert written.read_bytes().startswith(b"\x89PNG")
    assert f"fig4_reconstructions_{SIZE}.png" in drawn  # the table's other figures are still drawn
    # The toy panel of each model holds the mean of that model's samples, as numpy computes it from the files.
    means = [np.rint(np.load(paths["eval"] / str(SIZE) / model / "samples.npy").astype(np.float64).mean(axis=0))
             .astype(np.uint8) for model in figures.registry.names()]
    shown = drawn[written.name].axes[0].images[0].get_array()
    np.testing.assert_array_equal(np.asarray(shown), grid_array([means]))


def test_a_figure_whose_models_do_not_run_is_skipped_and_a_missing_input_stops_before_drawing(tmp_path,
                                                                                               monkeypatch):
    paths = write_fixture_tree(tmp_path)
    monkeypatch.setattr(figures, "load_model", lambda path, **expected: StandInLapCVAE(levels=3))
    add_toy_row(monkeypatch, models=["lapcvae", "pixelvae"])
    written = figures.write_figures(load_params("config/smoke.yaml"), SIZE, paths["eval"], paths["models"],
                                    paths["test"], paths["out"], ["vae", "lapcvae"])
    assert f"mean_samples_{SIZE}.png" not in {path.name for path in written}  # pixelvae is not shown here
    add_toy_row(monkeypatch, inputs=["samples", "reconstructions"])
    (paths["eval"] / str(SIZE) / "vae" / "reconstructions.npy").unlink()
    for path in paths["out"].iterdir():
        path.unlink()
    with pytest.raises(FileNotFoundError, match="vae/reconstructions.npy"):
        figures.write_figures(load_params("config/smoke.yaml"), SIZE, paths["eval"], paths["models"], paths["test"],
                              paths["out"], ["vae", "lapcvae"])
    assert not any(paths["out"].iterdir())  # nothing drawn from half the inputs


def test_a_table_row_is_in_the_report_and_the_dag_targets(tmp_path, monkeypatch):
    add_toy_row(monkeypatch)
    params = load_params("config/smoke.yaml")
    targets = figure_targets(params)
    assert [target for target in targets if "mean_samples" in target] == [
        f"{params['paths']['results']}/figures/mean_samples_{res}.png" for res in params["data"]["resolutions"]]
    report_paths = write_fixture(tmp_path)
    markdown, _ = run_report(report_paths)
    assert "mean_samples_64.png" in markdown  # not drawn: named as missing
    figures.save_figure(figures.image_grid([[np.zeros((3, 8, 8), np.uint8)]]),
                        report_paths["results"] / "figures" / "mean_samples_64.png")
    markdown, page = run_report(report_paths)
    caption = "Mean samples: the pixel-wise mean of each model's samples. (64x64)"
    assert caption in markdown and html.escape(caption) in page
    # after the paper's figures, which keep their order
    assert markdown.index("Figure 4:") < markdown.index("Training curves:") < markdown.index("Mean samples:")


def run(*command: str, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(cwd), "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout + result.stderr


def test_the_two_documented_edits_give_a_rule_output_and_a_dvc_stage(tmp_path):
    """In a copy of the repository: the drawing function's module and one row, nothing else; Snakemake's figures
    job then writes it, the report waits for it and dvc.yaml still matches the DAG, with a stage for it."""
    root = copy_repository(tmp_path)
    (root / "eval/toyfigure.py").write_text((TOY / "toyfigure.py").read_text())
    table = root / "core/figures.py"
    text = table.read_text()
    assert TABLE_MARK in text, "core/figures.py lost the line new figures are added above"
    row = {**ROW, "draw": "eval.toyfigure:mean_samples_figure"}
    table.write_text(text.replace(TABLE_MARK, f"        \"mean_samples\": {row!r},\n{TABLE_MARK}", 1))
    params = deep_merge(load_params("config/smoke.yaml"), {"data": {"resolutions": [64]},
                                                           "human_study": {"resolution": 64}})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run("git", "init", "-q", cwd=root)
    jobs = parse_dry_run(run("snakemake", "-n", "--forceall", "results/report.html", cwd=root))
    (drawing,) = [job for job in jobs if job.rule == "figures"]
    assert "results/figures/mean_samples_64.png" in drawing.outputs
    assert "results/eval/64/vae/samples.npy" in drawing.inputs
    (report,) = [job for job in jobs if job.rule == "report"]
    assert "results/figures/mean_samples_64.png" in report.inputs
    run(sys.executable, "-m", "workflow.dvc_check", cwd=root)
    assert "figures@64-mean_samples" in run("dvc", "stage", "list", cwd=root)
