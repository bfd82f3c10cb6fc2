"""kill -9 in the middle of the feature cache and of training, then rerun: the run completes, nothing is
half-written, incomplete caches are rebuilt, and the metrics equal those of an uninterrupted run.

One copy of the repository runs the tiny workflow up to results/metrics.tsv three times:

1. killed (snakemake and all its jobs, as a node failure or `scancel` would) after the feature cache
   wrote its 2nd batch;
2. `snakemake --unlock`, then `--rerun-incomplete`, killed again after the first stage-2 training step;
3. `snakemake --unlock`, then `--rerun-incomplete`: runs to the end.

The kills come from the test hook `aesthetic_mtl.faults.crash_point` (AESTHETIC_MTL_CRASH_AFTER). The
uninterrupted reference is the session's `tiny_run` (conftest.py), so the comparison is also the
reproducibility check: two runs with the same seeds on the same machine give identical metrics.tsv.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY, copy_repo, run_snakemake
from PIL import Image

from aesthetic_mtl.config import settings
from aesthetic_mtl.errors import DataError
from aesthetic_mtl.nn.feature_cache import open_feature_cache

pytestmark = pytest.mark.slow
TARGET = "results/metrics.tsv"   # before --configfile on the command line (it takes several values)
CACHE = "results/cache/{}/vgg16_64"
KILLED = -signal.SIGKILL


def unreadable_outputs(results: Path) -> list[str]:
    """Files at their final names under `results` that cannot be read back in full."""
    bad = []
    for path in sorted(p for p in results.rglob("*") if p.is_file() and not p.name.startswith(".")):
        try:
            if path.suffix == ".npy":
                arr = np.load(path, mmap_mode="r")      # a short file cannot be mapped
                np.asarray(arr[-1:]).sum()
            elif path.suffix == ".tsv":
                pd.read_csv(path, sep="\t")
            elif path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".pt":
                torch.load(path, weights_only=True)
            elif path.suffix == ".png":
                with Image.open(path) as im:
                    im.verify()
        except Exception as e:  # noqa: BLE001 - any failure to read back is the finding
            bad.append(f"{path.relative_to(results)}: {type(e).__name__}: {e}")
    return bad


def hidden_files(results: Path) -> list[str]:
    """Temporary files of atomic writes (`.<name>.<random>`) under `results`."""
    return sorted(str(p.relative_to(results)) for p in results.rglob(".*") if p.is_file())


def cache_error(cache_dir: Path) -> str | None:
    """Why `open_feature_cache` refuses the cache (None: it opens)."""
    try:
        open_feature_cache(cache_dir)
    except DataError as e:
        return str(e)
    return None


def snapshot(workdir: Path, proc) -> dict:
    results = workdir / "results"
    return {
        "returncode": proc.returncode,
        "output": proc.stdout[-3000:] + proc.stderr[-3000:],
        "unreadable": unreadable_outputs(results),
        "hidden": hidden_files(results),
        "caches": {ds: (workdir / CACHE.format(ds) / "index.tsv").exists() for ds in ("AADB", "EVA")},
        "cache_errors": {ds: cache_error(workdir / CACHE.format(ds)) for ds in ("AADB", "EVA")},
        "checkpoints": sorted(str(p.relative_to(results)) for p in results.rglob("*.pt")),
        "prefix_mtimes": {ds: (workdir / CACHE.format(ds) / "prefix.npy").stat().st_mtime_ns
                          for ds in ("AADB", "EVA") if (workdir / CACHE.format(ds) / "prefix.npy").exists()},
    }


@pytest.fixture(scope="module")
def crashed_run(tmp_path_factory) -> tuple[Path, dict]:
    workdir = copy_repo(tmp_path_factory.mktemp("crash") / "repo")
    states = {}
    proc = run_snakemake(workdir, TARGET, "--cores", "2", *TINY, check=False, crash="feature_cache:2:group")
    states["cache_kill"] = snapshot(workdir, proc)
    run_snakemake(workdir, "--unlock", *TINY)       # the killed snakemake could not release its lock
    proc = run_snakemake(workdir, TARGET, "--cores", "2", "--rerun-incomplete", *TINY, check=False,
                         crash="stage2:1:group")
    states["train_kill"] = snapshot(workdir, proc)
    run_snakemake(workdir, "--unlock", *TINY)
    proc = run_snakemake(workdir, TARGET, "--cores", "2", "--rerun-incomplete", *TINY)
    states["final"] = snapshot(workdir, proc)
    states["dry_run"] = run_snakemake(workdir, TARGET, "-n", *TINY).stdout
    return workdir, states


def test_kill_during_feature_cache_leaves_no_half_written_output(crashed_run):
    workdir, states = crashed_run
    state = states["cache_kill"]
    assert state["returncode"] == KILLED, state["output"]
    assert state["unreadable"] == []
    incomplete = [ds for ds, complete in state["caches"].items() if not complete]
    assert all("incomplete" in state["cache_errors"][ds] for ds in incomplete)   # the package refuses them
    # the killed cache's partial arrays exist only under temporary names, never as prefix.npy / pooled.npy
    killed = [ds for ds in incomplete if any(h.startswith(f"cache/{ds}/vgg16_64/.prefix.npy.")
                                             for h in state["hidden"])]
    assert killed, state["hidden"]
    assert not state["checkpoints"]


def test_kill_during_training_leaves_no_half_written_output(crashed_run):
    workdir, states = crashed_run
    state = states["train_kill"]
    assert state["returncode"] == KILLED, state["output"]
    assert state["unreadable"] == []
    assert any(state["caches"].values())                   # the stage-2 job that was killed had its cache
    for ds, complete in state["caches"].items():                # the other may not be built yet: refused
        error = state["cache_errors"][ds]
        assert error is None if complete else "incomplete" in error
    assert len(state["checkpoints"]) < len(states["final"]["checkpoints"])


def test_rerun_completes_rebuilding_only_what_was_incomplete(crashed_run, tiny_config):
    workdir, states = crashed_run
    final = states["final"]
    assert final["unreadable"] == [] and final["hidden"] == []       # killed writers' temp files removed
    n_models = sum(len(settings(tiny_config, ds)) for ds in tiny_config["datasets"]) * len(
        tiny_config["training"]["seeds"])
    assert len(final["checkpoints"]) == 2 * n_models
    # caches complete before the last kill are reused by the rerun, not recomputed
    before = states["train_kill"]
    assert before["prefix_mtimes"] and all(final["prefix_mtimes"][ds] == mtime
                                           for ds, mtime in before["prefix_mtimes"].items() if before["caches"][ds])
    assert final["cache_errors"] == {"AADB": None, "EVA": None}
    assert "Nothing to be done" in states["dry_run"]


def test_interrupted_run_reproduces_the_uninterrupted_metrics(crashed_run, tiny_run):
    """Same seeds, same machine, a second run (here: killed twice and resumed): identical numbers."""
    workdir, _ = crashed_run
    assert (workdir / TARGET).read_bytes() == (tiny_run / TARGET).read_bytes()
    ours, theirs = (sorted(p.relative_to(d) for p in (d / "results" / "predictions").rglob("*.tsv"))
                    for d in (workdir, tiny_run))
    assert ours and ours == theirs
    for rel in ours:
        assert (workdir / rel).read_bytes() == (tiny_run / rel).read_bytes(), rel


def test_outputs_record_code_version_packages_and_config(crashed_run, tiny_config):
    workdir, _ = crashed_run
    record = json.loads((workdir / "results" / "metrics.provenance.json").read_text())
    assert record["config"]["bootstrap"] == tiny_config["evaluation"]["bootstrap"]  # the metrics job's params
    assert record["code_version"] and {"torch", "numpy", "snakemake"} <= set(record["packages"])
    logs = sorted((workdir / "logs").rglob("*.log"))
    assert len(logs) > 10
    for log in logs:
        assert log.read_text().startswith("# aesthetic-mtl "), log
    assert f"# aesthetic-mtl {record['code_version']} " in (workdir / "logs" / "metrics" / "metrics.log").read_text()
    ckpt = torch.load(next((workdir / "results" / "models").rglob("stage2.pt")), weights_only=True)
    assert ckpt["provenance"]["code_version"]
    # its card records what its training job was given: the head, each stage's hyper-parameters, its one seed
    card = ckpt["card"]
    assert {k: card["head"][k] for k in tiny_config["head"]} == tiny_config["head"]
    stage2 = {**tiny_config["training"]["stage2"], "batch_size": tiny_config["training"]["batch_size"]}
    assert {k: card["training"]["stage2"][k] for k in stage2} == stage2
    assert card["seed"] in tiny_config["training"]["seeds"]
