"""`aesthetic-mtl predict` (`Scorer.predict`) on a folder of full-size JPEGs against its bound.

    .venv/bin/python bench/predict.py --write      # section 8 of bench/results.md (~3 min on 2 cores)
    .venv/bin/python bench/predict.py --quick      # seconds, for a smoke test

On the same files in one run, each measurement repeated and interleaved (medians):
- decode core-time d: `images.load_image` of every photo in one thread (seconds per photo);
- model core-time m: the model on already decoded pixels, batches of 32, one torch thread;
- the bound when decoding overlaps inference on C cores: C / (d + m) photos/s;
- `predict`: `Scorer.predict(paths)` as the CLI runs it (decoding threads = cores, torch's own threads), and
  the former way, decoding in the main thread between batches (`workers=0`);
- the input pipeline alone (`ordered_map` of the decoder) as decoding threads are added.
The goal is predict >= 0.8 x the bound. The model is the demo's (EfficientNet-Lite0 with its packaged ImageNet
weights, the demo's input size and interpolation) with an untrained head: speed does not depend on training.
On a GPU the model's share is almost nothing and decoding is everything; run it there with `--device cuda`
(and `--backbone vgg16_keras --size 224` for the paper's model) to fill in the GPU line.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the `aesthetic-mtl` command sets it, before torch loads

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    REPO,
    ReportSection,
    ShareMeter,
    interleaved,
    machine,
    md_table,
    source_revision,
    usable_cores,
)

SECTION = ReportSection("predict")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=int, default=480)
    p.add_argument("--width", type=int, default=1600)
    p.add_argument("--height", type=int, default=1200)
    p.add_argument("--backbone", default=None, help="default: the demo's")
    p.add_argument("--size", type=int, default=None, help="input size, default: the demo's")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="a few small photos, one repeat (a smoke test)")
    p.add_argument("--write", action="store_true", help="replace this benchmark's section of bench/results.md")
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.photos, args.width, args.height, args.repeats = 24, 400, 300, 1
    return args


def make_photos(folder: Path, n: int, width: int, height: int) -> list[Path]:
    """`n` JPEGs (quality 90) of smooth colour fields with edges and grain: a photo's decoding cost."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) / max(width, height)
    paths = []
    for k in range(n):
        a, b, c = rng.uniform(-6, 6, size=(3, 3)).astype(np.float32)
        field = np.stack([np.sin(a[i] * xx + b[i] * yy + c[i]) for i in range(3)], axis=-1)
        field[yy > rng.uniform(0.2, 0.6)] *= -0.6
        pixels = np.clip(127 + 100 * field + rng.normal(0, 8, field.shape).astype(np.float32), 0, 255)
        paths.append(folder / f"photo_{k:04d}.jpg")
        Image.fromarray(pixels.astype(np.uint8)).save(paths[-1], quality=90)
    return paths


def demo_model(work: Path, backbone: str | None, size: int | None):
    """A Scorer of the demo's model (untrained head), through a checkpoint as `predict --model` loads it."""
    import torch

    import aesthetic_mtl
    from aesthetic_mtl.config import load_config
    from aesthetic_mtl.nn.checkpoint import ModelCard, save_checkpoint
    from aesthetic_mtl.nn.model import build_model
    from aesthetic_mtl.nn.weights import fetch_weights
    from aesthetic_mtl.provenance import provenance
    from aesthetic_mtl.specs import HeadSpec, ImageSpec

    cfg = load_config(REPO / "config.yaml", REPO / "config" / "demo.yaml")
    backbone = backbone or cfg["backbone"]["name"]
    images = {**cfg["images"], "size": size or cfg["images"]["size"]}
    trunk = work / f"{backbone}.pth"
    fetch_weights(backbone, trunk, log=lambda *_: None)
    attributes = cfg["datasets"]["AADB"]["attributes"]
    torch.manual_seed(0)
    model = build_model(backbone, list(attributes), trunk, HeadSpec.from_config(cfg["head"]))
    ckpt = work / "stage2.pt"
    card = ModelCard(backbone=backbone, stage="stage2", targets=tuple(attributes),
                     ranges={t: tuple(r) for t, r in attributes.items()}, overall=cfg["datasets"]["AADB"]["overall"],
                     images=ImageSpec.from_config(images), head=HeadSpec.from_config(cfg["head"]),
                     weights={"spec": "imagenet", "file": str(trunk), "sha256": None})
    save_checkpoint(ckpt, model, card, provenance=provenance())
    return aesthetic_mtl.load(ckpt, device="cpu"), images


def run(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from aesthetic_mtl.data.image_cache import ordered_map

    cores = usable_cores()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-predict-"))
    paths = make_photos(work / "photos", args.photos, args.width, args.height)
    scorer, images = demo_model(work, args.backbone, args.size)
    scorer.model.to(args.device)
    scorer.device = torch.device(args.device)
    decode = scorer._decode
    pixels = np.stack([decode((i, p)) for i, p in enumerate(paths[:32])])
    n_batches = max(1, len(paths) // 32)

    def timed(fn) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    def one_thread(fn):
        def go(_r):
            torch.set_num_threads(1)
            try:
                return timed(fn)
            finally:
                torch.set_num_threads(cores)
        return go

    runs = {
        "decode, 1 thread": one_thread(lambda: [decode((i, p)) for i, p in enumerate(paths)]),
        "model, 1 thread": one_thread(lambda: [scorer._forward(pixels, False) for _ in range(n_batches)]),
        "predict": lambda _r: timed(lambda: scorer.predict(paths)),
        "predict, decoding in the main thread": lambda _r: timed(lambda: scorer.predict(paths, workers=0)),
    }
    for w in range(1, cores + 1):
        runs[f"input pipeline, {w} thread(s)"] = lambda _r, w=w: timed(
            lambda: [r for r in ordered_map(decode, enumerate(paths), w, ahead=32 + 2 * w)])
    torch.set_num_threads(cores)
    meter = ShareMeter()
    scorer.predict(paths[:8])  # warm-up: first-call costs (allocator, kernels) are not the steady rate
    timings = interleaved(runs, {name: args.repeats for name in runs}, log=lambda m: print(m, flush=True))
    n = len(paths)
    d = timings["decode, 1 thread"].median / n
    m = timings["model, 1 thread"].median / (32 * n_batches)
    rate = {name: n / t.median for name, t in timings.items() if not name.startswith(("decode,", "model,"))}
    bound = cores / (d + m)
    return {"args": args, "cores": cores, "images": images, "backbone": scorer.backbone, "timings": timings,
            "decode_rate": 1 / d, "model_rate": 1 / m, "bound": bound, "rate": rate,
            "ratio": rate["predict"] / bound, "n": n, "share": meter.report()}


def render(r: dict) -> str:
    args, info = r["args"], machine(r["cores"])
    cmd = ".venv/bin/python bench/predict.py " + " ".join(sys.argv[1:])
    rows = [[name, f"{rate:.1f}", f"{rate / r['bound']:.2f}"] for name, rate in r["rate"].items()]
    lines = [
        SECTION.begin,
        "## 8. Scoring photos: `predict` against its bound",
        "",
        f"`{cmd.strip()}` at {source_revision()} on {info['cpu']} ({r['cores']} cores, torch {info['torch']}, "
        f"device {args.device}). {r['n']} JPEGs of {args.width}x{args.height} (quality 90), "
        f"{r['backbone']} at {r['images']['size']} px ({r['images']['interpolation']}), "
        f"batches of 32; medians of {args.repeats} interleaved repeats; other processes used "
        f"{r['share']['others_cores']:.2f} cores on average meanwhile.",
        "",
        f"Decoding alone: {r['decode_rate']:.1f} photos/s per core; the model alone: {r['model_rate']:.1f} "
        f"photos/s per core on decoded pixels; overlapped on {r['cores']} cores the bound is "
        f"{r['cores']} / (decode + model core-time) = **{r['bound']:.1f} photos/s**.",
        "",
        md_table(["", "photos/s", "/ bound"], rows),
        "",
        f"**predict / bound = {r['ratio']:.2f}** (goal >= 0.8).",
        "GPU (`vgg16_keras` at 224 px): not measured (no GPU was lent to the session that wrote this).",
        SECTION.end,
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    return SECTION.publish(render(run(args)), args.write)


if __name__ == "__main__":
    sys.exit(main())
