"""What the DAG computes, as plain Python shared by the Snakefile and the dvc.yaml generator.

The Snakefile's rules say *how* each artefact is made; this module names *which* artefacts a configuration
asks for, and which parameters each job depends on (its rerun fingerprint), so Snakemake and DVC cannot drift.
"""

from __future__ import annotations

import functools
import hashlib
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
# Table 1's reference rows (eval/references.py), computed on the same split: what a model must beat.
REFERENCES = ["mean_face", "pca", "lapcvae_coarsest"]


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


def level_checkpoint(results: str, res: int | str, variant: str, level: int, levels_count: int) -> str:
    """The checkpoint holding levels `level`..K of a LapCVAE variant.

    The coarsest level has no M, so both variants share one job and one checkpoint, the with-M variant's.
    """
    owner = "lapcvae" if level == levels_count - 1 else variant
    return f"{results}/models/{res}/{owner}/level{level}.pt"


def training_jobs(results: str, res: int | str, model: str, levels_count: int) -> list[str]:
    """Every training job's checkpoint that built a model (its training cost is their sum, eval.cost)."""
    if model in BASELINES:
        return [checkpoint(results, res, model)]
    variant = "lapcvae" if model == "lapcvae_retrained_m" else model
    paths = [level_checkpoint(results, res, variant, k, levels_count) for k in range(levels_count)]
    return paths + ([checkpoint(results, res, model)] if model == "lapcvae_retrained_m" else [])


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
            count = levels(params, res)
            paths += [path for k in range(count)
                      if (path := level_checkpoint(results, res, variant, k, count)) not in paths]
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


# What each rule's jobs depend on besides their input files: params keys ({wildcards} filled in) and the
# code packages they run. A job reruns when the fingerprint of these changes (Snakemake's params trigger), and
# dvc.yaml lists the same keys and folders as the stage's params and deps.
PARAMS_USED = {
    "generate_faces": ["data.synthetic"],
    "fetch_celeba": ["data.celeba"],
    "prepare": ["data"],
    "train_level": ["budget", "train", "lapcvae.{res}"],
    "retrain_m": ["budget", "train", "lapcvae.{res}", "lapcvae.retrain_m"],
    # The VAE's widths are matched to LapCVAE's parameter count, so LapCVAE's settings matter to it.
    "train_baseline": ["budget", "train", "{baseline}.{res}", "lapcvae.{res}"],
    "evaluate": ["eval"],
    "references": ["eval", "lapcvae.{res}.latent_dims"],
    "training_cost": [],
    "tune_resolution": ["tune", "budget", "train", "vae.{res}", "vaegan.{res}", "lapcvae.{res}"],
    "rate_distortion_resolution": ["rate_distortion", "budget", "train", "vae.{res}", "vaegan.{res}",
                                   "lapcvae.{res}"],
    "table": ["eval", "seeds"],
    "neighbours": ["eval.neighbours"],
    "figures": ["eval"],
    "edit_coarse": ["editing"],
    "edit_region": ["editing"],
    "export_study": ["human_study"],
    "analyze_study": [],
    # The report prints the merged params, so every section it shows is part of its fingerprint.
    "report": ["data", "seeds", "budget", "train", "lapcvae", "vae", "vaegan", "tune", "eval", "human_study"],
}
CODE_USED = {
    "generate_faces": ["data"],
    "fetch_celeba": ["data"],
    "prepare": ["data"],
    "train_level": ["models"],
    "retrain_m": ["models"],
    "train_baseline": ["models", "baselines"],
    "evaluate": ["models", "baselines", "eval"],
    "references": ["models", "eval"],
    "training_cost": ["models", "baselines", "eval"],
    "tune_resolution": ["models", "baselines", "eval"],
    "rate_distortion_resolution": ["models", "baselines", "eval"],
    "table": ["eval"],
    "neighbours": ["eval"],
    "figures": ["models", "eval"],
    "edit_coarse": ["models", "eval"],
    "edit_region": ["models", "eval"],
    "export_study": ["eval"],
    "analyze_study": ["eval"],
    "report": ["eval"],
}
REPO_ROOT = Path(__file__).resolve().parent.parent


def params_used(rule: str, wildcards: Mapping[str, str]) -> list[str]:
    return ["seed", *(key.format(**wildcards) for key in PARAMS_USED[rule])]


def pick(params: Mapping[str, Any], key: str) -> Any:
    """The value at a dotted key such as `lapcvae.64`."""
    value: Any = params
    for part in key.split("."):
        value = value[part]
    return value


@functools.cache
def code_fingerprint(package: str) -> str:
    """Hash of a package's Python sources, so that changing the code reruns the jobs that run it."""
    digest = hashlib.sha256()
    for source in sorted((REPO_ROOT / package).rglob("*.py")):
        digest.update(source.relative_to(REPO_ROOT).as_posix().encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def job_fingerprint(params: Mapping[str, Any], rule: str, wildcards: Mapping[str, str]) -> str:
    """The rerun fingerprint of one job: the params it uses and the code it runs."""
    values = {key: pick(params, key) for key in params_used(rule, wildcards)}
    if rule == "train_level":
        # Level k's checkpoint holds levels k..K: only those levels' settings concern it.
        level = int(wildcards["level"])
        settings = dict(values[f"lapcvae.{wildcards['res']}"])
        for key in ("latent_dims", "kl_weights", "level_epochs"):
            if key in settings:
                settings[key] = settings[key][level:]
        values[f"lapcvae.{wildcards['res']}"] = settings
    code = {package: code_fingerprint(package) for package in CODE_USED[rule]}
    return fingerprint([values, code, dict(wildcards)])


def expose_cli() -> None:
    """Put the running interpreter's bin folder first on PATH, so jobs run this environment's `lapcvae`."""
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])


def export_params(path: str) -> None:
    """Tell the jobs which resolved params file to read (`--params $LAPCVAE_PARAMS` in every rule)."""
    os.environ["LAPCVAE_PARAMS"] = path
