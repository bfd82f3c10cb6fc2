"""Shared fixtures: tiny models and data so every test runs in seconds on a CPU."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _single_thread():
    """Deterministic, quick CPU math regardless of the machine."""
    torch.set_num_threads(1)
    yield


# --------------------------------------------------------------------------------------------------
# typed specs as the tests need them: the schema's defaults under what a test names
# --------------------------------------------------------------------------------------------------

def image_spec(size: int, **images):
    """An ImageSpec of `size` px (the schema's defaults for resize, interpolation and max_pixels)."""
    from aesthetic_mtl.specs import ImageSpec

    return ImageSpec.from_config({"size": size, **images})


def head_spec(**head):
    """The paper's head (hidden 128, 64; dropout 0.35) with the schema's defaults, `head` overriding."""
    from aesthetic_mtl.specs import HeadSpec

    return HeadSpec.from_config({"hidden": [128, 64], "dropout": 0.35, **head})


def stage_spec(epochs: int, lr: float, batch_size: int, *, stage: str = "stage1", **own):
    """A StageSpec: `epochs`, `lr` and `batch_size`, the schema's defaults for the rest; `own` may name
    halve_every_steps, schedule (the stage's keys), adam and adam_eps (the training section's)."""
    from aesthetic_mtl.specs import StageSpec

    training = {k: own.pop(k) for k in ("adam", "adam_eps") if k in own}
    return StageSpec.from_config({"batch_size": batch_size, **training,
                                  stage: {"epochs": epochs, "lr": lr, **own}}, stage)


def save_test_checkpoint(path, model, *, stage: str, ranges: dict, image_size: int, weights: dict,
                         config: dict | None = None, head: dict | None = None, provenance: dict | None = None) -> None:
    """A checkpoint (format 2) of `model`, its card made from the facts the tests name one by one (and from a
    small config: its dataset's overall score, images, training precision, dataset, setting and seed)."""
    from aesthetic_mtl.nn.checkpoint import ModelCard, save_checkpoint

    config = config or {}
    overall = next((ds["overall"] for ds in config.get("datasets", {}).values() if ds.get("overall") in model.targets),
                   None)
    images = {k: v for k, v in config.get("images", {}).items() if k != "size"}
    card = ModelCard(backbone=model.backbone_name, stage=stage, targets=tuple(model.targets),
                     ranges={t: tuple(float(v) for v in ranges[t]) for t in model.targets}, overall=overall,
                     images=image_spec(image_size, **images), head=head_spec(**(head or {})),
                     bf16=bool(config.get("training", {}).get("bf16_autocast_cuda", False)),
                     dataset=config.get("dataset") or next(iter(config.get("datasets", {})), None),
                     setting=config.get("setting"), seed=config.get("seed"), weights=dict(weights),
                     training={stage: {"batch_size": config["training"]["batch_size"], **config["training"][stage]}
                               for stage in ("stage1", "stage2") if stage in config.get("training", {})})
    save_checkpoint(path, model, card, provenance=provenance or {})


@pytest.fixture(autouse=True)
def _own_user_cache(tmp_path_factory, monkeypatch):
    """Trunk weights resolved by name (checkpoint.user_cache) go to a folder of the test session, never to
    the user's ~/.cache."""
    monkeypatch.setenv("AESTHETIC_MTL_CACHE", str(tmp_path_factory.mktemp("user-cache")))


@pytest.fixture
def tiny_images() -> np.ndarray:
    """16 random uint8 images of 32 x 32 px (NHWC, as the image cache stores them)."""
    return np.random.default_rng(0).integers(0, 256, size=(16, 32, 32, 3), dtype=np.uint8)


# --------------------------------------------------------------------------------------------------
# the tiny workflow in a copy of the repository (shared by test_workflow, test_crash_safety, test_config)
# --------------------------------------------------------------------------------------------------

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TINY_CONFIG = ".test/config/config.yaml"   # the tiny config: complete, also the catalog test config
TINY = ["--configfile", TINY_CONFIG]
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "results", "resources", "logs", "benchmarks", ".snakemake",
                                     "__pycache__", "*.egg-info", ".pytest_cache", "bench")
CRASH_ENV = "AESTHETIC_MTL_CRASH_AFTER"   # aesthetic_mtl.faults.crash_point


def copy_repo(dest: Path) -> Path:
    """The workflow files (not results, caches or the venv) copied to `dest`, to run snakemake there."""
    shutil.copytree(REPO, dest, ignore=COPY_IGNORE)
    return dest


def run_snakemake(workdir: Path, *args: str, check: bool = True, crash: str | None = None,
                  timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run snakemake in `workdir` and keep its output for the assertion message.

    `crash`: value of AESTHETIC_MTL_CRASH_AFTER for the jobs (never inherited otherwise). Snakemake
    runs in its own session, so a `<step>:<K>:group` crash kills snakemake and its jobs, not pytest.
    """
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash:
        env[CRASH_ENV] = crash
    proc = subprocess.run([*SNAKEMAKE, *args], cwd=workdir, capture_output=True, text=True, timeout=timeout,
                          env=env, start_new_session=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def job_counts(output: str) -> dict[str, int]:
    """{rule: jobs} from the "Job stats" table of a snakemake run's output ({} when nothing is to be done)."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Job stats")), None)
    jobs: dict[str, int] = {}
    for line in lines[start + 3:] if start is not None else []:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    return jobs


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One complete, uninterrupted tiny run (every output), shared by all slow tests of a session."""
    workdir = copy_repo(tmp_path_factory.mktemp("workflow") / "repo")
    run_snakemake(workdir, "--cores", "2", *TINY)
    return workdir


@pytest.fixture(scope="session")
def tiny_config() -> dict:
    """The resolved config of the tiny run (.test/config/config.yaml over config.yaml, as snakemake reads it)."""
    from aesthetic_mtl.config import load_config

    return load_config(REPO / "config.yaml", REPO / TINY_CONFIG)


def can_mount_tmpfs() -> bool:
    """Whether a small tmpfs can be mounted in a private user + mount namespace (`unshare -Urm`): a real
    full file system for the disk-full tests, where the kernel allows unprivileged namespaces."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-Urm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0
