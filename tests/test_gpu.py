"""aesthetic_mtl.nn.gpu.gpu_slot: one local GPU per job, SLURM's choice respected, CPU machines untouched.

No GPU is needed: device lists are faked through CUDA_VISIBLE_DEVICES, `visible=` or a replaced
nvidia_smi_count().
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from aesthetic_mtl.nn import gpu
from aesthetic_mtl.nn.gpu import GpuSlotTimeout, gpu_slot, local_devices, slurm_assigned

REPO = Path(__file__).resolve().parents[1]
SLURM_VARS = ("SLURM_JOB_ID", "SLURM_JOBID", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS")
REAL_NVIDIA_SMI_COUNT = gpu.nvidia_smi_count


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No GPU, no SLURM, unless a test says otherwise; nvidia-smi never really runs."""
    for var in (*SLURM_VARS, "CUDA_VISIBLE_DEVICES", gpu.LOCK_DIR_ENV):
        monkeypatch.setenv(var, "")  # set first, so teardown restores the variable whatever a test did
        monkeypatch.delenv(var)
    monkeypatch.setattr(gpu, "nvidia_smi_count", lambda: 0)


@pytest.fixture
def locks(tmp_path) -> Path:
    return tmp_path / "locks"


def test_no_gpu_changes_nothing(locks):
    with gpu_slot(lock_dir=locks) as device:
        assert device is None
        assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert not locks.exists()


@pytest.mark.parametrize("value", ["", "-1", "NoDevFiles"])
def test_hidden_gpus_mean_cpu(monkeypatch, locks, value):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    with gpu_slot(lock_dir=locks) as device:
        assert device is None
        assert os.environ["CUDA_VISIBLE_DEVICES"] == value
    assert os.environ["CUDA_VISIBLE_DEVICES"] == value


def test_devices_from_nvidia_smi(monkeypatch, locks):
    monkeypatch.setattr(gpu, "nvidia_smi_count", lambda: 2)
    assert local_devices() == ["0", "1"]
    with gpu_slot(lock_dir=locks) as device:
        assert device == "0"
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"
        assert (locks / "gpu0.lock").exists()
    assert "CUDA_VISIBLE_DEVICES" not in os.environ  # restored: it was unset


def test_devices_from_cuda_visible_devices(monkeypatch, locks):
    monkeypatch.setattr(gpu, "nvidia_smi_count", lambda: 8)  # ignored: the user restricted the run
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 5,-1,7")
    assert local_devices() == ["2", "5"]
    with gpu_slot(lock_dir=locks) as first, gpu_slot(lock_dir=locks, visible=["2", "5"]) as second:
        assert (first, second) == ("2", "5")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2, 5,-1,7"  # restored


def test_uuid_device_ids_make_safe_lock_names(locks):
    with gpu_slot(lock_dir=locks, visible=["GPU-1a2b/3c"]) as device:
        assert device == "GPU-1a2b/3c"
        assert [p.name for p in locks.iterdir()] == ["gpuGPU-1a2b_3c.lock"]


def test_default_lock_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(gpu.LOCK_DIR_ENV, str(tmp_path / "shared"))
    with gpu_slot(visible=["0"]):
        assert (tmp_path / "shared" / "gpu0.lock").exists()


def test_two_holders_get_different_devices_and_a_third_times_out(locks):
    held, release = [], threading.Event()
    entered = threading.Barrier(3)

    def holder():
        with gpu_slot(lock_dir=locks, visible=["0", "1"], timeout=5) as device:
            held.append(device)
            entered.wait(timeout=5)
            release.wait(timeout=10)

    threads = [threading.Thread(target=holder) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        entered.wait(timeout=5)
        assert sorted(held) == ["0", "1"]
        t0 = time.monotonic()
        with pytest.raises(GpuSlotTimeout, match="stayed busy"):
            with gpu_slot(lock_dir=locks, visible=["0", "1"], timeout=0.3, poll=0.05):
                pass
        assert 0.25 < time.monotonic() - t0 < 3
    finally:
        release.set()
        for t in threads:
            t.join(timeout=10)
    # both free again
    with gpu_slot(lock_dir=locks, visible=["0", "1"], timeout=0) as device:
        assert device == "0"


def test_waiter_gets_the_device_when_it_is_released(locks):
    got = []
    with gpu_slot(lock_dir=locks, visible=["0"]):
        waiter = threading.Thread(
            target=lambda: got.append(_hold_briefly(locks)), daemon=True)
        waiter.start()
        time.sleep(0.3)
        assert got == []  # still waiting
    waiter.join(timeout=5)
    assert got == ["0"]


def _hold_briefly(locks):
    with gpu_slot(lock_dir=locks, visible=["0"], timeout=5, poll=0.05) as device:
        return device


def test_exception_releases_and_restores(monkeypatch, locks):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(RuntimeError):
        with gpu_slot(lock_dir=locks):
            assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"
            raise RuntimeError("job failed")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
    with gpu_slot(lock_dir=locks, timeout=0) as device:
        assert device == "0"


# ---- SLURM ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("gpu_var", ["CUDA_VISIBLE_DEVICES", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS"])
def test_slurm_allocation_is_respected(monkeypatch, locks, gpu_var):
    monkeypatch.setattr(gpu, "nvidia_smi_count", lambda: 4)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv(gpu_var, "3")
    assert slurm_assigned()
    before = dict(os.environ)
    with gpu_slot(lock_dir=locks) as device:
        assert device == os.environ.get("CUDA_VISIBLE_DEVICES")
        assert dict(os.environ) == before
    assert dict(os.environ) == before
    assert not locks.exists()  # no lock taken


def test_slurm_job_without_gpu_allocation_uses_local_devices(monkeypatch, locks):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setattr(gpu, "nvidia_smi_count", lambda: 1)
    assert not slurm_assigned()
    with gpu_slot(lock_dir=locks) as device:
        assert device == "0"


def test_nvidia_smi_missing_means_zero(monkeypatch, tmp_path):
    monkeypatch.setattr(gpu, "nvidia_smi_count", REAL_NVIDIA_SMI_COUNT)
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi there
    assert gpu.nvidia_smi_count() == 0


def test_nvidia_smi_output_is_counted(monkeypatch, tmp_path):
    monkeypatch.setattr(gpu, "nvidia_smi_count", REAL_NVIDIA_SMI_COUNT)
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: A (UUID: GPU-a)'\necho 'GPU 1: B (UUID: GPU-b)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpu.nvidia_smi_count() == 2


# ---- separate processes, as Snakemake runs jobs ----------------------------------------------------

HOLDER = textwrap.dedent("""
    import os, sys, time
    from aesthetic_mtl.nn.gpu import gpu_slot, GpuSlotTimeout
    lock_dir, release, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
    try:
        with gpu_slot(lock_dir=lock_dir, timeout=timeout, poll=0.05) as device:
            print(device, os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
            while not os.path.exists(release):
                time.sleep(0.02)
    except GpuSlotTimeout:
        print("timeout", flush=True)
        sys.exit(3)
""")


def _spawn(locks: Path, release: Path, timeout: float = 10) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in SLURM_VARS}
    env["CUDA_VISIBLE_DEVICES"] = "0,1"  # a fake two-GPU machine
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(locks), str(release), str(timeout)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_concurrent_processes_get_their_own_device(locks, tmp_path):
    release = tmp_path / "release"
    jobs = [_spawn(locks, release) for _ in range(2)]
    try:
        lines = [p.stdout.readline().split() for p in jobs]  # blocks until each holds a device
        assert sorted(lines) == [["0", "0"], ["1", "1"]]  # device == its CUDA_VISIBLE_DEVICES
        third = _spawn(locks, release, timeout=0.5)
        out, err = third.communicate(timeout=30)
        assert third.returncode == 3 and out.strip() == "timeout", err
        assert "all in use" in err
    finally:
        release.touch()
        for p in jobs:
            p.communicate(timeout=30)
    assert [p.returncode for p in jobs] == [0, 0]


def test_killed_holder_frees_its_device(locks, tmp_path):
    holder = _spawn(locks, tmp_path / "never")
    try:
        assert holder.stdout.readline().split() == ["0", "0"]
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        with gpu_slot(lock_dir=locks, visible=["0", "1"], timeout=0) as device:
            assert device == "0"  # the kernel dropped the dead process's lock
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate(timeout=10)
