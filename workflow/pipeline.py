"""What the DAG computes, as plain Python shared by the Snakefile and the dvc.yaml check (workflow/dvc_check.py).

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

from core import figures as figure_table
from core import registry
from core.params import fingerprint
from core.registry import checkpoint, training_log

# Every model of Table 1, in the table's order (core/registry.py), grouped by the rule that trains them.
MODELS = registry.names()
LAPCVAE_VARIANTS = registry.trained_by(registry.TRAIN_PER_LEVEL)
BASELINES = registry.trained_by(registry.TRAIN_ONE_JOB)
RETRAINED = registry.trained_by(registry.RETRAIN_M)
# Table 1's reference rows (eval/references.py), computed on the same split: what a model must beat.
REFERENCES = list(registry.RECONSTRUCTION_REFERENCES)  # the rows `lapcvae references` writes
__all__ = ["checkpoint", "training_log"]  # re-exported for the rules


def resolutions(params: Mapping[str, Any]) -> list[int]:
    return list(params["data"]["resolutions"])


def levels(params: Mapping[str, Any], res: int | str) -> int:
    return int(params["lapcvae"][str(res)]["levels"])


def training_checkpoints(params: Mapping[str, Any]) -> list[str]:
    """Every checkpoint the training jobs write: one-job models, then per-level models, then M retraining."""
    results = params["paths"]["results"]
    trained = [*BASELINES, *LAPCVAE_VARIANTS, *RETRAINED]
    return list(dict.fromkeys(path for res in resolutions(params) for model in trained
                              if model in registry.models_at(params, res)
                              for path in registry.checkpoints(results, res, model, levels(params, res))))


def figures(params: Mapping[str, Any]) -> list[str]:
    """Every figure file of core/figures.py's table at every resolution."""
    return [figure_table.figure_file(params["paths"]["results"], name, res)
            for res in resolutions(params) for name in figure_table.names()]


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
# dvc.yaml lists the same keys and folders as each stage's params and deps (workflow/dvc_check.py checks).
PARAMS_USED = {
    "generate_faces": ["data.synthetic"],
    "fetch_celeba": ["data.celeba"],
    "raw_data": ["data.{source}"],  # any other data set of core/datasets.py: its section data.<name>
    "prepare": ["data"],
    "train_level": ["budget", "train", "lapcvae.{res}"],
    "retrain_m": ["budget", "train", "lapcvae.{res}", "lapcvae.retrain_m"],
    # plus the model's own section and its registry `params_also` (see params_used)
    "train_baseline": ["budget", "train"],
    "sample_embedding": ["eval.samples", "eval.sample_quality"],
    "evaluate": ["eval.batch_size", "eval.samples", "eval.bootstrap_samples", "eval.sample_quality.k",
                 "eval.elbo_sigma"],
    "fit_prior": ["eval.batch_size", "eval.fitted_prior"],
    "references": ["eval.batch_size", "eval.bootstrap_samples", "eval.samples", "eval.sample_quality.k",
                   "lapcvae.{res}.latent_dims"],
    "tune_model": ["tune", "budget", "train", "eval", "{tuned_model}.{res}", "lapcvae.{res}"],
    "rate_distortion_resolution": ["rate_distortion", "budget", "train", "vae.{res}", "vaegan.{res}",
                                   "lapcvae.{res}", "eval.batch_size", "eval.sample_quality.k",
                                   "eval.fitted_prior", "eval.elbo_sigma"],
    "budget_curve_model": ["budget_curve.grid", "budget", "train", "vae.{res}", "vaegan.{res}", "lapcvae.{res}"],
    "budget_curve_resolution": ["lapcvae.{res}.latent_dims"],
    "ablation_train": ["ablations.validate_every", "budget", "train", "lapcvae.{res}", "lapcvae.retrain_m"],
    "ablations_table": ["ablations.variants"],
    "table": ["eval", "seeds"],
    "neighbours": ["eval.neighbours"],
    "figures": ["eval"],
    "edit_coarse": ["editing"],
    "edit_region": ["editing"],
    "export_study": ["human_study"],
    "analyze_study": ["human_study.attention_checks.min_correct"],
    # The report prints the merged params, so every section it shows is part of its fingerprint.
    "report": ["data", "seeds", "budget", "train", *registry.params_sections(), "tune", "eval", "human_study"],
}
CODE_USED = {
    "generate_faces": ["data"],
    "fetch_celeba": ["data"],
    "raw_data": ["data"],
    "prepare": ["data"],
    "train_level": ["models", "training"],
    "retrain_m": ["models", "training"],
    "train_baseline": ["models", "baselines", "training"],
    "sample_embedding": ["models", "eval"],
    "evaluate": ["models", "baselines", "training", "eval"],
    "fit_prior": ["models", "baselines"],
    "references": ["models", "eval"],
    "tune_model": ["models", "baselines", "training", "eval", "studies"],
    "rate_distortion_resolution": ["models", "baselines", "training", "eval", "studies"],
    "budget_curve_model": ["models", "baselines", "training", "eval", "studies"],
    "budget_curve_resolution": ["eval", "studies"],
    "ablation_train": ["models", "training", "eval", "studies"],
    "ablations_table": ["models", "training", "eval", "studies"],
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
    keys = list(PARAMS_USED[rule])
    if rule == "train_baseline":
        model = registry.spec(wildcards["baseline"])
        keys += [f"{model.params_section}.{{res}}", *model.params_also]
    return ["seed", *(key.format(**wildcards) for key in keys)]


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
    code = {package: code_fingerprint(package) for package in ["core", *CODE_USED[rule]]}
    return fingerprint([values, code, dict(wildcards)])


def expose_cli() -> None:
    """Put the running interpreter's bin folder first on PATH, so jobs run this environment's `lapcvae`."""
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])


def export_params(path: str) -> None:
    """Tell the jobs which resolved params file to read (`--params $LAPCVAE_PARAMS` in every rule)."""
    os.environ["LAPCVAE_PARAMS"] = path
