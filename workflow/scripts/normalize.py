"""Rule normalize: raw targets of every split row -> [0, 1], without images the cache skipped."""
from aesthetic_mtl.io import logging_to
from aesthetic_mtl.pipeline import normalize

with logging_to(snakemake.log[0]) as log:
    normalize(snakemake.input.labels, snakemake.input.splits, snakemake.params.ranges,
              snakemake.output.targets, log=log)
