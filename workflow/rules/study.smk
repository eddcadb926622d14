# Human study (paper section 5.1.2, Table 2): pairs of reconstructions and an offline study page.
from core.params import study_resolution

STUDY_RES = str(study_resolution(config))  # human_study.resolution, or the largest computed


rule export_study:
    conda:
        CONDA_ENV
    input:
        reconstructions=expand(
            f"{RESULTS}/eval/{STUDY_RES}/{{model}}/reconstructions.npy", model=config["human_study"]["models"]
        ),
        test=f"{PREP}/{STUDY_RES}/test.npy",
    output:
        page=f"{RESULTS}/human_study/study.html",
        key=f"{RESULTS}/human_study/key.csv",
        design=f"{RESULTS}/human_study/design.json",
        images=directory(f"{RESULTS}/human_study/images"),
    log:
        "logs/export_study.log",
    params:
        eval_dir=folder("input", "reconstructions", up=3),
        prepared=folder("input", "test", up=2),
        out_dir=folder("output", "key"),
        resolution=STUDY_RES,  # the one its inputs are at
        fingerprint=fingerprint_of("export_study"),
    shell:
        "lapcvae export-study --params $LAPCVAE_PARAMS --resolution {params.resolution:q} --eval-dir {params.eval_dir:q}"
        " --prepared {params.prepared:q} --out {params.out_dir:q} > {log:q} 2>&1"


# Table 2 from the answers people gave: drop their CSV downloads into study_responses/ and rerun. Participants
# who fail the attention checks (human_study.attention_checks.min_correct) are dropped; participants.csv says why.
# Any name a browser gives a download works: the shell command quotes it (`:q`), and braces, which Snakemake would
# read as wildcards, are escaped.
RESPONSES = sorted(str(path).replace("{", "{{").replace("}", "}}") for path in Path("study_responses").glob("*.csv"))


rule analyze_study:
    conda:
        CONDA_ENV
    input:
        key=f"{RESULTS}/human_study/key.csv",
        design=f"{RESULTS}/human_study/design.json",
        responses=RESPONSES,
    output:
        f"{RESULTS}/human_study/table2.csv",
    log:
        "logs/analyze_study.log",
    params:
        fingerprint=fingerprint_of("analyze_study"),
    shell:
        "lapcvae analyze-study --params $LAPCVAE_PARAMS --key {input.key:q} --design {input.design:q}"
        " --responses {input.responses:q} --out {output:q} > {log:q} 2>&1"
