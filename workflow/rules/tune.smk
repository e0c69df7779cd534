# Tuning: config `tune:` -> one Optuna study per (family, framework, dataset, size) cell.
# The study is created once, K worker jobs optimise into it at once, its best parameters and
# trials table are exported, and the final measured runs (best parameters x seeds) write
# ordinary records to results/runs/ that the aggregate rule includes. The expansion lives in
# bench.tune.plan_studies so the tests check exactly what is scheduled here.
#
# results/tune/<study>/journal.log (the Optuna journal) is never a rule output: Snakemake
# would delete it before rerunning a job, and a rerun must resume the study, not restart it.

from bench.tune import (  # noqa: E402
    BEST_FILE,
    CSV_FILE,
    DEFINITION_FILE,
    PARQUET_FILE,
    final_files,
    plan_studies,
    quoted_definition,
    study_file,
    study_folder,
    worker_files,
)

try:
    TUNE = {s.name: s for s in plan_studies(config)}
    TUNED_FINAL = final_files(TUNE.values())
except ValueError as e:  # one line naming the key/value; no traceback, no job started
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


rule tune_create:
    output:
        study_file("{study}", DEFINITION_FILE),
    params:
        definition=lambda wildcards: quoted_definition(TUNE[wildcards.study]),
    log:
        "results/logs/tune/{study}/create.log",
    conda:
        "../envs/bench.yaml"
    wildcard_constraints:
        study="[a-z0-9_-]+",
    message:
        "creating Optuna study {wildcards.study}"
    shell:
        "python -m bench tune-create --definition {params.definition} --out {output:q} "
        "2> {log:q}"


rule tune_worker:
    input:
        study_file("{study}", DEFINITION_FILE),
    output:
        study_file("{study}", "workers/{worker}.json"),
    params:
        folder=lambda wildcards: study_folder(wildcards.study),
    log:
        "results/logs/tune/{study}/worker-{worker}.log",
    conda:
        "../envs/bench.yaml"
    benchmark:
        "results/benchmarks/tune/{study}/worker-{worker}.tsv"
    wildcard_constraints:
        study="[a-z0-9_-]+",
        worker="[0-9]+",
    threads: job_threads
    resources:
        **train_resources(),
    message:
        "tuning {wildcards.study}: worker {wildcards.worker}"
    shell:
        "python -m bench tune-worker --study-dir {params.folder:q} "
        "--worker {wildcards.worker} --done {output:q} 2> {log:q}"


rule tune_export:
    input:
        lambda wildcards: worker_files(TUNE[wildcards.study]),
    output:
        best=study_file("{study}", BEST_FILE),
        csv=study_file("{study}", CSV_FILE),
        parquet=study_file("{study}", PARQUET_FILE),
    params:
        folder=lambda wildcards: study_folder(wildcards.study),
    log:
        "results/logs/tune/{study}/export.log",
    conda:
        "../envs/bench.yaml"
    wildcard_constraints:
        study="[a-z0-9_-]+",
    message:
        "exporting the best parameters and trials of {wildcards.study}"
    shell:
        "python -m bench tune-export --study-dir {params.folder:q} "
        "--best {output.best:q} --csv {output.csv:q} --parquet {output.parquet:q} 2> {log:q}"


# One job per framework: a process imports one framework. The final runs use the study's
# seeds (the untuned runs of the same cell have them too), never the trials' seed.
rule tune_final:
    input:
        final_inputs,
    output:
        study_file("{study}", "final-{framework}.json"),
    params:
        folder=lambda wildcards: study_folder(wildcards.study),
        version=BENCH_VERSION,  # a new bench version redoes the final runs' records
        save="--save-model" if config["save_model"] else "",
        transfer=final_transfer_arg,
    log:
        "results/logs/tune/{study}/final-{framework}.log",
    conda:
        "../envs/bench.yaml"
    benchmark:
        "results/benchmarks/tune/{study}/final-{framework}.tsv"
    wildcard_constraints:
        study="[a-z0-9_-]+",
        framework="torch|tf",
    threads: job_threads
    resources:
        **train_resources(),
    message:
        "final runs of {wildcards.study} in {wildcards.framework} with its best parameters"
    shell:
        "python -m bench tune-final --study-dir {params.folder:q} "
        "--framework {wildcards.framework} --out-dir results/runs --done {output:q} "
        "{params.transfer} {params.save} 2> {log:q}"
