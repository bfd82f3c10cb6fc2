"""Where tensors run: CUDA when available (bf16 autocast there), else the CPU with the job's threads."""

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


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; a no-op on the CPU so CPU runs stay bit-reproducible."""
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
