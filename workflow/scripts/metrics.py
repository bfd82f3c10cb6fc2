"""Rule metrics: score every predictions table into results/metrics.tsv, plus its provenance record."""
from aesthetic_mtl.config import resolved
from aesthetic_mtl.evaluate import write_metrics
from aesthetic_mtl.io import logging_to, write_provenance

with logging_to(snakemake.log[0]):
    write_metrics(snakemake.output.metrics, snakemake.params.predictions, snakemake.params.cross,
                  snakemake.params.bootstrap, snakemake.params.seed)
    write_provenance(snakemake.output.provenance, resolved(snakemake.config))
