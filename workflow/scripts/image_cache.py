"""Rule image_cache: decode every image once into a uint8 memmap at the input size."""
from pathlib import Path

from aesthetic_mtl.joblog import logging_to
from aesthetic_mtl.pipeline import image_cache

with logging_to(snakemake.log[0]) as log:
    image_cache(snakemake.input.labels, Path(snakemake.output.index).parent, snakemake.params.images,
                snakemake.params.on_bad_image, workers=snakemake.threads, log=log)
