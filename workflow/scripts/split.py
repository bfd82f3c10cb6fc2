"""Rule split: official or seeded splits, and the report of images shared between splits."""
from aesthetic_mtl.data.splits import write_splits
from aesthetic_mtl.joblog import logging_to

with logging_to(snakemake.log[0]) as log:
    write_splits(snakemake.input.labels, snakemake.params.split, snakemake.output.splits, snakemake.output.report,
                 dataset=snakemake.wildcards.dataset, log=log)
