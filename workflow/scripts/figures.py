"""Rules figure_*: one results figure (training curves, scatter, SRCC bars, cross-dataset heatmap)."""
from aesthetic_mtl.figures import draw
from aesthetic_mtl.io import logging_to

with logging_to(snakemake.log[0]):
    draw(snakemake.params.kind, dict(snakemake.input.items()), snakemake.output.figure, **snakemake.params.options)
