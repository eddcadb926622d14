# Shared by all the rules below: validated params, the resolved params file, resources, launchers.
import hashlib
import re
from pathlib import Path

import yaml

from core.atomic import write_text
from core.figures import drawn_by as figures_drawn_by
from core.figures import figure_file
from core.params import ParamsError, check_device, read_yaml, validate
from core.registry import (
    MEAN_FACE,
    SEED_REFERENCES,
    TRAINING_IMAGES,
    TUNED_MODELS,
    fitted_prior,
    level_checkpoint,
    models_at,
    resolutions_of,
    retrain_source,
    seed_results,
    training_jobs,
    training_log,
)
from core.registry import spec as model_spec
from workflow.locks import hold_run_lock
from workflow.pipeline import (
    BASELINES, LAPCVAE_VARIANTS, MODELS, REFERENCES, RETRAINED, SEED_WILDCARD, checkpoint, export_params, expose_cli,
    figures, final_targets, job_fingerprint, training_checkpoints,
    levels, resolutions,
)

try:
    for _configfile in workflow.configfiles:  # Snakemake's own loader keeps the last of duplicate keys silently
        read_yaml(_configfile)
    config = validate(config)
    if all(job["gpus"] == 0 for job in config["resources"].values()):  # the jobs run on this machine
        check_device(config["device"])
except ParamsError as error:
    raise WorkflowError(f"invalid parameters: {error}") from None

expose_cli()

if workflow.is_main_process:
    # One run per working folder (workflow/locks.py): take the project's run lock before Snakemake takes its own,
    # clear what a killed run left (Snakemake's lock, temporaries of dead writers), so the same command runs again.
    hold_run_lock(workflow, config["paths"])


def _write_resolved_params(params):
    """Every command reads the merged params (params.yaml + --configfile overrides) from one file.

    Its name is the hash of its content, so runs with other overrides (another Snakemake, DVC, a test) never
    change the file a running job reads. Jobs find it in $LAPCVAE_PARAMS rather than among their params, so
    that only each job's own fingerprint (see workflow/pipeline.py) decides what reruns.
    """
    text = yaml.safe_dump(params, sort_keys=False)
    path = Path(".snakemake/lapcvae") / f"params-{hashlib.sha256(text.encode()).hexdigest()[:16]}.yaml"
    if not path.is_file():
        write_text(path, text)
    return str(path)


PARAMS = _write_resolved_params(config)
export_params(PARAMS)
RAW = config["paths"]["raw"]
PREP = config["paths"]["prepared"]
RESULTS = config["paths"]["results"]
RES = [str(res) for res in resolutions(config)]
RESOURCES = config["resources"]
LAPCVAE_LEVELS = {res: levels(config, res) for res in RES}
# Training seeds (params `seeds`; docs/protocol.md, "How models are compared"). Each has its own results folder
# (core/registry.py, seed_results): the first seed's is RESULTS itself, so a one-seed study's files and logs are those
# of a one-seed run. The steps that train or score a model serve every seed, each with one rule that writes under
# SEED_RESULTS (RESULTS followed by the wildcard `seed_path`, empty for the first seed and seeds/<seed> after a slash
# for the others) and logs under logs{seed_path}. Data, the split and the data-only references are shared; figures,
# neighbours, editing and the study use the first seed.
SEEDS = [int(seed) for seed in config["seeds"]]
RUNS = {seed: seed_results(RESULTS, seed, SEEDS) for seed in SEEDS}
SEED_OF_PATH = {results[len(RESULTS):]: seed for seed, results in RUNS.items()}
SEED_RESULTS = f"{RESULTS}{{seed_path}}"  # a rule's results folder, per training seed


def seed_paths(further_only=False):
    """The `seed_path` wildcard's constraint: every training seed's folder suffix, or only the further seeds'."""
    paths = list(SEED_OF_PATH)[1:] if further_only else list(SEED_OF_PATH)
    # a group, never an empty string: Snakemake reads an empty constraint as none (any non-empty value)
    return "(?:{})".format("|".join(re.escape(path) for path in paths))


def seed_of(wildcards):
    """The training seed of a job: the one its `seed_path` wildcard names, the first seed for a rule without it."""
    return SEED_OF_PATH[getattr(wildcards, SEED_WILDCARD, "")]


def results_of(wildcards):
    """The results folder of a job's training seed (core/registry.py seed_results)."""
    return RUNS[seed_of(wildcards)]


TRAIN_RESOURCES = dict(
    mem_mb=RESOURCES["train"]["mem_mb"], runtime=RESOURCES["train"]["runtime"], gpu=RESOURCES["train"]["gpus"]
)
# Training jobs run before any evaluation job that is ready at the same time: the long training chains (LapCVAE
# level by level, VAE/GAN) then start early and the short evaluation, figure and report jobs fill the last minutes
# of a run on both cores, instead of one core idling while the last LapCVAE level trains alone.
TRAIN_PRIORITY = 1
EVAL_RESOURCES = dict(
    mem_mb=RESOURCES["eval"]["mem_mb"], runtime=RESOURCES["eval"]["runtime"], gpu=RESOURCES["eval"]["gpus"]
)


def seed_config(seed):
    """The merged params as a job of training seed `seed` sees them: `seed` replaced by the training seed."""
    return config if seed == config["seed"] else {**config, "seed": seed}


def _seed_params_file(seed):
    """`--params` and an override file `seed: <seed>`, merged over the resolved params (none for the seed that
    `seed` already is)."""
    if seed == config["seed"]:
        return []
    path = Path(".snakemake/lapcvae") / f"seed-{seed}.yaml"
    text = yaml.safe_dump({"seed": seed})
    if not path.is_file() or path.read_text() != text:
        write_text(path, text)
    return ["--params", str(path)]


SEED_PARAMS = {seed: _seed_params_file(seed) for seed in SEEDS}


def seed_params(wildcards):
    """Extra arguments of a job of a training seed, so that it trains, samples and bootstraps with that seed: a
    list, quoted word by word (`{params.seed_params:q}`)."""
    return SEED_PARAMS[seed_of(wildcards)]


def launcher(kind):
    """`lapcvae`, or torchrun over several GPUs (DistributedDataParallel) when the job asks for them."""
    gpus = RESOURCES[kind]["gpus"]
    if gpus > 1:
        return f"torchrun --standalone --nproc-per-node {gpus} -m workflow.cli"
    return "lapcvae"


def whole_model(name):
    """The checkpoint a registry model is evaluated from, in the job's seed folder (core/registry.py's layout)."""
    return lambda wildcards: checkpoint(results_of(wildcards), wildcards.res, name)


def whole_model_of(wildcards):
    """The checkpoint the {model} wildcard's model is evaluated from, in the job's seed folder."""
    return checkpoint(results_of(wildcards), wildcards.res, wildcards.model)


def coarser_level(wildcards):
    """Level k is conditioned on levels k+1..K (Figure 3): it needs their checkpoint, except at the top."""
    level = int(wildcards.level)
    if level + 1 >= LAPCVAE_LEVELS[wildcards.res]:
        return []
    return level_checkpoint(results_of(wildcards), wildcards.res, wildcards.variant, level + 1,
                            LAPCVAE_LEVELS[wildcards.res])


def coarsest_level(wildcards):
    """LapCVAE's coarsest level (the one every variant shares), in the job's seed folder."""
    levels = LAPCVAE_LEVELS[wildcards.res]
    return level_checkpoint(results_of(wildcards), wildcards.res, "lapcvae", levels - 1, levels)


def figure_caption_file(figure):
    """Snakemake's report caption of a figure, its table caption (core/figures.py) written as the .rst file that
    report() reads."""
    path = Path(".snakemake/figure_captions") / f"{figure.name}.rst"
    text = f"{figure.full_caption}\n"
    if not path.is_file() or path.read_text() != text:
        write_text(path, text)
    return str(path.resolve())


def figure_outputs(rule):
    """The figures a rule writes (core/figures.py), as named outputs of it that Snakemake's report shows."""
    return {
        figure.name: report(figure_file(RESULTS, figure.name, "{res}"), caption=figure_caption_file(figure),
                            category=figure.title, subcategory="{res}x{res}")
        for figure in figures_drawn_by(rule)
    }


def figure_output_of(rule):
    """The one figure a rule that computes something else draws beside it (neighbours, the editing rules)."""
    (figure,) = figure_outputs(rule).values()
    return figure


def figure_inputs(kind):
    """The files of one kind (core/figures.py INPUTS) that the figures `lapcvae figures` draws read, at {res}."""
    drawn = figures_drawn_by("figures")

    def files(wildcards):
        shown = [figure for figure in drawn if figure.shown_with(models_at(config, wildcards.res))]
        if not any(kind in figure.inputs for figure in shown):
            return []
        if kind in ("samples", "reconstructions"):
            return [f"{RESULTS}/eval/{wildcards.res}/{model}/{kind}.npy" for model in models_at(config, wildcards.res)]
        if kind == "checkpoint":
            wanted = dict.fromkeys(model for figure in shown if kind in figure.inputs for model in figure.models)
            return [checkpoint(RESULTS, wildcards.res, model) for model in wanted]
        return {"test": f"{PREP}/{wildcards.res}/test.npy", "train": f"{PREP}/{wildcards.res}/train.npy",
                "attributes": f"{PREP}/attributes.csv"}.get(kind, [])

    return files


CONDA_ENV = "../envs/lapcvae.yaml"


def folder(io, key, up=1):
    """A folder a command needs, derived from one of the job's own files rather than a hard-coded prefix."""

    def infer(wildcards, input, output):
        files = (input if io == "input" else output)[key]
        first = files if isinstance(files, str) else files[0]
        return str(Path(first).parents[up - 1])

    return infer


def fingerprint_of(rule_name):
    """The params value that reruns a job when the parameters or code it uses change (workflow/pipeline.py);
    a job of a training seed (`seed_path` wildcard) sees that seed as its `seed`."""

    def fingerprint(wildcards):
        params = seed_config(seed_of(wildcards)) if hasattr(wildcards, SEED_WILDCARD) else config
        return job_fingerprint(params, rule_name, dict(wildcards))

    return fingerprint


def fitted_priors_of(results, res, model):
    """[the fitted prior file of `model`] where its samples come from a latent prior (registry latent_prior), else
    [] (prior.smk fits it; evaluate draws samples_fitted.npy from it)."""
    return [fitted_prior(results, res, model)] if model_spec(model).latent_prior else []
