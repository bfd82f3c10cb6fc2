"""The frozen part of the network is computed once per (dataset, backbone, input size).

`prefix.npy` holds the activations of the frozen prefix (the trunk before the first stage-2 layer),
which stage 2 trains from; `pooled.npy` holds the pooled output of the whole frozen trunk, which
stage 1 trains from. Every model and seed reuses them. Both are memory-mapped `.npy` files written
batch by batch, so RAM stays bounded by the batch size, and `index.tsv` is written last: a cache
without an index is incomplete and is never used. `meta.json` records each array's shape, size and a
sampled-rows checksum and the index's image ids (`integrity`); `open_feature_cache` checks them, so
a cache altered after it was written is refused with the rule to rerun. Disk space is reserved before
the first batch (`io.open_output_memmap`): a full disk is an error naming the file, not a crash.

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

from aesthetic_mtl.data import integrity
from aesthetic_mtl.data.image_cache import open_image_cache
from aesthetic_mtl.errors import DataError
from aesthetic_mtl.files import (
    atomic_path,
    open_output_memmap,
    read_tsv,
    write_json,
    write_tsv,
)
from aesthetic_mtl.nn.backbones import build_backbone
from aesthetic_mtl.nn.device import autocast, log_peak_memory, pick_device
from aesthetic_mtl.nn.model import Trunk


def build_feature_cache(image_dir: Path, out_dir: Path, backbone_name: str, weights_file: Path | None, *,
                        batch_size: int, dtype: str, bf16_cuda: bool, threads: int | None = None,
                        meta: dict | None = None, log: Callable = print,
                        on_step: Callable[[str, int], None] | None = None) -> None:
    """Run the frozen trunk once over every cached image and store prefix activations + pooled features;
    `on_step("feature_cache", k)` is called after batch k is stored."""
    device = pick_device(threads)
    images, index = open_image_cache(image_dir)
    model = Trunk(build_backbone(backbone_name, weights_file)).to(device).eval()
    n = len(images)
    with torch.inference_mode():
        probe = model.prefix(torch.from_numpy(np.array(images[:1])).to(device))
    prefix_shape = (n, *probe.shape[1:])
    log(f"feature cache: {n} images, prefix {tuple(prefix_shape[1:])} {dtype}, pooled {model.pooled_width}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "index.tsv").unlink(missing_ok=True)
    with atomic_path(out_dir / "prefix.npy", suffix=".npy") as prefix_tmp, \
            atomic_path(out_dir / "pooled.npy", suffix=".npy") as pooled_tmp:
        prefix = open_output_memmap(prefix_tmp, out_dir / "prefix.npy", dtype, prefix_shape)
        pooled = open_output_memmap(pooled_tmp, out_dir / "pooled.npy", "float32",
                                    (n, model.pooled_width))
        with torch.inference_mode(), autocast(device, bf16_cuda):
            for start in tqdm(range(0, n, batch_size), desc="feature cache", unit="batch", mininterval=5):
                batch = torch.from_numpy(np.array(images[start:start + batch_size])).to(device)
                acts = model.prefix(batch)
                prefix[start:start + len(batch)] = _narrow(acts.float().cpu().numpy(), dtype, out_dir)
                pooled[start:start + len(batch)] = model.pooled_from_prefix(acts).float().cpu().numpy()
                if on_step is not None:
                    on_step("feature_cache", start // batch_size + 1)
        prefix.flush()
        pooled.flush()
        del prefix, pooled
    check = integrity.record(out_dir, ["prefix.npy", "pooled.npy"], index)
    write_json(out_dir / integrity.META, {"backbone": backbone_name, "dtype": dtype, "n": n, **(meta or {}),
                                          integrity.KEY: check})
    write_tsv(out_dir / "index.tsv", index)
    log_peak_memory(device, log)


def _narrow(block: np.ndarray, dtype: str, out_dir: Path) -> np.ndarray:
    """Cast activations to the cache dtype; refuse values float16 cannot represent (they would become inf)."""
    with np.errstate(over="ignore"):  # detected below, with a message that says what to do
        stored = block.astype(dtype)
    if dtype == "float16" and not np.isfinite(stored).all() and np.isfinite(block).all():
        raise DataError(f"{out_dir}: prefix activations reach {float(np.abs(block).max()):.4g}, beyond float16's "
                        "range (65504); set backbone.cache_dtype: float32")
    return stored


RULE = "feature_cache"
"""The workflow rule that writes the feature cache (named in errors about an altered cache)."""


def open_feature_cache(cache_dir: Path) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Read-only memmaps of (prefix, pooled) and the index.

    Refuses an incomplete cache (no index.tsv) and one that is not what rule feature_cache wrote:
    a file truncated or replaced, a shape, dtype or sampled-rows checksum that changed, or an index
    whose rows no longer match (`integrity`); the message names the file and the rule to rerun.
    """
    cache_dir = Path(cache_dir)
    index_path = cache_dir / "index.tsv"
    if not index_path.exists():
        raise DataError(f"{cache_dir}: feature cache is incomplete (no index.tsv); rebuild it")
    entry = integrity.load(cache_dir, RULE)
    integrity.check_sizes(cache_dir, entry, RULE)          # before mapping: a short file cannot be mapped
    index = read_tsv(index_path)
    prefix, pooled = (_map(cache_dir / name) for name in ("prefix.npy", "pooled.npy"))
    if not len(prefix) == len(pooled) == len(index):
        raise integrity.altered(index_path, f"{len(index)} rows, but prefix.npy holds {len(prefix)} "
                                f"and pooled.npy {len(pooled)}", RULE, cache_dir)
    integrity.check(cache_dir, entry, {"prefix.npy": prefix, "pooled.npy": pooled}, index, RULE)
    return prefix, pooled, index


def _map(path: Path) -> np.ndarray:
    """A read-only memmap of one cache array; an unreadable header names the file and the rule."""
    try:
        return np.load(path, mmap_mode="r")
    except (ValueError, OSError) as e:
        raise integrity.altered(path, f"not a readable .npy file ({e})", RULE, path.parent) from None
