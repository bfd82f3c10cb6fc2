"""Rules figure_*: one results figure (training curves, scatter, SRCC bars, cross-dataset heatmap)."""
from aesthetic_mtl.joblog import logging_to
from aesthetic_mtl.report.figures import draw

with logging_to(snakemake.log[0]):
    draw(snakemake.params.kind, dict(snakemake.input.items()), snakemake.output.figure, **snakemake.params.options)
