# Tuning, the rate-distortion sweep and the budget curves (docs/protocol.md, "How models are compared"); none is part of `all`:
#   snakemake tune --cores all              -> results/tuning/{res}/{model}.{csv,json,yaml}
#   snakemake rate_distortion --cores all   -> results/metrics/rate_distortion_{res}{,_claims}.csv, results/figures/...png
#   snakemake budget_curve --cores all      -> results/metrics/budget_curve_{res}.csv, results/figures/...png
TUNE_RES = [str(res) for res in config["tune"]["resolutions"]]
RD_RES = [str(res) for res in config["rate_distortion"]["resolutions"]]
CURVE_RES = [str(res) for res in config["budget_curve"]["resolutions"]]
CURVE_MODELS = list(config["budget_curve"]["models"])
CURVE_SEEDS = [str(seed) for seed in config["budget_curve"]["seeds"]]


rule tune_model:
    conda:
        CONDA_ENV
    input:
        train=f"{PREP}/{{res}}/train.npy",
        val=f"{PREP}/{{res}}/val.npy",
    output:
        trials=f"{RESULTS}/tuning/{{res}}/{{tuned_model}}.csv",
        chosen=f"{RESULTS}/tuning/{{res}}/{{tuned_model}}.json",
        override=f"{RESULTS}/tuning/{{res}}/{{tuned_model}}.yaml",
    log:
        "logs/tune_{res}_{tuned_model}.log",
    wildcard_constraints:
        tuned_model="|".join(TUNED_MODELS),
    params:
        out_dir=lambda w: f"{RESULTS}/tuning/{w.res}",
        fingerprint=fingerprint_of("tune_model"),
    threads: RESOURCES["train"]["threads"]
    resources:
        **TRAIN_RESOURCES,
    shell:
        "OMP_NUM_THREADS={threads} lapcvae tune --params $LAPCVAE_PARAMS --res {wildcards.res:q}"
        " --model {wildcards.tuned_model:q} --train {input.train:q} --val {input.val:q}"
        " --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule tune:
    input:
        [f"{RESULTS}/tuning/{res}/{model}.json" for res in TUNE_RES for model in TUNED_MODELS
         if int(res) in resolutions_of(config, model)],


rule rate_distortion_resolution:
    conda:
        CONDA_ENV
    input:
        train=f"{PREP}/{{res}}/train.npy",
        test=f"{PREP}/{{res}}/test.npy",
        spectrum=f"{RESULTS}/eval/{{res}}/pca/spectrum.npy",  # the linear-Gaussian bound (protocol.smk)
        embedding=f"{RESULTS}/eval/{{res}}/sample_embedding.npz",  # the swept models' samples are scored in it
    output:
        table=f"{RESULTS}/metrics/rate_distortion_{{res}}.csv",
        claims=f"{RESULTS}/metrics/rate_distortion_{{res}}_claims.csv",
        figure=f"{RESULTS}/figures/rate_distortion_{{res}}.png",
    log:
        "logs/rate_distortion_{res}.log",
    params:
        work_dir=lambda w: f"{RESULTS}/rate_distortion/{w.res}",
        fingerprint=fingerprint_of("rate_distortion_resolution"),
    threads: RESOURCES["train"]["threads"]
    resources:
        **TRAIN_RESOURCES,
    shell:
        "OMP_NUM_THREADS={threads} lapcvae rate-distortion --params $LAPCVAE_PARAMS --res {wildcards.res:q}"
        " --train {input.train:q} --test {input.test:q} --embedding {input.embedding:q} --work-dir {params.work_dir:q}"
        " --out-csv {output.table:q} --claims {output.claims:q} --figure {output.figure:q}"
        " --spectrum {input.spectrum:q} > {log:q} 2>&1"


rule rate_distortion:
    input:
        expand(f"{RESULTS}/metrics/rate_distortion_{{res}}.csv", res=RD_RES),


rule budget_curve_model:
    conda:
        CONDA_ENV
    input:
        train=f"{PREP}/{{res}}/train.npy",
        val=f"{PREP}/{{res}}/val.npy",
        test=f"{PREP}/{{res}}/test.npy",
    output:
        table=f"{RESULTS}/budget_curve/{{res}}/{{curve_model}}/seed{{curve_seed}}.csv",
    log:
        "logs/budget_curve_{res}_{curve_model}_seed{curve_seed}.log",
    wildcard_constraints:
        curve_model="|".join(CURVE_MODELS),
        curve_seed=r"\d+",
    params:
        work_dir=lambda w: f"{RESULTS}/budget_curve/{w.res}/{w.curve_model}/seed{w.curve_seed}",
        fingerprint=fingerprint_of("budget_curve_model"),
    threads: RESOURCES["train"]["threads"]
    resources:
        **TRAIN_RESOURCES,
    shell:
        "OMP_NUM_THREADS={threads} lapcvae budget-curve --params $LAPCVAE_PARAMS --res {wildcards.res:q}"
        " --model {wildcards.curve_model:q} --seed {wildcards.curve_seed:q} --train {input.train:q} --val {input.val:q}"
        " --test {input.test:q} --work-dir {params.work_dir:q} --out-csv {output.table:q} > {log:q} 2>&1"


rule budget_curve_resolution:
    conda:
        CONDA_ENV
    input:
        tables=expand(f"{RESULTS}/budget_curve/{{{{res}}}}/{{curve_model}}/seed{{curve_seed}}.csv",
                      curve_model=CURVE_MODELS, curve_seed=CURVE_SEEDS),
        train=f"{PREP}/{{res}}/train.npy",
        test=f"{PREP}/{{res}}/test.npy",
    output:
        table=f"{RESULTS}/metrics/budget_curve_{{res}}.csv",
        figure=f"{RESULTS}/figures/budget_curve_{{res}}.png",
    log:
        "logs/budget_curve_{res}.log",
    params:
        fingerprint=fingerprint_of("budget_curve_resolution"),
    threads: RESOURCES["eval"]["threads"]
    resources:
        **EVAL_RESOURCES,
    shell:
        "OMP_NUM_THREADS={threads} lapcvae budget-curve-plot --params $LAPCVAE_PARAMS --res {wildcards.res:q}"
        " --tables {input.tables:q} --train {input.train:q} --test {input.test:q} --out-csv {output.table:q}"
        " --figure {output.figure:q} > {log:q} 2>&1"


rule budget_curve:
    input:
        expand(f"{RESULTS}/metrics/budget_curve_{{res}}.csv", res=CURVE_RES),
