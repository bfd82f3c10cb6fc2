"""Rules train_stage1 / train_stage2: one stage of one (dataset, setting, seed)."""
from pathlib import Path

from aesthetic_mtl.gpu import gpu_slot
from aesthetic_mtl.io import logging_to
from aesthetic_mtl.pipeline import train

with logging_to(snakemake.log[0]) as log, gpu_slot():
    train(snakemake.rule.replace("train_", ""), config=snakemake.config, wildcards=snakemake.wildcards,
          cache_dir=Path(snakemake.input.cache).parent, targets_path=snakemake.input.targets,
          targets=snakemake.params.targets, ranges=snakemake.params.ranges,
          weights_file=snakemake.input.weights or None, init=snakemake.input.get("init"),
          out_model=snakemake.output.model, out_history=snakemake.output.history,
          threads=snakemake.threads, log=log)
