"""Benchmarks of the pipeline's fast path against a direct implementation (`make bench`).

    .venv/bin/python bench/run.py                      # everything, writes bench/results.md
    .venv/bin/python bench/run.py --only design        # one benchmark (repeatable: --only a --only b)
    .venv/bin/python bench/run.py --quick --out /tmp/r.md   # tiny sizes, as the tests run it

Benchmarks (see bench/results.md for what each measures and the figures):
  design     whole experiment design in-process: the pipeline's fast path vs bench/direct.py, SRCC agreement,
             and the fast path under CPU bf16 autocast
  snakemake  the same design through the real `snakemake` (per-job process overhead included)
  decode     image decode+resize: image_cache.build_image_cache vs Image.open().convert().resize()
  backbone   feature-cache forward pass images/s and GFLOP/s vs a matmul peak, fp32 and CPU bf16 autocast
  memory     peak RSS of the image and feature cache builders for N and 4N images (subprocesses)
  threads    OpenMP waiting policy (libgomp default vs PASSIVE vs 1 thread) on the quick design
  bf16       on request only: the demo-size design in-process with CPU bf16 autocast vs fp32

Every figure is the median of `--repeats` runs with min and max; variants are interleaved (a, b, a, b)
so that load from other processes hits them alike. Without --out, a full run (no --quick, no --only)
writes bench/results.md; other runs only print unless --out is given. The exit status is 1 when the fast
path computes something else than the direct implementation: its NCHW control must match the direct
port's SRCC to 1e-6, and the fast path itself (channels-last rounding, amplified by training) must stay
within two swaps of near-tied test predictions (at least 0.01).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # the package's progress bars would interleave with the tables

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cache_dtype  # noqa: E402  (its section of results.md survives a regeneration)
from common import (REPO, ShareMeter, Timing, command_line, interleaved, machine,  # noqa: E402
                    print_table, ratio, usable_cores)

ALL = ("design", "snakemake", "decode", "backbone", "bf16", "memory", "threads")
FULL_DEFAULT = ("design", "snakemake", "decode", "backbone", "memory", "threads")  # bf16 (demo size): on request
QUICK_DEFAULT = ("design", "decode", "backbone", "memory")  # snakemake, threads: on request (slow tests)

SIZES = {  # full / quick
    "design": {"full": "bench", "quick": "quick"},
    "bf16": {"full": "demo", "quick": "quick"},
    "decode": {"full": {"n": 128, "size": 224}, "quick": {"n": 4, "size": 64}},
    "backbone": {"full": {"size": 224, "batch": 16, "batches": 5, "matmul_n": 4096,
                          "backbones": ["vgg16", "efficientnet_lite0"]},
                 "quick": {"size": 64, "batch": 2, "batches": 1, "matmul_n": 256,
                           "backbones": ["efficientnet_lite0"]}},
    "memory": {"full": {"image_n": [32, 128], "size": 224, "feature_n": [32, 128], "backbone": "vgg16",
                        "weights": "none", "batch": 16, "dtype": "float16"},
               "quick": {"image_n": [2, 8], "size": 64, "feature_n": [2, 8], "backbone": "efficientnet_lite0",
                         "weights": "imagenet", "batch": 2, "dtype": "float16"}},
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds per benchmark), for the tests")
    p.add_argument("--only", action="append", choices=ALL, metavar="NAME",
                   help=f"run only this benchmark (repeatable); one of {', '.join(ALL)}")
    p.add_argument("--repeats", type=int, default=None, help="runs per measurement (default 3; --quick: 1)")
    p.add_argument("--direct-repeats", type=int, default=None,
                   help="runs of the slow direct implementation (default: min(repeats, 2))")
    p.add_argument("--snakemake-repeats", type=int, default=1,
                   help="runs of the snakemake benchmark (default 1: about 2-3 minutes each on 2 cores)")
    p.add_argument("--omp-wait-policy", default=None, choices=("PASSIVE", "ACTIVE", "default"),
                   help="OMP_WAIT_POLICY for torch (default: the environment's, else PASSIVE; see results.md, "
                        "benchmark 5); 'default' unsets it")
    p.add_argument("--child-fast", default=None, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=None, help="torch / decoder threads (default: usable cores)")
    p.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a new temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    p.add_argument("--out", type=Path, default=None, help="markdown report (default: bench/results.md for a full run)")
    args = p.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.direct_repeats = args.direct_repeats or min(args.repeats, 2)
    args.threads = args.threads or usable_cores()
    args.selected = tuple(args.only) if args.only else (QUICK_DEFAULT if args.quick else FULL_DEFAULT)
    if args.omp_wait_policy is None:
        args.omp_wait_policy = os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
    if args.omp_wait_policy == "default":
        os.environ.pop("OMP_WAIT_POLICY", None)
    else:  # read by libgomp when torch loads it: set before `import torch`
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
    if args.out is None and not args.quick and not args.only:
        args.out = REPO / "bench" / "results.md"
    return args


def log(msg: str) -> None:
    print(msg, flush=True)


def mode(args) -> str:
    return "quick" if args.quick else "full"


# --------------------------------------------------------------------------------------------------
# 1. the whole design: fast path vs direct implementation (and the real snakemake)
# --------------------------------------------------------------------------------------------------

def bench_design(args, work: Path) -> dict:
    import design
    import direct

    name = SIZES["design"][mode(args)]
    cfg, _ = design.load_design(name, work)
    t0 = time.perf_counter()
    data = design.prepare_data(cfg, work / "data")
    prep = time.perf_counter() - t0
    runs: dict[str, list] = {"fast": [], "fast_bf16": [], "direct": []}

    def fast(label: str, bf16: bool):
        def go(_r):
            run = design.fast_path(cfg, data, work / label, threads=args.threads, bf16_cpu=bf16)
            runs[label].append(run)
            return run.total
        return go

    def slow(_r):
        run = direct.direct_path(cfg, data, threads=args.threads)
        runs["direct"].append(run)
        return run.total

    counts = {"fast": args.repeats, "fast_bf16": args.repeats, "direct": args.direct_repeats}
    times = interleaved({"fast": fast("fast", False), "direct": slow, "fast_bf16": fast("fast_bf16", True)},
                        counts, log)
    diff, where, n = design.max_abs_diff(runs["fast"][-1].srcc, runs["direct"][-1].srcc)
    bdiff, bwhere, bn = design.max_abs_diff(runs["fast"][-1].srcc, runs["fast_bf16"][-1].srcc)
    repro, _, _ = design.max_abs_diff(runs["fast"][0].srcc, runs["fast"][-1].srcc)
    repro_direct, _, _ = design.max_abs_diff(runs["direct"][0].srcc, runs["direct"][-1].srcc)
    pred_diff, pred_rel, pred_where = design.prediction_diff(runs["fast"][-1].preds, runs["direct"][-1].preds)
    # control: the fast path once more with its feature cache computed from contiguous NCHW input, the
    # memory layout the direct port's DataLoader batches have (the package's forward pass runs channels-last)
    t0 = time.perf_counter()
    nchw = design.fast_path(cfg, data, work / "fast_nchw", threads=args.threads, nchw=True)
    runs["fast_nchw"] = [nchw]
    times["fast_nchw"] = Timing([nchw.total])
    feat_abs, feat_rel = design.feature_diff(work / "fast", work / "fast_nchw", cfg)
    ctl_pred, _, _ = design.prediction_diff(nchw.preds, runs["direct"][-1].preds)
    ctl_srcc, ctl_where, _ = design.max_abs_diff(nchw.srcc, runs["direct"][-1].srcc)
    control = {"pred_diff": ctl_pred, "srcc_diff": ctl_srcc, "srcc_where": ctl_where, "feature_abs": feat_abs,
               "feature_rel": feat_rel, "seconds": time.perf_counter() - t0}
    log(f"  [control, NCHW cache] {nchw.total:.3f}: vs direct, predictions {ctl_pred:.1e}, SRCC {ctl_srcc:.1e}; "
        f"pooled features channels-last vs NCHW differ by {feat_abs:.1e}")
    n_test = min(int((d.targets["split"] == "test").sum()) for d in data.values())
    pixels = direct.pixel_check(data, work / "fast", cfg["images"]["size"])
    speedup = ratio(times["direct"], times["fast"])
    scoring = Timing([design.score(cfg, r) for r in runs["fast"]])  # what the workflow's metrics job adds
    out = {"design": name, "summary": design.design_summary(cfg), "prep_s": prep, "times": times,
           "scoring": scoring, "in_process_all": Timing([r.total + s for r, s in zip(runs["fast"], scoring.values)]),
           "speedup": speedup, "srcc_diff": diff, "srcc_where": where, "srcc_n": n, "fast_repeat_diff": repro,
           "direct_repeat_diff": repro_direct, "repeats_fast": len(runs["fast"]), "repeats_direct": len(runs["direct"]),
           "bf16_speedup": ratio(times["fast"], times["fast_bf16"]),
           "pred_diff": pred_diff, "pred_rel": pred_rel, "pred_where": pred_where, "control": control,
           "n_test": n_test,
           "swap_bound": 12 / (n_test * (n_test + 1)) if n_test > 1 else float("nan"),
           "bf16_srcc_diff": bdiff, "bf16_srcc_median": design.median_abs_diff(runs["fast"][-1].srcc,
                                                                                runs["fast_bf16"][-1].srcc), "bf16_srcc_where": bwhere, "bf16_srcc_n": bn, "pixels": pixels,
           "phases": {k: _phases(v) for k, v in runs.items()},
           "rates": {k: {p: v[-1].rate(p) for p in ("feature_cache", "train_stage1", "train_stage2")}
                     for k, v in runs.items()},
           "images": {ds: int(d.labels["image"].nunique()) for ds, d in data.items()},
           "splits": {ds: d.targets["split"].value_counts().to_dict() for ds, d in data.items()},
           "srcc_overall": {k: _overall(cfg, v[-1].srcc) for k, v in runs.items()},
           "fast_srcc": runs["fast"][-1].srcc}
    print_table("1. whole design, in-process: fast path vs direct implementation",
                ["way", "wall s (median, min-max)", "SRCC vs fast path fp32"],
                [["fast path (caches), fp32", times["fast"].fmt(2), f"repeats agree to {repro:.1e}"],
                 ["direct (JPEG every epoch)", times["direct"].fmt(2),
                  f"max |diff| {diff:.2e} over {n}; predictions {pred_diff:.1e}"],
                 ["speed-up direct / fast", speedup.fmt(1, "x"), ""],
                 ["fast path, CPU bf16 autocast", times["fast_bf16"].fmt(2), f"max |diff| {bdiff:.3f} over {bn}"]])
    return out


def _phases(runs: list) -> dict[str, Timing]:
    keys = sorted({k for r in runs for k in r.seconds})
    return {k: Timing([r.seconds.get(k, 0.0) for r in runs]) for k in keys}


def _overall(cfg: dict, srcc: dict) -> dict:
    """Mean over seeds of the overall-score SRCC of the multi-task model, per dataset and stage."""
    import statistics

    out = {}
    for ds, dcfg in cfg["datasets"].items():
        for stage in ("stage1", "stage2"):
            vals = [v for (d, s, _seed, st, t), v in srcc.items() if d == ds and s == "multitask" and st == stage
                    and t == dcfg["overall"]]
            out[f"{ds} {stage}"] = statistics.mean(vals) if vals else float("nan")
    return out


def bench_snakemake(args, work: Path, in_process: dict | None) -> dict:
    import design

    name = SIZES["design"][mode(args)]
    cfg, overlay = design.load_design(name, work)
    sm = design.Snakemake(work, overlay, cfg, args.threads)
    t0 = time.perf_counter()
    sm.prepare()
    prep = time.perf_counter() - t0
    jobs = sm.jobs()
    times = Timing()
    for r in range(args.snakemake_repeats):
        times.add(sm.run())
        log(f"  [snakemake] repeat {r + 1}/{args.snakemake_repeats}: {times.values[-1]:.1f} s")
    srcc = sm.srcc()
    out = {"design": name, "prep_s": prep, "times": times, "jobs": jobs, "cores": args.threads,
           "srcc_rows": len(srcc), "per_job_s": times.median * args.threads / max(jobs, 1)}
    rows = [[f"snakemake --cores {args.threads} results/metrics.tsv ({jobs} jobs)", times.fmt(1), ""]]
    if in_process:
        diff, where, n = design.max_abs_diff(srcc, in_process["fast_srcc"])
        out.update(srcc_diff_fast=diff, srcc_where=where, srcc_n=n,
                   speedup_vs_direct=ratio(in_process["times"]["direct"], times),
                   slowdown_vs_fast=ratio(times, in_process["in_process_all"]))
        rows += [["in-process: fast path + metrics table (the same work)", in_process["in_process_all"].fmt(1), ""],
                 ["speed-up direct (in-process) / snakemake", out["speedup_vs_direct"].fmt(2), ""],
                 ["snakemake / in-process (fast path + metrics)", out["slowdown_vs_fast"].fmt(1),
                  f"SRCC max |diff| vs in-process fast path {diff:.2e} over {n}"]]
    print_table("1b. whole design through snakemake", ["way", "wall s", "SRCC"], rows)
    return out


# --------------------------------------------------------------------------------------------------
# 2. decode
# --------------------------------------------------------------------------------------------------

def bench_decode(args, work: Path) -> dict:
    import decode

    size = SIZES["decode"][mode(args)]
    out = decode.run(work / "decode", size["n"], size["size"], max(args.repeats, 1 if args.quick else 7),
                     args.threads, log)
    r = out["rates"]
    print_table("2. decode + resize of 1600x1200 JPEGs to %d px" % size["size"], ["way", "images/s"],
                [["plain Image.open().convert().resize(), 1 thread", r["plain"].fmt(1)],
                 [f"image_cache.build_image_cache, {args.threads} workers", r["cache"].fmt(1)],
                 ["image_cache.build_image_cache, 1 worker", r["cache_1worker"].fmt(1)],
                 ["speed-up (cache / plain)", out["speedup"].fmt(2, "x")],
                 ["CPU ms per image: plain / cache", f"{out['cpu_ms']['plain'].median:.1f} / "
                  f"{out['cpu_ms']['cache'].median:.1f} = {out['cpu_ratio']:.2f}x less CPU"]])
    return out


# --------------------------------------------------------------------------------------------------
# 3. backbone efficiency and the CPU bf16 verdict
# --------------------------------------------------------------------------------------------------

def _weights(name: str) -> str | None:
    from aesthetic_mtl.backbones import weights_source

    kind, where = weights_source(name)
    return str(where) if kind == "file" else None  # vgg16: no offline weights; speed does not depend on them


def bench_backbone(args, work: Path) -> dict:
    import backbone

    s = SIZES["backbone"][mode(args)]
    out = backbone.run([(b, _weights(b)) for b in s["backbones"]], s["size"], s["batch"], s["batches"],
                       s["matmul_n"], args.repeats, log)
    rows = [[f"matmul {s['matmul_n']}^3 {d}", "", "", out["peaks"][d].fmt(1), "1"] for d in ("fp32", "bf16")]
    rows += [[f"{r['backbone']} {s['size']}px {r['dtype']}", f"{r['gflop_per_image']:.2f}", r["images_per_s"].fmt(2),
              r["gflops"].fmt(1), r["fractions"].fmt(2)] for r in out["rows"]]
    print_table("3. feature-cache forward pass on this CPU", ["what", "GFLOP/img", "images/s", "GFLOP/s", "fraction of peak"],
                rows)
    return out


def bench_bf16(args, work: Path) -> dict:
    """Optional (--only bf16): the demo-size design (demo.yaml: 240/40/80 AADB, 300 EVA, two seeds)."""
    import design

    name = SIZES["bf16"][mode(args)]
    cfg, _ = design.load_design(name, work)
    data = design.prepare_data(cfg, work / "data")
    runs: dict[str, list] = {"fp32": [], "bf16": []}

    def variant(label):
        def go(_r):
            run = design.fast_path(cfg, data, work / f"fast_{label}", threads=args.threads, bf16_cpu=label == "bf16")
            runs[label].append(run)
            return run.total
        return go

    times = interleaved({"fp32": variant("fp32"), "bf16": variant("bf16")}, args.direct_repeats, log)
    diff, where, n = design.max_abs_diff(runs["fp32"][-1].srcc, runs["bf16"][-1].srcc)
    phases = {k: _phases(v) for k, v in runs.items()}
    out = {"design": name, "summary": design.design_summary(cfg), "times": times, "phases": phases,
           "speedup": ratio(times["fp32"], times["bf16"]), "srcc_diff": diff, "srcc_where": where,
           "srcc_n": n, "images": {ds: int(d.labels["image"].nunique()) for ds, d in data.items()},
           "srcc_median": design.median_abs_diff(runs["fp32"][-1].srcc, runs["bf16"][-1].srcc),
           "overall": {k: _overall(cfg, v[-1].srcc) for k, v in runs.items()}}
    print_table(f"3c. {name} design in-process, CPU bf16 autocast vs fp32", ["variant", "wall s", "feature cache s"],
                [["fp32", times["fp32"].fmt(2), phases["fp32"]["feature_cache"].fmt(2)],
                 ["bf16 autocast", times["bf16"].fmt(2), phases["bf16"]["feature_cache"].fmt(2)],
                 ["speed-up", out["speedup"].fmt(2), f"SRCC max |diff| {diff:.4f} over {n}"]])
    return out


# --------------------------------------------------------------------------------------------------
# 5. OpenMP thread waiting on a shared CPU
# --------------------------------------------------------------------------------------------------

THREAD_VARIANTS = {  # label: (OMP_WAIT_POLICY or None for unset, torch threads or None for --threads)
    "default policy": (None, None),
    "PASSIVE": ("PASSIVE", None),
    "1 thread": (None, 1),
}


def bench_threads(args, work: Path) -> dict:
    """The quick design's fast path in fresh processes: libgomp's default spin-waiting vs PASSIVE, vs 1 thread."""
    import json
    import subprocess

    def child(label):
        policy, threads = THREAD_VARIANTS[label]
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child-fast", "quick", "--workdir", str(work / "threads"),
               "--threads", str(threads or args.threads), "--omp-wait-policy", policy or "default"]

        def go(_r):
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"child failed:\n{proc.stderr[-4000:]}")
            return json.loads(proc.stdout.strip().splitlines()[-1])["total"]
        return go

    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child-fast", "quick", "--workdir",
                    str(work / "threads"), "--threads", "1"], check=True, capture_output=True)  # data, warm caches
    times = interleaved({label: child(label) for label in THREAD_VARIANTS}, args.repeats, log)
    out = {"times": times, "threads": args.threads,
           "default_vs_passive": ratio(times["default policy"], times["PASSIVE"])}
    print_table("5. quick design fast path, OpenMP waiting policy", ["variant", "wall s"],
                [[k, v.fmt(2)] for k, v in times.items()] +
                [["default / PASSIVE", out["default_vs_passive"].fmt(1)]])
    return out


def child_fast(args) -> int:
    """Internal: prepare a design once and print the fast path's total seconds as JSON."""
    import json

    import design
    import torch

    torch.set_num_threads(args.threads)
    cfg, _ = design.load_design(args.child_fast, args.workdir)
    data = design.prepare_data(cfg, args.workdir / "data")
    run = design.fast_path(cfg, data, args.workdir / f"fast_{os.getpid()}", threads=args.threads)
    shutil.rmtree(args.workdir / f"fast_{os.getpid()}", ignore_errors=True)
    print(json.dumps({"total": run.total, "seconds": run.seconds}))
    return 0


# --------------------------------------------------------------------------------------------------
# 4. memory
# --------------------------------------------------------------------------------------------------

def bench_memory(args, work: Path) -> dict:
    import decode
    import memory

    s = SIZES["memory"][mode(args)]
    photos = work / "decode" / "photos"
    decode.make_jpegs(photos, max(s["image_n"] + s["feature_n"]))
    weights = _weights(s["backbone"]) if s["weights"] == "imagenet" else None
    out = {"settings": s, "image": {}, "feature": {}}
    for n in s["image_n"]:
        rep = memory.measure(["image", photos, n, work / "memory" / f"images_{n}", s["size"], args.threads])
        out["image"][n] = memory.summarize(rep)
    out["feature_fixed_mmap"] = {}
    for n in s["feature_n"]:
        image_dir = work / "memory" / f"images_{n}"
        if not (image_dir / "index.tsv").exists():
            memory.measure(["image", photos, n, image_dir, s["size"], args.threads])
        job = ["feature", image_dir, work / "memory" / f"features_{n}", s["backbone"], weights or "none",
               s["batch"], s["dtype"], args.threads]
        out["feature"][n] = memory.summarize(memory.measure(job))
        # glibc with a fixed mmap threshold: large buffers always come from mmap and go back on free
        out["feature_fixed_mmap"][n] = memory.summarize(memory.measure(job, {"MALLOC_MMAP_THRESHOLD_": "131072"}))
    rows = []
    for kind in ("image", "feature", "feature_fixed_mmap"):
        for n, m in out[kind].items():
            rows.append([f"{kind} cache, {n} images", f"{m['vmhwm']:.0f}", f"{m['peak_anon']:.0f}",
                         f"{m['peak_file']:.0f}", f"{m['baseline']:.0f}", f"{m['seconds']:.1f}"])
    print_table("4. peak memory of the cache builders (MiB)",
                ["build", "VmHWM", "peak RssAnon", "peak RssFile", "RSS before build", "s"], rows)
    return out


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child_fast:
        return child_fast(args)
    import torch

    torch.set_num_threads(args.threads)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="aesthetic-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    meter = ShareMeter()
    info = machine(args.threads)
    log(f"benchmarks {', '.join(args.selected)} ({mode(args)}, {args.repeats} repeats, {args.threads} threads) in {work}")
    log(f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}")
    results: dict = {}
    started = datetime.now(timezone.utc)
    try:
        for name in args.selected:
            t0 = time.perf_counter()
            bench_meter = ShareMeter()
            log(f"\n-- {name}")
            if name == "design":
                results[name] = bench_design(args, work / "design")
            elif name == "snakemake":
                results[name] = bench_snakemake(args, work / "snakemake", results.get("design"))
            elif name == "decode":
                results[name] = bench_decode(args, work)
            elif name == "backbone":
                results[name] = bench_backbone(args, work)
            elif name == "bf16":
                results[name] = bench_bf16(args, work / "bf16")
            elif name == "memory":
                results[name] = bench_memory(args, work)
            elif name == "threads":
                results[name] = bench_threads(args, work)
            results[name]["wall_s"] = time.perf_counter() - t0
            results[name]["share"] = bench_meter.report()
            log(f"-- {name} took {results[name]['wall_s']:.0f} s")
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    share = meter.report()
    old_section = cache_dtype.read_section(args.out) if args.out else None
    if args.out:
        import report

        args.out.parent.mkdir(parents=True, exist_ok=True)
        text = report.render(results, info, share, command_line(), started, args, SIZES)
        args.out.write_text(text)
        if args.out.resolve() == (REPO / "bench" / "results.md").resolve() and old_section:
            cache_dtype.write_section(old_section, args.out)   # measured by bench/cache_dtype.py: kept
        log(f"\nwrote {args.out}")
    log(f"\ntotal {share['wall_s']:.0f} s; other processes used {share.get('others_cores', float('nan')):.2f} "
        f"cores on average meanwhile")
    return 1 if "design" in results and disagree(results["design"]) else 0


def disagree(d: dict) -> bool:
    """Whether the fast path computes something else than the direct port (then exit 1).

    The control (the fast path with the port's NCHW memory layout) must match the port exactly; the
    fast path itself, whose channels-last rounding training amplifies, within two swaps of nearly tied
    test predictions (12 / (n (n + 1)) each). The report's goal (<= 0.01) is shown either way.
    """
    control, tolerance = d["control"]["srcc_diff"], max(0.01, 2 * d["swap_bound"])
    if not control <= 1e-6:
        log(f"ERROR: the NCHW control and the direct implementation disagree: SRCC differs by {control:.2e} at "
            f"{d['control']['srcc_where']}")
        return True
    if not d["srcc_diff"] <= tolerance:
        log(f"ERROR: fast path and direct implementation disagree: SRCC differs by {d['srcc_diff']:.4f} at "
            f"{d['srcc_where']} (> {tolerance:.4f}, two swaps of near-ties)")
        return True
    return False


if __name__ == "__main__":
    sys.exit(main())
