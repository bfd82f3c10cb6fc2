"""`make bench`: the pipeline's fast path against a direct implementation of the paper's procedure.

    .venv/bin/python bench/run.py                           # design + snakemake, writes bench/results.md
    .venv/bin/python bench/run.py --only design             # one benchmark (repeatable)
    .venv/bin/python bench/run.py --quick --out /tmp/r.md   # tiny sizes, as tests/test_bench.py runs it

  design     section 1: the whole experiment design in-process, the pipeline's fast path (a) against
             bench/direct.py (b), their SRCC agreement, and a control (c): (a) with its feature cache
             computed from contiguous NCHW input, the memory layout (b) uses
  snakemake  section 1b: the same design through the real `snakemake`, against the in-process run

Sections 6 (float16 vs float32 feature cache, bench/cache_dtype.py), 7 (resize filter,
bench/interpolation.py) and 8 (scoring photos, bench/predict.py) of bench/results.md belong to their scripts;
a run of this script keeps them. Figures are medians of interleaved repeats (a, b, a, b, ...). The exit status is 1 when
the fast path computes something else than the direct port: the control must match the port's SRCC to
1e-6, the fast path itself (channels-last rounding, amplified by training) within 0.01 or two swaps of
near-tied test predictions, whichever is larger.
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

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read by libgomp when torch loads: spinning threads
# slowed shared-CPU runs up to 10x; set before `import torch`

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cache_dtype  # noqa: E402  (their sections of results.md survive a regeneration)
import interpolation  # noqa: E402
import predict  # noqa: E402
from common import (  # noqa: E402
    REPO,
    ShareMeter,
    Timing,
    command_line,
    interleaved,
    machine,
    md_table,
    ratio,
    source_revision,
    usable_cores,
)

BENCHMARKS = ("design", "snakemake")
PHASES = ("image_cache", "feature_cache", "build_model", "train_stage1", "train_stage2", "predict")
WAYS = {"fast": "(a) fast path", "direct": "(b) direct", "fast_nchw": "(c) fast path, NCHW cache"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny design (seconds), for the tests")
    p.add_argument("--only", action="append", choices=BENCHMARKS, help="run only this benchmark (repeatable)")
    p.add_argument("--repeats", type=int, default=None, help="runs of the fast path (default 3; --quick: 1)")
    p.add_argument("--direct-repeats", type=int, default=None, help="runs of the direct port (default: <= 2)")
    p.add_argument("--snakemake-repeats", type=int, default=1, help="runs through snakemake (default 1)")
    p.add_argument("--threads", type=int, default=None, help="torch / decoder threads (default: usable cores)")
    p.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a new temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    p.add_argument("--out", type=Path, default=None, help="markdown report (default: bench/results.md for a "
                                                          "full run; otherwise print only)")
    args = p.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.direct_repeats = args.direct_repeats or min(args.repeats, 2)
    args.threads = args.threads or usable_cores()
    args.selected = tuple(args.only or (("design",) if args.quick else BENCHMARKS))
    args.design = "quick" if args.quick else "bench"
    if args.out is None and not args.quick and not args.only:
        args.out = REPO / "bench" / "results.md"
    return args


def log(msg: str) -> None:
    print(msg, flush=True)


def _load(share: dict) -> str:
    return f"Other processes used {share['others_cores']:.2f} cores on average meanwhile ({share['wall_s']:.0f} s)."


# --------------------------------------------------------------------------------------------------
# 1. the whole design in-process: fast path vs direct implementation
# --------------------------------------------------------------------------------------------------

def bench_design(args, work: Path) -> dict:
    import design
    import direct

    from aesthetic_mtl.config import settings

    cfg = design.load_design(args.design, work)
    t0 = time.perf_counter()
    data = design.prepare_data(cfg, work / "data")
    prep = time.perf_counter() - t0
    runs: dict[str, list] = {"fast": [], "direct": [], "fast_nchw": []}

    def way(label: str):
        def go(_r):
            if label == "direct":
                run = direct.direct_path(cfg, data, threads=args.threads)
            else:
                run = design.fast_path(cfg, data, work / label, threads=args.threads, nchw=label == "fast_nchw")
            runs[label].append(run)
            return run.total
        return go

    times = interleaved({w: way(w) for w in WAYS}, {"fast": args.repeats, "direct": args.direct_repeats,
                                                    "fast_nchw": 1}, log)
    fast, slow, nchw = runs["fast"][-1], runs["direct"][-1], runs["fast_nchw"][-1]
    diff, where, n = design.max_abs_diff(fast.srcc, slow.srcc)
    n_test = min(int((d.scaled["split"] == "test").sum()) for d in data.values())
    scoring = Timing([design.score(cfg, r) for r in runs["fast"]])  # what the workflow's metrics job adds
    return {"cfg": cfg, "prep_s": prep, "times": times, "speedup": ratio(times["direct"], times["fast"]),
            "phases": {w: {p: Timing([r.seconds[p] for r in rs]) for p in PHASES if p in rs[0].seconds}
                       for w, rs in runs.items()},
            "srcc_diff": diff, "srcc_where": where, "srcc_n": n, "pred_diff": design.prediction_diff(fast.preds, slow.preds),
            "control_srcc": design.max_abs_diff(nchw.srcc, slow.srcc)[0],
            "control_pred": design.prediction_diff(nchw.preds, slow.preds),
            "repeat_diff": {w: design.max_abs_diff(rs[0].srcc, rs[-1].srcc)[0] for w, rs in runs.items()},
            "pixels": direct.pixel_check(data, work / "fast", cfg["images"]["size"],
                                        cfg["images"].get("interpolation", "bicubic_fast")),
            "n_test": n_test, "swap_bound": 12 / (n_test * (n_test + 1)) if n_test > 1 else float("nan"),
            "in_process_all": Timing([r.total + s for r, s in zip(runs["fast"], scoring.values)]),
            "scoring": scoring, "fast_srcc": fast.srcc,
            "images": {ds: d.scaled["split"].value_counts().to_dict() for ds, d in data.items()},
            "models": {ds: len(settings(cfg, ds)) * len(cfg["training"]["seeds"]) for ds in data}}


def render_design(d: dict, args) -> str:
    cfg, c = d["cfg"], d["speedup"]
    tolerance = max(0.01, 2 * d["swap_bound"])
    images = "; ".join(f"{ds} {sum(sp.values())} images ({', '.join(f'{k} {v}' for k, v in sorted(sp.items()))})"
                       for ds, sp in d["images"].items())
    px = d["pixels"]
    phases = [[p] + [d["phases"][w][p].fmt(2) if p in d["phases"][w] else "-" for w in WAYS] for p in PHASES]
    phases.append(["**total**"] + [d["times"][w].fmt(2) for w in WAYS])
    checks = [
        ["speed-up (b) / (a)", f"**{c.fmt(1)}**", ">= 10x: " + ("met" if c.median >= 10 else "**missed**")],
        [f"max abs SRCC (a) vs (b), over {d['srcc_n']} values", f"**{d['srcc_diff']:.2e}** at {d['srcc_where']}",
         f"<= 0.01: {'met' if d['srcc_diff'] <= 0.01 else '**missed**'}; exit status 1 above {tolerance:.4f}"],
        ["max abs SRCC (c) vs (b)", f"{d['control_srcc']:.1e}", "<= 1e-6 (else exit status 1)"],
        ["max abs test prediction (a) vs (b); (c) vs (b)", f"{d['pred_diff']:.1e}; {d['control_pred']:.1e}", ""],
        ["decoded pixels, (b) vs the image cache", f"{px['differing']} of {px['images']} images differ "
                                                  f"(max {px['max_abs']} grey levels)", "identical"],
        ["max abs SRCC, first vs last repeat of (a); of (b)",
         f"{d['repeat_diff']['fast']:.1e}; {d['repeat_diff']['direct']:.1e}", "deterministic"],
    ]
    t = cfg["training"]
    return f"""## 1. The whole experiment design, in-process: fast path vs direct implementation

{_load(d['share'])}

Design `{args.design}` (`bench/design.py`: config.yaml + config/demo.yaml, fewer images): synthetic {images};
{cfg['backbone']['name']} ({cfg['backbone']['weights']} weights), {cfg['images']['size']} px, batch {t['batch_size']},
stage 1 {t['stage1']['epochs']} epochs, stage 2 {t['stage2']['epochs']} epochs, seeds {t['seeds']}; models per run:
{', '.join(f'{ds} {n}' for ds, n in d['models'].items())}, both stages, test SRCC of every target after each.
(a) the package's functions in one process, as the workflow's jobs call them (image cache -> feature cache
({cfg['backbone'].get('cache_dtype')}) -> `train.train_and_predict` per setting and seed); (b) `bench/direct.py`, a
plain PyTorch port sharing no training, caching or decoding code with the package (each JPEG decoded
whenever used, the whole network every step); (c) (a) with its feature cache computed from contiguous NCHW
input, the layout (b) uses. All start from the same extracted JPEGs and tables ({d['prep_s']:.1f} s, untimed).

{md_table(["phase (s)", *WAYS.values()], phases)}

{md_table(["check", "result", "goal"], checks)}

(a) and (b) differ only by the rounding of oneDNN's channels-last and NCHW kernels, which the control (c)
removes; training amplifies it, and SRCC moves only where it reorders nearly tied predictions: one swap
moves it by at most 12 / (n (n + 1)) = {d['swap_bound']:.4f} with n = {d['n_test']} test images."""


# --------------------------------------------------------------------------------------------------
# 1b. the same design through the real snakemake
# --------------------------------------------------------------------------------------------------

def bench_snakemake(args, work: Path, in_process: dict | None) -> dict:
    import design

    wf = design.DesignWorkflow(work, args.design, args.threads)
    prep = wf.prepare()
    jobs = wf.jobs()
    times = Timing()
    for r in range(args.snakemake_repeats):
        times.add(wf.run_design())
        log(f"  [snakemake] repeat {r + 1}/{args.snakemake_repeats}: {times.values[-1]:.1f} s")
    out = {"command": wf.command("results/metrics.tsv"), "prep_s": prep, "times": times, "jobs": jobs}
    if in_process:
        out["srcc"] = design.max_abs_diff(wf.srcc(), in_process["fast_srcc"])
        out["slowdown"] = ratio(times, in_process["in_process_all"])
        out["vs_direct"] = ratio(in_process["times"]["direct"], times)
    return out


def render_snakemake(sm: dict, d: dict | None) -> str:
    rows = [[f"`{sm['command']}` ({sm['jobs']} jobs)", sm["times"].fmt(1)]]
    if d:
        diff, _, n = sm["srcc"]
        rows += [[f"in-process: section 1's fast path + the metrics table ({d['scoring'].median:.1f} s of it)",
                  d["in_process_all"].fmt(1)],
                 ["**snakemake / in-process** (goal <= 1.5x)", f"**{sm['slowdown'].fmt(2)}**"],
                 ["direct (in-process) / snakemake", sm["vs_direct"].fmt(2)],
                 [f"max abs own-dataset test SRCC, snakemake vs in-process, over {n} values", f"{diff:.1e}"]]
    return f"""## 1b. The same design through the real `snakemake`

{_load(sm['share'])}

In a copy of the repository, with the design of section 1 as a config overlay; data preparation and the
weights copy untimed ({sm['prep_s']:.0f} s); each timed run deletes every later output and rebuilds the image
and feature caches, trains every model (one job per dataset and seed), predicts and writes the metrics table.
The difference to the in-process run is the workflow's cost: snakemake's start-up and DAG, and a new
Python process with its imports per job.

{md_table(["run", "wall s"], rows)}"""


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------

def render(results: dict, info: dict, share: dict, started: datetime) -> str:
    load = [" / ".join(f"{x:.1f}" for x in share[k]) for k in ("load_start", "load_end")]
    machine_rows = [["CPU", f"{info['cpu']} ({info['flags']})"],
                    ["cores", f"{info['cores']} usable ({info['logical_cpus']} logical CPUs), {info['memory_gib']} GiB"],
                    ["software", f"Python {info['python']}, torch {info['torch']}, numpy {info['numpy']}, "
                                 f"Pillow {info['pillow']}, snakemake {info['snakemake']}"],
                    ["torch threads", f"{info['torch_threads']}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}"],
                    ["GPU", f"none used (CUDA available: {info['cuda']})"], ["platform", info["platform"]],
                    ["pipeline measured", f"src/, workflow/ and config of commit {source_revision()}"]]
    parts = [f"""# Benchmarks: the pipeline's fast path against a direct implementation

Written by `bench/run.py` on {started.strftime('%Y-%m-%d %H:%M UTC')} in {share['wall_s'] / 60:.1f} min (`make bench` runs
`.venv/bin/python bench/run.py`); exact command, from the repository root:

```
{command_line()}
```

Figures are the median of repeated runs with (min-max, n = runs); ratios are the ratio of the medians with
the extreme ratios in brackets. Sections 2-5 of earlier versions (image decode, backbone GFLOP/s, memory of
the cache builders, OpenMP waiting) were cut: nothing cites them; sections 1, 1b and 6 keep their numbers.

{md_table(["machine", ""], machine_rows)}

Other processes used {share['others_cores']:.2f} cores on average during the run (load average {load[0]} at the
start, {load[1]} at the end)."""]
    if "design" in results:
        parts.append(render_design(results["design"], results["args"]))
    if "snakemake" in results:
        parts.append(render_snakemake(results["snakemake"], results.get("design")))
    parts.append("""## Reproduce

```
make bench                                        # = .venv/bin/python bench/run.py, writes this file
.venv/bin/python bench/run.py --only design       # one benchmark; --repeats N, --direct-repeats N
.venv/bin/python bench/run.py --quick --out /tmp/r.md   # tiny sizes, as tests/test_bench.py runs it
PYTHONPATH=src nice -n 10 python bench/cache_dtype.py --write   # section 6 (about 15 min on one core)
PYTHONPATH=src nice -n 10 python bench/interpolation.py --write # section 7 (about 5 min on one core)
.venv/bin/python bench/predict.py --write             # section 8 (about 3 min; make bench runs it)
.venv/bin/python bench/gpu.py                     # the paper grid on a GPU: bench/gpu-results.md
```""")
    return "\n\n".join(parts) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="aesthetic-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    meter, info, started = ShareMeter(), machine(args.threads), datetime.now(timezone.utc)
    log(f"benchmarks {', '.join(args.selected)} (design {args.design}, {args.repeats} repeats, {args.threads} "
        f"threads) in {work}\nmachine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}")
    results: dict = {"args": args}
    try:
        for name in args.selected:
            log(f"\n-- {name}")
            bench_meter = ShareMeter()
            if name == "design":
                results[name] = bench_design(args, work / "design")
            else:
                results[name] = bench_snakemake(args, work / "snakemake", results.get("design"))
            results[name]["share"] = bench_meter.report()
            log((render_design(results[name], args) if name == "design" else
                 render_snakemake(results[name], results.get("design"))))
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    share = meter.report()
    if args.out:
        own = (cache_dtype.SECTION, interpolation.SECTION, predict.SECTION)  # measured by their own scripts: kept
        kept = [(section, section.read(args.out)) for section in own]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(render(results, info, share, started))
        for section, text in kept:
            if text:
                section.write(text, args.out)
        log(f"\nwrote {args.out}")
    log(f"\ntotal {share['wall_s']:.0f} s; other processes used {share['others_cores']:.2f} cores on average")
    return 1 if "design" in results and disagree(results["design"]) else 0


def disagree(d: dict) -> bool:
    """Whether the fast path computes something else than the direct port (then exit 1).

    The control (the fast path with the port's NCHW memory layout) must match the port exactly; the
    fast path itself, whose channels-last rounding training amplifies, within 0.01 or two swaps of
    nearly tied test predictions (12 / (n (n + 1)) each), whichever is larger.
    """
    control, tolerance = d["control_srcc"], max(0.01, 2 * d["swap_bound"])
    if not control <= 1e-6:
        log(f"ERROR: the NCHW control and the direct implementation disagree: SRCC differs by {control:.2e}")
        return True
    if not d["srcc_diff"] <= tolerance:
        log(f"ERROR: fast path and direct implementation disagree: SRCC differs by {d['srcc_diff']:.4f} at "
            f"{d['srcc_where']} (> {tolerance:.4f})")
        return True
    return False


if __name__ == "__main__":
    sys.exit(main())
