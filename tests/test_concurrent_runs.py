"""Two `snakemake` runs started on one working directory: the second is refused by Snakemake's lock,
touches nothing, and the first finishes with intact outputs.

The first run is held in the middle of writing the feature cache (after its first batch, temporary
files open) by the test hook `aesthetic_mtl.faults.crash_point` (`hold=`), so the second run certainly
starts while the first is writing; then the first is released and runs to the end.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CRASH_ENV, SNAKEMAKE, TINY, copy_repo, run_snakemake

from aesthetic_mtl.data.image_cache import open_image_cache
from aesthetic_mtl.nn.feature_cache import open_feature_cache

pytestmark = pytest.mark.slow
TARGET = "results/cache/AADB/vgg16_64/index.tsv"     # archives -> labels -> image cache -> feature cache


def _files(results: Path) -> dict[str, tuple[int, int]]:
    """Every file under results/ (temporary ones included) with its size and modification time."""
    return {str(p.relative_to(results)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(results.rglob("*")) if p.is_file()}


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.is_file()}


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"first run ended before the hold point:\n{proc.stdout.read()[-4000:]}")
        if time.monotonic() > deadline:
            raise AssertionError("first run did not reach the hold point in time")
        time.sleep(0.2)


def test_second_run_is_refused_by_the_lock_and_the_first_finishes_intact(tmp_path):
    workdir = copy_repo(tmp_path / "repo")
    release = tmp_path / "release"
    env = {**os.environ, CRASH_ENV: f"feature_cache:1:hold={release}"}
    first = subprocess.Popen([*SNAKEMAKE, TARGET, "--cores", "1", *TINY], cwd=workdir, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    try:
        _wait_for(Path(f"{release}.held"), first)
        cache = workdir / "results" / "cache" / "AADB" / "vgg16_64"
        assert any(p.name.startswith(".prefix.npy.") for p in cache.iterdir())   # mid-write
        before = _files(workdir / "results")

        second = run_snakemake(workdir, TARGET, "--cores", "1", *TINY, check=False, timeout=600)
        out = second.stdout + second.stderr
        assert second.returncode != 0, out[-3000:]
        assert "Directory cannot be locked" in out, out[-3000:]
        assert "--unlock" in out                       # Snakemake's own advice, for a stale lock
        assert _files(workdir / "results") == before   # the refused run wrote, moved, deleted nothing

        release.touch()
        log, _ = first.communicate(timeout=900)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    assert first.returncode == 0, log[-4000:]

    # the first run's outputs are complete and exactly what an undisturbed run writes
    prefix, pooled, index = open_feature_cache(cache)       # shape, size and checksums as recorded
    open_image_cache(workdir / "results" / "AADB" / "images_64")
    assert not [p for p in (workdir / "results").rglob(".*") if p.is_file()]   # no temporary left
    reference = copy_repo(tmp_path / "reference")
    run_snakemake(reference, TARGET, "--cores", "1", *TINY, timeout=900)
    ref_cache = reference / "results" / "cache" / "AADB" / "vgg16_64"
    assert _digests(cache) == _digests(ref_cache)
    assert _digests(workdir / "results" / "AADB" / "images_64") == \
        _digests(reference / "results" / "AADB" / "images_64")
    # and the lock is gone: the same target again is simply up to date
    again = run_snakemake(workdir, TARGET, "-n", *TINY)
    assert "Nothing to be done" in again.stdout + again.stderr
