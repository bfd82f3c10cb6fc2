"""Rules table_*: one paper table from results/metrics.tsv as CSV, Markdown, LaTeX and HTML."""
from aesthetic_mtl.joblog import logging_to
from aesthetic_mtl.report.paper_tables import write_table

with logging_to(snakemake.log[0]):
    write_table(snakemake.params.kind, snakemake.input.metrics, dict(snakemake.output.items()),
                snakemake.params.datasets, dataset=snakemake.wildcards.get("dataset"), head=snakemake.params.head,
                comparisons_path=snakemake.input.comparisons)
