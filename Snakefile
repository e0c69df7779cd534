# Entry point only: config, validation, the stage files, and the final targets.
# `snakemake --cores 8` runs config/config.yaml; see README.md for everything else.

# `--configfile X` replaces the default study rather than merging into it (a merge could
# never drop an optimizer or a tuning study); `--config key=value` changes single keys.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/tune.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        "results/summary.csv",
        "results/summary.parquet",
        "reports/index.html",
