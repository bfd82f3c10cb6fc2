"""Rules train_<dataset>: a chunk of models of one dataset and seed through both stages, with test predictions."""
from pathlib import Path

from aesthetic_mtl.gpu import gpu_slot
from aesthetic_mtl.io import logging_to
from aesthetic_mtl.pipeline import train_models

tests = snakemake.params.tests
with logging_to(snakemake.log[0]) as log, gpu_slot():
    train_models(snakemake.params.dataset, snakemake.wildcards.backbone, int(snakemake.wildcards.seed),
                 models=snakemake.params.models, spec=snakemake.params.spec, info=snakemake.params.info,
                 caches={t: Path(snakemake.input[f"{t}_index"]).parent for t in tests},
                 targets_paths=dict(zip(tests, snakemake.input.targets)),
                 skipped=dict(zip(tests, snakemake.input.skipped)), tests=tests,
                 weights={"spec": snakemake.params.weights, "file": snakemake.input.weights or None},
                 outputs=snakemake.output, threads=snakemake.threads, log=log)
