"""Peak memory of the two cache builders for N and 4N images, each build in a fresh subprocess.

The child reports the kernel's high-water marks (`ru_maxrss`, `VmHWM`: anonymous + file-backed +
shared pages) and, sampled every 2 ms by a thread, the peaks of anonymous memory (`RssAnon`: what the
process allocates itself) and of file-backed pages mapped into it (`RssFile`: here, mostly pages of the
output memmap that were written and are still mapped; the kernel can write them back and drop them).

Child usage (internal): python bench/memory.py image PHOTOS_DIR N OUT_DIR SIZE WORKERS
                        python bench/memory.py feature IMAGE_DIR OUT_DIR BACKBONE WEIGHTS|none BATCH DTYPE THREADS
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import REPO, quiet  # noqa: F401 - common puts src/ on sys.path

_FIELDS = ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM")


def status_kib() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in _FIELDS:
            out[key] = int(line.split()[1])
    return out


class PeakSampler(threading.Thread):
    def __init__(self, interval: float = 0.002) -> None:
        super().__init__(daemon=True)
        self.interval, self.peak, self.stop = interval, {}, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for k, v in status_kib().items():
                self.peak[k] = max(self.peak.get(k, 0), v)
            time.sleep(self.interval)

    def __enter__(self) -> "PeakSampler":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.join()
        for k, v in status_kib().items():
            self.peak[k] = max(self.peak.get(k, 0), v)


def _child(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "image":
        import pandas as pd

        from aesthetic_mtl.image_cache import build_image_cache

        photos, n, out, size, workers = Path(argv[1]), int(argv[2]), Path(argv[3]), int(argv[4]), int(argv[5])
        paths = sorted(photos.glob("*.jpg"))[:n]
        table = pd.DataFrame({"image": [p.name for p in paths], "path": [str(p) for p in paths]})
        build = lambda: build_image_cache(table, out, size, workers=workers, log=quiet, progress=False)  # noqa: E731
    elif kind == "feature":
        import torch  # noqa: F401 - imported before the baseline, as in the feature_cache job

        from aesthetic_mtl.feature_cache import build_feature_cache

        image_dir, out, backbone, weights = Path(argv[1]), Path(argv[2]), argv[3], argv[4]
        batch, dtype, threads = int(argv[5]), argv[6], int(argv[7])
        build = lambda: build_feature_cache(image_dir, out, backbone, None if weights == "none" else Path(weights),  # noqa: E731
                                            batch_size=batch, dtype=dtype, threads=threads, log=quiet)
    else:
        raise SystemExit(f"unknown child kind {kind!r}")
    baseline = status_kib()
    t0 = time.perf_counter()
    with PeakSampler() as sampler:
        build()
    seconds = time.perf_counter() - t0
    final = status_kib()
    print(json.dumps({"baseline": baseline, "peak_sampled": sampler.peak, "final": final, "seconds": seconds,
                      "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def measure(args: list[str], env: dict | None = None) -> dict:
    """Run one build in a fresh interpreter (extra environment `env`) and return its memory report."""
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *map(str, args)],
                          capture_output=True, text=True, env={**_env(), **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"memory child {args[0]} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _env() -> dict:
    import os

    env = dict(os.environ)
    env["TQDM_DISABLE"] = "1"
    return env


def summarize(report: dict) -> dict:
    """MiB figures of one child report."""
    mib = lambda kib: kib / 1024  # noqa: E731
    return {"vmhwm": mib(report["peak_sampled"].get("VmHWM", report["final"]["VmHWM"])),
            "ru_maxrss": mib(report["ru_maxrss_kib"]),
            "baseline": mib(report["baseline"]["VmRSS"]),
            "peak_anon": mib(report["peak_sampled"].get("RssAnon", 0)),
            "peak_file": mib(report["peak_sampled"].get("RssFile", 0)),
            "growth_anon": mib(report["peak_sampled"].get("RssAnon", 0) - report["baseline"].get("RssAnon", 0)),
            "seconds": report["seconds"]}


if __name__ == "__main__":
    _child(sys.argv[1:])
