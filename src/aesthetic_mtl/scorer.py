"""Score photos with a trained model from Python; `aesthetic-mtl predict` runs the same code.

    import aesthetic_mtl

    scorer = aesthetic_mtl.load("results/demo/models/AADB/efficientnet_lite0/multitask/seed1/stage2.pt")
    scores = scorer.predict(["photo1.jpg", "photo2.jpg"])   # DataFrame: image, then every target
    print(scorer.targets, scorer.ranges, scorer.backbone, scorer.test_srcc)

`load` takes a checkpoint written by training or a file written by `aesthetic-mtl export`. `predict` takes
paths, PIL images or uint8 arrays, one or many, and returns each target on its dataset's original scale,
the overall score first. Photos are decoded by worker threads while the model scores the batch before
(Pillow and torch both release the GIL), so a folder of large JPEGs keeps every core busy; on CUDA the
batches go through pinned memory with non-blocking copies.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import torch
from PIL import Image

from aesthetic_mtl.data.image_cache import ordered_map
from aesthetic_mtl.data.images import load_image, pixels_of
from aesthetic_mtl.data.scaling import from_unit
from aesthetic_mtl.errors import DataError
from aesthetic_mtl.nn.checkpoint import ModelCard, open_model
from aesthetic_mtl.nn.device import autocast, named_device
from aesthetic_mtl.nn.model import AestheticModel
from aesthetic_mtl.report.seed_stats import read_metrics

ON_ERROR = ("raise", "skip")


def default_workers() -> int:
    """Decoding threads: one per core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Scorer:
    """A trained model that scores photos (`load` makes one).

    Attributes: `targets` (overall score first), `ranges` (each target's original scale), `overall`,
    `backbone`, `dataset`, `stage`, `setting`, `seed`, `image_size`, `test_srcc` (the overall score's test SRCC
    when recorded: in an exported file, or in the `metrics.tsv` of the run the checkpoint belongs to), `card`
    (every fact), `device`.
    """

    def __init__(self, model: AestheticModel, card: ModelCard, *, device: torch.device | str = "cpu") -> None:
        self.model, self.card, self.device = model, card, torch.device(device)
        self.model.to(self.device).eval()
        overall = [card.overall] if card.overall in card.targets else []
        self.targets = overall + [t for t in card.targets if t not in overall]
        self.ranges = {t: tuple(card.ranges[t]) for t in self.targets}

    def __getattr__(self, name: str):
        if name in ("overall", "backbone", "dataset", "stage", "setting", "seed", "image_size", "test_srcc"):
            return getattr(self.card, name)
        raise AttributeError(name)

    def __repr__(self) -> str:
        return (f"Scorer({self.backbone}, {self.stage}, dataset {self.dataset}, {len(self.targets)} targets, "
                f"overall {self.overall}, device {self.device})")

    def predict(self, images, *, batch_size: int = 32, workers: int | None = None, bf16: bool | None = None,
                on_error: str = "raise", progress: Callable[[int], object] | None = None,
                errors: Callable[[str, DataError], object] | None = None) -> pd.DataFrame:
        """Scores of `images` (a path, PIL image or uint8 array, or a sequence of them; a 4-D array is a batch).

        Returns a DataFrame indexed by each photo's position in `images`: `image` (its path, None for a photo
        in memory), then every target on its original scale, overall score first. `on_error`: "raise" stops
        at the first photo that cannot be read (a `DataError` naming it), "skip" leaves it out (`errors` is
        told each one). `workers` decoding threads (default one per core; 0 decodes in this thread);
        `bf16`: bf16 autocast of the trunk on CUDA (default: as the model was trained); `progress` is
        called with the number of photos done after each batch.
        """
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        items = list(_items(images))
        workers = default_workers() if workers is None else workers
        kept, outputs = [], []
        for positions, pixels in self._batches(items, batch_size, workers, on_error, errors):
            outputs.append(self._forward(pixels, self.card.bf16 if bf16 is None else bf16))
            kept += positions
            if progress is not None:
                progress(len(positions))
        unit = np.concatenate(outputs) if outputs else np.zeros((0, len(self.card.targets)), np.float32)
        table = pd.DataFrame({"image": [_label(items[i]) for i in kept]}, index=pd.Index(kept, name="input"))
        for t in self.targets:
            j = self.card.targets.index(t)
            table[t] = from_unit(unit[:, j], *self.card.ranges[t]) if len(unit) else np.zeros(0)
        return table

    def _batches(self, items: list, batch_size: int, workers: int, on_error: str,
                 errors) -> Iterator[tuple[list[int], np.ndarray]]:
        """(positions, uint8 pixels) of up to `batch_size` readable photos, decoded ahead by `workers` threads."""
        decoded = ordered_map(self._decode, enumerate(items), workers, ahead=batch_size + 2 * max(workers, 1))
        positions, pixels = [], []
        for (i, item), result in decoded:
            if isinstance(result, DataError):
                if on_error == "raise":
                    raise result
                if errors is not None:
                    errors(_label(item) or f"photo {i}", result)
                continue
            positions.append(i)
            pixels.append(result)
            if len(pixels) == batch_size:
                yield positions, np.stack(pixels)
                positions, pixels = [], []
        if pixels:
            yield positions, np.stack(pixels)

    def _decode(self, job: tuple[int, object]) -> np.ndarray | DataError:
        """One photo as the model's image cache decoded its training photos; a bad one is returned, not raised."""
        i, item = job
        c = self.card
        try:
            if isinstance(item, Path):
                return load_image(item, c.images)
            return pixels_of(item, c.images, name=f"photo {i}")
        except DataError as e:
            return e

    def _forward(self, pixels: np.ndarray, bf16: bool) -> np.ndarray:
        """The model's [0, 1] outputs for a batch of uint8 pixels (the head always in float32)."""
        x = torch.from_numpy(pixels)
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        with torch.inference_mode(), autocast(self.device, bf16):
            return self.model(x.to(self.device)).float().cpu().numpy()


def _items(images) -> Iterator[object]:
    """Each photo of `images`: paths become Path, PIL images and arrays stay; a 4-D array is a batch."""
    if isinstance(images, (str, os.PathLike, Image.Image)):
        images = [images]
    elif isinstance(images, np.ndarray):
        images = list(images) if images.ndim == 4 else [images]
    for item in images:
        if isinstance(item, (str, os.PathLike)):
            yield Path(item)
        elif isinstance(item, (Image.Image, np.ndarray)):
            yield item
        else:
            raise TypeError(f"a {type(item).__name__} is not a photo: give paths, PIL images or uint8 arrays")


def _label(item: object) -> str | None:
    return str(item) if isinstance(item, Path) else None


def load(path: str | os.PathLike, *, weights: str | os.PathLike | None = None,
         device: torch.device | str | None = None) -> Scorer:
    """A `Scorer` of a checkpoint (stage1.pt / stage2.pt) or an exported model (`aesthetic-mtl export`).

    A checkpoint copied to another machine finds its trunk weights by name (downloaded into the user cache and
    checked against the sha256 training recorded) unless `weights` names the file. `device`: default CUDA when
    available, else the CPU."""
    model, card = open_model(path, weights)
    if card.test_srcc is None:
        card = replace(card, test_srcc=recorded_test_srcc(Path(path), card))
    return Scorer(model, card, device=named_device(device))


def recorded_test_srcc(checkpoint: Path, card: ModelCard) -> float | None:
    """The overall score's test SRCC of a checkpoint, from the metrics.tsv of the run it belongs to
    (<results>/models/<dataset>/<backbone>/<setting>/seed<seed>/<stage>.pt -> <results>/metrics.tsv)."""
    parents = checkpoint.resolve().parents
    if len(parents) < 6 or card.overall is None:
        return None
    metrics = parents[5] / "metrics.tsv"
    if parents[4].name != "models" or not metrics.is_file():
        return None
    return srcc_of(read_metrics(metrics), card.dataset, card.backbone, card.setting, card.seed, card.stage,
                   card.overall)


def srcc_of(metrics: pd.DataFrame, dataset, backbone, setting, seed, stage, target) -> float | None:
    """One model's own-dataset test SRCC of `target` from a metrics table (None when it is not there)."""
    m = metrics
    row = m[(m["dataset"] == str(dataset)) & (m["train_dataset"] == str(dataset)) & (m["backbone"] == str(backbone))
            & (m["setting"] == str(setting)) & (m["seed"] == (seed if seed is not None else -1))
            & (m["stage"] == str(stage)) & (m["target"] == str(target)) & (m["metric"] == "srcc")]
    return float(row["value"].iloc[0]) if len(row) and np.isfinite(row["value"].iloc[0]) else None


def find_checkpoints(results: Path) -> Iterable[Path]:
    """Every checkpoint under a run's results folder, in the workflow's layout."""
    return sorted((results / "models").glob("*/*/*/seed*/stage*.pt"))
