# Data: the synthetic faces (default), CelebA or another data set of core/datasets.py, then crop, resize and the
# 80/20 split (paper section 5).
import re

from core import datasets

# The data sets written by the generic rule raw_data (all but the first two, which keep their own rules).
GENERIC_SOURCES = "|".join(map(re.escape, datasets.written_by(datasets.GENERIC_RULE))) or "(?!)"

rule generate_faces:
    conda:
        CONDA_ENV
    output:
        directory(f"{RAW}/synthetic"),
    log:
        "logs/generate_faces.log",
    params:
        fingerprint=fingerprint_of("generate_faces"),
    threads: RESOURCES["data"]["threads"]
    resources:
        mem_mb=RESOURCES["data"]["mem_mb"],
        runtime=RESOURCES["data"]["runtime"],
    shell:
        "lapcvae generate-faces --params $LAPCVAE_PARAMS --out {output:q} --workers {threads} > {log:q} 2>&1"


rule fetch_celeba:
    conda:
        CONDA_ENV
    output:
        directory(f"{RAW}/celeba"),
    log:
        "logs/fetch_celeba.log",
    params:
        fingerprint=fingerprint_of("fetch_celeba"),
    resources:
        mem_mb=RESOURCES["data"]["mem_mb"],
        runtime=RESOURCES["data"]["runtime"],
    shell:
        "lapcvae fetch-celeba --params $LAPCVAE_PARAMS --out {output:q} > {log:q} 2>&1"


# Any other data set (docs/extending.md, "Adding a data set"): its registered writer, through `lapcvae raw-data`.
rule raw_data:
    conda:
        CONDA_ENV
    output:
        directory(f"{RAW}/{{source}}"),
    wildcard_constraints:
        source=GENERIC_SOURCES,
    log:
        "logs/raw_data_{source}.log",
    params:
        fingerprint=fingerprint_of("raw_data"),
    threads: RESOURCES["data"]["threads"]
    resources:
        mem_mb=RESOURCES["data"]["mem_mb"],
        runtime=RESOURCES["data"]["runtime"],
    shell:
        "lapcvae raw-data --params $LAPCVAE_PARAMS --source {wildcards.source:q} --out {output:q} --workers {threads} "
        "> {log:q} 2>&1"


rule prepare:
    conda:
        CONDA_ENV
    input:
        f"{RAW}/{config['data']['source']}",
    output:
        train=expand(f"{PREP}/{{res}}/train.npy", res=RES),
        val=expand(f"{PREP}/{{res}}/val.npy", res=RES),
        test=expand(f"{PREP}/{{res}}/test.npy", res=RES),
        attributes=f"{PREP}/attributes.csv",
        manifest=f"{PREP}/manifest.json",
    log:
        "logs/prepare.log",
    params:
        out_dir=folder("output", "manifest"),
        fingerprint=fingerprint_of("prepare"),
    threads: RESOURCES["data"]["threads"]
    resources:
        mem_mb=RESOURCES["data"]["mem_mb"],
        runtime=RESOURCES["data"]["runtime"],
    shell:
        "lapcvae prepare --params $LAPCVAE_PARAMS --raw {input:q} --out {params.out_dir:q} --workers {threads} > {log:q} 2>&1"
