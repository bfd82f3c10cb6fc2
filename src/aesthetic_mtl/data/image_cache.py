"""The uint8 image cache: every photo of a dataset decoded once, in parallel, into one `.npy` memmap.

`build_image_cache` stores the result of `images.load_image` for every unique image as one
(N, S, S, 3) uint8 `.npy` memmap plus `index.tsv` (row -> image), so the feature cache and Grad-CAM
read identical pixels and no later step depends on Pillow's decoder again. Photos are decoded by a
bounded, ordered thread map (`ordered_map`); a skipped bad image shrinks the array afterwards by
rewriting its `.npy` header (`_shrink_npy`). `open_image_cache` checks the cache before any reader
trusts it.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import math
import os
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd
from tqdm import tqdm

from aesthetic_mtl.data import images as decoding
from aesthetic_mtl.data import integrity
from aesthetic_mtl.data.images import _check_spec, _lift_pillow_limit
from aesthetic_mtl.errors import DataError
from aesthetic_mtl.files import atomic_path, open_output_memmap, read_tsv, write_json, write_tsv
from aesthetic_mtl.specs import ImageSpec

BAD_IMAGE_MODES = ("error", "skip")
SKIPPED_COLUMNS = ["image", "path", "reason"]

PEAK_BYTES_PER_PIXEL = 8
"""The most one photo being decoded holds per pixel of its full size: the decoded photo (at most 4 bytes a
pixel: RGBA, CMYK, 32-bit grey or float) and its upright copy when the EXIF orientation turns it. The rest
works on the photo reduced to about twice the input size (`images._reduce_early`), a band at a time."""
PER_WORKER_MB = 64   # MiB per decoding thread: a band being reduced, decoder buffers, results waiting in order
BASE_MB = 200        # MiB: the interpreter, numpy, pandas, Pillow and the job's script (~80 MiB measured)


def memory_mb(spec: ImageSpec, workers: int) -> int:
    """The most memory `build_image_cache` takes with `workers` threads on photos of up to `images.max_pixels`:
    what rule image_cache declares as `mem_mb`, so a cluster that enforces it never kills the job
    (tests/test_images.py measures the peak RSS against it). In megabytes (10**6 bytes) as Snakemake counts
    `mem_mb`, which is also more than enough where it is read as MiB (SLURM)."""
    per_worker = PEAK_BYTES_PER_PIXEL * (spec.max_pixels or 0) + PER_WORKER_MB * 2**20
    return math.ceil((BASE_MB * 2**20 + max(1, workers) * per_worker) / 1e6)


def build_from_labels(labels_path, out_dir: Path, spec: ImageSpec, *, on_bad_image: str, workers: int,
                      log: Callable = print) -> None:
    """Rule image_cache: decode each image of a label table once (in at most `memory_mb` MB: the rule's
    mem_mb)."""
    build_image_cache(read_tsv(labels_path), out_dir, spec, on_bad_image=on_bad_image, workers=workers, log=log)


def build_image_cache(table: pd.DataFrame, out_dir: str | os.PathLike, spec: ImageSpec, *, on_bad_image: str,
                      workers: int, log: Callable[[str], object] = print, progress: bool = True) -> pd.DataFrame:
    """Decode every unique image of `table` once into `out_dir/images.npy` + `out_dir/index.tsv`.

    `table` has columns `image` and `path`; an image listed in several splits is cached once, rows in
    order of first appearance. `on_bad_image="error"` stops at the first bad image with its
    `DataError`; "skip" leaves it out. Returns the skipped images (image, path, reason), also written
    to `out_dir/skipped.tsv` (header only when none). `index.tsv` is written last and removed first,
    so its presence means the cache is complete; `meta.json` records the fingerprints that
    `open_image_cache` checks (`integrity`). The disk space is reserved before decoding starts, so a
    full disk is an `OutputError` naming images.npy, not a crash part-way.
    """
    out_dir = Path(out_dir)
    _check_spec(spec)
    decoder = _Decoder(spec)
    if on_bad_image not in BAD_IMAGE_MODES:
        raise ValueError(f"on_bad_image must be one of {BAD_IMAGE_MODES}, got {on_bad_image!r}")
    unique = _unique_images(table)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "index.tsv").unlink(missing_ok=True)
    _lift_pillow_limit(spec.max_pixels)
    start = time.perf_counter()
    with atomic_path(out_dir / "images.npy", suffix=".npy") as tmp:
        kept, skipped = _fill_cache(tmp, out_dir / "images.npy", unique, decoder, on_bad_image, workers, log,
                                    progress)
    _log_summary(log, len(kept), skipped, time.perf_counter() - start)
    write_tsv(out_dir / "skipped.tsv", skipped)
    index = pd.DataFrame({"row": np.arange(len(kept)), "image": kept})
    write_json(out_dir / integrity.META, {"size": spec.size, "resize": spec.resize, "interpolation": spec.interpolation,
                                          integrity.KEY: integrity.record(out_dir, ["images.npy"], index)})
    write_tsv(out_dir / "index.tsv", index)
    return skipped


def _unique_images(table: pd.DataFrame) -> pd.DataFrame:
    """One row per image, first appearance first; one image with two paths is a data error."""
    missing = {"image", "path"} - set(table.columns)
    if missing:
        raise DataError(f"image table lacks column(s) {sorted(missing)}")
    if table.empty:
        raise DataError("image table is empty: nothing to cache")
    pairs = table[["image", "path"]].astype(str)
    n_paths = pairs.drop_duplicates().groupby("image", sort=False).size()
    clash = n_paths[n_paths > 1]
    if len(clash):
        image = clash.index[0]
        paths = sorted(pairs.loc[pairs["image"] == image, "path"].unique())
        raise DataError(f"image {image!r} has different paths in the table: {paths}")
    return pairs.drop_duplicates("image", keep="first").reset_index(drop=True)


def _fill_cache(tmp: Path, output: Path, unique: pd.DataFrame, decoder: "_Decoder", on_bad_image: str,
                workers: int, log: Callable[[str], object], progress: bool) -> tuple[list[str], pd.DataFrame]:
    """Decode in parallel straight into the memmap; return kept image ids and the skipped table."""
    n, size = len(unique), decoder.spec.size
    cache = open_output_memmap(tmp, output, np.uint8, (n, size, size, 3))
    kept: list[str] = []
    skipped: list[dict] = []
    jobs = zip(unique["image"], unique["path"])
    results = ordered_map(decoder, jobs, workers if workers > 1 else 0)  # one worker: inline, no thread
    with contextlib.closing(results), tqdm(total=n, desc=f"images {size}px", unit="img",
                                           mininterval=2.0, disable=not progress) as bar:
        for (image, path), result in results:  # closing(): a raise cancels the queued decodes
            bar.update()
            if isinstance(result, DataError):
                if on_bad_image == "error":
                    raise result
                log(f"skipping image {image}: {result}")
                skipped.append({"image": image, "path": path, "reason": str(result)})
                continue
            cache[len(kept)] = result
            kept.append(image)
    cache.flush()
    del cache
    if not kept:
        raise DataError(f"none of the {n} images could be decoded; first: {skipped[0]['reason']}")
    if len(kept) < n:
        _shrink_npy(tmp, len(kept))
    return kept, pd.DataFrame(skipped, columns=SKIPPED_COLUMNS)


class _Decoder:
    """The job: a bad image is returned, not raised, so one failure does not lose the others' order.

    A class rather than a closure so that a process pool could pickle it as well.
    """

    def __init__(self, spec: ImageSpec) -> None:
        self.spec = spec

    def __call__(self, job: tuple[str, str]) -> np.ndarray | DataError:
        try:
            # looked up on the module at call time, so a replaced `images.load_image` is the one used
            return decoding.load_image(job[1], self.spec)
        except DataError as e:
            return e


def ordered_map(fn: Callable, jobs: Iterable, workers: int, ahead: int | None = None) -> Iterator[tuple[object, object]]:
    """Yield (job, fn(job)) in input order, computed by `workers` threads at most `ahead` jobs (default
    4 x workers) ahead of the consumer; `workers` 0 computes each job inline when it is asked for.

    Threads, not processes: Pillow releases the GIL while decoding and resizing, so threads scale
    like processes without pickling every decoded array back to the parent (measured on 2 cores,
    1600x1200 JPEGs -> 224: 2 threads ~155 img/s, a 2-process Pool ~145 img/s, 1 thread ~85 img/s).
    A sliding window of futures keeps memory bounded by the window, not the dataset; while the consumer
    works (a model scoring a batch), the threads keep decoding up to the window.
    """
    if workers <= 0:
        for job in jobs:
            yield job, fn(job)
        return
    ahead = ahead or 4 * workers
    window: collections.deque = collections.deque()
    jobs = iter(jobs)
    with cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        try:
            for job in jobs:
                window.append((job, pool.submit(fn, job)))
                if len(window) >= ahead:
                    job0, fut = window.popleft()
                    yield job0, fut.result()
            while window:
                job0, fut = window.popleft()
                yield job0, fut.result()
        finally:
            for _, fut in window:
                fut.cancel()


def _shrink_npy(path: Path, n_rows: int) -> None:
    """Rewrite the .npy header for fewer rows and cut the file (after skipped images).

    numpy pads the header so that the first axis can change in place (np.lib.format's growth
    padding); if the new header were a different length we copy instead.
    """
    arr = np.load(path, mmap_mode="r")
    shape = (n_rows, *arr.shape[1:])
    offset, row_bytes = arr.offset, int(np.prod(arr.shape[1:]))
    del arr
    header = {"descr": "|u1", "fortran_order": False, "shape": shape}
    with open(path, "r+b") as f:
        version = np.lib.format.read_magic(f)
        f.seek(0)
        _write_header(f, header, version)
        same = f.tell() == offset
        if same:
            f.truncate(offset + n_rows * row_bytes)
    if not same:
        _copy_rows(path, n_rows)


def _write_header(f, header: dict, version: tuple[int, int]) -> None:
    """Write a .npy header of the given format version."""
    if version == (1, 0):
        np.lib.format.write_array_header_1_0(f, header)
    else:
        np.lib.format.write_array_header_2_0(f, header)


def _copy_rows(path: Path, n_rows: int) -> None:
    """Fallback of `_shrink_npy`: copy the first rows into a fresh file, chunk by chunk."""
    src = np.load(path, mmap_mode="r")
    tmp = path.with_name(path.name + ".shrink.npy")
    dst = open_output_memmap(tmp, path, src.dtype, (n_rows, *src.shape[1:]))
    for lo in range(0, n_rows, 256):
        dst[lo:lo + 256] = src[lo:min(lo + 256, n_rows)]
    dst.flush()
    del dst, src
    os.replace(tmp, path)


def _log_summary(log: Callable[[str], object], n_kept: int, skipped: pd.DataFrame,
                 seconds: float) -> None:
    """One line a user reads in the rule's log."""
    rate = n_kept / seconds if seconds > 0 else float("nan")
    log(f"cached {n_kept} images in {seconds:.1f} s ({rate:.1f} img/s); "
        f"skipped {len(skipped)} bad image(s)")


def open_image_cache(out_dir: str | os.PathLike) -> tuple[np.ndarray, pd.DataFrame]:
    """Open a finished cache: a read-only (N, S, S, 3) uint8 memmap and its index (row, image).

    A missing `index.tsv` means the build never finished (it is written last), so the cache is
    refused rather than trusted. A cache that differs from what rule image_cache wrote (size, shape,
    sampled-rows checksum, image ids: `integrity`) is refused naming the file and the rule to rerun.
    """
    out_dir = Path(out_dir)
    index_path, images_path = out_dir / "index.tsv", out_dir / "images.npy"
    if not index_path.exists():
        raise DataError(f"{index_path}: missing: the image cache in {out_dir} is incomplete; "
                        "rebuild it")
    if not images_path.exists():
        raise DataError(f"{images_path}: missing although {index_path} exists; rebuild the cache")
    entry = integrity.load(out_dir, RULE)
    try:
        images = np.load(images_path, mmap_mode="r")
    except (ValueError, OSError) as e:
        integrity.check_sizes(out_dir, entry, RULE)        # a truncated file: say so, and which rule
        raise integrity.altered(images_path, f"not a readable .npy file ({e})", RULE, out_dir) from None
    index = read_tsv(index_path)
    _check_cache(images, index, images_path, index_path)
    integrity.check(out_dir, entry, {"images.npy": images}, index, RULE)
    return images, index


RULE = "image_cache"
"""The workflow rule that writes the image cache (named in errors about an altered cache)."""


def _check_cache(images: np.ndarray, index: pd.DataFrame, images_path: Path,
                 index_path: Path) -> None:
    """The memmap and the index must describe the same rows, as the builder writes them."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3 \
            or images.shape[1] != images.shape[2]:
        raise DataError(f"{images_path}: expected an (N, S, S, 3) uint8 array, "
                        f"got {images.shape} {images.dtype}")
    if list(index.columns[:2]) != ["row", "image"]:
        raise DataError(f"{index_path}: expected columns row, image; got {list(index.columns)}")
    if len(index) != images.shape[0] or not np.array_equal(index["row"], np.arange(len(index))):
        raise DataError(f"{index_path}: {len(index)} rows (0..N-1 expected) but {images_path} "
                        f"holds {images.shape[0]} images; rebuild the cache")


def iter_batches(images: np.ndarray, rows: np.ndarray,
                 batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (rows, images[rows]) in batches, in the order of `rows`.

    Each batch is read from the memmap into memory on its own, so a dataset larger than RAM can be
    streamed to the GPU.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rows = np.asarray(rows, dtype=np.int64)
    for lo in range(0, len(rows), batch_size):
        batch = rows[lo:lo + batch_size]
        yield batch, np.asarray(images[batch])
