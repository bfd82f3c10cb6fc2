"""Rules train_<dataset>: a chunk of models of one dataset and seed through both stages, with test predictions."""
from pathlib import Path

from aesthetic_mtl.faults import on_step
from aesthetic_mtl.joblog import logging_to
from aesthetic_mtl.nn.gpu import gpu_slot
from aesthetic_mtl.pipeline import train_models

test_sets = snakemake.params.test_sets
with logging_to(snakemake.log[0]) as log, gpu_slot():
    train_models(snakemake.params.dataset, snakemake.wildcards.backbone, int(snakemake.wildcards.seed),
                 models=snakemake.params.models, spec=snakemake.params.spec, info=snakemake.params.info,
                 caches={t: Path(snakemake.input[f"{t}_index"]).parent for t in test_sets},
                 scaled_labels=dict(zip(test_sets, snakemake.input.scaled_labels)),
                 skipped=dict(zip(test_sets, snakemake.input.skipped)), test_sets=test_sets,
                 weights={"spec": snakemake.params.weights, "file": snakemake.input.weights or None},
                 placement=snakemake.resources.cache_placement, outputs=snakemake.output,
                 threads=snakemake.threads, log=log, on_step=on_step())
