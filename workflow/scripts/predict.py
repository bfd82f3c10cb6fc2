"""Rule predict: test-split predictions of one model on every dataset."""
from pathlib import Path

from aesthetic_mtl.evaluate import predict_all
from aesthetic_mtl.gpu import gpu_slot
from aesthetic_mtl.io import logging_to

with logging_to(snakemake.log[0]) as log, gpu_slot():
    outputs = {Path(p).stem: Path(p) for p in snakemake.output.predictions}
    predict_all(Path(snakemake.input.model), snakemake.params.tests, outputs,
                weights_file=snakemake.input.weights or None, threads=snakemake.threads, log=log)
