"""Rule parse_labels: the release's label files -> one tidy table (image, path, split, raw attributes)."""
from pathlib import Path

from aesthetic_mtl.data.release import parse_labels
from aesthetic_mtl.joblog import logging_to

with logging_to(snakemake.log[0]) as log:
    parse_labels(snakemake.params.ds, Path(snakemake.input.raw), Path(snakemake.output.labels),
                 on_bad_image=snakemake.params.on_bad_image, log=log)
