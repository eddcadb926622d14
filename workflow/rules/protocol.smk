# The comparison protocol (docs/protocol.md, "How models are compared"): Table 1's reference rows (each model's training
# cost is written by `evaluate`, eval.smk). Tuning and the rate-distortion sweep are in tune.smk.

rule references:
    conda:
        CONDA_ENV
    input:
        train=f"{PREP}/{{res}}/train.npy",
        test=f"{PREP}/{{res}}/test.npy",
        coarsest=lambda w: level_checkpoint(RESULTS, w.res, "lapcvae", LAPCVAE_LEVELS[w.res] - 1,
                                            LAPCVAE_LEVELS[w.res]),
        embedding=f"{RESULTS}/eval/{{res}}/sample_embedding.npz",  # the mean face's samples are scored in it
    output:
        summaries=expand(f"{RESULTS}/eval/{{{{res}}}}/{{name}}/summary.json", name=REFERENCES),
        per_image=expand(f"{RESULTS}/metrics/per_image/{{{{res}}}}_{{name}}.csv", name=REFERENCES),
        spectrum=f"{RESULTS}/eval/{{res}}/pca/spectrum.npy",  # eval/gaussian_bound.py
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
        "OMP_NUM_THREADS={threads} lapcvae references --params $LAPCVAE_PARAMS --res {wildcards.res:q}"
        " --train {input.train:q} --test {input.test:q} --coarsest {input.coarsest:q} --eval-dir {params.eval_dir:q}"
        " --per-image-dir {params.per_image_dir:q} --embedding {input.embedding:q} > {log:q} 2>&1"


# A further training seed's reference rows: only LapCVAE's coarsest level depends on training; the mean face and
# PCA depend on the shared data and split and are computed once, with the first seed (above).
for seed, results in list(RUNS.items())[1:]:

    rule:
        name:
            seed_rule("references", seed)
        conda:
            CONDA_ENV
        input:
            train=f"{PREP}/{{res}}/train.npy",
            test=f"{PREP}/{{res}}/test.npy",
            coarsest=lambda w, results=results: level_checkpoint(results, w.res, "lapcvae", LAPCVAE_LEVELS[w.res] - 1,
                                                                 LAPCVAE_LEVELS[w.res]),
        output:
            summaries=expand(f"{results}/eval/{{{{res}}}}/{{name}}/summary.json", name=SEED_REFERENCES),
            per_image=expand(f"{results}/metrics/per_image/{{{{res}}}}_{{name}}.csv", name=SEED_REFERENCES),
        log:
            f"logs/references_{{res}}{seed_log(seed)}.log",
        params:
            eval_dir=folder("output", "summaries", up=3),
            per_image_dir=folder("output", "per_image"),
            names=SEED_REFERENCES,
            fingerprint=fingerprint_of("references", seed),
            seed_params=seed_params(seed),  # a value, not in the shell string: see seed_params
        threads: RESOURCES["eval"]["threads"]
        resources:
            **EVAL_RESOURCES,
        shell:
            "OMP_NUM_THREADS={threads} lapcvae references --params $LAPCVAE_PARAMS {params.seed_params:q}"
            " --res {wildcards.res:q} --train {input.train:q} --test {input.test:q} --coarsest {input.coarsest:q}"
            " --only {params.names:q} --eval-dir {params.eval_dir:q} --per-image-dir {params.per_image_dir:q}"
            " > {log:q} 2>&1"

