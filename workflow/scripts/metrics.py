"""Rule metrics: score every predictions table into results/metrics.tsv."""
from aesthetic_mtl.evaluate import write_metrics
from aesthetic_mtl.io import logging_to

with logging_to(snakemake.log[0]):
    write_metrics(snakemake.output.metrics, snakemake.params.predictions, snakemake.params.cross,
                  snakemake.params.bootstrap, snakemake.params.seed)
