# The comparison report: Table 1 beside the paper's, every figure, the automatic reading, provenance.


rule report:
    conda:
        CONDA_ENV
    input:
        table=f"{RESULTS}/metrics/table1.csv",
        metrics=f"{RESULTS}/metrics/metrics.json",
        figures=figures(config),
        neighbours=expand(f"{RESULTS}/neighbours/{{res}}_summary.csv", res=RES),
        study=f"{RESULTS}/human_study/key.csv",
        table2=[f"{RESULTS}/human_study/table2.csv"] if RESPONSES else [],
        manifest=f"{PREP}/manifest.json",
    output:
        markdown=f"{RESULTS}/report.md",
        html=f"{RESULTS}/report.html",
    log:
        "logs/report.log",
    params:
        results=folder("output", "html"),
        prepared=folder("input", "manifest"),
        fingerprint=fingerprint_of("report"),
    shell:
        "lapcvae report --params $LAPCVAE_PARAMS --results {params.results:q} --prepared {params.prepared:q}"
        " --out-md {output.markdown:q} --out-html {output.html:q} > {log:q} 2>&1"
