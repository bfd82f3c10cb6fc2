"""Rule label_figure: distribution of every attribute of one dataset."""
from aesthetic_mtl.joblog import logging_to
from aesthetic_mtl.report.figures import label_distributions

with logging_to(snakemake.log[0]):
    label_distributions(snakemake.input.labels, snakemake.params.ranges, snakemake.wildcards.dataset,
                        snakemake.output.figure, names=snakemake.params.names)
