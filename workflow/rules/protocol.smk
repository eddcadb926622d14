# The comparison protocol (docs/protocol.md, "How models are compared"): Table 1's reference rows (each model's training
# cost is written by `evaluate`, eval.smk). Tuning and the rate-distortion sweep are in tune.smk.

rule references:
    conda:
        CONDA_ENV
    input:
        train=f"{PREP}/{{res}}/train.npy",
        test=f"{PREP}/{{res}}/test.npy",
        coarsest=coarsest_level,
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
if len(SEEDS) > 1:

    rule seed_references:
        conda:
            CONDA_ENV
        input:
            train=f"{PREP}/{{res}}/train.npy",
            test=f"{PREP}/{{res}}/test.npy",
            coarsest=coarsest_level,
        wildcard_constraints:
            seed_path=seed_paths(further_only=True),
        output:
            summaries=expand(f"{SEED_RESULTS}/eval/{{res}}/{{name}}/summary.json", name=SEED_REFERENCES,
                             allow_missing=True),
            per_image=expand(f"{SEED_RESULTS}/metrics/per_image/{{res}}_{{name}}.csv", name=SEED_REFERENCES,
                             allow_missing=True),
        log:
            "logs{seed_path}/references_{res}.log",
        params:
            eval_dir=folder("output", "summaries", up=3),
            per_image_dir=folder("output", "per_image"),
            names=SEED_REFERENCES,
            fingerprint=fingerprint_of("references"),
            seed_params=seed_params,
        threads: RESOURCES["eval"]["threads"]
        resources:
            **EVAL_RESOURCES,
        shell:
            "OMP_NUM_THREADS={threads} lapcvae references --params $LAPCVAE_PARAMS {params.seed_params:q}"
            " --res {wildcards.res:q} --train {input.train:q} --test {input.test:q} --coarsest {input.coarsest:q}"
            " --only {params.names:q} --eval-dir {params.eval_dir:q} --per-image-dir {params.per_image_dir:q}"
            " > {log:q} 2>&1"
