"""Rule parse_labels: the release's label files -> one tidy table (image, path, split, raw targets)."""
from pathlib import Path

from aesthetic_mtl.joblog import logging_to
from aesthetic_mtl.pipeline import parse_labels

with logging_to(snakemake.log[0]) as log:
    parse_labels(snakemake.params.ds, Path(snakemake.input.raw), Path(snakemake.output.labels),
                 on_bad_image=snakemake.params.on_bad_image, log=log)
