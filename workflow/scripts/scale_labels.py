"""Rule scale_labels: the raw attributes of every split row -> [0, 1] (images the cache skipped leave at training)."""
from aesthetic_mtl.joblog import logging_to
from aesthetic_mtl.pipeline import scale_labels

with logging_to(snakemake.log[0]) as log:
    scale_labels(snakemake.input.labels, snakemake.input.splits, snakemake.params.ranges,
                 snakemake.output.scaled_labels, log=log)
