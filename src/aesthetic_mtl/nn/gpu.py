"""One GPU per job: pick a free local device for a GPU job, unless SLURM already chose one.

Snakemake's local executor limits how many GPU jobs run at once (`--resources gpu=N`), but it does not
tell a job *which* GPU to use: without help every job would pick device 0. `gpu_slot()` fixes that:

    with gpu_slot():          # before anything touches CUDA
        train(...)            # sees exactly one device, as cuda:0

* Under SLURM with a GPU allocation (SLURM_JOB_ID plus CUDA_VISIBLE_DEVICES, SLURM_STEP_GPUS or
  SLURM_JOB_GPUS) the scheduler has already bound the job to its devices: nothing is changed.
* Otherwise the local devices are the entries of CUDA_VISIBLE_DEVICES when it is set (so a user can
  restrict a run to some GPUs), else `nvidia-smi -L`; none (a CPU machine) -> nothing is changed.
* The job takes an exclusive `fcntl.flock` on `<lock_dir>/gpu<id>.lock` for the first free device and
  sets CUDA_VISIBLE_DEVICES to it while the block runs. The lock dies with the process, so a killed
  job never leaves a GPU "taken". lock_dir defaults to $AESTHETIC_MTL_GPU_LOCK_DIR or
  `<tmp>/aesthetic_mtl_gpu_locks`, shared by every job on the machine.

CUDA reads CUDA_VISIBLE_DEVICES once, when the process initialises it; enter `gpu_slot()` before the
first CUDA call (importing torch is fine, `torch.cuda.is_available()` is not).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, Mapping, Sequence

__all__ = ["GpuSlotTimeout", "gpu_slot", "local_devices", "nvidia_smi_count", "slurm_assigned"]

LOCK_DIR_ENV = "AESTHETIC_MTL_GPU_LOCK_DIR"
_SLURM_GPU_VARS = ("CUDA_VISIBLE_DEVICES", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS")


class GpuSlotTimeout(TimeoutError):
    """Every local GPU stayed locked by other jobs for the whole timeout."""


def nvidia_smi_count() -> int:
    """Number of GPUs `nvidia-smi -L` lists; 0 when it is missing or fails (tests replace this)."""
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return 0
    if out.returncode != 0:
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def slurm_assigned(env: Mapping[str, str] | None = None) -> bool:
    """True inside a SLURM job that SLURM bound to GPUs (then the devices are not ours to choose)."""
    env = os.environ if env is None else env
    return bool(env.get("SLURM_JOB_ID")) and any(env.get(v, "").strip() for v in _SLURM_GPU_VARS)


def _parse_visible(value: str) -> list[str]:
    """CUDA_VISIBLE_DEVICES -> device ids; "" / "-1" / "NoDevFiles" hide every GPU."""
    ids = [v.strip() for v in value.split(",") if v.strip()]
    if not ids or ids[0] in ("-1", "NoDevFiles"):
        return []
    # CUDA ignores everything from the first invalid entry on; "-1" anywhere ends the list.
    return ids[: ids.index("-1")] if "-1" in ids else ids


def local_devices(env: Mapping[str, str] | None = None) -> list[str]:
    """The GPU ids this machine offers a job: CUDA_VISIBLE_DEVICES if set, else 0..nvidia-smi count-1."""
    env = os.environ if env is None else env
    if "CUDA_VISIBLE_DEVICES" in env:
        return _parse_visible(env["CUDA_VISIBLE_DEVICES"])
    return [str(i) for i in range(nvidia_smi_count())]


def default_lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "aesthetic_mtl_gpu_locks")


def _open_lock(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user's lock file: flock works on a read-only descriptor too
        return os.open(path, os.O_RDONLY)


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive lock on `path`, or None when another holder has it."""
    fd = _open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    with contextlib.suppress(OSError):  # who holds it, for a human looking at the lock folder
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
    return fd


def _warn_if_cuda_initialised() -> None:
    torch = sys.modules.get("torch")
    try:
        initialised = torch is not None and torch.cuda.is_initialized()
    except Exception:  # noqa: BLE001 - a broken torch must not stop the job here
        initialised = False
    if initialised:
        print("gpu_slot: CUDA was initialised before gpu_slot(); CUDA_VISIBLE_DEVICES has no effect "
              "in this process", file=sys.stderr)


@contextlib.contextmanager
def gpu_slot(lock_dir: str | os.PathLike | None = None, visible: Sequence[str | int] | None = None,
             timeout: float | None = None, poll: float = 1.0) -> Iterator[str | None]:
    """Hold one local GPU for the duration of the block; yield its id (None: nothing was chosen).

    lock_dir: folder of the per-device lock files, shared by all jobs of the machine.
    visible:  device ids to choose from, instead of CUDA_VISIBLE_DEVICES / nvidia-smi.
    timeout:  seconds to wait while all devices are taken (None: wait as long as it takes), then
              raise GpuSlotTimeout.
    poll:     seconds between attempts while waiting.

    Under a SLURM GPU allocation, or with no GPU at all, the environment is left alone and the
    current CUDA_VISIBLE_DEVICES (or None) is yielded.
    """
    if slurm_assigned():
        yield os.environ.get("CUDA_VISIBLE_DEVICES")
        return
    devices = [str(d) for d in visible] if visible is not None else local_devices()
    if not devices:
        yield None
        return

    lock_dir = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    if not lock_dir.is_dir():
        lock_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # sticky and world-writable like /tmp: any user's jobs
            lock_dir.chmod(0o1777)
    deadline = None if timeout is None else time.monotonic() + timeout
    waiting_said = False
    while True:
        for device in devices:
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", device)
            fd = _try_lock(lock_dir / f"gpu{safe}.lock")
            if fd is not None:
                break
        else:
            if deadline is not None and time.monotonic() >= deadline:
                raise GpuSlotTimeout(f"all GPUs {devices} stayed busy for {timeout} s "
                                     f"(lock files gpu*.lock in {lock_dir})")
            if not waiting_said:
                print(f"gpu_slot: GPUs {devices} are all in use; waiting for one "
                      f"(lock files in {lock_dir})", file=sys.stderr)
                waiting_said = True
            time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))
            continue
        break

    previous = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        _warn_if_cuda_initialised()
        os.environ["CUDA_VISIBLE_DEVICES"] = device
        yield device
    finally:
        if previous is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = previous
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
