"""Rule feature_cache: frozen-prefix activations and pooled features of every image."""
from pathlib import Path

from aesthetic_mtl.faults import on_step
from aesthetic_mtl.joblog import logging_to
from aesthetic_mtl.nn.feature_cache import build_feature_cache
from aesthetic_mtl.nn.gpu import gpu_slot

with logging_to(snakemake.log[0]) as log, gpu_slot():
    build_feature_cache(Path(snakemake.input.index).parent, Path(snakemake.output.index).parent,
                        snakemake.wildcards.backbone, snakemake.input.weights or None,
                        batch_size=snakemake.params.batch_size, dtype=snakemake.params.dtype,
                        threads=snakemake.threads, bf16_cuda=snakemake.params.bf16, log=log,
                        on_step=on_step())
