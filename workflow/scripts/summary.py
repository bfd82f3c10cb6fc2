"""Rule summary: results/summary.md (and its HTML copy for the report), sentences written from the numbers."""
from aesthetic_mtl.joblog import logging_to
from aesthetic_mtl.report.summary import write_summary

with logging_to(snakemake.log[0]):
    names = snakemake.params.names
    write_summary(snakemake.input.metrics, snakemake.params.datasets, snakemake.output.md,
                  out_html=snakemake.output.html, split_reports=dict(zip(names, snakemake.input.split_reports)),
                  skipped=dict(zip(names, snakemake.input.skipped)), comparisons_path=snakemake.input.comparisons)
