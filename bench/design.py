"""The whole experiment design (every dataset x setting x seed, stage 1 + stage 2, test SRCC), run the
pipeline's way: in-process from the caches (`fast_path`) or through the real `snakemake` (`Snakemake`).

The design is the demo's (config.yaml + config/demo.yaml: synthetic AADB and EVA, EfficientNet-Lite0
with its packaged ImageNet weights at 160 px, batch 32, the paper's epochs and learning rates), with
fewer images (AADB 32/8/40, EVA 80 split 40/10/50 %) and one seed so that the direct implementation
(bench/direct.py) finishes in a few minutes on 2 cores. `--quick` shrinks it to a few dozen 64 px images, one epoch per stage and two single-task
baselines per dataset, for the tests.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from common import REPO, quiet

# Overlays on config.yaml. Everything not named here is the paper's / the demo's value.
# (without the demo's own output folders: the benchmarks run in a work folder of their own)
_DEMO = {k: v for k, v in yaml.safe_load((REPO / "config" / "demo.yaml").read_text()).items() if k != "paths"}

DESIGNS: dict[str, dict] = {
    # the demo overlay itself (240/40/80 AADB, 300 EVA, two seeds): used by the bf16 check and gpu.py
    "demo": copy.deepcopy(_DEMO),
    # demo, smaller: AADB 32/8/40 images, EVA 80 images split 40/10/50 %, one seed; every setting of the
    # demo. Test splits of 40 images: one swapped near-tie then moves SRCC by at most 12 * 39 / (40^3 - 40)
    # = 0.007, so float rounding fakes a disagreement of 0.007 per swapped pair (16 test images: up to 0.044).
    "bench": {
        **copy.deepcopy(_DEMO),
        "datasets": {
            "AADB": {"source": "synthetic",
                     "synthetic": {"n_train": 32, "n_validation": 8, "n_test": 40, "overlap": 2,
                                   "image_size": 256, "seed": 11}},
            "EVA": {"source": "synthetic",
                    "synthetic": {"n_images": 80, "min_votes": 6, "max_votes": 12, "image_size": 256,
                                  "seed": 12},
                    "split": {"method": "random", "seed": 2023,
                              "fractions": {"train": 0.4, "validation": 0.1, "test": 0.5}}},
        },
        "training": {**_DEMO["training"], "seeds": [1]},
    },
    # tests: a few dozen 64 px images, one epoch per stage, two single-task baselines per dataset
    "quick": {
        **copy.deepcopy(_DEMO),
        "datasets": {
            "AADB": {"source": "synthetic",
                     "synthetic": {"n_train": 16, "n_validation": 6, "n_test": 10, "overlap": 2,
                                   "image_size": 96, "seed": 5}},
            "EVA": {"source": "synthetic",
                    "synthetic": {"n_images": 30, "min_votes": 3, "max_votes": 5, "image_size": 96,
                                  "seed": 6}},
        },
        "images": {"size": 64},
        "training": {"batch_size": 8, "seeds": [1], "stage1": {"epochs": 1},
                     "stage2": {"epochs": 1, "halve_every_steps": 2}},
        "experiment": {"single_targets": {"AADB": ["score", "Light"], "EVA": ["score", "visual"]}},
        "evaluation": {"bootstrap": 20},
    },
}


def load_design(name: str, workdir: Path) -> tuple[dict, Path]:
    """The merged, validated config of a design and the overlay file it was built from."""
    from aesthetic_mtl.config import load_config

    overlay = workdir / f"design_{name}.yaml"
    overlay.parent.mkdir(parents=True, exist_ok=True)
    overlay.write_text(yaml.safe_dump(DESIGNS[name], sort_keys=False))
    return load_config(REPO / "config.yaml", overlay), overlay


def weights_file(cfg: dict) -> Path | None:
    """The trunk weights the workflow would use: packaged ImageNet weights, a file, or none."""
    from aesthetic_mtl.backbones import weights_source

    spec = cfg["backbone"]["weights"]
    if spec == "none":
        return None
    if spec == "imagenet":
        kind, where = weights_source(cfg["backbone"]["name"])
        if kind != "file":
            raise SystemExit(f"{cfg['backbone']['name']}: ImageNet weights need a download ({where}); "
                             "the benchmark runs offline, use a backbone with packaged weights")
        return Path(where)
    return Path(spec)


def design_summary(cfg: dict) -> dict:
    """What one run of the design trains, for the report."""
    from aesthetic_mtl.config import settings

    n_models = {ds: len(settings(cfg, ds)) * len(cfg["training"]["seeds"]) for ds in cfg["datasets"]}
    return {"backbone": cfg["backbone"]["name"], "weights": cfg["backbone"]["weights"],
            "size": cfg["images"]["size"], "batch": cfg["training"]["batch_size"],
            "seeds": list(cfg["training"]["seeds"]), "models": n_models,
            "stage1": dict(cfg["training"]["stage1"]), "stage2": dict(cfg["training"]["stage2"]),
            "cache_dtype": cfg["backbone"].get("cache_dtype")}


# --------------------------------------------------------------------------------------------------
# shared data preparation (untimed: both ways start from the same extracted JPEG files and label tables)
# --------------------------------------------------------------------------------------------------

@dataclass
class Dataset:
    name: str
    labels: object          # DataFrame: image, path, split, raw targets
    targets: object         # DataFrame: image, split, targets on [0, 1]
    targets_path: Path


def prepare_data(cfg: dict, workdir: Path, log: Callable = quiet) -> dict[str, Dataset]:
    """Synthetic release -> extract -> parse -> split -> normalize, with the pipeline's own functions."""
    from aesthetic_mtl import pipeline
    from aesthetic_mtl.datasets import get_format
    from aesthetic_mtl.io import read_tsv

    out = {}
    for name, ds in cfg["datasets"].items():
        res, results = workdir / "resources" / name, workdir / "results" / name
        if (results / "targets.tsv").exists() and (res / "raw").is_dir():  # prepared by an earlier call
            out[name] = Dataset(name, read_tsv(results / "labels.tsv"), read_tsv(results / "targets.tsv"),
                                results / "targets.tsv")
            continue
        names = get_format(ds["format"]).required_files(ds)
        pipeline.obtain_archives(ds, names, res / "archives.ok", log=log)
        pipeline.extract(ds, res / "archives", res / "raw", log=log)
        pipeline.parse_labels(ds, res / "raw", results / "labels.tsv", log=log)
        pipeline.split(results / "labels.tsv", ds["split"], results / "splits.tsv", results / "split_report.json",
                       log=log)
        pipeline.normalize(results / "labels.tsv", results / "splits.tsv", ds["targets"], results / "targets.tsv",
                           log=log)
        out[name] = Dataset(name, read_tsv(results / "labels.tsv"), read_tsv(results / "targets.tsv"),
                            results / "targets.tsv")
    return out


# --------------------------------------------------------------------------------------------------
# (a) the pipeline's fast path, in-process
# --------------------------------------------------------------------------------------------------

@dataclass
class DesignRun:
    """SRCC of every (dataset, setting, seed, stage, target) and where the time went."""

    srcc: dict = field(default_factory=dict)      # (dataset, setting, seed, stage, target) -> SRCC
    preds: dict = field(default_factory=dict)     # (dataset, setting, seed, stage) -> test predictions
    seconds: dict = field(default_factory=dict)   # phase -> seconds
    counts: dict = field(default_factory=dict)    # phase -> images (or training samples) processed
    tables: list = field(default_factory=list)    # (metrics meta, predictions table) of every model and test set

    def add_time(self, phase: str, seconds: float, count: int = 0) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds
        self.counts[phase] = self.counts.get(phase, 0) + count

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def rate(self, phase: str) -> float:
        s = self.seconds.get(phase, 0.0)
        return self.counts.get(phase, 0) / s if s > 0 else float("nan")


@contextlib.contextmanager
def cpu_bf16_autocast(enabled: bool):
    """Make the package's `autocast` use bf16 on the CPU too (what device.py does on CUDA only).

    Patches the name where feature_cache.py and train.py look it up; restored on exit.
    """
    if not enabled:
        yield
        return
    import torch

    from aesthetic_mtl import device, train
    from aesthetic_mtl import feature_cache as caching

    original = device.autocast

    def bf16_everywhere(dev, enabled: bool = True):
        if enabled:
            return torch.autocast(dev.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    caching.autocast = train.autocast = bf16_everywhere
    try:
        yield
    finally:
        caching.autocast = train.autocast = original


@contextlib.contextmanager
def contiguous_preprocess(enabled: bool):
    """Make `AestheticModel.preprocess` return a contiguous NCHW tensor, as a torch Dataset + default collate
    gives the network (the package permutes the NHWC uint8 cache without copying, so its forward pass
    runs on channels-last tensors). Used for the agreement control only."""
    if not enabled:
        yield
        return
    from aesthetic_mtl.model import AestheticModel

    original = AestheticModel.preprocess

    def preprocess(self, images):
        return original(self, images).contiguous()

    AestheticModel.preprocess = preprocess
    try:
        yield
    finally:
        AestheticModel.preprocess = original


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def fast_path(cfg: dict, data: dict[str, Dataset], workdir: Path, *, threads: int, device=None,
              bf16_cpu: bool = False, nchw: bool = False, decode_workers: int | None = None) -> DesignRun:
    """The pipeline's steps in one process: image cache -> feature cache -> for every setting and seed:
    stage 1 from pooled features, test predictions on every dataset, stage 2 from prefix activations, test
    predictions, SRCC. The same package functions the workflow's jobs call. `bf16_cpu`: bf16 autocast on the CPU too;
    `nchw`: feature cache computed from contiguous NCHW input (see `contiguous_preprocess`)."""
    import torch

    from aesthetic_mtl.feature_cache import build_feature_cache, open_feature_cache
    from aesthetic_mtl.config import settings
    from aesthetic_mtl.image_cache import build_image_cache
    from aesthetic_mtl.train import CachedDataset

    device = device or torch.device("cpu")
    run = DesignRun()
    tcfg = cfg["training"]
    size, backbone, wfile = cfg["images"]["size"], cfg["backbone"]["name"], weights_file(cfg)
    bf16_cuda = tcfg.get("bf16_autocast_cuda", True)
    shutil.rmtree(workdir, ignore_errors=True)
    cached = {}
    with cpu_bf16_autocast(bf16_cpu), contiguous_preprocess(nchw):
        for name, ds in data.items():
            image_dir, cache_dir = workdir / name / f"images_{size}", workdir / name / f"{backbone}_{size}"
            t0 = time.perf_counter()
            build_image_cache(ds.labels, image_dir, size, resize=cfg["images"].get("resize", "squash"),
                              max_pixels=cfg["images"].get("max_pixels"), workers=decode_workers or threads,
                              log=quiet, progress=False)
            n_images = int(ds.labels["image"].nunique())
            run.add_time("image_cache", time.perf_counter() - t0, n_images)
            t0 = time.perf_counter()
            build_feature_cache(image_dir, cache_dir, backbone, wfile, batch_size=cfg["backbone"]["cache_batch_size"],
                                dtype=cfg["backbone"].get("cache_dtype", "float32"), threads=threads,
                                bf16_cuda=bf16_cuda, log=quiet)
            _sync(device)
            run.add_time("feature_cache", time.perf_counter() - t0, n_images)

            prefix, pooled, index = open_feature_cache(cache_dir)
            cached[name] = CachedDataset(name, prefix, pooled, index, ds.targets)
        tests = {name: (cached[name], list(cfg["datasets"][name]["targets"])) for name in cached}
        for name in data:  # every model predicts every dataset's test split, as the workflow's jobs do
            for setting, targets in settings(cfg, name).items():
                for seed in tcfg["seeds"]:
                    train_model(cfg, cached[name], tests, setting, targets, seed, run, device=device)
    return run


def train_model(cfg: dict, data, tests: dict, setting: str, targets: list[str], seed: int, run: DesignRun, *,
                device) -> None:
    """One (dataset, setting, seed) of the fast path: `train.train_and_predict`, as every training job calls it."""
    from aesthetic_mtl.metrics import srcc
    from aesthetic_mtl.train import TrainingSpec, train_and_predict

    spec = TrainingSpec.from_config(cfg["backbone"]["name"], cfg["head"], cfg["training"])
    n_train = int((data.targets["split"] == "train").sum())
    t0 = time.perf_counter()

    def record(result) -> None:
        nonlocal t0
        _sync(device)
        stage = result.stage
        run.add_time(f"train_{stage}", time.perf_counter() - t0, spec.stage(stage).epochs * n_train)
        for test, table in result.predictions.items():
            meta = {"dataset": test, "train_dataset": data.name, "backbone": spec.backbone, "setting": setting,
                    "stage": stage, "seed": seed}
            run.tables.append((meta, table))
        own = result.predictions[data.name]
        pred = own[[f"pred_{t}" for t in targets]].to_numpy()
        run.preds[(data.name, setting, seed, stage)] = pred
        for j, target in enumerate(targets):
            run.srcc[(data.name, setting, seed, stage, target)] = srcc(pred[:, j], own[f"true_{target}"].to_numpy())
        t0 = time.perf_counter()

    train_and_predict(spec, data, targets, seed, tests=tests, weights_file=weights_file(cfg), device=device,
                      log=quiet, on_stage=record)


def score(cfg: dict, run: DesignRun) -> float:
    """Seconds to turn every predictions table of `run` into the long metrics table, in-process, as the
    workflow's `metrics` job does (SRCC, PLCC, KRCC, MSE, RMSE, bootstrap CI; own and cross-dataset)."""
    from aesthetic_mtl.evaluate import score_predictions

    ev = cfg["evaluation"]
    t0 = time.perf_counter()
    for meta, table in run.tables:
        score_predictions(table, meta, cfg["experiment"].get("cross_dataset", {}), ev["bootstrap"],
                          ev["bootstrap_seed"])
    return time.perf_counter() - t0


def feature_diff(dir_a: Path, dir_b: Path, cfg: dict) -> tuple[float, float]:
    """Largest |a - b| between the pooled features of two fast-path work folders, absolute and relative to
    the mean |feature|."""
    import numpy as np

    from aesthetic_mtl.feature_cache import open_feature_cache

    worst, scale = 0.0, 0.0
    sub = f"{cfg['backbone']['name']}_{cfg['images']['size']}"
    for name in cfg["datasets"]:
        _, a, _ = open_feature_cache(dir_a / name / sub)
        _, b, _ = open_feature_cache(dir_b / name / sub)
        worst = max(worst, float(np.abs(np.asarray(a) - np.asarray(b)).max()))
        scale = max(scale, float(np.abs(np.asarray(a)).mean()))
    return worst, worst / scale if scale else float("nan")


def prediction_diff(a: dict, b: dict) -> tuple[float, float, tuple | None]:
    """Largest |a - b| between the test predictions of two runs, the same relative to the spread (std over
    test images) of that model's predictions, and the model (dataset, setting, seed, stage) where it is."""
    import numpy as np

    worst, rel, where = 0.0, float("nan"), None
    for key in sorted(a.keys() & b.keys(), key=str):
        x, y = np.asarray(a[key], np.float64), np.asarray(b[key], np.float64)
        d = float(np.abs(x - y).max(initial=0.0))
        if where is None or d > worst:
            spread = float(x.std(axis=0).max()) if len(x) > 1 else float("nan")
            worst, rel, where = d, d / spread if spread > 0 else float("nan"), key
    return worst, rel, where


def median_abs_diff(a: dict, b: dict) -> float:
    """Median |a - b| over the keys both have (NaN pairs skipped)."""
    import math
    import statistics

    vals = [abs(a[k] - b[k]) for k in a.keys() & b.keys() if not (math.isnan(a[k]) or math.isnan(b[k]))]
    return statistics.median(vals) if vals else float("nan")


def max_abs_diff(a: dict, b: dict) -> tuple[float, tuple | None, int]:
    """Largest |a - b| over the keys both have (NaN pairs skipped), its key, and the number compared."""
    import math

    worst, where, n = 0.0, None, 0
    for key in sorted(a.keys() & b.keys(), key=str):
        x, y = a[key], b[key]
        if x is None or y is None or math.isnan(x) or math.isnan(y):
            continue
        n += 1
        if where is None or abs(x - y) > worst:
            worst, where = abs(x - y), key
    return worst, where, n


# --------------------------------------------------------------------------------------------------
# (a') the real snakemake run of the same design
# --------------------------------------------------------------------------------------------------

COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "results", "resources", "logs", "benchmarks", ".snakemake",
                                     "__pycache__", "*.egg-info", ".pytest_cache", "bench")


class Snakemake:
    """`snakemake --cores N results/metrics.tsv` in a copy of the repository.

    `prepare` runs the data steps the in-process path also leaves untimed (synthetic release, extract,
    parse, split, normalize) and the weights copy; each `run` deletes every later output and times the
    rest: image cache, feature cache, both stages of every model, predictions (own and cross-dataset test
    splits), the metrics table (SRCC, PLCC, KRCC, MSE and bootstrap CIs).
    """

    def __init__(self, workdir: Path, overlay: Path, cfg: dict, cores: int) -> None:
        self.repo = workdir / "snakemake_repo"
        self.cfg, self.cores = cfg, cores
        shutil.rmtree(self.repo, ignore_errors=True)
        shutil.copytree(REPO, self.repo, ignore=COPY_IGNORE)
        shutil.copy(overlay, self.repo / "bench_design.yaml")
        self.options = ["--cores", str(cores), "--configfile", "bench_design.yaml"]  # after the targets
        self.snakemake = [sys.executable, "-m", "snakemake"]

    def _run(self, *targets: str) -> None:
        proc = subprocess.run([*self.snakemake, *targets, *self.options], cwd=self.repo, capture_output=True,
                              text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"snakemake {' '.join(targets)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")

    def prepare(self) -> None:
        targets = [f"results/{ds}/targets.tsv" for ds in self.cfg["datasets"]]
        if self.cfg["backbone"]["weights"] == "imagenet":
            targets.append(f"resources/weights/{self.cfg['backbone']['name']}.pth")
        self._run(*targets)

    def clean(self) -> None:
        results = self.repo / "results"
        for ds in self.cfg["datasets"]:
            for path in results.joinpath(ds).glob("images_*"):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        for sub in ("cache", "models", "predictions"):
            shutil.rmtree(results / sub, ignore_errors=True)
        (results / "metrics.tsv").unlink(missing_ok=True)

    def run(self) -> float:
        self.clean()
        t0 = time.perf_counter()
        self._run("results/metrics.tsv")
        return time.perf_counter() - t0

    def jobs(self) -> int:
        """Jobs one timed run executes (from a dry run after cleaning)."""
        self.clean()
        proc = subprocess.run([*self.snakemake, "results/metrics.tsv", "-n", "--quiet", "rules", *self.options],
                              cwd=self.repo, capture_output=True, text=True)
        total = 0
        for line in (proc.stdout + proc.stderr).splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "total" and parts[1].isdigit():
                total = int(parts[1])
        return total

    def srcc(self) -> dict:
        """Own-dataset test SRCC from the run's metrics table, keyed like `DesignRun.srcc`."""
        import pandas as pd

        m = pd.read_csv(self.repo / "results" / "metrics.tsv", sep="\t")
        m = m[(m["metric"] == "srcc") & (m["dataset"] == m["train_dataset"])]
        return {(r.dataset, r.setting, int(r.seed), r.stage, r.target): float(r.value) for r in m.itertuples()}
