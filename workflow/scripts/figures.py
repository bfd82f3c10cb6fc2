"""Rules figure_*: one results figure, drawn by the function the rule names."""
import importlib

from aesthetic_mtl.joblog import logging_to

with logging_to(snakemake.log[0]):
    module, name = snakemake.params.draw.rsplit(".", 1)
    draw = getattr(importlib.import_module(module), name)
    draw(dict(snakemake.input.items()), snakemake.output.figure, **snakemake.params.options)
