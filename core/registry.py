"""The one table of the suite's models: class, display name, artefact layout, curve column, params section.

Everything that needs to know which models exist reads it: the Snakefile and dvc.yaml (which jobs to run and
which files they write), the checkpoint loader (which class a checkpoint's `kind` rebuilds), training (which
models `lapcvae train-baseline` builds), evaluation, figures, the report and the human study (Table 1's rows,
their order and their names). Adding a model is one model file, one `ModelSpec` in MODELS below, its params
section in params.yaml and its schema fragment in core/schemas/ (docs/extending.md, "Adding a model").

Artefact paths are relative to `paths.results` and spelled only here:
    models/{res}/{name}/model.pt          a model trained by one job (`train_baseline`)
    models/{res}/{name}/level{level}.pt   a LapCVAE variant, one job per pyramid level; level0.pt is the whole model
    models/{res}/lapcvae/retrained_m.pt   LapCVAE with its M networks retrained (`retrain_m`)

One training seed's artefacts (its checkpoints, eval/{res}/{model}/ and metrics/per_image/) live under that seed's
results folder, `seed_results()`: `paths.results` itself for the first of params `seeds`, and
`{results}/seeds/{seed}` (the same layout inside) for every further seed.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# How a model is trained, i.e. which Snakemake rule writes its checkpoints (workflow/rules/train.smk).
TRAIN_ONE_JOB = "train_baseline"  # `lapcvae train-baseline --model NAME`: Class.from_params(params, res), fit()
TRAIN_PER_LEVEL = "train_level"  # `lapcvae train-level`: one job per LapCVAE pyramid level, coarsest first
RETRAIN_M = "retrain_m"  # `lapcvae retrain-m`: a trained LapCVAE's M networks retrained (Figure 8)
# options["budget"] of a one-job model trained for LapCVAE's network FLOPs instead of budget.epochs
# (training/baseline_jobs.py, lapcvae_flops_epochs).
BUDGET_LAPCVAE_FLOPS = "lapcvae_flops"


@dataclass(frozen=True)
class ModelSpec:
    """One row of Table 1 and everything the suite needs to train, load, evaluate and show it."""

    name: str  # Table 1's key, the {model} wildcard and the folder under results/models/{res}/
    display_name: str  # how figures, tables and the report name it
    model_class: str  # "module:Class"; the class has `kind`, `config`, from_config() and, for one-job models,
    #                   from_params(params, res) (see models/interface.py)
    params_section: str  # its section of params.yaml, one entry per resolution ("64": {..., train: {...}})
    trained_by: str = TRAIN_ONE_JOB
    curve_column: str = "reconstruction"  # the training-log column `dvc plots show` draws
    params_also: tuple[str, ...] = ()  # other params keys its training reads ({res} filled in)
    checkpoint_kind: str = ""  # the `kind` its checkpoints carry; defaults to `name`
    # model-specific switches: LapCVAE's use_m; budget BUDGET_LAPCVAE_FLOPS
    options: Mapping[str, Any] = field(default_factory=dict)
    # False where `reconstruct` is no reconstruction to score: Table 1 then leaves the model's reconstruction
    # metrics (RMSE, PSNR, SSIM, R^2, contrast) empty, with RECONSTRUCTION_WITHHELD as the reason, and shows its
    # -ELBO and sampling time.
    reconstructs: bool = True
    # True where samples decode a latent drawn from a prior (VAE family): the DAG then also fits a prior to the
    # model's training posteriors and scores its samples beside N(0, I)'s (models/fitted_prior.py).
    latent_prior: bool = False

    @property
    def kind(self) -> str:
        return self.checkpoint_kind or self.name


# The LapCVAE settings that fix its parameter count and its training FLOPs, all the VAE's width match and its
# FLOP-matched epochs read (baselines/vae.py match_vae_widths, training/flops.py lapcvae_step_flops): not its KL
# weights or its training settings.
LAPCVAE_SIZE_KEYS = tuple(f"lapcvae.{{res}}.{key}" for key in
                          ("levels", "latent_dims", "widths", "feature_size", "m_hidden", "conditioning"))

# Every model of Table 1, in the table's order.
MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in [
    # The VAE's widths are matched to LapCVAE's parameter count, so LapCVAE's size matters to it.
    ModelSpec("vae", "VAE", "baselines.vae:VAE", "vae", curve_column="reconstruction",
              params_also=LAPCVAE_SIZE_KEYS, latent_prior=True),
    # The same VAE trained for as many epochs as give it LapCVAE's network FLOPs (training/baseline_jobs.py):
    # does LapCVAE still win when the VAE gets its compute, not only its epochs?
    ModelSpec("vae_equal_flops", "VAE at LapCVAE's network FLOPs", "baselines.vae:VAE", "vae",
              curve_column="reconstruction", params_also=LAPCVAE_SIZE_KEYS, checkpoint_kind="vae",
              options={"budget": BUDGET_LAPCVAE_FLOPS}, latent_prior=True),
    ModelSpec("vaegan", "VAE/GAN", "baselines.vaegan:VAEGAN", "vaegan", curve_column="dis_l", latent_prior=True),
    ModelSpec("lapcvae_nom", "LapCVAE without M", "models.lapcvae:LapCVAE", "lapcvae", trained_by=TRAIN_PER_LEVEL,
              curve_column="recon", checkpoint_kind="lapcvae", options={"use_m": False}, latent_prior=True),
    ModelSpec("lapcvae", "LapCVAE", "models.lapcvae:LapCVAE", "lapcvae", trained_by=TRAIN_PER_LEVEL,
              curve_column="recon", options={"use_m": True}, latent_prior=True),
    ModelSpec("lapcvae_retrained_m", "LapCVAE, M retrained", "models.lapcvae:LapCVAE", "lapcvae",
              trained_by=RETRAIN_M, curve_column="loss", checkpoint_kind="lapcvae", latent_prior=True),
    # PixelVAE (Gulrajani et al. 2016): a VAE whose decoder conditions a PixelCNN; sampling is autoregressive.
    # Its `reconstruct` decodes the posterior mean greedily, pixel by pixel: not a draw from its p(x | z), worse
    # than the mean face and different from one CPU to another; its likelihood is scored by the -ELBO instead.
    ModelSpec("pixelvae", "PixelVAE", "baselines.pixelvae:PixelVAE", "pixelvae", curve_column="reconstruction",
              reconstructs=False, latent_prior=True),
    # Add a model here (docs/extending.md, "Adding a model"), e.g. ModelSpec("mymodel", "My model",
    # "models.mymodel:MyModel", "mymodel"): it is then trained by `lapcvae train-baseline --model mymodel` and
    # joins Table 1.
]}


# The models `snakemake tune` tunes (studies/tuning.py); the variants of one (LapCVAE without M, the VAE at
# LapCVAE's FLOPs) take their tuned settings.
TUNED_MODELS = ("vae", "vaegan", "lapcvae", "pixelvae")


# Table 1's reference rows, in order: what a model must beat to have learned anything. The first three are
# reconstructions (`lapcvae references`, eval/references.py); the coarsest level's depends on a seed's training.
# The last scores real training images as samples (`lapcvae sample-embedding`, eval/sample_quality.py).
MEAN_FACE = "mean_face"
RECONSTRUCTION_REFERENCES = (MEAN_FACE, "pca", "lapcvae_coarsest")
SEED_REFERENCES = ("lapcvae_coarsest",)
TRAINING_IMAGES = "training_images"
REFERENCES = (*RECONSTRUCTION_REFERENCES, TRAINING_IMAGES)


# Why a model with reconstructs=False has no reconstruction metrics (Table 1's footnote, summary.json).
RECONSTRUCTION_WITHHELD = ("no reconstruction metrics: an autoregressive decoder's reconstruction here is greedy "
                           "decoding of the posterior mean, not a draw from p(x | z); it drifts (worse than the "
                           "mean face) and differs between CPUs; the -ELBO scores the model's likelihood instead")


def names() -> list[str]:
    """Table 1's models, in its order."""
    return list(MODELS)


def spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)} (add one in core/registry.py)")
    return MODELS[name]


def trained_by(rule: str) -> list[str]:
    """The models whose checkpoints one training rule writes, e.g. trained_by(TRAIN_ONE_JOB) == ["vae", "vaegan"]."""
    return [name for name, model in MODELS.items() if model.trained_by == rule]


def flops_matched() -> list[str]:
    """The models trained for LapCVAE's network FLOPs rather than budget.epochs (the budget rule's exception)."""
    return [name for name, model in MODELS.items() if model.options.get("budget") == BUDGET_LAPCVAE_FLOPS]


def resolutions_of(params: Mapping[str, Any], name: str) -> list[int]:
    """The resolutions model `name` trains and is evaluated at: those of `data.resolutions` that its params section
    has an entry for (PixelVAE: "64" only by default, the paper's; a profile may add "128"). Entries for other
    resolutions are ignored, so that an override such as `data.resolutions: [64]` runs as a whole."""
    section = params.get(spec(name).params_section)
    if section is None:  # a partial params tree (validated params always have the section): not restricted
        return [int(res) for res in params["data"]["resolutions"]]
    return [int(res) for res in params["data"]["resolutions"] if str(res) in section]


def models_at(params: Mapping[str, Any], res: int | str) -> list[str]:
    """Table 1's models that run at resolution `res`, in its order: the one answer to "which (res, model) pairs
    does this configuration compute" for the Snakefile, dvc.yaml's check, evaluation, the report and the study."""
    return [name for name in MODELS if int(res) in resolutions_of(params, name)]


def display_names() -> dict[str, str]:
    return {name: model.display_name for name, model in MODELS.items()}


def params_sections() -> list[str]:
    """The params.yaml sections of all models, each once."""
    return list(dict.fromkeys(model.params_section for model in MODELS.values()))


# ----- artefact layout (paths relative to paths.results, or under `results` when given) ------------------------
def seed_results(results: str, seed: int | str, seeds: Sequence[int]) -> str:
    """The results folder of one training seed: `results` for the first of `seeds` (so a one-seed study keeps the
    layout above), `{results}/seeds/{seed}` for the others. Data, split and the data-only references are shared."""
    if int(seed) not in [int(each) for each in seeds]:
        raise ValueError(f"training seed {seed} is not one of params seeds {list(seeds)}")
    return results if int(seed) == int(seeds[0]) else f"{results}/seeds/{seed}"


def level_checkpoint(results: str, res: int | str, name: str, level: int | str, levels: int | None = None) -> str:
    """Level `level`'s checkpoint of a per-level model: it holds levels level..K.

    With `levels` given, the coarsest level (level == levels - 1) is the shared one: it has no M (its prior is
    N(0, I), Eq. 5), so every LapCVAE variant builds on the one trained by `retrain_source()`.
    """
    owner = retrain_source() if levels is not None and int(level) == levels - 1 else name
    return f"{results}/models/{res}/{owner}/level{level}.pt"


def checkpoint(results: str, res: int | str, name: str) -> str:
    """The checkpoint a model is evaluated from (the whole model)."""
    model = spec(name)
    if model.trained_by == TRAIN_PER_LEVEL:
        return level_checkpoint(results, res, name, 0)
    if model.trained_by == RETRAIN_M:
        return f"{results}/models/{res}/{retrain_source()}/retrained_m.pt"
    return f"{results}/models/{res}/{name}/model.pt"


def fitted_prior(results: str, res: int | str, name: str) -> str:
    """The prior fitted to a model's training-split posterior means (models/fitted_prior.py), by `fit-prior`."""
    return f"{results}/priors/{res}/{name}.pt"


def retrain_source() -> str:
    """The per-level model whose whole checkpoint `retrain_m` starts from (the LapCVAE with M networks)."""
    return next(name for name, model in MODELS.items()
                if model.trained_by == TRAIN_PER_LEVEL and model.options.get("use_m"))


def checkpoints(results: str, res: int | str, name: str, levels: int) -> list[str]:
    """Every checkpoint a model's training jobs write (per-level models: level0.pt .. level{levels - 1}.pt, the
    coarsest one shared)."""
    if spec(name).trained_by == TRAIN_PER_LEVEL:
        return [level_checkpoint(results, res, name, k, levels) for k in range(levels)]
    return [checkpoint(results, res, name)]


def training_jobs(results: str, res: int | str, name: str, levels: int) -> list[str]:
    """Every training job's checkpoint that built a model (its training cost is their sum, eval.cost)."""
    if spec(name).trained_by == RETRAIN_M:
        return [*checkpoints(results, res, retrain_source(), levels), checkpoint(results, res, name)]
    return checkpoints(results, res, name, levels)


def training_label(name: str, res: int | str, level: int | str = 0) -> str:
    """The name the training job that writes a model's evaluated checkpoint gives it (the checkpoint's
    `meta["name"]`): `{name}@{res}` for a one-job model, `{res}/{name}/level{level}` for a per-level one (level 0:
    the whole model), `{res}/{retrain source}/retrain_m` for retrained M. Commands check a checkpoint's identity
    against it (eval.metrics.expected_checkpoint), so that one model's file cannot pass as another's."""
    model = spec(name)
    if model.trained_by == TRAIN_PER_LEVEL:
        return f"{res}/{name}/level{level}"
    if model.trained_by == RETRAIN_M:
        return f"{res}/{retrain_source()}/retrain_m"
    return f"{name}@{res}"


def training_log(checkpoint_path: str) -> str:
    """Per-step losses the training loop writes beside each checkpoint (for dvc plots and the curves)."""
    return checkpoint_path.removesuffix(".pt") + ".log.csv"


# ----- classes ---------------------------------------------------------------------------------------------------
def checkpoint_kinds() -> dict[str, str]:
    """Checkpoint `kind` -> "module:Class" that rebuilds it."""
    return {model.kind: model.model_class for model in MODELS.values()}


def load_class(import_path: str) -> type:
    module_name, class_name = import_path.split(":")
    return getattr(importlib.import_module(module_name), class_name)
