"""The frozen part of the network is computed once per (dataset, backbone, input size).

`prefix.npy` holds the activations of the frozen prefix (the trunk before the first stage-2 layer),
which stage 2 trains from; `pooled.npy` holds the pooled output of the whole frozen trunk, which
stage 1 trains from. Every model and seed reuses them. Both are memory-mapped `.npy` files written
batch by batch, so RAM stays bounded by the batch size, and `index.tsv` is written last: a cache
without an index is incomplete and is never used.

A float16 prefix rounds each activation to 11 significant bits and cannot hold values beyond 65504:
an activation that would overflow stops the build (use `backbone.cache_dtype: float32`). What the
rounding changes in SRCC is measured in bench/results.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .device import autocast, pick_device
from .errors import DataError
from .images import open_image_cache
from .io import atomic_path, crash_point, read_tsv, write_json, write_tsv
from .model import AestheticModel
from .backbones import build_backbone


def build_feature_cache(image_dir: Path, out_dir: Path, backbone_name: str, weights_file: Path | None, *,
                        batch_size: int = 32, dtype: str = "float32", threads: int | None = None,
                        bf16_cuda: bool = True, meta: dict | None = None, log: Callable = print) -> None:
    """Run the frozen trunk once over every cached image and store prefix activations + pooled features."""
    device = pick_device(threads)
    images, index = open_image_cache(image_dir)
    model = AestheticModel(build_backbone(backbone_name, weights_file), ["_"]).to(device).eval()
    n = len(images)
    with torch.inference_mode():
        probe = model.prefix(torch.from_numpy(np.array(images[:1])).to(device))
    prefix_shape = (n, *probe.shape[1:])
    log(f"feature cache: {n} images, prefix {tuple(prefix_shape[1:])} {dtype}, pooled {model.head.layers[0].in_features}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "index.tsv").unlink(missing_ok=True)
    with atomic_path(out_dir / "prefix.npy", suffix=".npy") as prefix_tmp, \
            atomic_path(out_dir / "pooled.npy", suffix=".npy") as pooled_tmp:
        prefix = np.lib.format.open_memmap(prefix_tmp, mode="w+", dtype=dtype, shape=prefix_shape)
        pooled = np.lib.format.open_memmap(pooled_tmp, mode="w+", dtype="float32",
                                           shape=(n, model.head.layers[0].in_features))
        with torch.inference_mode(), autocast(device, bf16_cuda):
            for start in tqdm(range(0, n, batch_size), desc="feature cache", unit="batch", mininterval=5):
                batch = torch.from_numpy(np.array(images[start:start + batch_size])).to(device)
                acts = model.prefix(batch)
                prefix[start:start + len(batch)] = _narrow(acts.float().cpu().numpy(), dtype, out_dir)
                pooled[start:start + len(batch)] = model.pooled_from_prefix(acts).float().cpu().numpy()
                crash_point("feature_cache", start // batch_size + 1)  # test hook; no-op normally
        prefix.flush()
        pooled.flush()
        del prefix, pooled
    write_json(out_dir / "meta.json", {"backbone": backbone_name, "dtype": dtype, "n": n, **(meta or {})})
    write_tsv(out_dir / "index.tsv", index)


def _narrow(block: np.ndarray, dtype: str, out_dir: Path) -> np.ndarray:
    """Cast activations to the cache dtype; refuse values float16 cannot represent (they would become inf)."""
    with np.errstate(over="ignore"):  # detected below, with a message that says what to do
        stored = block.astype(dtype)
    if dtype == "float16" and not np.isfinite(stored).all() and np.isfinite(block).all():
        raise DataError(f"{out_dir}: prefix activations reach {float(np.abs(block).max()):.4g}, beyond float16's "
                        "range (65504); set backbone.cache_dtype: float32")
    return stored


def open_feature_cache(cache_dir: Path) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Read-only memmaps of (prefix, pooled) and the index; refuse an incomplete cache."""
    index_path = cache_dir / "index.tsv"
    if not index_path.exists():
        raise DataError(f"{cache_dir}: feature cache is incomplete (no index.tsv); rebuild it")
    index = read_tsv(index_path)
    prefix = np.load(cache_dir / "prefix.npy", mmap_mode="r")
    pooled = np.load(cache_dir / "pooled.npy", mmap_mode="r")
    if not len(prefix) == len(pooled) == len(index):
        raise DataError(f"{cache_dir}: prefix/pooled/index sizes disagree; rebuild the cache")
    return prefix, pooled, index
