# Training: one job per batch of runs (one framework, one process). Each run's record is
# written atomically to results/runs/<run_id>.json as soon as it finishes; a rerun skips
# runs whose record exists, so a killed job loses at most the run in flight.


rule train_batch:
    output:
        "results/batches/{batch}.json",
    params:
        specs=batch_specs,
        data_dir=shlex.quote(config["data_dir"]),
        pickle="--allow-pickle" if config["allow_pickle"] else "",
        mem_limit=config["mem_limit_mb"],
    log:
        "results/logs/train/{batch}.log",
    conda:
        "../envs/bench.yaml"
    benchmark:
        "results/benchmarks/train/{batch}.tsv"
    threads: batch_threads
    resources:
        **train_resources(),
    message:
        "training batch {wildcards.batch}"
    shell:
        "python -m bench run-batch --specs {params.specs} --out-dir results/runs "
        "--done {output:q} --data-dir {params.data_dir} {params.pickle} "
        "--mem-limit-mb {params.mem_limit} 2> {log:q}"
