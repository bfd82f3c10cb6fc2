"""Rule extract: unpack the release files into resources/<dataset>/raw."""
from pathlib import Path

from aesthetic_mtl.data.release import extract
from aesthetic_mtl.joblog import logging_to

with logging_to(snakemake.log[0]) as log:
    digests = Path(snakemake.input.digests)
    extract(snakemake.params.ds, digests.parent / "archives", Path(snakemake.output.raw), log=log)
