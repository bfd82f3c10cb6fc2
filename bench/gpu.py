"""`make bench-gpu`: the paper's whole grid at the real datasets' sizes, through `snakemake`, on one GPU.

    .venv/bin/python bench/gpu.py                 # paper scale; writes bench/gpu-results.md
    .venv/bin/python bench/gpu.py --quick --out /tmp/g.md   # a tiny grid on the CPU (tests/test_bench.py)

The grid: synthetic AADB and EVA of the real sizes (8,458 / 500 / 1,000 images, 127 shared by validation
and test; 4,070 images), 224 px, VGG16 with a random trunk (timing does not depend on the weights), every
setting of config.yaml, 3 seeds, both stages, every test prediction, the metrics, tables, figures and
summary, through `snakemake --profile profiles/local --resources gpu=1` in a copy of the repository; then
the training again at `training.models_per_job: 1` (what chunking buys) and with
`backbone.cache_bf16_autocast_cuda` and `training.bf16_autocast_cuda` true (what bf16 autocast changes in SRCC and speed).

From Snakemake's log (job start and end times) and the jobs' logs (fit and prediction seconds per model and
stage, peak GPU memory): wall time per phase, images/s, achieved TFLOP/s against the device's dense bf16
and TF32 peaks (FLOPs counted with `torch.utils.flop_counter` on the model itself), peak GPU memory, the
whole grid's wall time. Synthesizing the data (a real run: downloading it) is timed apart.
"""

from __future__ import annotations

import argparse
import copy
import re
import shutil
import sys
import tempfile
from collections import defaultdict
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    REPO,
    Workflow,
    command_line,
    machine,
    md_table,
    synthetic,
    usable_cores,
)

GRIDS = {
    "paper": {"datasets": synthetic({"n_train": 8458, "n_validation": 500, "n_test": 1000, "overlap": 127, "seed": 11},
                                    {"n_images": 4070, "min_votes": 30, "max_votes": 46, "seed": 12}, image_size=256),
              "images": {"size": 224}, "backbone": {"name": "vgg16", "weights": "none"}},
    "tiny": {"datasets": synthetic({"n_train": 24, "n_validation": 8, "n_test": 12, "overlap": 2, "seed": 5},
                                   {"n_images": 40, "min_votes": 3, "max_votes": 5, "seed": 6}, image_size=96),
             "images": {"size": 64}, "backbone": {"name": "vgg16", "weights": "none"},
             "training": {"batch_size": 8, "seeds": [1], "stage1": {"epochs": 1}, "stage2": {"epochs": 1}},
             "experiment": {"single_attributes": {"AADB": ["score"], "EVA": ["score"]}},
             "evaluation": {"bootstrap": 20}},
}
PEAK_TFLOPS = {  # dense, per GPU: (bf16, TF32), from the vendors' data sheets
    "H200": (989.4, 494.7), "H100": (989.4, 494.7), "A100": (312.0, 156.0), "L40S": (362.1, 183.0),
}
PHASES = {  # phase -> rules (training jobs are train_<dataset>[_<k>])
    "data (synthesize / download, parse, split)": ("obtain_archives", "extract", "parse_labels", "split",
                                                   "scale_labels", "fetch_weights", "label_figure"),
    "decode (image cache)": ("image_cache",),
    "feature cache": ("feature_cache",),
    "training + predictions": ("train_",),
    "metrics": ("metrics",),
    "tables, figures, summary": ("table_", "figure_", "gradcam", "summary"),
}
STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
START = re.compile(r"^(?:local)?rule (\w+):$")
FINISH = re.compile(r"^Finished jobid: \d+ \(Rule: (\w+)\)$")
FIT = re.compile(r"^(stage[12]): trained (\d+) images x (\d+) epochs in ([\d.]+) s; "
                 r"(\d+) test predictions in ([\d.]+) s$", re.M)
PEAK = re.compile(r"peak GPU memory: ([\d.]+) MiB")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the tiny grid (CPU is fine): what the tests run")
    p.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--out", type=Path, default=None,
                   help="Markdown report (default: bench/gpu-results.md for the paper grid; --quick: print only)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    p.add_argument("--skip-chunk-comparison", action="store_true", help="skip the one-model-per-job run")
    p.add_argument("--skip-precision", action="store_true", help="skip the bf16 autocast run")
    return p.parse_args(argv)


# --------------------------------------------------------------------------------------------------
# running the workflow
# --------------------------------------------------------------------------------------------------

def job_spans(log: Path) -> list[tuple[str, datetime, datetime]]:
    """(rule, start, end) of every job in a Snakemake log (1 s resolution)."""
    stamp, started, spans = None, defaultdict(list), []
    for line in log.read_text(errors="replace").splitlines():
        line = line.strip()
        if m := STAMP.match(line):
            stamp = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
        elif (m := START.match(line)) and stamp:
            started[m.group(1)].append(stamp)
        elif (m := FINISH.match(line)) and stamp and started[m.group(1)]:
            spans.append((m.group(1), started[m.group(1)].pop(0), stamp))
    return spans


def phase_times(spans) -> dict[str, tuple[float, int]]:
    """Wall seconds from a phase's first job start to its last job end, and its number of jobs."""
    out = {}
    for phase, prefixes in PHASES.items():
        mine = [(s, e) for rule, s, e in spans if rule.startswith(prefixes) and rule != "all"]
        if mine:
            out[phase] = ((max(e for _, e in mine) - min(s for s, _ in mine)).total_seconds(), len(mine))
    return out


def training_to_metrics(spans) -> float:
    """Wall seconds from the first training job's start to the metrics job's end."""
    starts = [s for rule, s, _ in spans if rule.startswith("train_")]
    ends = [e for rule, _, e in spans if rule == "metrics"]
    return (max(ends) - min(starts)).total_seconds() if starts and ends else float("nan")


def training_log_figures(logs: Path) -> dict:
    """Fit and prediction seconds, images trained and predicted, from every training job's log."""
    fig = {"fit_s": 0.0, "predict_s": 0.0, "trained": {"stage1": 0, "stage2": 0}, "predicted": {"stage1": 0, "stage2": 0}}
    for path in sorted(logs.glob("train/*.log")):
        for stage, n, epochs, fit_s, n_pred, pred_s in FIT.findall(path.read_text(errors="replace")):
            fig["fit_s"] += float(fit_s)
            fig["predict_s"] += float(pred_s)
            fig["trained"][stage] += int(n) * int(epochs)
            fig["predicted"][stage] += int(n_pred)
    return fig


def peak_memory(logs: Path) -> float:
    values = [float(v) for path in logs.rglob("*.log") for v in PEAK.findall(path.read_text(errors="replace"))]
    return max(values) if values else float("nan")


# --------------------------------------------------------------------------------------------------
# arithmetic
# --------------------------------------------------------------------------------------------------

def flops_per_image(backbone: str, size: int, n_outputs: int = 12) -> dict[str, float]:
    """FLOPs per image of the trunk forward (feature cache), the stage-2 layers forward + backward (one
    training step) and forward (one prediction), counted on the model itself."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from aesthetic_mtl.config import load_config
    from aesthetic_mtl.nn.model import build_model
    from aesthetic_mtl.specs import HeadSpec

    head = HeadSpec.from_config(load_config(REPO / "config.yaml")["head"])  # the paper's head
    model = build_model(backbone, [f"t{i}" for i in range(n_outputs)], None, head)
    images = torch.zeros(1, size, size, 3, dtype=torch.uint8)
    with torch.no_grad(), FlopCounterMode(display=False) as trunk:
        prefix = model.prefix(images)
        model.pooled_from_prefix(prefix)
    model.set_stage("stage2")
    with FlopCounterMode(display=False) as step:
        model.forward_from_prefix(prefix).sum().backward()
    with torch.no_grad(), FlopCounterMode(display=False) as pred:
        model.forward_from_prefix(prefix)
    return {"trunk": trunk.get_total_flops(), "train_step": step.get_total_flops(),
            "predict": pred.get_total_flops()}


def device_info() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"name": "CPU (no CUDA device)", "peaks": None}
    name = torch.cuda.get_device_name(0)
    peaks = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    return {"name": name, "peaks": peaks}


def tflops(flop: float, seconds: float, peaks) -> str:
    if not seconds or seconds != seconds:
        return ""
    achieved = flop / seconds / 1e12
    if peaks is None:
        return f"{achieved:.3g}"
    return f"{achieved:.3g} ({100 * achieved / peaks[0]:.1f}% of bf16, {100 * achieved / peaks[1]:.1f}% of TF32)"


# --------------------------------------------------------------------------------------------------
# the benchmark
# --------------------------------------------------------------------------------------------------

def run_grid(args, work: Path) -> dict:
    from aesthetic_mtl.files import read_tsv

    name = "tiny" if args.quick else "paper"
    cfg = copy.deepcopy(GRIDS[name])
    wf = Workflow(work / "repo", cfg, ["--profile", "profiles/local", "--resources", "gpu=1"])
    repo, res = wf.repo, {"grid": name, "config": cfg}
    res["prepare_s"] = wf.run(*[f"results/{ds}/scaled_labels.tsv" for ds in cfg["datasets"]], log=work / "prepare.log")
    res["whole_s"] = wf.run(log=work / "grid.log")
    res["spans"] = job_spans(work / "grid.log")
    res["phases"] = phase_times(res["spans"])
    res["train_to_metrics_s"] = training_to_metrics(res["spans"])
    res["training"] = training_log_figures(repo / "logs")
    res["peak_mib"] = peak_memory(repo / "logs")
    res["jobs"] = len(res["spans"])
    splits = {ds: read_tsv(repo / "results" / ds / "scaled_labels.tsv")["split"] for ds in cfg["datasets"]}
    res["images"] = {ds: len(split) for ds, split in splits.items()}
    res["test_images"] = {ds: int((split == "test").sum()) for ds, split in splits.items()}
    res["metrics"] = (repo / "results" / "metrics.tsv").read_text()
    if not args.skip_chunk_comparison:  # the same training, one process per model
        for sub in ("models", "predictions"):
            shutil.rmtree(repo / "results" / sub)
        (repo / "results" / "metrics.tsv").unlink()
        wf.configure({**cfg, "training": {**cfg.get("training", {}), "models_per_job": 1}})
        res["per_model_s"] = wf.run("results/metrics.tsv", log=work / "per_model.log")
        spans = job_spans(work / "per_model.log")
        res["per_model_phases"] = phase_times(spans)
        res["per_model_train_to_metrics_s"] = training_to_metrics(spans)
        res["per_model_jobs"] = sum(1 for rule, _, _ in spans if rule.startswith("train_"))
        res["per_model_same_metrics"] = (repo / "results" / "metrics.tsv").read_text() == res["metrics"]
    if not args.skip_precision:  # feature cache, training and predictions again under bf16 autocast
        wf.configure({**cfg, "backbone": {**cfg["backbone"], "cache_bf16_autocast_cuda": True},
                      "training": {**cfg.get("training", {}), "bf16_autocast_cuda": True}})
        wf.run("results/metrics.tsv", log=work / "bf16.log")
        res["bf16_phases"] = phase_times(job_spans(work / "bf16.log"))
        res["bf16_diff"] = srcc_differences(res["metrics"], (repo / "results" / "metrics.tsv").read_text())
    return res


def srcc_differences(fp32: str, bf16: str) -> dict:
    """|SRCC(bf16) - SRCC(fp32)| over every (model, stage, test set, target): largest, mean, count."""
    import io

    import pandas as pd

    keys = ["dataset", "train_dataset", "backbone", "setting", "stage", "seed", "target"]
    a, b = (pd.read_csv(io.StringIO(t), sep="\t") for t in (fp32, bf16))
    a, b = (m[m["metric"] == "srcc"].set_index(keys)["value"] for m in (a, b))
    diff = (a - b.reindex(a.index)).abs().dropna()
    if diff.empty:
        return {"max": float("nan"), "mean": float("nan"), "n": 0, "where": ""}
    return {"max": float(diff.max()), "mean": float(diff.mean()), "n": int(len(diff)), "where": ", ".join(str(k) for k in diff.idxmax())}


def report(args, res: dict, threads: int) -> str:
    cfg, dev = res["config"], device_info()
    size, backbone = cfg["images"]["size"], cfg["backbone"]["name"]
    flop = flops_per_image(backbone, size)
    n_images = sum(res["images"].values())
    tr = res["training"]
    train_flop = tr["trained"]["stage2"] * flop["train_step"]
    pred_flop = tr["predicted"]["stage2"] * flop["predict"]
    rows = [["synthesize the data (a real run: download), parse, split", f"{res['prepare_s']:.1f}", "", ""]]
    rates = {"decode (image cache)": (n_images, "images/s"), "feature cache": (n_images, "images/s")}
    for phase, (seconds, jobs) in res["phases"].items():
        if phase.startswith("data"):
            continue
        rate, tf = "", ""
        if phase in rates:
            rate = f"{rates[phase][0] / seconds:.0f} {rates[phase][1]}" if seconds else ""
        if phase == "feature cache":
            tf = tflops(n_images * flop["trunk"], seconds, dev["peaks"])
        rows.append([f"{phase} ({jobs} jobs)", f"{seconds:.0f}", rate, tf])
    rows.append(["  of which stage-1 + stage-2 fitting (sum over jobs)", f"{tr['fit_s']:.1f}",
                 f"{(tr['trained']['stage1'] + tr['trained']['stage2']) / tr['fit_s']:.0f} train images/s"
                 if tr["fit_s"] else "", tflops(train_flop, tr["fit_s"], dev["peaks"])])
    rows.append(["  of which test predictions (sum over jobs)", f"{tr['predict_s']:.1f}",
                 f"{(tr['predicted']['stage1'] + tr['predicted']['stage2']) / tr['predict_s']:.0f} images/s"
                 if tr["predict_s"] else "", tflops(pred_flop, tr["predict_s"], dev["peaks"])])
    rows.append([f"**whole grid** ({res['jobs']} jobs, `snakemake --profile profiles/local`)",
                 f"**{res['whole_s']:.0f}**", "", ""])
    info = machine(threads)
    sizes = ", ".join(f"{k} {v} images" for k, v in res["images"].items())
    lines = [
        f"# GPU benchmark: the paper grid through snakemake ({res['grid']} grid)",
        "",
        f"Command: `{command_line()}`  ",
        f"Device: {dev['name']}; CPU {info['cpu']}, {info['cores']} cores; torch {info['torch']}; "
        f"snakemake {info['snakemake']}  ",
        f"Grid: {sizes}, {size} px, {backbone} (random trunk), seeds {cfg.get('training', {}).get('seeds', [1, 2, 3])}, "
        "every setting, both stages, own and cross-dataset predictions, metrics, tables, figures.",
        "",
        md_table(["phase", "wall s", "rate", "achieved TFLOP/s"], rows),
        "",
        f"Peak GPU memory (largest over the GPU jobs): "
        + (f"{res['peak_mib']:.0f} MiB" if res["peak_mib"] == res["peak_mib"] else "not measured (no CUDA device)"),
        "",
        f"FLOPs per image (counted on the model): trunk forward {flop['trunk'] / 1e9:.2f} GFLOP, stage-2 training "
        f"step {flop['train_step'] / 1e9:.2f} GFLOP, stage-2 prediction {flop['predict'] / 1e9:.2f} GFLOP; "
        f"{train_flop / 1e12:.4g} TFLOP of stage-2 training in all.",
    ]
    if "per_model_s" in res:
        trained = res["phases"].get("training + predictions", (float("nan"), 0))
        per = res["per_model_phases"].get("training + predictions", (float("nan"), 0))
        lines += ["", "## What chunking buys", "",
                  md_table(["training jobs", "training phase wall s", "first training job -> metrics done, s"],
                           [[f"default chunks ({trained[1]} jobs)", f"{trained[0]:.0f}",
                             f"{res['train_to_metrics_s']:.0f}"],
                            [f"one model per job ({res['per_model_jobs']} jobs)", f"{per[0]:.0f}",
                             f"{res['per_model_train_to_metrics_s']:.0f}"]]),
                  "",
                  "metrics.tsv of the two runs: " + ("identical" if res["per_model_same_metrics"] else "DIFFERENT")]
    if "bf16_diff" in res:
        d = res["bf16_diff"]
        rows = []
        for phase in ("feature cache", "training + predictions"):
            fp32, bf16 = res["phases"].get(phase, (float("nan"), 0))[0], res["bf16_phases"].get(phase, (float("nan"), 0))[0]
            rows.append([phase, f"{fp32:.0f}", f"{bf16:.0f}", f"{fp32 / bf16:.2f}x" if bf16 else ""])
        test_images = ", ".join(f"{k} {v}" for k, v in res["test_images"].items())
        lines += ["", "## Precision: float32 (TF32 allowed) vs bf16 autocast of the trunk and stage-2 layers", "",
                  md_table(["phase", "fp32 wall s", "bf16 wall s", "fp32 / bf16"], rows), "",
                  f"SRCC, |bf16 - fp32| over {d['n']} values (every model, stage, test set and target; test "
                  f"images: {test_images}): largest **{d['max']:.4f}** ({d['where']}), mean **{d['mean']:.4f}**. "
                  "Head, loss and predictions are float32 in both. On the CPU autocast is off in both runs, "
                  "so the difference there is 0 by construction."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    threads = usable_cores()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="aesthetic-gpu-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        res = run_grid(args, work)
        text = report(args, res, threads)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(text)
    out = args.out or (None if args.quick else REPO / "bench" / "gpu-results.md")
    if out is not None:
        from aesthetic_mtl.files import write_text

        write_text(out, text)
        print(f"wrote {out}")
    return 0 if res.get("per_model_same_metrics", True) else 1


if __name__ == "__main__":
    sys.exit(main())
