"""Rules train_<dataset>: a chunk of models of one dataset, backbone and seed through both stages (nn/job.py)."""
from aesthetic_mtl.faults import on_step
from aesthetic_mtl.joblog import logging_to
from aesthetic_mtl.nn.gpu import gpu_slot
from aesthetic_mtl.nn.job import run_training_job
from aesthetic_mtl.specs import TrainingJob

with logging_to(snakemake.log[0]) as log, gpu_slot():
    run_training_job(TrainingJob.from_plain(snakemake.params.job), snakemake.output, placement=snakemake.resources.cache_placement,
                     threads=snakemake.threads, log=log, on_step=on_step())
