"""Rule predict: test-split predictions of every model of one (dataset, stage) on every dataset."""
from pathlib import Path

from aesthetic_mtl.evaluate import predict_models
from aesthetic_mtl.gpu import gpu_slot
from aesthetic_mtl.io import logging_to, write_text

with logging_to(snakemake.log[0]) as log, gpu_slot():
    predict_models(snakemake.params.outputs, snakemake.params.tests,
                   weights_file=snakemake.input.weights or None, threads=snakemake.threads, log=log)
    write_text(snakemake.output.done, "\n".join(snakemake.params.outputs.values()) + "\n")
