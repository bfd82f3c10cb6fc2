"""Rule extract: unpack the release files into resources/<dataset>/raw."""
from pathlib import Path

from aesthetic_mtl.joblog import logging_to
from aesthetic_mtl.pipeline import extract

with logging_to(snakemake.log[0]) as log:
    extract(snakemake.params.ds, Path(snakemake.input.digests).parent / "archives", Path(snakemake.output.raw), log=log)
