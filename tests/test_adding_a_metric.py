"""docs/extending.md's "Adding a metric", followed in a copy of the repository with a toy metric (mean absolute
error): its function (tests/toy/toymetric.py -> eval/toymetric.py) and one row in eval/metric_directions.py's
RECONSTRUCTION_METRICS. Nothing else is edited: `evaluate`'s per-image metrics, summary.json, Table 1 and the
report (a column, ranked by its direction) must carry it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import copy_repository

TOY = Path(__file__).resolve().parent / "toy"
TABLE_MARK = "    # Add a metric here"
ROW = '    ReconstructionMetric("mae", "MAE", LOWER, "eval.toymetric:mae_per_image", digits=2),\n'

# Run in the copy: three models that shift every pixel by a known amount, scored as `evaluate` scores a model,
# then Table 1 and the report from their files.
SCRIPT = '''
import json, sys
from pathlib import Path
import numpy as np, pandas as pd, torch
from eval.metrics import PER_IMAGE_COLUMNS, evaluate_model, summarise
from workflow.commands.evaluate import report_main, table_main

smoke, root = sys.argv[1], Path(sys.argv[2])
results, res = root / "results", 64
test = np.random.default_rng(0).integers(40, 200, (12, 3, res, res), dtype=np.uint8)


class Shift(torch.nn.Module):
    def __init__(self, levels):
        super().__init__()
        self.levels = levels

    def reconstruct(self, x):
        return x + self.levels / 255.0


assert "mae" in PER_IMAGE_COLUMNS
for model, levels in (("vae", 9), ("lapcvae_nom", 3), ("lapcvae", 6)):
    out = np.zeros_like(test)
    per_image = evaluate_model(Shift(levels), test, 5, torch.device("cpu"), out)
    np.testing.assert_allclose(per_image["mae"], np.abs(out.astype(float) - test).mean(axis=(1, 2, 3)))
    summary = {"model": model, "resolution": res, **summarise(per_image, 20, 0), "parameters": 1,
               "flops_per_image": 1.0, "eval_seconds": 1.0, "eval_device": "cpu", "train_seconds": 1.0,
               "sample_seconds": 1.0, "meta": {"device": "cpu", "steps": 1, "precision": "fp32", "seed": 0}}
    assert summary["mae_mean"] == levels, summary["mae_mean"]
    folder = results / "eval" / str(res) / model
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    (results / "metrics" / "per_image").mkdir(parents=True, exist_ok=True)
    per_image.to_csv(results / "metrics" / "per_image" / f"{res}_{model}.csv", index=False)
table_main(["--params", smoke, "--eval-dir", str(results / "eval"), "--per-image-dir",
            str(results / "metrics" / "per_image"), "--seeds", "0", "--out-dir", str(results / "metrics")])
table = pd.read_csv(results / "metrics" / "table1.csv").set_index("model")
assert table.loc[["vae", "lapcvae_nom", "lapcvae"], "mae_mean"].tolist() == [9, 3, 6]
(root / "prepared").mkdir()
(root / "prepared" / "manifest.json").write_text(json.dumps({"source": "synthetic", "sha256": "0"}))
report_main(["--params", smoke, "--results", str(results), "--prepared", str(root / "prepared"),
             "--out-md", str(root / "report.md"), "--out-html", str(root / "report.html")])
print((root / "report.md").read_text())
'''


def test_a_metric_row_is_computed_tabled_and_reported(tmp_path: Path) -> None:
    root = copy_repository(tmp_path / "repo")
    (root / "eval/toymetric.py").write_text((TOY / "toymetric.py").read_text())
    table = root / "eval/metric_directions.py"
    text = table.read_text()
    assert TABLE_MARK in text, "eval/metric_directions.py lost the line new metrics are added above"
    table.write_text(text.replace(TABLE_MARK, ROW + TABLE_MARK, 1))
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(root / "config/smoke.yaml"), str(tmp_path)], cwd=root,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = result.stdout
    header = next(line for line in report.splitlines() if "| MAE" in line)
    column = [cell.strip() for cell in header.split("|")].index("MAE ↓")  # ranked: lower is better
    cells = {}
    for line in report.splitlines():
        cells_of_row = [cell.strip() for cell in line.split("|")]
        if len(cells_of_row) > column and cells_of_row[1] in ("VAE", "LapCVAE without M", "LapCVAE"):
            cells.setdefault(cells_of_row[1], cells_of_row[column])
    assert cells["VAE"] == "9.00" and cells["LapCVAE"] == "6.00"
    assert cells["LapCVAE without M"] == "**3.00**"  # the best, marked
    # the report's reading names the best model on it, with the paired test on the per-image values
    assert "MAE (lower is better): LapCVAE without M is best with 3.000, ahead of LapCVAE (6.000); paired" in report
