# Training: LapCVAE level by level, coarsest first (one job per level), M retraining, and the two baselines.
# Each job resumes from <checkpoint>.resume.pt if an earlier run was killed; the checkpoint itself is only
# written, atomically, once training is complete.
# The per-step curve `<checkpoint stem>.log.csv` is deliberately not declared (neither output nor log): Snakemake
# deletes a job's declared files before rerunning it, and a resumed job appends to its curve from the resume step.
# The loop writes it beside the checkpoint (workflow.pipeline.training_log); DVC tracks it inside results/models/{res}.
# Every seed's jobs: the `seed_path` wildcard picks the seed's results folder (common.smk, SEED_RESULTS).

rule train_level:
    conda:
        CONDA_ENV
    input:
        data=f"{PREP}/{{res}}/train.npy",
        coarser=coarser_level,
    output:
        level_checkpoint(SEED_RESULTS, "{res}", "{variant}", "{level}"),
    log:
        messages="logs{seed_path}/train_level_{res}_{variant}_{level}.log",
    params:
        fingerprint=fingerprint_of("train_level"),
        seed_params=seed_params,
        coarser=lambda w, input: ["--coarser", input.coarser] if input.coarser else [],  # quoted word by word
        launcher=launcher("train"),
    threads: RESOURCES["train"]["threads"]
    priority: TRAIN_PRIORITY
    resources:
        **TRAIN_RESOURCES,
    shell:
        "OMP_NUM_THREADS={threads} {params.launcher} train-level --params $LAPCVAE_PARAMS {params.seed_params:q}"
        " --res {wildcards.res:q} --variant {wildcards.variant:q} --level {wildcards.level:q} --data {input.data:q}"
        " {params.coarser:q} --out {output:q} > {log.messages:q} 2>&1"


rule retrain_m:
    conda:
        CONDA_ENV
    input:
        data=f"{PREP}/{{res}}/train.npy",
        model=whole_model(retrain_source()),
    output:
        checkpoint(SEED_RESULTS, "{res}", RETRAINED[0]),
    log:
        messages="logs{seed_path}/retrain_m_{res}.log",
    params:
        fingerprint=fingerprint_of("retrain_m"),
        seed_params=seed_params,
        launcher=launcher("train"),
    threads: RESOURCES["train"]["threads"]
    priority: TRAIN_PRIORITY
    resources:
        **TRAIN_RESOURCES,
    shell:
        "OMP_NUM_THREADS={threads} {params.launcher} retrain-m --params $LAPCVAE_PARAMS {params.seed_params:q}"
        " --res {wildcards.res:q} --checkpoint {input.model:q} --data {input.data:q} --out {output:q}"
        " > {log.messages:q} 2>&1"


rule train_baseline:
    conda:
        CONDA_ENV
    input:
        data=f"{PREP}/{{res}}/train.npy",
    output:
        f"{SEED_RESULTS}/models/{{res}}/{{baseline}}/model.pt",  # core/registry.py's layout of one-job models
    log:
        messages="logs{seed_path}/train_baseline_{baseline}_{res}.log",
    params:
        fingerprint=fingerprint_of("train_baseline"),
        seed_params=seed_params,
        launcher=launcher("train"),
    threads: RESOURCES["train"]["threads"]
    priority: TRAIN_PRIORITY
    resources:
        **TRAIN_RESOURCES,
    shell:
        "OMP_NUM_THREADS={threads} {params.launcher} train-baseline --params $LAPCVAE_PARAMS {params.seed_params:q}"
        " --model {wildcards.baseline:q} --res {wildcards.res:q} --data {input.data:q} --out {output:q}"
        " > {log.messages:q} 2>&1"


# One target per resolution that asks for every checkpoint trained at it: dvc.yaml's `train@{res}` stage runs
# `snakemake models_{res}` (a DVC stage cannot list a number of levels that depends on params).
for _res in RES:

    rule:
        name:
            f"models_{_res}"
        input:
            [path for path in training_checkpoints(config) if path.startswith(f"{RESULTS}/models/{_res}/")],
