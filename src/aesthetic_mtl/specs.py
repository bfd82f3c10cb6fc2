"""Typed specs built from a validated config: what the network floor (`nn/`), the image decoder and scoring
receive instead of the config's dicts.

Validation fills every absent key with its default from the schema (`config.schema.yaml`, the one home of
every default), so the builders here read keys without restating a default. Code that has no full config
(tests, notebooks, benchmarks) builds a spec with `from_config` on a partial section: `schema_defaults` fills
what it leaves out, from the same schema.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from aesthetic_mtl.config import schema_defaults, settings

STAGES = ("stage1", "stage2")
STAGE_STREAMS = {"stage1": 0, "stage2": 1}
"""The random stream of each stage's shuffling and dropout, so stage 2 does not replay stage 1's batches."""


class Plain:
    """A spec as plain data and back. Rules pass specs as plain data: Snakemake compares a param's repr to
    decide reruns and ignores objects it cannot represent, so a dataclass param would never trigger one."""

    def plain(self) -> dict:
        """Lists, dicts, numbers and strings only (paths as strings)."""
        return json.loads(json.dumps(asdict(self), default=str))


def _section(name: str, given: Mapping) -> dict:
    """A config section with the schema's defaults under what it gives."""
    return {**schema_defaults(name), **given}


@dataclass(frozen=True)
class ImageSpec(Plain):
    """How every photo becomes the network's input (`images.*`): one decode, one resize, the same for the
    image cache, Grad-CAM and scoring."""

    size: int
    resize: str
    interpolation: str
    max_pixels: int | None

    @classmethod
    def from_config(cls, images: Mapping) -> "ImageSpec":
        images = _section("images", images)
        return cls(int(images["size"]), images["resize"], images["interpolation"], images["max_pixels"])

    @classmethod
    def from_plain(cls, data: Mapping) -> "ImageSpec":
        return cls(**data)


@dataclass(frozen=True)
class StageSpec(Plain):
    """Hyper-parameters of one training stage (`training.*`, `training.<stage>.*`).

    `schedule`: how the lr halves every `halve_every_steps` steps: "staircase" (lr0 * 0.5 ** (step // n),
    PyTorch's StepLR) or "continuous" (lr0 * 0.5 ** (step / n): Keras' ExponentialDecay default).
    `adam`: "keras" (Keras' update, epsilon added before the bias correction: `nn.optim.KerasAdam`) or "torch"
    (`torch.optim.Adam`); `stream`: the stage's random stream (`STAGE_STREAMS`).
    """

    epochs: int
    lr: float
    batch_size: int
    halve_every_steps: int | None
    schedule: str
    adam_eps: float
    adam: str
    stream: int

    @classmethod
    def from_config(cls, training: Mapping, stage: str) -> "StageSpec":
        training = _section("training", training)
        own = {**schema_defaults("training", stage), **training[stage]}
        return cls(epochs=own["epochs"], lr=own["lr"], batch_size=training["batch_size"],
                   halve_every_steps=own["halve_every_steps"], schedule=own["schedule"],
                   adam_eps=training["adam_eps"], adam=training["adam"], stream=STAGE_STREAMS[stage])

    @classmethod
    def from_plain(cls, data: Mapping) -> "StageSpec":
        return cls(**data)


@dataclass(frozen=True)
class HeadSpec(Plain):
    """The paper's head (`head.*`): hidden widths, dropout, initialisation, per-target loss weights."""

    hidden: tuple[int, ...]
    dropout: float
    init: str
    loss_weights: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_config(cls, head: Mapping) -> "HeadSpec":
        head = _section("head", head)
        return cls(tuple(head["hidden"]), float(head["dropout"]), head["init"], dict(head["loss_weights"]))

    @classmethod
    def from_plain(cls, data: Mapping) -> "HeadSpec":
        return cls(**{**data, "hidden": tuple(data["hidden"])})


@dataclass(frozen=True)
class TrainingSpec(Plain):
    """Everything that decides how a model is trained, nothing more: the backbone, the head, both stages and
    the trunk's precision on a GPU (the seed list only says *which* models exist; where the caches live
    while a job trains, `training.cache_placement`, changes no result)."""

    backbone: str
    head: HeadSpec
    stage1: StageSpec
    stage2: StageSpec
    bf16_cuda: bool

    @classmethod
    def from_config(cls, backbone: str, head: Mapping, training: Mapping) -> "TrainingSpec":
        training = _section("training", training)
        return cls(backbone, HeadSpec.from_config(head), StageSpec.from_config(training, "stage1"),
                   StageSpec.from_config(training, "stage2"), bool(training["bf16_autocast_cuda"]))

    def stage(self, name: str) -> StageSpec:
        return {"stage1": self.stage1, "stage2": self.stage2}[name]

    @classmethod
    def from_plain(cls, data: Mapping) -> "TrainingSpec":
        return cls(data["backbone"], HeadSpec.from_plain(data["head"]), StageSpec.from_plain(data["stage1"]),
                   StageSpec.from_plain(data["stage2"]), data["bf16_cuda"])


@dataclass(frozen=True)
class DatasetInfo(Plain):
    """What models and reports need of a dataset: its attributes with their raw ranges, its overall score,
    where its data come from (synthetic data are never compared with the paper) and display names."""

    name: str
    attributes: Mapping[str, tuple[float, float]]
    overall: str
    source: str
    display_names: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, name: str, ds: Mapping, *, display_names: bool = True) -> "DatasetInfo":
        return cls(name, {t: tuple(r) for t, r in ds["attributes"].items()}, ds["overall"], ds["source"],
                   dict(ds.get("display_names") or {}) if display_names else {})

    @classmethod
    def from_plain(cls, data: Mapping) -> "DatasetInfo":
        return cls(**{**data, "attributes": {t: tuple(r) for t, r in data["attributes"].items()}})


@dataclass(frozen=True)
class TestSet(Plain):
    """A dataset a training job predicts on, with the files it reads: the feature cache folder, the scaled
    labels and the image cache's list of skipped images."""

    dataset: str
    attributes: tuple[str, ...]
    cache: Path
    scaled_labels: Path
    skipped: Path

    @classmethod
    def from_plain(cls, data: Mapping) -> "TestSet":
        return cls(data["dataset"], tuple(data["attributes"]), Path(data["cache"]), Path(data["scaled_labels"]),
                   Path(data["skipped"]))


@dataclass(frozen=True)
class TrainingJob(Plain):
    """One training job of the workflow: the models of one dataset, backbone and seed (setting -> targets),
    how they train, the test sets they predict on, the trunk weights and the input images' spec. The rule
    passes it as a param (a rerun trigger) and takes its inputs from `inputs()`, so the two cannot disagree."""

    info: DatasetInfo
    backbone: str
    seed: int
    models: Mapping[str, tuple[str, ...]]
    spec: TrainingSpec
    images: ImageSpec
    test_sets: tuple[TestSet, ...]
    weights_spec: str
    weights_file: Path | None

    def inputs(self) -> dict[str, str]:
        """The job's input files by name: each test set's caches and tables, and the trunk weights."""
        files = {}
        for t in self.test_sets:
            files.update({f"{t.dataset}_{name}": str(path) for name, path in (
                ("prefix", t.cache / "prefix.npy"), ("pooled", t.cache / "pooled.npy"),
                ("index", t.cache / "index.tsv"), ("scaled_labels", t.scaled_labels), ("skipped", t.skipped))})
        if self.weights_file is not None:
            files["weights"] = str(self.weights_file)
        return files

    @classmethod
    def from_plain(cls, data: Mapping) -> "TrainingJob":
        return cls(DatasetInfo.from_plain(data["info"]), data["backbone"], data["seed"],
                   {s: tuple(t) for s, t in data["models"].items()}, TrainingSpec.from_plain(data["spec"]),
                   ImageSpec.from_plain(data["images"]), tuple(TestSet.from_plain(t) for t in data["test_sets"]),
                   data["weights_spec"], Path(data["weights_file"]) if data["weights_file"] else None)


def training_job(config: Mapping, dataset: str, chunk: Sequence[str], backbone: str, seed: int, *,
                 results: str | Path, weights_file: str | Path | None) -> TrainingJob:
    """The job that trains the settings `chunk` of `dataset` on `backbone` with `seed`: its spec from the
    config, its test sets (every dataset) with their files under `results`."""
    results = Path(results)
    size = config["images"]["size"]
    test_sets = tuple(TestSet(test, tuple(ds["attributes"]), results / "cache" / test / f"{backbone}_{size}",
                              results / test / "scaled_labels.tsv", results / test / f"images_{size}" / "skipped.tsv")
                      for test, ds in config["datasets"].items())
    models = settings(config, dataset)
    return TrainingJob(DatasetInfo.from_config(dataset, config["datasets"][dataset], display_names=False), backbone,
                       int(seed), {s: tuple(models[s]) for s in chunk},
                       TrainingSpec.from_config(backbone, config["head"], config["training"]),
                       ImageSpec.from_config(config["images"]), test_sets, config["backbone"]["weights"],
                       Path(weights_file) if weights_file else None)
