"""Rules table_*: one paper table (the function the rule names) as CSV, Markdown, LaTeX and HTML."""
import importlib

from aesthetic_mtl.joblog import logging_to
from aesthetic_mtl.report.paper_tables import write_table

with logging_to(snakemake.log[0]):
    module, name = snakemake.params.build.rsplit(".", 1)
    parameters = {tuple(key.split("__")): path for key, path in snakemake.input.items() if key.count("__") == 2}
    write_table(getattr(importlib.import_module(module), name), snakemake.input.metrics, dict(snakemake.output.items()),
                snakemake.params.datasets, dataset=snakemake.wildcards.get("dataset"),
                comparisons_path=snakemake.input.get("comparisons"), parameters=parameters)
