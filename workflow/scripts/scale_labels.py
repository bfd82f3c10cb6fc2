"""Rule scale_labels: the raw attributes of every split row -> [0, 1] (images the cache skipped leave at training)."""
from aesthetic_mtl.data.scaling import write_scaled_labels
from aesthetic_mtl.joblog import logging_to

with logging_to(snakemake.log[0]) as log:
    write_scaled_labels(snakemake.input.labels, snakemake.input.splits, snakemake.params.ranges,
                        snakemake.output.scaled_labels, log=log)
