"""What a float16 feature cache changes against float32: the largest SRCC difference over every target.

    PYTHONPATH=src nice -n 10 python bench/cache_dtype.py --write    # ~15 min on one core
    PYTHONPATH=src python bench/cache_dtype.py --quick               # seconds, for a smoke test

Two trunks by default: EfficientNet-Lite0 with its packaged ImageNet weights (real activation statistics)
and the paper's VGG16 architecture (`vgg16_keras`) with a random trunk (its ImageNet weights cannot be
downloaded here), each at a small input size so the whole run fits on one CPU core.

The pipeline's own functions, once per dtype: synthetic AADB release -> parse -> split -> scale_labels ->
image cache -> feature cache (`cache_dtype` float16 or float32) -> stage 1 and stage 2 of the multi-task
model for every seed -> test-split SRCC of every target. Both caches come from the same trunk; their
pooled features are float32 either way, so stage 1 is identical and stage 2 (trained on the stored
prefix activations) is where float16 can change anything. The figure is the largest |SRCC(float16) -
SRCC(float32)| over seeds and targets after stage 2, and the rule of the project keeps float16 as the
default only if it is below 0.002.

Runs on the CPU with one torch thread (the machine may be shared). With `--write` it replaces its own
section of bench/results.md (between the markers below) and keeps the rest of the file.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ReportSection, aadb_design, prepare_dataset, quiet, train_and_score, weights_file  # noqa: E402

THRESHOLD = 0.002
SECTION = ReportSection("cache_dtype")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", default=["efficientnet_lite0:imagenet:128", "vgg16_keras:none:64"],
                   help="BACKBONE:WEIGHTS:SIZE (weights imagenet must be packaged; or none)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--n-train", type=int, default=400)
    p.add_argument("--n-test", type=int, default=320)
    p.add_argument("--quick", action="store_true", help="tiny sizes, one seed (a smoke test, not a measurement)")
    p.add_argument("--write", action="store_true", help="replace this benchmark's section of bench/results.md")
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.n_train, args.n_test = [1], 24, 12
        args.runs = [r.rsplit(":", 1)[0] + ":64" for r in args.runs[:1]]
    args.runs = [tuple(r.split(":")) for r in args.runs]
    return args


def design(args: argparse.Namespace, backbone: str, weights: str, size: int) -> dict:
    """The paper config's AADB entry and training settings, on a synthetic release of the chosen size."""
    return aadb_design(backbone, weights, size, n_train=args.n_train, n_test=args.n_test,
                       image_size=max(2 * size, 96))


def prepare(cfg: dict, work: Path) -> tuple[Path, Path, list[str]]:
    """Release -> scaled_labels.tsv and the uint8 image cache, with the workflow's functions."""
    from aesthetic_mtl.data.image_cache import build_from_labels
    from aesthetic_mtl.specs import ImageSpec

    ds, results = cfg["datasets"]["AADB"], work / "results" / "AADB"
    targets = prepare_dataset(ds, work / "resources" / "AADB", results)
    build_from_labels(results / "labels.tsv", results / "images", ImageSpec.from_config(cfg["images"]),
                      on_bad_image="error", workers=1, log=quiet)
    return results / "images", targets, list(ds["attributes"])


def run(args: argparse.Namespace, backbone: str, weights: str, size: int) -> dict:
    import torch

    from aesthetic_mtl.nn.feature_cache import build_feature_cache

    torch.set_num_threads(1)
    cfg = design(args, backbone, weights, int(size))
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="cache-dtype-"))) / f"{backbone}_{weights}_{size}"
    t0 = time.perf_counter()
    images, targets_path, targets = prepare(cfg, work)
    n_test = int((__import__("pandas").read_csv(targets_path, sep="\t")["split"] == "test").sum())
    srcc: dict = {}
    for dtype in ("float32", "float16"):
        cache = work / "cache" / dtype
        build_feature_cache(images, cache, cfg["backbone"]["name"], weights_file(cfg),
                            batch_size=cfg["backbone"]["cache_batch_size"], dtype=dtype,
                            bf16_cuda=cfg["backbone"]["cache_bf16_autocast_cuda"], threads=1, log=quiet)
        for seed in args.seeds:
            for key, value in train_and_score(cfg, cache, targets_path, targets, seed).items():
                srcc[(dtype, seed, *key)] = value
            print(f"  {backbone} {dtype} seed {seed}: stage-2 overall-score SRCC {srcc[(dtype, seed, 'stage2', 'score')]:.4f}",
                  flush=True)
    diffs = {(seed, stage, t): abs(srcc[("float16", seed, stage, t)] - srcc[("float32", seed, stage, t)])
             for seed in args.seeds for stage in ("stage1", "stage2") for t in targets}
    worst = max((k for k in diffs if k[1] == "stage2"), key=diffs.get)
    return {"cfg": cfg, "targets": targets, "n_test": n_test, "srcc": srcc, "diffs": diffs, "worst": worst,
            "seconds": time.perf_counter() - t0, "work": work}


def render(args: argparse.Namespace, runs: list[dict]) -> str:
    """The results.md section: one table per trunk, then the figure (the largest difference of all)."""
    import numpy as np
    import torch

    cmd = "PYTHONPATH=src nice -n 10 python bench/cache_dtype.py " + " ".join(sys.argv[1:])
    seconds = sum(r["seconds"] for r in runs)
    cfg0 = runs[0]["cfg"]
    lines = [
        SECTION.begin,
        "## 6. Feature cache: float16 against float32",
        "",
        f"`{cmd.strip()}` (CPU, 1 torch thread, {seconds / 60:.1f} min, torch {torch.__version__}). "
        f"Synthetic AADB ({cfg0['datasets']['AADB']['synthetic']['n_train']} train / {runs[0]['n_test']} test "
        f"images), the paper config's training settings, multi-task model, seeds {', '.join(map(str, args.seeds))}. "
        "The same trunk fills both caches; stage 1 trains on float32 pooled features in both, so stage 2 shows "
        "what the float16 prefix changes. For scale, the last column is the spread of the float32 result "
        "over seeds.",
    ]
    for r in runs:
        cfg = r["cfg"]
        stage1 = max(v for k, v in r["diffs"].items() if k[1] == "stage1")
        lines += ["", f"**{cfg['backbone']['name']}** ({cfg['backbone']['weights']} weights, {cfg['images']['size']} px; "
                  f"largest stage-1 difference {stage1:.1g})", "",
                  "| target | stage-2 SRCC, float32 cache (mean) | largest abs. difference, float16 vs float32 "
                  "| std over seeds, float32 |", "| --- | ---: | ---: | ---: |"]
        for t in r["targets"]:
            f32 = [r["srcc"][("float32", s, "stage2", t)] for s in args.seeds]
            diff = max(r["diffs"][(s, "stage2", t)] for s in args.seeds)
            spread = f"{np.std(f32, ddof=1):.4f}" if len(f32) > 1 else ""
            lines.append(f"| {t} | {np.mean(f32):.4f} | {diff:.5f} | {spread} |")
    every = [(v, r["cfg"]["backbone"]["name"], k) for r in runs for k, v in r["diffs"].items() if k[1] == "stage2"]
    largest, name, key = max(every, key=lambda e: e[0])
    verdict = "below" if largest < THRESHOLD else "not below"
    median_spread = float(np.median([np.std([r["srcc"][("float32", s, "stage2", t)] for s in args.seeds], ddof=1)
                                     for r in runs for t in r["targets"]])) if len(args.seeds) > 1 else float("nan")
    lines += ["", f"Largest SRCC difference over every target, seed and trunk: **{largest:.4f}** ({name}, {key[2]}, "
              f"seed {key[0]}); median {float(np.median([e[0] for e in every])):.4f}. That is {verdict} the "
              f"{THRESHOLD} threshold, so "
              + ("float16 stays the default `backbone.cache_dtype` (half the disk)." if largest < THRESHOLD else
                 "the default `backbone.cache_dtype` is float32 (twice the disk: VGG16 at 224 px stores "
                 "1.6 MB per image, ~16 GB for AADB)."),
              f"For comparison, the median std of SRCC over seeds (float32) is {median_spread:.4f}.",
              "Not measured: the VGG16 trunk with ImageNet weights (no download here) and CUDA.", SECTION.end]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    runs = [run(args, *spec) for spec in args.runs]
    return SECTION.publish(render(args, runs), args.write)


if __name__ == "__main__":
    sys.exit(main())
