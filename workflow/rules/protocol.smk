# The comparison protocol (README "How models are compared"): Table 1's reference rows and each model's
# training cost. Tuning and the rate-distortion sweep are in tune.smk.

rule references:
    conda:
        CONDA_ENV
    input:
        train=f"{PREP}/{{res}}/train.npy",
        test=f"{PREP}/{{res}}/test.npy",
        coarsest=lambda w: level_checkpoint(RESULTS, w.res, "lapcvae", LAPCVAE_LEVELS[w.res] - 1,
                                            LAPCVAE_LEVELS[w.res]),
    output:
        summaries=expand(f"{RESULTS}/eval/{{{{res}}}}/{{name}}/summary.json", name=REFERENCES),
        per_image=expand(f"{RESULTS}/metrics/per_image/{{{{res}}}}_{{name}}.csv", name=REFERENCES),
    log:
        "logs/references_{res}.log",
    params:
        eval_dir=folder("output", "summaries", up=3),
        per_image_dir=folder("output", "per_image"),
        fingerprint=fingerprint_of("references"),
    threads: RESOURCES["eval"]["threads"]
    resources:
        **EVAL_RESOURCES,
    shell:
        "OMP_NUM_THREADS={threads} lapcvae references --params $LAPCVAE_PARAMS --res {wildcards.res}"
        " --train {input.train} --test {input.test} --coarsest {input.coarsest} --eval-dir {params.eval_dir}"
        " --per-image-dir {params.per_image_dir} 2>&1 | tee {log}"


rule training_cost:
    conda:
        CONDA_ENV
    input:
        lambda w: training_jobs(RESULTS, w.res, w.model, LAPCVAE_LEVELS[w.res]),
    output:
        f"{RESULTS}/eval/{{res}}/{{model}}/cost.json",
    log:
        "logs/training_cost_{res}_{model}.log",
    params:
        fingerprint=fingerprint_of("training_cost"),
    threads: RESOURCES["eval"]["threads"]
    resources:
        **EVAL_RESOURCES,
    shell:
        "OMP_NUM_THREADS={threads} lapcvae training-cost --checkpoints {input} --out {output} 2>&1 | tee {log}"
