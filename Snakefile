# The LapCVAE benchmark (Dorta et al., CVMP 2017) as one Snakemake DAG: data -> models -> evaluation -> report.
#   snakemake --cores all                                  # the default run, on the synthetic faces
#   snakemake --cores all --configfile config/smoke.yaml   # a tiny run of the same DAG
#   snakemake --cores all --configfile config/paper.yaml   # the paper's setting on CelebA
#   snakemake --cores all --configfile config/seeds3.yaml  # three training seeds (claims tested across them)
#   snakemake --cores all --configfile config/fp32.yaml    # fp32 training where bf16 is native
# Parameters: params.yaml (validated against core/schemas/). Rules: workflow/rules/*.smk.

configfile: "params.yaml"

report: "workflow/report/workflow.rst"

include: "workflow/rules/common.smk"

from workflow.console import use_compact_console

if workflow.is_main_process:  # one console line per job start and end; the full blocks go to .snakemake/log/
    use_compact_console(workflow.logger_manager)

wildcard_constraints:
    res="|".join(RES),
    model="|".join(MODELS),
    variant="|".join(LAPCVAE_VARIANTS),
    baseline="|".join(BASELINES),
    level=r"\d+",
    seed_path=seed_paths(),  # a training seed's results folder after RESULTS (common.smk, SEED_RESULTS)


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/prior.smk"
include: "workflow/rules/protocol.smk"
include: "workflow/rules/tune.smk"
include: "workflow/rules/ablations.smk"
include: "workflow/rules/editing.smk"
include: "workflow/rules/study.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        final_targets(config),
    default_target: True
