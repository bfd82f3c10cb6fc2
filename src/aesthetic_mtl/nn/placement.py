"""Where a training job keeps the cached inputs it trains on (`training.cache_placement`).

A job trains many models on the same prefix activations and pooled features, one small batch at a
time. On a GPU the per-batch numpy gather from a memory map and its pageable host-to-device copy would
cost more than the stage-2 layers themselves, so the caches move once per job:

* `resident`: the whole array on the device (copied in slices, so host memory never holds a second
  copy); a batch is an `index_select` on the device.
* `streamed`: for caches larger than the free device memory: the array in (pinned, on CUDA) host
  memory; each batch is gathered into a pinned buffer by a background thread while the device works on
  the previous one, and copied without blocking.
* `memmap`: the CPU path: numpy gathers rows from the memory-mapped file (the operating system's page
  cache keeps the hot part in memory; nothing is loaded up front).
* `auto`: `memmap` on the CPU; on CUDA `resident` when the array fits in `RESIDENT_FRACTION` of the free
  device memory, else `streamed`.

Every placement yields the same float32 batches (float16 caches are widened the same way), so results do
not depend on it (tests/test_placement.py).
"""

from __future__ import annotations

import concurrent.futures
from typing import Iterable, Iterator, Protocol

import numpy as np
import torch

PLACEMENTS = ("auto", "memmap", "resident", "streamed")
RESIDENT_FRACTION = 0.8   # of the free device memory: room is left for activations and the optimizer
COPY_ROWS = 1024          # rows per slice when an array moves to the device


class Inputs(Protocol):
    """Rows of a cached array, as float32 batches on the training device."""

    placement: str

    def batches(self, row_batches: Iterable[np.ndarray]) -> Iterator[torch.Tensor]: ...


class MappedInputs:
    """numpy gathers from the (memory-mapped) array, one batch at a time."""

    placement = "memmap"

    def __init__(self, array: np.ndarray, device: torch.device) -> None:
        self.array, self.device = array, device

    def batches(self, row_batches: Iterable[np.ndarray]) -> Iterator[torch.Tensor]:
        for rows in row_batches:
            yield _widen(torch.from_numpy(np.ascontiguousarray(self.array[rows]))).to(self.device)


class ResidentInputs:
    """The whole array on the device, copied once; batches are gathered there."""

    placement = "resident"

    def __init__(self, array: np.ndarray, device: torch.device) -> None:
        self.tensor = torch.empty(array.shape, dtype=_torch_dtype(array), device=device)
        for start in range(0, len(array), COPY_ROWS):
            part = torch.from_numpy(np.array(array[start:start + COPY_ROWS]))  # a writable copy of the slice
            self.tensor[start:start + len(part)].copy_(part)

    def batches(self, row_batches: Iterable[np.ndarray]) -> Iterator[torch.Tensor]:
        for rows in row_batches:
            index = torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(self.tensor.device)
            yield _widen(self.tensor.index_select(0, index))


class StreamedInputs:
    """The array in host memory (pinned on CUDA); the next batch is gathered while the device computes."""

    placement = "streamed"

    def __init__(self, array: np.ndarray, device: torch.device) -> None:
        self.device = device
        self.pin = device.type == "cuda"
        self.host = torch.empty(array.shape, dtype=_torch_dtype(array), pin_memory=self.pin)
        for start in range(0, len(array), COPY_ROWS):
            self.host[start:start + COPY_ROWS].copy_(torch.from_numpy(np.array(array[start:start + COPY_ROWS])))

    def _gather(self, rows: np.ndarray) -> torch.Tensor:
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        out = torch.empty((len(index), *self.host.shape[1:]), dtype=self.host.dtype, pin_memory=self.pin)
        return torch.index_select(self.host, 0, index, out=out)

    def batches(self, row_batches: Iterable[np.ndarray]) -> Iterator[torch.Tensor]:
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pending = None
            for rows in row_batches:
                ahead = pool.submit(self._gather, rows)
                if pending is not None:
                    yield _widen(pending.result().to(self.device, non_blocking=self.pin))
                pending = ahead
            if pending is not None:
                yield _widen(pending.result().to(self.device, non_blocking=self.pin))


def place(array: np.ndarray, device: torch.device, placement: str = "auto") -> Inputs:
    """`array` where `placement` says (see the module docstring); `auto` decides by device and free memory."""
    if placement not in PLACEMENTS:
        raise ValueError(f"cache placement must be one of {PLACEMENTS}, got {placement!r}")
    if placement == "auto":
        placement = auto_placement(array.nbytes, device)
    return {"memmap": MappedInputs, "resident": ResidentInputs, "streamed": StreamedInputs}[placement](array, device)


def auto_placement(nbytes: int, device: torch.device) -> str:
    if device.type != "cuda":
        return "memmap"
    free, _ = torch.cuda.mem_get_info(device)
    return "resident" if nbytes <= RESIDENT_FRACTION * free else "streamed"


def _torch_dtype(array: np.ndarray) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype=array.dtype)).dtype


def _widen(tensor: torch.Tensor) -> torch.Tensor:
    """float16 caches are stored narrow and trained on in float32."""
    return tensor.float() if tensor.dtype == torch.float16 else tensor
