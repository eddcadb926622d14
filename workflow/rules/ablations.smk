# Ablations (studies/ablations.py), not part of `all`:
#   snakemake ablations --cores all   -> results/ablations/{res}.{csv,json}
# One job per variant (<greedy|joint>_<latents|image|both>: training, then retrain-M), then one table per resolution.
ABLATION_RES = [str(res) for res in config["ablations"]["resolutions"]]
ABLATION_VARIANTS = list(config["ablations"]["variants"])


rule ablation_train:
    conda:
        CONDA_ENV
    input:
        train=f"{PREP}/{{res}}/train.npy",
        val=f"{PREP}/{{res}}/val.npy",
    output:
        model=f"{RESULTS}/ablations/{{res}}/{{ablation}}/model.pt",
        retrained=f"{RESULTS}/ablations/{{res}}/{{ablation}}/retrained_m.pt",
        training=f"{RESULTS}/ablations/{{res}}/{{ablation}}/training.json",
    wildcard_constraints:
        ablation="|".join(ABLATION_VARIANTS) or "none",
    log:
        "logs/ablation_train_{res}_{ablation}.log",
    params:
        out_dir=folder("output", "model"),
        fingerprint=fingerprint_of("ablation_train"),
    threads: RESOURCES["train"]["threads"]
    resources:
        **TRAIN_RESOURCES,
    shell:
        "OMP_NUM_THREADS={threads} lapcvae ablations train --params $LAPCVAE_PARAMS --res {wildcards.res:q}"
        " --variant {wildcards.ablation:q} --train {input.train:q} --val {input.val:q} --out-dir {params.out_dir:q}"
        " > {log:q} 2>&1"


rule ablations_table:
    conda:
        CONDA_ENV
    input:
        val=f"{PREP}/{{res}}/val.npy",
        test=f"{PREP}/{{res}}/test.npy",
        trained=expand(f"{RESULTS}/ablations/{{{{res}}}}/{{ablation}}/{{name}}", ablation=ABLATION_VARIANTS,
                       name=["model.pt", "retrained_m.pt", "training.json"]),
    output:
        table=f"{RESULTS}/ablations/{{res}}.csv",
        summary=f"{RESULTS}/ablations/{{res}}.json",
    log:
        "logs/ablations_table_{res}.log",
    params:
        work_dir=lambda w: f"{RESULTS}/ablations/{w.res}",
        fingerprint=fingerprint_of("ablations_table"),
    threads: RESOURCES["eval"]["threads"]
    resources:
        **EVAL_RESOURCES,
    shell:
        "OMP_NUM_THREADS={threads} lapcvae ablations table --params $LAPCVAE_PARAMS --res {wildcards.res:q}"
        " --work-dir {params.work_dir:q} --val {input.val:q} --test {input.test:q} --out-csv {output.table:q}"
        " --out-json {output.summary:q} > {log:q} 2>&1"


rule ablations:
    input:
        expand(f"{RESULTS}/ablations/{{res}}.csv", res=ABLATION_RES),
