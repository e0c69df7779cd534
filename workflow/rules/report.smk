# Report: the summary table (and the tuning studies, when the config has any) -> plotly HTML
# pages under reports/ that open from the file system with no network. Each page and the
# folder of CSVs behind its figures are flagged for `snakemake --report report.zip` as well.
# results/decode_speed.json, where `python -m bench decode-speed` wrote one, joins the
# Generation page (`report --decode-speed`'s default); the workflow does not make it, so it
# is no input: rerun the report after a new decode-speed table (snakemake -R report).

rule report:
    input:
        summary="results/summary.parquet",
        tune=report_tune_inputs,
    output:
        **report_pages(),
        data=report(directory("reports/data"), patterns=["{name}.csv"],
                    caption="../report/data.rst", category="Numbers behind the figures"),
    params:
        tune=report_tune_args,
    log:
        "results/logs/report.log",
    conda:
        "../envs/bench.yaml"
    benchmark:
        "results/benchmarks/report.tsv"
    message:
        "rendering the HTML report: reports/index.html"
    shell:
        "python -m bench report --summary {input.summary:q} --out reports {params.tune} "
        "2> {log:q}"
