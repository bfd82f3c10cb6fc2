"""Backbone efficiency on this CPU: images/s of the feature-cache forward pass (`model.prefix` then
`model.pooled_from_prefix`, exactly what feature_cache.build_feature_cache computes per batch) in fp32 and
under CPU bf16 autocast, the FLOPs it does (torch.utils.flop_counter.FlopCounterMode: 2 per
multiply-add of every convolution and matmul) and the GFLOP/s achieved, against a large matmul measured
in the same process (the practical peak of this CPU for each dtype).
"""

from __future__ import annotations

import contextlib
import time

import torch

from common import Timing


def autocast_ctx(dtype: str):
    return torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()


def build(name: str, weights: str | None):
    from aesthetic_mtl.backbones import build_backbone
    from aesthetic_mtl.model import AestheticModel

    return AestheticModel(build_backbone(name, weights), ["_"]).eval()


def flops_per_image(model, size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, size, size, 3, dtype=torch.uint8)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.pooled_from_prefix(model.prefix(x))
    return float(counter.get_total_flops())


def images_per_second(model, size: int, batch: int, dtype: str, batches: int) -> Timing:
    """Per-batch throughput over `batches` timed batches after one warm-up batch."""
    x = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8)
    out = Timing()
    with torch.inference_mode(), autocast_ctx(dtype):
        model.pooled_from_prefix(model.prefix(x)).float()
        for _ in range(batches):
            t0 = time.perf_counter()
            model.pooled_from_prefix(model.prefix(x)).float()
            out.add(batch / (time.perf_counter() - t0))
    return out


def matmul_gflops(n: int, dtype: str, repeats: int) -> Timing:
    """GFLOP/s of an n x n @ n x n matmul (2 n^3 FLOPs) in fp32 or bf16."""
    dt = torch.bfloat16 if dtype == "bf16" else torch.float32
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g).to(dt), torch.randn(n, n, generator=g).to(dt)
    out = Timing()
    torch.mm(a, b)
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        out.add(2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return out


def run(backbones: list[tuple[str, str | None]], size: int, batch: int, batches: int, matmul_n: int,
        repeats: int, log=print) -> dict:
    """`backbones`: (name, weights file or None). Each repeat measures the fp32 and bf16 matmul, then one
    batch of every (backbone, dtype), so that every fraction of peak pairs a batch with a matmul measured
    moments before it, under the same load from other processes."""
    models = [(name, build(name, weights)) for name, weights in backbones]
    flops = {name: flops_per_image(model, size) for name, model in models}
    x = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8)
    peaks = {d: Timing() for d in ("fp32", "bf16")}
    rates = {(name, d): Timing() for name, _ in models for d in ("fp32", "bf16")}
    fractions = {k: Timing() for k in rates}
    for name, model in models:  # warm-up: oneDNN primitive creation, first-touch allocations
        for d in ("fp32", "bf16"):
            with torch.inference_mode(), autocast_ctx(d):
                model.pooled_from_prefix(model.prefix(x)).float()
    for d in peaks:
        matmul_gflops(matmul_n, d, 1)
    for r in range(max(batches, repeats)):
        for d in ("fp32", "bf16"):
            peaks[d].add(matmul_gflops(matmul_n, d, 1).median)
        for name, model in models:
            for d in ("fp32", "bf16"):
                with torch.inference_mode(), autocast_ctx(d):
                    t0 = time.perf_counter()
                    model.pooled_from_prefix(model.prefix(x)).float()
                    rate = batch / (time.perf_counter() - t0)
                rates[(name, d)].add(rate)
                fractions[(name, d)].add(rate * flops[name] / 1e9 / peaks[d].values[-1])
        log(f"  repeat {r + 1}: matmul fp32 {peaks['fp32'].values[-1]:.0f}, bf16 {peaks['bf16'].values[-1]:.0f} "
            f"GFLOP/s; " + ", ".join(f"{n} {d} {t.values[-1]:.2f} img/s" for (n, d), t in rates.items()))
    rows = []
    for (name, d), rate in rates.items():
        rows.append({"backbone": name, "dtype": d, "gflop_per_image": flops[name] / 1e9, "images_per_s": rate,
                     "gflops": Timing([v * flops[name] / 1e9 for v in rate.values]),
                     "fraction_of_peak": fractions[(name, d)].median, "fractions": fractions[(name, d)]})
    return {"size": size, "batch": batch, "batches": max(batches, repeats), "matmul_n": matmul_n, "peaks": peaks,
            "rows": rows}
