# Shared by all the rules below: validated params, the resolved params file, resources, launchers.
import hashlib
from pathlib import Path

import yaml

from core.atomic import write_text
from core.params import ParamsError, validate
from core.registry import level_checkpoint, retrain_source, training_jobs, training_log
from workflow.locks import clear_stale_locks
from workflow.pipeline import (
    BASELINES, LAPCVAE_VARIANTS, MODELS, REFERENCES, RETRAINED, checkpoint, export_params, expose_cli, figures,
    final_targets, job_fingerprint, training_checkpoints,
    levels, resolutions,
)

try:
    config = validate(config)
except ParamsError as error:
    raise WorkflowError(f"invalid parameters: {error}") from None

expose_cli()

if workflow.is_main_process:
    # A killed run leaves Snakemake's lock behind: remove it (before Snakemake checks it) when no process of a
    # run is left in this folder, so that the same command simply runs again (workflow/locks.py).
    clear_stale_locks()


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

TRAIN_RESOURCES = dict(
    mem_mb=RESOURCES["train"]["mem_mb"], runtime=RESOURCES["train"]["runtime"], gpu=RESOURCES["train"]["gpus"]
)
EVAL_RESOURCES = dict(
    mem_mb=RESOURCES["eval"]["mem_mb"], runtime=RESOURCES["eval"]["runtime"], gpu=RESOURCES["eval"]["gpus"]
)


def launcher(kind):
    """`lapcvae`, or torchrun over several GPUs (DistributedDataParallel) when the job asks for them."""
    gpus = RESOURCES[kind]["gpus"]
    if gpus > 1:
        return f"torchrun --standalone --nproc-per-node {gpus} -m workflow.cli"
    return "lapcvae"


def whole_model(name):
    """The checkpoint a registry model is evaluated from, as a rule input (core/registry.py's layout)."""
    return lambda wildcards: checkpoint(RESULTS, wildcards.res, name)


def coarser_level(wildcards):
    """Level k is conditioned on levels k+1..K (Figure 3): it needs their checkpoint, except at the top."""
    level = int(wildcards.level)
    if level + 1 >= LAPCVAE_LEVELS[wildcards.res]:
        return []
    return level_checkpoint(RESULTS, wildcards.res, wildcards.variant, level + 1, LAPCVAE_LEVELS[wildcards.res])


def figure_output(name, number, caption):
    return report(
        f"{RESULTS}/figures/{name}_{{res}}.png", caption=f"../report/{caption}.rst", category=number,
        subcategory="{res}x{res}",
    )


CONDA_ENV = "../envs/lapcvae.yaml"


def folder(io, key, up=1):
    """A folder a command needs, derived from one of the job's own files rather than a hard-coded prefix."""

    def infer(wildcards, input, output):
        files = (input if io == "input" else output)[key]
        first = files if isinstance(files, str) else files[0]
        return str(Path(first).parents[up - 1])

    return infer


def fingerprint_of(rule_name):
    """The params value that reruns a job when the parameters or code it uses change (workflow/pipeline.py)."""
    return lambda wildcards: job_fingerprint(config, rule_name, dict(wildcards))
