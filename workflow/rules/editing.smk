# Image editing (paper section 5.2): Figure 1 (paint the coarse level) and Figure 9 (resample a region).


rule edit_coarse:
    conda:
        CONDA_ENV
    input:
        model=whole_model("lapcvae"),
        test=f"{PREP}/{{res}}/test.npy",
        attributes=f"{PREP}/attributes.csv",
    output:
        figure=figure_output_of("edit_coarse"),
        variants=directory(f"{RESULTS}/editing/{{res}}/coarse"),
    log:
        "logs/edit_coarse_{res}.log",
    params:
        prepared=folder("input", "attributes"),
        fingerprint=fingerprint_of("edit_coarse"),
    threads: RESOURCES["eval"]["threads"]
    resources:
        **EVAL_RESOURCES,
    shell:
        "OMP_NUM_THREADS={threads} lapcvae edit-coarse --params $LAPCVAE_PARAMS --res {wildcards.res:q}"
        " --checkpoint {input.model:q} --prepared {params.prepared:q} --out-dir {output.variants:q}"
        " --figure {output.figure:q} > {log:q} 2>&1"


rule edit_region:
    conda:
        CONDA_ENV
    input:
        model=whole_model("lapcvae"),
        test=f"{PREP}/{{res}}/test.npy",
        attributes=f"{PREP}/attributes.csv",
    output:
        figure=figure_output_of("edit_region"),
        variants=directory(f"{RESULTS}/editing/{{res}}/region"),
    log:
        "logs/edit_region_{res}.log",
    params:
        prepared=folder("input", "attributes"),
        fingerprint=fingerprint_of("edit_region"),
    threads: RESOURCES["eval"]["threads"]
    resources:
        **EVAL_RESOURCES,
    shell:
        "OMP_NUM_THREADS={threads} lapcvae edit-region --params $LAPCVAE_PARAMS --res {wildcards.res:q}"
        " --checkpoint {input.model:q} --prepared {params.prepared:q} --out-dir {output.variants:q}"
        " --figure {output.figure:q} > {log:q} 2>&1"
