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

from core import datasets, registry
from core import figures as figure_table
from core.params import fingerprint
from core.registry import checkpoint, training_log
from workflow import code_deps

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


# The wildcard of a training seed's results folder after paths.results ("" for the first seed, "/seeds/<seed>"
# for the others: core/registry.py seed_results), in the rules that train or score a model.
SEED_WILDCARD = "seed_path"

# What each rule's jobs depend on besides their input files: params keys ({wildcards} filled in; {source}: the
# active data set, data.source) and the code they run. A job reruns when the fingerprint of these changes
# (Snakemake's params trigger), and dvc.yaml lists the same keys as each stage's params and folders or files that
# hold the same code as its deps (workflow/dvc_check.py checks).
PARAMS_USED = {
    "generate_faces": ["data.synthetic"],
    "fetch_celeba": ["data.celeba"],
    "raw_data": ["data.{source}"],  # any other data set of core/datasets.py: its section data.<name>
    # The raw tree is an input: its own section (data.<source>) reruns the job that writes it, and so this one.
    "prepare": ["data.source", "data.resolutions", "data.test_fraction", "data.validation_fraction", "data.crop"],
    "train_level": ["budget", "train", "lapcvae.{res}"],
    "retrain_m": ["budget", "train", "lapcvae.{res}", "lapcvae.retrain_m"],
    # plus the model's own section and its registry `params_also` (see params_used)
    "train_baseline": ["budget", "train"],
    "sample_embedding": ["eval.samples", "eval.sample_quality"],
    "evaluate": ["eval.batch_size", "eval.samples", "eval.bootstrap_samples", "eval.sample_quality.k",
                 "eval.elbo_sigma", "eval.fid"],
    "face_check": ["eval.face_check"],
    "face_check_references": ["eval.face_check", "eval.samples"],
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
# The `lapcvae` command each rule's jobs run (workflow/cli.py's COMMANDS): its code is what they import
# (workflow/code_deps.py), not whole packages.
COMMAND_RUN = {
    "generate_faces": "generate-faces",
    "fetch_celeba": "fetch-celeba",
    "raw_data": "raw-data",
    "prepare": "prepare",
    "train_level": "train-level",
    "retrain_m": "retrain-m",
    "train_baseline": "train-baseline",
    "sample_embedding": "sample-embedding",
    "evaluate": "evaluate",
    "face_check": "face-check",
    "face_check_references": "face-check-references",
    "fit_prior": "fit-prior",
    "references": "references",
    "tune_model": "tune",
    "rate_distortion_resolution": "rate-distortion",
    "budget_curve_model": "budget-curve",
    "budget_curve_resolution": "budget-curve-plot",
    "ablation_train": "ablations",
    "ablations_table": "ablations",
    "table": "table",
    "neighbours": "neighbours",
    "figures": "figures",
    "edit_coarse": "edit-coarse",
    "edit_region": "edit-region",
    "export_study": "export-study",
    "analyze_study": "analyze-study",
    "report": "report",
}
# The registry models whose class a rule's jobs load by name (core/registry.py `model_class`, imported at run time
# by the checkpoint loader or `from_params`), {wildcards} filled in: their modules are code the jobs run.
MODELS_LOADED = {
    "train_level": ["{variant}"],
    "retrain_m": RETRAINED,
    "train_baseline": ["{baseline}"],
    "evaluate": ["{model}"],
    "fit_prior": ["{model}"],
    "references": [registry.retrain_source()],  # LapCVAE's coarsest level
    "tune_model": ["{tuned_model}"],
    "rate_distortion_resolution": ["vae", "vaegan", "lapcvae"],  # studies/rate_distortion.py SWEPT_MODELS
    "budget_curve_model": ["{curve_model}"],
    "ablation_train": [registry.retrain_source()],
    "ablations_table": [registry.retrain_source()],
    "figures": [registry.retrain_source()],  # Figures 7 and 8 sample LapCVAE and its retrained M
    "edit_coarse": [registry.retrain_source()],
    "edit_region": [registry.retrain_source()],
}
REPO_ROOT = Path(__file__).resolve().parent.parent


def params_used(rule: str, wildcards: Mapping[str, str], params: Mapping[str, Any] | None = None) -> list[str]:
    """The params keys a job of `rule` reads; `params` fills in {source} (data.source) where the wildcards do not."""
    keys = list(PARAMS_USED[rule])
    if rule == "train_baseline":
        model = registry.spec(wildcards["baseline"])
        keys += [f"{model.params_section}.{{res}}", *model.params_also]
    fill = dict(wildcards)
    if params is not None:
        fill.setdefault("source", params["data"]["source"])
    return ["seed", *(key.format(**fill) for key in keys)]


def pick(params: Mapping[str, Any], key: str) -> Any:
    """The value at a dotted key such as `lapcvae.64`."""
    value: Any = params
    for part in key.split("."):
        value = value[part]
    return value


def loaded_by_name(rule: str, wildcards: Mapping[str, str]) -> tuple[str, ...]:
    """The "module:attribute" names a job imports at run time: registry model classes, its data set's writer, the
    drawing functions of the figures it writes (core/figures.py)."""
    names = [registry.spec(model.format(**wildcards)).model_class for model in MODELS_LOADED.get(rule, [])]
    names += [figure.draw for figure in figure_table.drawn_by(rule)]
    if rule == datasets.GENERIC_RULE:
        names.append(datasets.spec(wildcards["source"]).writer)
    names += [datasets.spec(name).writer for name in datasets.written_by(rule) if rule != datasets.GENERIC_RULE]
    return tuple(dict.fromkeys(names))


def code_used(rule: str, wildcards: Mapping[str, str], root: Path = REPO_ROOT) -> list[str]:
    """The repository files a job runs (paths relative to `root`): its command's imports and the modules it
    loads by name, transitively (workflow/code_deps.py)."""
    if rule not in COMMAND_RUN:
        raise ValueError(f"rule {rule!r} has no entry in workflow/pipeline.py COMMAND_RUN: add the `lapcvae` command "
                         "its jobs run (and to MODELS_LOADED the models they load by name)")
    files = code_deps.code_files(COMMAND_RUN[rule], loaded_by_name(rule, wildcards), root)
    return sorted(path.relative_to(root).as_posix() for path in files)


def file_digest(path: Path) -> str:
    """SHA-256 of one file's bytes (a comment is a change: it reruns the jobs that import the file)."""
    stat = path.stat()
    return _digest(path, stat.st_mtime_ns, stat.st_size)


@functools.cache
def _digest(path: Path, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def job_fingerprint(params: Mapping[str, Any], rule: str, wildcards: Mapping[str, str],
                    root: Path = REPO_ROOT) -> str:
    """The rerun fingerprint of one job: the params it reads and the files of the code it runs.

    A training seed's folder (the `seed_path` wildcard, common.smk) is left out: `params` carries the job's seed,
    and each seed's job hashes the same wildcards."""
    wildcards = {name: value for name, value in wildcards.items() if name != SEED_WILDCARD}
    values = {key: pick(params, key) for key in params_used(rule, wildcards, params)}
    if rule == "train_level":
        # Level k's checkpoint holds levels k..K: only those levels' settings concern it.
        level = int(wildcards["level"])
        settings = dict(values[f"lapcvae.{wildcards['res']}"])
        for key in ("latent_dims", "kl_weights", "level_epochs"):
            if key in settings:
                settings[key] = settings[key][level:]
        values[f"lapcvae.{wildcards['res']}"] = settings
    code = {name: file_digest(root / name) for name in code_used(rule, wildcards, root)}
    return fingerprint([values, code, dict(wildcards)])


def expose_cli() -> None:
    """Put the running interpreter's bin folder first on PATH, so jobs run this environment's `lapcvae`."""
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])


def export_params(path: str) -> None:
    """Tell the jobs which resolved params file to read (`--params $LAPCVAE_PARAMS` in every rule)."""
    os.environ["LAPCVAE_PARAMS"] = path
