# Evaluation (paper section 5.1): per-model metrics and training cost on the test split, Table 1, nearest
# neighbours, figures.

SAMPLE_REFERENCE = TRAINING_IMAGES  # core/registry.py: the real-image reference row
FACE_CHECK_REFERENCES = [SAMPLE_REFERENCE, MEAN_FACE]  # the reference rows whose sets the face check sees


# The embedding every sample of a resolution is scored in (eval/sample_quality.py), fitted on the training split
# once for all seeds, and the real-image reference row: eval.samples training images scored as samples are.
rule sample_embedding:
    conda:
        CONDA_ENV
    input:
        train=f"{PREP}/{{res}}/train.npy",
        test=f"{PREP}/{{res}}/test.npy",
    output:
        embedding=f"{RESULTS}/eval/{{res}}/sample_embedding.npz",
        reference=f"{RESULTS}/eval/{{res}}/{SAMPLE_REFERENCE}/summary.json",
    log:
        "logs/sample_embedding_{res}.log",
    params:
        reference_dir=folder("output", "reference"),
        fingerprint=fingerprint_of("sample_embedding"),
    threads: RESOURCES["eval"]["threads"]
    resources:
        **EVAL_RESOURCES,
    shell:
        "OMP_NUM_THREADS={threads} lapcvae sample-embedding --params $LAPCVAE_PARAMS --res {wildcards.res:q}"
        " --train {input.train:q} --test {input.test:q} --out {output.embedding:q}"
        " --reference-dir {params.reference_dir:q} > {log:q} 2>&1"


# Every seed's models (the `seed_path` wildcard: common.smk, SEED_RESULTS).
rule evaluate:
    conda:
        CONDA_ENV
    input:
        model=whole_model_of,
        test=f"{PREP}/{{res}}/test.npy",
        embedding=f"{RESULTS}/eval/{{res}}/sample_embedding.npz",  # one per resolution, shared by every seed
        # prior.smk: the prior fitted to its training posteriors, where the model has a latent prior
        prior=lambda w: fitted_priors_of(results_of(w), w.res, w.model),
        # every training job's checkpoint of the model, for its training cost (eval/cost.py)
        training=lambda w: training_jobs(results_of(w), w.res, w.model, LAPCVAE_LEVELS[w.res]),
    output:
        reconstructions=f"{SEED_RESULTS}/eval/{{res}}/{{model}}/reconstructions.npy",
        samples=f"{SEED_RESULTS}/eval/{{res}}/{{model}}/samples.npy",
        summary=f"{SEED_RESULTS}/eval/{{res}}/{{model}}/summary.json",
        cost=f"{SEED_RESULTS}/eval/{{res}}/{{model}}/cost.json",
        per_image=f"{SEED_RESULTS}/metrics/per_image/{{res}}_{{model}}.csv",
    log:
        "logs{seed_path}/evaluate_{res}_{model}.log",
    params:
        out_dir=folder("output", "summary"),
        fingerprint=fingerprint_of("evaluate"),
        seed_params=seed_params,
        prior_args=lambda w, input: ["--prior", *input.prior] if input.prior else [],
    threads: RESOURCES["eval"]["threads"]
    resources:
        **EVAL_RESOURCES,
    shell:
        "OMP_NUM_THREADS={threads} lapcvae evaluate --params $LAPCVAE_PARAMS {params.seed_params:q}"
        " --res {wildcards.res:q} --model {wildcards.model:q} --checkpoint {input.model:q} --test {input.test:q}"
        " --out-dir {params.out_dir:q} --per-image {output.per_image:q}"
        " --training-checkpoints {input.training:q} --cost {output.cost:q} --embedding {input.embedding:q}"
        " {params.prior_args:q} > {log:q} 2>&1"


# Whether each model's samples are faces (eval/face_check.py), the N(0, I) prior's and, where `evaluate` drew
# them beside samples.npy, the fitted prior's (samples_fitted.npy). In a folder of its own: `evaluate`'s model
# folder is one DVC output.
rule face_check:
    conda:
        CONDA_ENV
    input:
        samples=f"{SEED_RESULTS}/eval/{{res}}/{{model}}/samples.npy",
        test=f"{PREP}/{{res}}/test.npy",
    output:
        faces=f"{SEED_RESULTS}/eval/{{res}}/face_check/{{model}}.json",
    log:
        "logs{seed_path}/face_check_{res}_{model}.log",
    params:
        fingerprint=fingerprint_of("face_check"),
        seed_params=seed_params,
    threads: RESOURCES["eval"]["threads"]
    resources:
        **EVAL_RESOURCES,
    shell:
        "OMP_NUM_THREADS={threads} lapcvae face-check --params $LAPCVAE_PARAMS {params.seed_params:q}"
        " --res {wildcards.res:q} --test {input.test:q} --samples {input.samples:q} --out {output.faces:q}"
        " > {log:q} 2>&1"


# The same check of the reference rows' sets: real training images and the mean face (computed once, first seed).
rule face_check_references:
    conda:
        CONDA_ENV
    input:
        train=f"{PREP}/{{res}}/train.npy",
        test=f"{PREP}/{{res}}/test.npy",
    output:
        faces=expand(f"{RESULTS}/eval/{{{{res}}}}/face_check/{{name}}.json", name=FACE_CHECK_REFERENCES),
    log:
        "logs/face_check_references_{res}.log",
    params:
        out_dir=folder("output", "faces"),
        fingerprint=fingerprint_of("face_check_references"),
    threads: RESOURCES["eval"]["threads"]
    resources:
        **EVAL_RESOURCES,
    shell:
        "OMP_NUM_THREADS={threads} lapcvae face-check-references --params $LAPCVAE_PARAMS --res {wildcards.res:q}"
        " --train {input.train:q} --test {input.test:q} --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule table:
    conda:
        CONDA_ENV
    input:
        # every training seed's results folder (common.smk: RUNS), first seed first
        # every (res, model) pair the params compute (core/registry.py models_at), in every seed's folder
        summaries=[f"{results}/eval/{res}/{model}/summary.json" for results in RUNS.values() for res in RES
                   for model in models_at(config, res)],
        per_image=[f"{results}/metrics/per_image/{res}_{model}.csv" for results in RUNS.values() for res in RES
                   for model in models_at(config, res)],
        references=[*expand(f"{RESULTS}/eval/{{res}}/{{name}}/summary.json", res=RES, name=REFERENCES),
                    *expand("{results}/eval/{res}/{name}/summary.json", results=list(RUNS.values())[1:], res=RES,
                            name=SEED_REFERENCES),
                    *expand(f"{RESULTS}/eval/{{res}}/{SAMPLE_REFERENCE}/summary.json", res=RES)],
        costs=[f"{results}/eval/{res}/{model}/cost.json" for results in RUNS.values() for res in RES
               for model in models_at(config, res)],
        faces=[*(f"{results}/eval/{res}/face_check/{model}.json" for results in RUNS.values() for res in RES
                 for model in models_at(config, res)),
               *expand(f"{RESULTS}/eval/{{res}}/face_check/{{name}}.json", res=RES, name=FACE_CHECK_REFERENCES)],
        spectra=expand(f"{RESULTS}/eval/{{res}}/pca/spectrum.npy", res=RES),
    output:
        table=report(f"{RESULTS}/metrics/table1.csv", caption="../report/table1.rst", category="Table 1"),
        seeds=f"{RESULTS}/metrics/table1_seeds.csv",
        claims=f"{RESULTS}/metrics/claims.csv",
        metrics=f"{RESULTS}/metrics/metrics.json",
    log:
        "logs/table.log",
    params:
        # Every file the table reads is declared above; the command takes their folders, one per training seed.
        eval_dir=[f"{results}/eval" for results in RUNS.values()],
        per_image_dir=[f"{results}/metrics/per_image" for results in RUNS.values()],
        seeds=SEEDS,
        out_dir=folder("output", "table"),
        fingerprint=fingerprint_of("table"),
    shell:
        "lapcvae table --params $LAPCVAE_PARAMS --eval-dir {params.eval_dir:q} --per-image-dir {params.per_image_dir:q}"
        " --seeds {params.seeds:q} --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule neighbours:
    conda:
        CONDA_ENV
    input:
        samples=lambda w: [f"{RESULTS}/eval/{w.res}/{model}/samples.npy" for model in models_at(config, w.res)],
        train=f"{PREP}/{{res}}/train.npy",
        test=f"{PREP}/{{res}}/test.npy",
    output:
        # (and one {res}_{model}.csv per model of that resolution, which nothing downstream reads: outputs cannot
        # depend on the resolution, and the models differ between resolutions)
        tables=expand(f"{RESULTS}/neighbours/{{{{res}}}}_{{name}}.csv", name=["test_reference", "summary"]),
        figure=figure_output_of("neighbours"),
    log:
        "logs/neighbours_{res}.log",
    params:
        models=lambda w: models_at(config, w.res),
        out_dir=folder("output", "tables"),
        fingerprint=fingerprint_of("neighbours"),
    threads: RESOURCES["eval"]["threads"]
    resources:
        **EVAL_RESOURCES,
    shell:
        "OMP_NUM_THREADS={threads} lapcvae neighbours --params $LAPCVAE_PARAMS --res {wildcards.res:q}"
        " --samples {input.samples:q} --models {params.models:q} --train {input.train:q} --test {input.test:q} --out-dir {params.out_dir:q}"
        " --figure {output.figure:q} > {log:q} 2>&1"


rule figures:
    conda:
        CONDA_ENV
    input:
        # what the figures of core/figures.py's `figures` group read (its INPUTS), for the models run at {res}
        test=figure_inputs("test"),
        samples=figure_inputs("samples"),
        reconstructions=figure_inputs("reconstructions"),
        checkpoints=figure_inputs("checkpoint"),
    output:
        **figure_outputs("figures"),
        # the training logs as one CSV per term: the line plots of `dvc plots show` / `dvc plots diff`
        curve_tables=directory(f"{RESULTS}/curves/{{res}}"),
    log:
        "logs/figures_{res}.log",
    params:
        eval_dir=f"{RESULTS}/eval",
        models_dir=f"{RESULTS}/models",
        test=f"{PREP}/{{res}}/test.npy",
        models=lambda w: models_at(config, w.res),
        out_dir=lambda w, output: str(Path(output[0]).parent),
        fingerprint=fingerprint_of("figures"),
    threads: RESOURCES["eval"]["threads"]
    resources:
        **EVAL_RESOURCES,
    shell:
        "OMP_NUM_THREADS={threads} lapcvae figures --params $LAPCVAE_PARAMS --res {wildcards.res:q}"
        " --eval-dir {params.eval_dir:q} --models-dir {params.models_dir:q} --models {params.models:q} --test {params.test:q}"
        " --out-dir {params.out_dir:q} --curves-dir {output.curve_tables:q} > {log:q} 2>&1"
