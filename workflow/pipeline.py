"""What the DAG computes, as plain Python shared by the Snakefile and the dvc.yaml generator.

The Snakefile's rules say *how* each artefact is made; this module names *which* artefacts a configuration
asks for, and which parameters each job depends on (its rerun fingerprint), so Snakemake and DVC cannot drift.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workflow.config import fingerprint

# Every model of Table 1, in the table's order, and the checkpoint each one is evaluated from.
MODELS = ["vae", "vaegan", "lapcvae_nom", "lapcvae", "lapcvae_retrained_m"]
LAPCVAE_VARIANTS = ["lapcvae", "lapcvae_nom"]
BASELINES = ["vae", "vaegan"]


def resolutions(params: Mapping[str, Any]) -> list[int]:
    return list(params["data"]["resolutions"])


def levels(params: Mapping[str, Any], res: int | str) -> int:
    return int(params["lapcvae"][str(res)]["levels"])


def checkpoint(results: str, res: int | str, model: str) -> str:
    """The checkpoint file a model is evaluated from."""
    if model in BASELINES:
        return f"{results}/models/{res}/{model}/model.pt"
    if model == "lapcvae_retrained_m":
        return f"{results}/models/{res}/lapcvae/retrained_m.pt"
    return f"{results}/models/{res}/{model}/level0.pt"


def training_log(checkpoint_path: str) -> str:
    """Per-step losses the training loop writes beside each checkpoint (for dvc plots and the curves)."""
    return checkpoint_path.removesuffix(".pt") + ".log.csv"


def training_checkpoints(params: Mapping[str, Any]) -> list[str]:
    results = params["paths"]["results"]
    paths = []
    for res in resolutions(params):
        for model in BASELINES:
            paths.append(checkpoint(results, res, model))
        for variant in LAPCVAE_VARIANTS:
            paths += [f"{results}/models/{res}/{variant}/level{k}.pt" for k in range(levels(params, res))]
        paths.append(checkpoint(results, res, "lapcvae_retrained_m"))
    return paths


def figures(params: Mapping[str, Any]) -> list[str]:
    results = params["paths"]["results"]
    names = ["fig1_edit", "fig4_reconstructions", "fig5_samples", "fig6_neighbours", "fig7_partial",
             "fig8_retrained_m", "fig9_region", "training_curves"]
    return [f"{results}/figures/{name}_{res}.png" for res in resolutions(params) for name in names]


def final_targets(params: Mapping[str, Any]) -> list[str]:
    """Everything `snakemake --cores all` (rule all) and `dvc repro` produce."""
    results = params["paths"]["results"]
    return [
        f"{params['paths']['prepared']}/manifest.json",
        *training_checkpoints(params),
        f"{results}/metrics/table1.csv",
        f"{results}/metrics/metrics.json",
        *figures(params),
        f"{results}/human_study/key.csv",
        f"{results}/report.html",
    ]


# Parameters each kind of job depends on: a job reruns when its fingerprint changes, and only then.
def level_fingerprint(params: Mapping[str, Any], res: int | str, variant: str, level: int) -> str:
    """Level k's checkpoint holds levels k..K, so it depends on the settings of those levels only."""
    settings = dict(params["lapcvae"][str(res)])
    for key in ("latent_dims", "kl_weights"):
        settings[key] = settings[key][level:]
    return fingerprint([params["seed"], params["train"], settings, variant, level])


def section_fingerprint(params: Mapping[str, Any], *keys: str) -> str:
    """Fingerprint of some top-level sections (plus the seed); `a.b` reaches into a section."""
    picked = []
    for key in keys:
        value: Any = params
        for part in key.split("."):
            value = value[part]
        picked.append(value)
    return fingerprint([params["seed"], picked])


def expose_cli() -> None:
    """Put the running interpreter's bin folder first on PATH, so jobs run this environment's `lapcvae`."""
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
