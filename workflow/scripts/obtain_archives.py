"""Rule obtain_archives: synthesize, or download / verify the release files of one dataset."""
from pathlib import Path

from aesthetic_mtl.data.release import obtain_archives
from aesthetic_mtl.joblog import logging_to

with logging_to(snakemake.log[0]) as log:
    download = {k.removeprefix("download_"): v for k, v in snakemake.resources.items() if k.startswith("download_")}
    obtain_archives(snakemake.params.ds, snakemake.params.names, Path(snakemake.output.digests), download=download,
                    log=log)
