"""The whole demo design on a GPU, in-process (the pipeline's fast path); meant to finish well within 5 minutes
on a lent GPU machine (the same design takes about 100 s in-process on 2 CPU cores, plus ~30 s to
synthesize the data).

    .venv/bin/python bench/gpu.py                         # CUDA: config.yaml + config/demo.yaml, every setting and seed
    .venv/bin/python bench/gpu.py --device cpu --quick    # the same code on the CPU at a tiny size (tests)

Steps, each timed: synthetic AADB + EVA releases -> extract -> parse -> split -> normalize (untimed
preparation), then the design: image cache (CPU, decoder threads) -> feature cache (the device, bf16
autocast on CUDA as the package does) -> for every dataset, setting and seed: stage 1 on pooled
features, test predictions, stage 2 on prefix activations, test predictions, SRCC.

Prints images/s of the caching passes, training samples/s of each stage, the time of the whole design,
the overall-score SRCC of the multi-task models and the peak GPU memory. `--device cpu` hides every GPU
(CUDA_VISIBLE_DEVICES="") before torch is imported, so the run is a CPU run even on a GPU machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--quick", action="store_true", help="a few dozen 64 px images, one epoch per stage")
    p.add_argument("--design", default=None, help="design name in bench/design.py (default: demo, --quick: quick)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads: torch and image decoding (default: all)")
    p.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = p.parse_args(argv)
    args.design = args.design or ("quick" if args.quick else "demo")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch initialises CUDA
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TQDM_DISABLE", "1")
    sys.path.insert(0, str(Path(__file__).resolve().parent))

    import torch

    import design
    from common import machine, print_table, usable_cores

    threads = args.threads or usable_cores()
    torch.set_num_threads(threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --device cpu (and --quick for a tiny run)", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    info = machine(threads)
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else "none"
    print(f"device {device} ({gpu}); CPU {info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
          f"{threads} threads", flush=True)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="aesthetic-gpu-bench-"))
    try:
        t0 = time.perf_counter()
        if device.type == "cuda":
            torch.zeros(1, device=device)  # CUDA context, outside the timed design
            torch.cuda.reset_peak_memory_stats()
        init = time.perf_counter() - t0
        cfg, _ = design.load_design(args.design, work)
        t0 = time.perf_counter()
        data = design.prepare_data(cfg, work / "data")
        prep = time.perf_counter() - t0
        t0 = time.perf_counter()
        run = design.fast_path(cfg, data, work / "fast", threads=threads, device=device)
        whole = time.perf_counter() - t0
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)

    s = design.design_summary(cfg)
    rows = [["CUDA init (untimed)", f"{init:.2f}", "", ""]] if device.type == "cuda" else []
    rows.append(["data preparation (untimed)", f"{prep:.2f}", "", ""])
    # each stage phase includes its test predictions on every dataset (and stage 1 building the model)
    units = {"image_cache": "images/s", "feature_cache": "images/s", "train_stage1": "train samples/s",
             "train_stage2": "train samples/s"}
    for phase in units:
        rate = run.rate(phase) if run.counts.get(phase) else float("nan")
        rows.append([phase, f"{run.seconds.get(phase, 0.0):.2f}", f"{rate:.1f}" if rate == rate else "", units[phase]])
    rows.append(["whole design", f"{whole:.2f}", "", ""])
    print_table(f"{args.design} design on {device} ({gpu}): {sum(s['models'].values())} models "
                f"({', '.join(f'{k} {v}' for k, v in s['models'].items())}), {s['backbone']} {s['size']} px, "
                f"batch {s['batch']}", ["phase", "seconds", "rate", "unit"], rows)
    overall = []
    for ds, dcfg in cfg["datasets"].items():
        for stage in ("stage1", "stage2"):
            vals = [v for (d, st, _seed, stg, t), v in run.srcc.items()
                    if d == ds and st == "multitask" and stg == stage and t == dcfg["overall"]]
            overall.append([ds, stage, f"{statistics.mean(vals):.3f}" if vals else "n/a", len(vals)])
    print_table("multi-task overall-score test SRCC (mean over seeds)", ["dataset", "stage", "SRCC", "seeds"], overall)
    if device.type == "cuda":
        print(f"\npeak GPU memory allocated: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    print(f"\nwhole design: {whole:.1f} s on {device}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
