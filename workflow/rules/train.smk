# Training: one job per group of runs (one framework, one process). Each run's record is
# written atomically to results/runs/<run_id>.json as soon as it finishes; a rerun skips
# runs whose record of this bench version exists, so a killed job loses at most the run in
# flight.


rule train_job:
    input:
        lr=job_lr_input,
    output:
        "results/jobs/{job}.json",
    params:
        specs=job_specs,
        lr=job_lr_arg,
        drop=job_drop_arg,
        # a new bench version reruns every job (its records mean something else)
        version=BENCH_VERSION,
        data_dir=shlex.quote(config["data_dir"]),
        pickle="--allow-pickle" if config["allow_pickle"] else "",
        mem_limit=config["mem_limit_mb"],
        save="--save-model" if config["save_model"] else "",
        plan=STUDY_PLAN,  # read for the progress line only, so not an input
    log:
        "results/logs/train/{job}.log",
    conda:
        "../envs/bench.yaml"
    benchmark:
        "results/benchmarks/train/{job}.tsv"
    threads: job_threads
    resources:
        **train_resources(),
    message:
        "training job {wildcards.job}"
    shell:
        "python -m bench run-job --specs {params.specs} --out-dir results/runs "
        "--done {output:q} --data-dir {params.data_dir} {params.pickle} {params.lr} {params.drop} "
        "--mem-limit-mb {params.mem_limit} {params.save} --study-plan {params.plan} 2> {log:q}"


# Learning rates chosen on validation: the grid jobs' records of one family and dataset ->
# the rate of every (size, optimizer), which the study jobs of that family then train with.
rule select_lr:
    input:
        grid_jobs_of,
    output:
        "results/lr/{group}.json",
    params:
        race="--race" if race_epochs(config) else "",
        version=BENCH_VERSION,
    log:
        "results/logs/lr/{group}.log",
    conda:
        "../envs/bench.yaml"
    message:
        "choosing learning rates on validation for {wildcards.group}"
    shell:
        "python -m bench select-lr {input:q} --runs-dir results/runs --out {output:q} "
        "{params.race} 2> {log:q}"
