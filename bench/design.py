"""The whole experiment design (every dataset x setting x seed, stage 1 + stage 2, test SRCC), run the
pipeline's way: in-process from the caches (`fast_path`) or through the real `snakemake` (`DesignWorkflow`).

The design is the demo's (config.yaml + config/demo.yaml: synthetic AADB and EVA, EfficientNet-Lite0
with its packaged ImageNet weights at 160 px, batch 32, the paper's epochs and learning rates), with
fewer images (AADB 32/8/40, EVA 80 split 40/10/50 %) and one seed so that the direct implementation
(bench/direct.py) finishes in a few minutes on 2 cores. `quick` shrinks it to a few dozen 64 px images,
one epoch per stage and two single-task baselines per dataset, for the tests.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from common import REPO, Workflow, prepare_dataset, quiet, synthetic, weights_file

# Overlays on config.yaml (the demo's, without its output folders: the benchmarks run in a work folder).
_DEMO = {k: v for k, v in yaml.safe_load((REPO / "config" / "demo.yaml").read_text()).items() if k != "paths"}
_BENCH_DATA = synthetic({"n_train": 32, "n_validation": 8, "n_test": 40, "overlap": 2, "seed": 11},
                        {"n_images": 80, "min_votes": 6, "max_votes": 12, "seed": 12}, image_size=256)
_BENCH_DATA["EVA"]["split"] = {"method": "random", "seed": 2023,
                               "fractions": {"train": 0.4, "validation": 0.1, "test": 0.5}}
DESIGNS: dict[str, dict] = {
    # Test splits of 40 images: one swapped near-tie then moves SRCC by at most 12 * 39 / (40^3 - 40) = 0.007,
    # so float rounding fakes a disagreement of 0.007 per swapped pair (16 test images: up to 0.044).
    "bench": {**copy.deepcopy(_DEMO), "datasets": _BENCH_DATA, "training": {**_DEMO["training"], "seeds": [1]}},
    "quick": {
        **copy.deepcopy(_DEMO),
        "datasets": synthetic({"n_train": 16, "n_validation": 6, "n_test": 10, "overlap": 2, "seed": 5},
                              {"n_images": 30, "min_votes": 3, "max_votes": 5, "seed": 6}, image_size=96),
        "images": {"size": 64},
        "training": {"batch_size": 8, "seeds": [1], "stage1": {"epochs": 1},
                     "stage2": {"epochs": 1, "halve_every_steps": 2}},
        "experiment": {"single_attributes": {"AADB": ["score", "Light"], "EVA": ["score", "visual"]}},
        "evaluation": {"bootstrap": 20},
    },
}


def load_design(name: str, workdir: Path) -> dict:
    """The merged, validated config of a design (config.yaml + the design's overlay, written to `workdir`)."""
    from aesthetic_mtl.config import load_config

    overlay = workdir / f"design_{name}.yaml"
    overlay.parent.mkdir(parents=True, exist_ok=True)
    overlay.write_text(yaml.safe_dump(DESIGNS[name], sort_keys=False))
    return load_config(REPO / "config.yaml", overlay)


@dataclass
class Dataset:
    name: str
    labels: object          # DataFrame: image, path, split, raw attributes
    scaled: object          # DataFrame: image, split, attributes on [0, 1] (scaled_labels.tsv)


def prepare_data(cfg: dict, workdir: Path) -> dict[str, Dataset]:
    """Every dataset's JPEGs and tables (untimed: both ways start from them)."""
    from aesthetic_mtl.files import read_tsv

    out = {}
    for name, ds in cfg["datasets"].items():
        results = workdir / "results" / name
        if not (results / "scaled_labels.tsv").exists():
            prepare_dataset(ds, workdir / "resources" / name, results)
        out[name] = Dataset(name, read_tsv(results / "labels.tsv"), read_tsv(results / "scaled_labels.tsv"))
    return out


@dataclass
class DesignRun:
    """SRCC of every (dataset, setting, seed, stage, target) and where the time went."""

    srcc: dict = field(default_factory=dict)      # (dataset, setting, seed, stage, target) -> SRCC
    preds: dict = field(default_factory=dict)     # (dataset, setting, seed, stage) -> test predictions
    seconds: dict = field(default_factory=dict)   # phase -> seconds
    tables: list = field(default_factory=list)    # (metrics meta, predictions table) of every model and test set

    def add_time(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


@contextlib.contextmanager
def contiguous_preprocess(enabled: bool):
    """Make `AestheticModel.preprocess` return a contiguous NCHW tensor, as a torch Dataset + default collate
    gives the network (the package permutes the NHWC uint8 cache without copying, so its forward pass
    runs on channels-last tensors). Used for the agreement control only."""
    if not enabled:
        yield
        return
    from aesthetic_mtl.nn.model import AestheticModel

    original = AestheticModel.preprocess
    AestheticModel.preprocess = lambda self, images: original(self, images).contiguous()
    try:
        yield
    finally:
        AestheticModel.preprocess = original


def fast_path(cfg: dict, data: dict[str, Dataset], workdir: Path, *, threads: int, nchw: bool = False) -> DesignRun:
    """The pipeline's steps in one process, with the package functions the workflow's jobs call: image cache
    -> feature cache -> for every setting and seed `train.train_and_predict` (stage 1 from pooled features,
    stage 2 from prefix activations, test predictions on every dataset after each). `nchw`: the feature
    cache computed from contiguous NCHW input (see `contiguous_preprocess`)."""
    import torch

    from aesthetic_mtl.config import settings
    from aesthetic_mtl.data.image_cache import build_image_cache
    from aesthetic_mtl.specs import ImageSpec
    from aesthetic_mtl.nn.feature_cache import build_feature_cache, open_feature_cache
    from aesthetic_mtl.nn.train import CachedDataset

    run = DesignRun()
    size, backbone = cfg["images"]["size"], cfg["backbone"]["name"]
    shutil.rmtree(workdir, ignore_errors=True)
    cached = {}
    with contiguous_preprocess(nchw):
        for name, ds in data.items():
            image_dir, cache_dir = workdir / name / f"images_{size}", workdir / name / f"{backbone}_{size}"
            t0 = time.perf_counter()
            build_image_cache(ds.labels, image_dir, ImageSpec.from_config(cfg["images"]), on_bad_image="error",
                              workers=threads, log=quiet, progress=False)
            run.add_time("image_cache", time.perf_counter() - t0)
            t0 = time.perf_counter()
            build_feature_cache(image_dir, cache_dir, backbone, weights_file(cfg),
                                batch_size=cfg["backbone"]["cache_batch_size"],
                                dtype=cfg["backbone"]["cache_dtype"], threads=threads,
                                bf16_cuda=cfg["backbone"]["cache_bf16_autocast_cuda"], log=quiet)
            run.add_time("feature_cache", time.perf_counter() - t0)
            cached[name] = CachedDataset(name, *open_feature_cache(cache_dir), ds.scaled)
        test_sets = {name: (cached[name], list(cfg["datasets"][name]["attributes"])) for name in cached}
        for name in data:  # every model predicts every dataset's test split, as the workflow's jobs do
            for setting, targets in settings(cfg, name).items():
                for seed in cfg["training"]["seeds"]:
                    train_model(cfg, cached[name], test_sets, setting, targets, seed, run, device=torch.device("cpu"))
    return run


def train_model(cfg: dict, data, test_sets: dict, setting: str, targets: list[str], seed: int, run: DesignRun, *,
                device) -> None:
    """One (dataset, setting, seed) of the fast path: `train.train_and_predict`, as every training job calls it."""
    from aesthetic_mtl.nn.train import train_and_predict
    from aesthetic_mtl.specs import TrainingSpec
    from aesthetic_mtl.report.metrics import srcc

    spec = TrainingSpec.from_config(cfg["backbone"]["name"], cfg["head"], cfg["training"])
    t0 = time.perf_counter()

    def record(result) -> None:
        nonlocal t0
        run.add_time(f"train_{result.stage}", time.perf_counter() - t0)
        for test, table in result.predictions.items():
            run.tables.append(({"dataset": test, "train_dataset": data.name, "backbone": spec.backbone,
                                "setting": setting, "stage": result.stage, "seed": seed}, table))
        own = result.predictions[data.name]
        pred = own[[f"pred_{t}" for t in targets]].to_numpy()
        run.preds[(data.name, setting, seed, result.stage)] = pred
        for j, target in enumerate(targets):
            run.srcc[(data.name, setting, seed, result.stage, target)] = srcc(pred[:, j],
                                                                              own[f"true_{target}"].to_numpy())
        t0 = time.perf_counter()

    train_and_predict(spec, data, targets, seed, test_sets=test_sets, weights_file=weights_file(cfg), device=device,
                      log=quiet, on_stage=record)


def score(cfg: dict, run: DesignRun) -> float:
    """Seconds to turn every predictions table of `run` into the long metrics table, in-process, as the
    workflow's `metrics` job does (SRCC, PLCC, KRCC, MSE, RMSE, bootstrap CI; own and cross-dataset)."""
    from aesthetic_mtl.report.evaluate import score_predictions

    ev = cfg["evaluation"]
    t0 = time.perf_counter()
    for meta, table in run.tables:
        score_predictions(table, meta, cfg["experiment"].get("cross_dataset", {}), ev["bootstrap"],
                          ev["bootstrap_seed"])
    return time.perf_counter() - t0


def prediction_diff(a: dict, b: dict) -> float:
    """Largest |a - b| between the test predictions of two runs, over the models both have."""
    import numpy as np

    return max((float(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)).max(initial=0.0))
                for k in a.keys() & b.keys()), default=0.0)


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


class DesignWorkflow(Workflow):
    """The design through `snakemake --cores N results/metrics.tsv` in a copy of the repository.

    `prepare` runs the data steps the in-process path also leaves untimed (synthetic release, extract,
    parse, split, scale_labels) and the weights copy; each `run_design` deletes every later output and times
    the rest: image and feature caches, both stages of every model, predictions, the metrics table.
    """

    def __init__(self, workdir: Path, name: str, cores: int) -> None:
        super().__init__(workdir / "repo", DESIGNS[name], ["--cores", str(cores)])
        self.cfg = load_design(name, workdir)

    def prepare(self) -> float:
        targets = [f"results/{ds}/scaled_labels.tsv" for ds in self.cfg["datasets"]]
        if self.cfg["backbone"]["weights"] == "imagenet":
            targets.append(f"resources/weights/{self.cfg['backbone']['name']}.pth")
        return self.run(*targets)

    def clean(self) -> None:
        results = self.repo / "results"
        for path in (p for ds in self.cfg["datasets"] for p in results.joinpath(ds).glob("images_*")):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        for sub in ("cache", "models", "predictions"):
            shutil.rmtree(results / sub, ignore_errors=True)
        (results / "metrics.tsv").unlink(missing_ok=True)

    def run_design(self) -> float:
        self.clean()
        return self.run("results/metrics.tsv")

    def jobs(self) -> int:
        """Jobs one timed run executes (from a dry run after cleaning)."""
        self.clean()
        self.run("results/metrics.tsv", "-n", "--quiet", "rules", log=self.repo / "dryrun.log")
        for line in (self.repo / "dryrun.log").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "total" and parts[1].isdigit():
                return int(parts[1])
        return 0

    def srcc(self) -> dict:
        """Own-dataset test SRCC from the run's metrics table, keyed like `DesignRun.srcc`."""
        import pandas as pd

        m = pd.read_csv(self.repo / "results" / "metrics.tsv", sep="\t")
        m = m[(m["metric"] == "srcc") & (m["dataset"] == m["train_dataset"])]
        return {(r.dataset, r.setting, int(r.seed), r.stage, r.target): float(r.value) for r in m.itertuples()}
