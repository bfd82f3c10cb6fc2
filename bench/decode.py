"""Decode + resize throughput: the image cache builder against the plain Pillow one-liner.

Test photos are generated JPEGs of 1600 x 1200 px (a typical AADB original is about this size): a smooth
random colour field with a few shapes and sensor-like noise, quality 90, so they decode like photos
rather than like flat colour.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from common import Timing, interleaved, quiet


def make_jpegs(folder: Path, n: int, width: int = 1600, height: int = 1200, seed: int = 0) -> list[Path]:
    """`n` deterministic photo-like JPEGs; existing files are reused."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"photo_{width}x{height}_{i:04d}.jpg"
        paths.append(path)
        if path.exists():
            continue
        rng = np.random.default_rng([seed, i])
        low = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
        draw = ImageDraw.Draw(low)
        for _ in range(6):
            x, y = rng.integers(0, width), rng.integers(0, height)
            r = int(rng.integers(height // 20, height // 4))
            draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        arr = np.asarray(low, dtype=np.int16) + rng.normal(0, 6, (height, width, 1)).astype(np.int16)
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, quality=90)
    return paths


def plain_decode(paths: list[Path], size: int) -> np.ndarray:
    """What a straightforward loader does: `Image.open(p).convert("RGB").resize((size, size))`, one by one."""
    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, p in enumerate(paths):
        out[i] = np.asarray(Image.open(p).convert("RGB").resize((size, size)))
    return out


def cache_decode(paths: list[Path], out_dir: Path, size: int, workers: int) -> None:
    import pandas as pd

    from aesthetic_mtl.image_cache import build_image_cache

    table = pd.DataFrame({"image": [p.name for p in paths], "path": [str(p) for p in paths]})
    build_image_cache(table, out_dir, size, workers=workers, log=quiet, progress=False)


def run(workdir: Path, n: int, size: int, repeats: int, threads: int, log=print) -> dict:
    t0 = time.perf_counter()
    paths = make_jpegs(workdir / "photos", n)
    log(f"  {n} JPEGs 1600x1200 ready in {time.perf_counter() - t0:.1f} s "
        f"({sum(p.stat().st_size for p in paths) / n / 1e3:.0f} kB each)")
    for p in paths:  # same page-cache state for every variant: all files read once
        p.read_bytes()
    plain_decode(paths[:1], size)  # imports and first-call set-up, outside the timing
    cache_decode(paths[:1], workdir / "warm", size, 1)

    cpu: dict[str, Timing] = {}

    def timed(name, fn):
        cpu[name] = Timing()

        def go(_r: int) -> float:
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            cpu[name].add((time.process_time() - start_cpu) / n * 1e3)  # CPU ms per image, all threads
            return time.perf_counter() - start
        return go

    runs = {
        "plain": timed("plain", lambda: plain_decode(paths, size)),
        "cache": timed("cache", lambda: cache_decode(paths, workdir / "cache", size, threads)),
        "cache_1worker": timed("cache_1worker", lambda: cache_decode(paths, workdir / "cache1", size, 1)),
    }
    times = interleaved(runs, repeats, log)
    rates = {k: Timing([n / v for v in t.values]) for k, t in times.items()}
    speedup = Timing([p / c for p, c in zip(times["plain"].values, times["cache"].values)])
    # how different the pixels are (draft decoding + reducing_gap vs full decode + plain bicubic)
    from aesthetic_mtl.image_cache import open_image_cache

    cached, _ = open_image_cache(workdir / "cache")
    plain = plain_decode(paths[: min(16, n)], size)
    diff = np.abs(plain.astype(np.int16) - cached[: len(plain)].astype(np.int16))
    return {"n": n, "size": size, "workers": threads, "rates": rates, "speedup": speedup, "cpu_ms": cpu,
            "cpu_ratio": cpu["plain"].median / cpu["cache"].median,
            "pixel_mean_abs": float(diff.mean()), "pixel_max_abs": int(diff.max())}
