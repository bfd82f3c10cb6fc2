"""Where tensors run: CUDA when available (optional bf16 autocast for the trunk there), else the CPU with
the job's threads. The head, the loss and the predictions always run in float32 (`full_precision`)."""

from __future__ import annotations

import contextlib

import torch


def pick_device(threads: int | None = None) -> torch.device:
    """CUDA if present; on the CPU honour the rule's `threads` so parallel jobs do not oversubscribe."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if threads:
        torch.set_num_threads(int(threads))
    return torch.device("cpu")


def named_device(name: str | None) -> torch.device:
    """The device a user names for scoring (cpu, cuda, cuda:N, mps; None: CUDA when present, else the CPU), or
    ValueError with one line saying what this machine has instead."""
    if name is None:
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"{name!r} is not a device; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{name!r}: torch finds no CUDA GPU on this machine; use --device cpu")
        if device.index is not None and device.index >= count:
            raise ValueError(f"{name!r}: this machine has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name!r}: MPS (Apple GPU) is not available here; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{name!r}: device type {device.type!r} is not supported; use cpu, cuda, cuda:N or mps")
    return device


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when enabled (`training.bf16_autocast_cuda`); a no-op on the CPU so CPU runs
    stay bit-reproducible. It covers the trunk only: the head leaves it through `full_precision`."""
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def full_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """Switch any surrounding autocast off, so what runs inside is float32.

    bf16 has 8 significant bits: sigmoid outputs in bf16 take a few hundred distinct values, so 1,000 test
    images get ties that move SRCC. The head is tiny; full precision costs nothing measurable.
    """
    if device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def log_peak_memory(device: torch.device, log) -> None:
    """One line with the job's peak GPU memory (read back by bench/gpu.py); nothing on the CPU."""
    if device.type == "cuda":
        log(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")
