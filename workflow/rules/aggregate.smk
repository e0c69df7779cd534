# Aggregation: the records of every finished job -> one tidy table (CSV + parquet).


rule aggregate:
    input:
        jobs=expand("results/jobs/{job}.json", job=sorted(JOBS)),
        # final runs of the tuning studies (workflow/rules/tune.smk), when there are any
        tuned=lambda wildcards: TUNED_FINAL,
        lr=expand("results/lr/{group}.json", group=LR_GROUPS),
    output:
        csv="results/summary.csv",
        parquet="results/summary.parquet",
    log:
        "results/logs/aggregate.log",
    conda:
        "../envs/bench.yaml"
    message:
        "aggregating run records into results/summary.csv"
    shell:
        "python -m bench aggregate {input.jobs:q} {input.tuned:q} --runs-dir results/runs "
        "--lr-selections {input.lr:q} "
        "--csv {output.csv:q} --parquet {output.parquet:q} 2> {log:q}"
