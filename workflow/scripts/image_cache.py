"""Rule image_cache: decode every image once into a uint8 memmap at the input size."""
from pathlib import Path

from aesthetic_mtl.data.image_cache import build_from_labels
from aesthetic_mtl.joblog import logging_to
from aesthetic_mtl.specs import ImageSpec

with logging_to(snakemake.log[0]) as log:
    build_from_labels(snakemake.input.labels, Path(snakemake.output.index).parent,
                      ImageSpec.from_plain(snakemake.params.images),
                      on_bad_image=snakemake.params.on_bad_image, workers=snakemake.threads, log=log)
