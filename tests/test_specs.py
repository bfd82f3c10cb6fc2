"""Typed specs from a validated config, and their plain form (what rules pass as params)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aesthetic_mtl.config import load_config, validate_config
from aesthetic_mtl.specs import ImageSpec, StageSpec, TrainingJob, training_job

CONFIGS = {"paper": ["config.yaml"], "demo": ["config.yaml", "config/demo.yaml"],
           "tiny": ["config.yaml", ".test/config/config.yaml"], "photos": ["config.yaml", "config/photos.yaml"]}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_a_training_job_survives_its_plain_form(name):
    config = load_config(*CONFIGS[name])
    validate_config(config)
    for dataset in config["datasets"]:
        for weights in ("resources/weights/vgg16.pth", None):
            job = training_job(config, dataset, ["multitask"], "vgg16", 2, results="results", weights_file=weights)
            plain = job.plain()
            assert json.loads(json.dumps(plain)) == plain          # lists, dicts, numbers and strings only
            assert TrainingJob.from_plain(plain) == job
            assert job.spec.stage2.stream == 1 and job.models == {"multitask": tuple(job.info.attributes)}
            assert all(isinstance(t.cache, Path) for t in job.test_sets)
    images = ImageSpec.from_config(config["images"])
    assert ImageSpec.from_plain(images.plain()) == images


def test_a_plain_form_that_differs_is_a_different_job():
    """What Snakemake compares (the param's repr) changes with every value that changes a result."""
    config = load_config(*CONFIGS["tiny"])
    validate_config(config)
    job = training_job(config, "AADB", ["multitask"], "vgg16", 1, results="results", weights_file=None)
    config["training"]["stage1"]["lr"] = 0.5
    other = training_job(config, "AADB", ["multitask"], "vgg16", 1, results="results", weights_file=None)
    assert repr(other.plain()) != repr(job.plain()) and other.spec.stage1 == StageSpec.from_config(config["training"],
                                                                                                   "stage1")
