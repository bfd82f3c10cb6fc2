"""One training job of the workflow (rules train_<dataset>): every model of a `TrainingJob` through both stages,
writing each model's checkpoints, histories, parameter counts and test predictions where the rule says.

The caches are opened once and shared by all models; each model is seeded on its own, so the results do not
depend on how the workflow cuts the models into jobs. Images listed in a test set's skipped table (the image
cache's skipped.tsv) leave its splits.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Callable, Mapping

from aesthetic_mtl.data.download import sha256_file
from aesthetic_mtl.files import write_json, write_tsv
from aesthetic_mtl.nn.checkpoint import ModelCard, save_checkpoint
from aesthetic_mtl.nn.device import log_peak_memory, pick_device
from aesthetic_mtl.nn.model import count_parameters
from aesthetic_mtl.nn.train import CachedDataset, StageResult, train_and_predict
from aesthetic_mtl.provenance import provenance
from aesthetic_mtl.specs import STAGES, TrainingJob


def output_key(setting: str, kind: str, stage: str | None = None, test: str | None = None) -> str:
    """Name of one file among a training job's named outputs (the rule and the job agree through this).

    kind: `checkpoint` (<stage>.pt), `history` (history_<stage>.tsv), `predictions` (<stage>/<test>.tsv) or
    `parameters` (parameters.json: the model's parameter counts, which the published table shows).
    """
    return f"{setting}__{kind}" + (f"_{stage}" if stage else "") + (f"_{test}" if test else "")


def run_training_job(job: TrainingJob, outputs: Mapping[str, str], *, placement: str, threads: int | None = None,
                     log: Callable = print, on_step: Callable[[str, int], None] | None = None) -> None:
    """Train every model of `job` and write its files to `outputs` (keys from `output_key`). `placement`
    (training.cache_placement, a resource of the job since results do not depend on it): where the caches live
    while it trains; `on_step(stage, k)` is called after each optimisation step (`faults.on_step`)."""
    device = pick_device(threads)
    opened = {t.dataset: CachedDataset.open(t.dataset, t.cache, t.scaled_labels, t.skipped, device=device,
                                            placement=placement, log=log) for t in job.test_sets}
    weights = {"spec": job.weights_spec, "file": str(job.weights_file) if job.weights_file else None,
               "sha256": sha256_file(job.weights_file) if job.weights_file else None}
    test_sets = {t.dataset: (opened[t.dataset], t.attributes) for t in job.test_sets}
    produced_by = provenance()    # once per job: the code version runs `git describe`
    for setting, targets in job.models.items():
        def write(result: StageResult, setting: str = setting, targets: tuple = targets) -> None:
            save_checkpoint(outputs[output_key(setting, "checkpoint", result.stage)], result.model,
                            card(job, setting, targets, result.stage, weights), provenance=produced_by)
            write_tsv(outputs[output_key(setting, "history", result.stage)], result.history)
            for test, table in result.predictions.items():
                write_tsv(outputs[output_key(setting, "predictions", result.stage, test)], table)

        results = train_and_predict(job.spec, opened[job.info.name], targets, job.seed, test_sets=test_sets,
                                    weights_file=job.weights_file, device=device, log=log, on_stage=write,
                                    on_step=on_step)
        write_json(outputs[output_key(setting, "parameters")], count_parameters(results[-1].model))
        log(f"{job.info.name} {setting} seed {job.seed}: done")
    log_peak_memory(device, log)


def card(job: TrainingJob, setting: str, targets: tuple[str, ...], stage: str, weights: Mapping) -> ModelCard:
    """The ModelCard of one model of `job` after `stage`: every fact a checkpoint stores, once."""
    spec = job.spec
    return ModelCard(
        backbone=job.backbone, stage=stage, targets=tuple(targets),
        ranges={t: tuple(job.info.attributes[t]) for t in targets},
        overall=job.info.overall if job.info.overall in targets else None, images=job.images, head=spec.head,
        bf16=spec.bf16_cuda, dataset=job.info.name, setting=setting, seed=job.seed, weights=dict(weights),
        training={s: asdict(spec.stage(s)) for s in STAGES})
