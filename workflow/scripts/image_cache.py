"""Rule image_cache: decode every image once into a uint8 memmap at the input size."""
from pathlib import Path

from aesthetic_mtl.data.image_cache import build_from_labels
from aesthetic_mtl.joblog import logging_to

with logging_to(snakemake.log[0]) as log:
    build_from_labels(snakemake.input.labels, Path(snakemake.output.index).parent, snakemake.params.images,
                      on_bad_image=snakemake.params.on_bad_image, workers=snakemake.threads, log=log)
