# The prior fitted after training to each model's training-split posterior means (models/fitted_prior.py):
# results/priors/{res}/{model}.pt beside the N(0, I) prior the models train with. `snakemake fitted_priors_{res}`
# (dvc.yaml's `fit_prior@{res}` stage) asks for every model's at one resolution.

# Every seed's models (the `seed_path` wildcard: common.smk, SEED_RESULTS).
rule fit_prior:
    conda:
        CONDA_ENV
    input:
        model=whole_model_of,
        train=f"{PREP}/{{res}}/train.npy",
    output:
        prior=fitted_prior(SEED_RESULTS, "{res}", "{model}"),
    log:
        "logs{seed_path}/fit_prior_{res}_{model}.log",
    params:
        fingerprint=fingerprint_of("fit_prior"),
        seed_params=seed_params,
    threads: RESOURCES["eval"]["threads"]
    resources:
        **EVAL_RESOURCES,
    shell:
        "OMP_NUM_THREADS={threads} lapcvae fit-prior --params $LAPCVAE_PARAMS {params.seed_params:q}"
        " --checkpoint {input.model:q} --data {input.train:q} --out {output.prior:q} > {log:q} 2>&1"


for _res in RES:

    rule:
        name:
            f"fitted_priors_{_res}"
        input:
            [prior for results in RUNS.values() for model in models_at(config, _res)
             for prior in fitted_priors_of(results, _res, model)],
