"""What the resize filter (`images.interpolation`) changes in test SRCC: Keras' default `nearest` and its other
filters against our `bicubic_fast`, mean over seeds.

    PYTHONPATH=src nice -n 10 python bench/interpolation.py --write    # ~5 min on one core
    PYTHONPATH=src python bench/interpolation.py --quick               # seconds, for a smoke test

The pipeline's own functions on one synthetic AADB release whose photos are several times larger than the
input (so the filter has something to do): for each interpolation, the uint8 image cache -> feature cache
(float32) -> stage 1 and stage 2 of the multi-task model for every seed -> test-split SRCC of every target.
The trunk is EfficientNet-Lite0 with its packaged ImageNet weights (real filters that respond to aliasing;
VGG16's ImageNet weights cannot be downloaded here), with the paper config's training settings.

Runs on the CPU with one torch thread. With `--write` it replaces its own section of bench/results.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ReportSection, aadb_design, prepare_dataset, quiet, train_and_score, weights_file  # noqa: E402

SECTION = ReportSection("interpolation")
REFERENCE = "bicubic_fast"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--interpolations", nargs="+", default=[REFERENCE, "nearest", "bilinear", "bicubic"])
    p.add_argument("--backbone", default="efficientnet_lite0:imagenet:128", help="BACKBONE:WEIGHTS:SIZE")
    p.add_argument("--photo-size", type=int, default=512, help="side of the synthetic photos, px")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--n-train", type=int, default=400)
    p.add_argument("--n-test", type=int, default=320)
    p.add_argument("--quick", action="store_true", help="tiny sizes, one seed (a smoke test, not a measurement)")
    p.add_argument("--write", action="store_true", help="replace this benchmark's section of bench/results.md")
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.n_train, args.n_test, args.photo_size = [1], 24, 12, 160
        args.interpolations, args.backbone = [REFERENCE, "nearest"], args.backbone.rsplit(":", 1)[0] + ":64"
    return args


def run(args: argparse.Namespace) -> dict:
    """{(interpolation, seed, stage, target): test SRCC} and what the run was."""
    import torch

    from aesthetic_mtl.data.image_cache import build_from_labels
    from aesthetic_mtl.nn.feature_cache import build_feature_cache
    from aesthetic_mtl.specs import ImageSpec

    torch.set_num_threads(1)
    backbone, weights, size = args.backbone.split(":")
    cfg = aadb_design(backbone, weights, int(size), n_train=args.n_train, n_test=args.n_test,
                      image_size=args.photo_size)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="interpolation-"))
    t0 = time.perf_counter()
    ds, results = cfg["datasets"]["AADB"], work / "results" / "AADB"
    scaled = prepare_dataset(ds, work / "resources" / "AADB", results)
    targets, srcc = list(ds["attributes"]), {}
    for interpolation in args.interpolations:
        images, cache = work / interpolation / "images", work / interpolation / "cache"
        build_from_labels(results / "labels.tsv", images,
                          ImageSpec.from_config({**cfg["images"], "interpolation": interpolation}),
                          on_bad_image="error", workers=1, log=quiet)
        build_feature_cache(images, cache, backbone, weights_file(cfg), batch_size=cfg["backbone"]["cache_batch_size"],
                            dtype="float32", bf16_cuda=cfg["backbone"]["cache_bf16_autocast_cuda"], threads=1,
                            log=quiet)
        for seed in args.seeds:
            for (stage, target), value in train_and_score(cfg, cache, scaled, targets, seed).items():
                srcc[(interpolation, seed, stage, target)] = value
            print(f"  {interpolation} seed {seed}: stage-2 overall-score SRCC "
                  f"{srcc[(interpolation, seed, 'stage2', 'score')]:.4f}", flush=True)
    return {"cfg": cfg, "targets": targets, "srcc": srcc, "seconds": time.perf_counter() - t0}


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def render(args: argparse.Namespace, r: dict) -> str:
    """The results.md section: mean test SRCC over seeds per target and interpolation, and the differences."""
    import numpy as np
    import torch

    cmd = "PYTHONPATH=src nice -n 10 python bench/interpolation.py " + " ".join(sys.argv[1:])
    cfg, srcc, targets, seeds = r["cfg"], r["srcc"], r["targets"], args.seeds

    def m(interpolation, stage, target):
        return mean(srcc[(interpolation, s, stage, target)] for s in seeds)

    others = [i for i in args.interpolations if i != REFERENCE]
    lines = [
        SECTION.begin,
        "## 7. Resize filter: Keras' interpolations against bicubic_fast",
        "",
        f"`{cmd.strip()}` (CPU, 1 torch thread, {r['seconds'] / 60:.1f} min, torch {torch.__version__}). Synthetic "
        f"AADB ({args.n_train} train / {args.n_test} test photos of {args.photo_size} px), "
        f"{cfg['backbone']['name']} ({cfg['backbone']['weights']} weights) at {cfg['images']['size']} px, the paper "
        f"config's training settings, multi-task model, seeds {', '.join(map(str, seeds))}. Test SRCC after stage 2, "
        "mean over seeds; the columns after the first give the difference from `bicubic_fast`.",
        "",
        "| target | " + " | ".join([f"`{REFERENCE}`", *(f"`{i}` - `{REFERENCE}`" for i in others)]) + " |",
        "| --- | " + " | ".join("---:" for _ in args.interpolations) + " |",
    ]
    for t in targets:
        cells = [f"{m(REFERENCE, 'stage2', t):.4f}", *(f"{m(i, 'stage2', t) - m(REFERENCE, 'stage2', t):+.4f}"
                                                       for i in others)]
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    spread = (float(np.median([np.std([srcc[(REFERENCE, s, "stage2", t)] for s in seeds], ddof=1) for t in targets]))
              if len(seeds) > 1 else float("nan"))
    lines += ["", "Mean over the targets (stage 2): " + "; ".join(
        f"`{i}` {mean(m(i, 'stage2', t) for t in targets):.4f}" for i in args.interpolations)
        + f". For scale, the median std of SRCC over seeds (`{REFERENCE}`) is {spread:.4f}.",
        "Not measured: real photos (no AADB here), the VGG16 trunk with ImageNet weights, CUDA.", SECTION.end]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    return SECTION.publish(render(args, run(args)), args.write)


if __name__ == "__main__":
    sys.exit(main())
