"""The paper's two training stages, run from the feature caches.

Stage 1 trains the head on pooled features of the frozen trunk (Adam, lr 1e-3, 5 epochs).
Stage 2 starts from the stage-1 model and trains the stage-2 layers and the head on the cached
frozen-prefix activations (Adam, lr 1e-4 halved every 125 steps, 3 epochs). Because the trunk runs in
eval mode, this is the same computation as training end to end on images: `fit` takes any input array
and a matching forward function, and the tests run it both ways. With a float32 cache the two agree to
float rounding (tested on the CPU); a float16 cache rounds the stored prefix activations (its effect on
SRCC is measured in bench/results.md) and bf16 autocast on CUDA rounds the trunk's arithmetic.

The head, the loss and every prediction are float32 on every device (the head leaves autocast).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from aesthetic_mtl.errors import DataError, TrainingError
from aesthetic_mtl.nn.device import autocast
from aesthetic_mtl.nn.model import AestheticModel, build_model
from aesthetic_mtl.nn.optim import adam
from aesthetic_mtl.nn.placement import Inputs, place
from aesthetic_mtl.specs import STAGES, StageSpec, TrainingSpec

Forward = Callable[[torch.Tensor], torch.Tensor]


def stream_seed(seed: int, stream: int) -> int:
    """The seed of one random stream; stream 0 is `seed` itself (stage 1 keeps its former draws)."""
    if stream == 0:
        return seed
    return int(np.random.SeedSequence([seed, stream]).generate_state(1, dtype=np.uint64)[0] >> 1)


def lr_scheduler(optimizer: torch.optim.Optimizer, stage: StageSpec):
    """Halving every `halve_every_steps` steps, staircase or continuous; None without halving."""
    n = stage.halve_every_steps
    if not n:
        return None
    if stage.schedule == "staircase":
        return torch.optim.lr_scheduler.StepLR(optimizer, n, gamma=0.5)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** (step / n))


@dataclass(frozen=True)
class Split:
    """Rows of an input array and their [0, 1] targets."""

    rows: np.ndarray
    y: np.ndarray


def split_rows(labels: pd.DataFrame, index: pd.DataFrame, split: str, columns: Sequence[str]) -> Split:
    """Cache rows and scaled label columns of one split, in the order of `labels`."""
    part = labels[labels["split"] == split]
    row_of = dict(zip(index["image"], index["row"]))
    missing = [im for im in part["image"] if im not in row_of]
    if missing:
        raise DataError(f"{len(missing)} {split} images are not in the cache, e.g. {missing[:3]}")
    rows = np.array([row_of[im] for im in part["image"]], dtype=np.int64)
    return Split(rows, part[list(columns)].to_numpy(dtype=np.float32, copy=True))


def weighted_mse(pred: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """MSE per target, averaged with the configured target weights (equal by default)."""
    per_target = ((pred.float() - y) ** 2).mean(dim=0)
    return (per_target * weights).sum() / weights.sum()


def _inputs(inputs, device: torch.device) -> Inputs:
    """Placed inputs as they are; a plain (memory-mapped) array is read batch by batch."""
    return place(inputs, device, "memmap") if isinstance(inputs, np.ndarray) else inputs


def _row_batches(rows: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [rows[start:start + batch_size] for start in range(0, len(rows), batch_size)]


def predict(forward: Forward, inputs: Inputs | np.ndarray, rows: np.ndarray, *, bf16_cuda: bool, batch_size: int = 64,
            device: torch.device = torch.device("cpu")) -> np.ndarray:
    """Model outputs in [0, 1] for `rows` of `inputs`, in order."""
    outputs = []
    with torch.inference_mode(), autocast(device, bf16_cuda):  # the trunk only: the head leaves autocast
        for batch in _inputs(inputs, device).batches(_row_batches(rows, batch_size)):
            outputs.append(forward(batch).float().cpu())
    if not outputs:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(outputs).numpy()


def fit(model: AestheticModel, forward: Forward, inputs: Inputs | np.ndarray, train: Split, val: Split,
        stage: StageSpec, *, seed: int, params: list[torch.nn.Parameter], loss_weights: Sequence[float],
        bf16_cuda: bool, device: torch.device = torch.device("cpu"),
        log: Callable = print, desc: str = "train", on_step: Callable[[str, int], None] | None = None) -> pd.DataFrame:
    """Train `params` with Adam (Keras' or PyTorch's update: `stage.adam`) on MSE; returns the per-epoch
    history (train and validation loss). `on_step(desc, k)` is called after optimisation step k."""
    if len(train.rows) == 0:
        raise DataError("the training split is empty")
    seed = stream_seed(seed, stage.stream)
    torch.manual_seed(seed)  # dropout masks
    order_rng = torch.Generator().manual_seed(seed)  # shuffling, independent of dropout
    optimizer = adam(params, variant=stage.adam, lr=stage.lr, eps=stage.adam_eps)
    scheduler = lr_scheduler(optimizer, stage)
    weights = torch.tensor(loss_weights, dtype=torch.float32, device=device)
    y_all = torch.from_numpy(train.y).to(device)
    placed = _inputs(inputs, device)
    history, step = [], 0
    for epoch in range(1, stage.epochs + 1):
        model.train()
        perm = torch.randperm(len(train.rows), generator=order_rng).numpy()
        losses = []
        order = _row_batches(perm, stage.batch_size)
        batches = placed.batches([train.rows[idx] for idx in order])
        for idx, batch in tqdm(zip(order, batches), total=len(order), desc=f"{desc} epoch {epoch}", unit="batch",
                               mininterval=5, leave=False):
            with autocast(device, bf16_cuda):  # the trunk only: the head leaves autocast (float32 scores)
                pred = forward(batch)
            loss = weighted_mse(pred, y_all[idx], weights)
            if not torch.isfinite(loss):
                raise TrainingError(f"{desc}: loss is {loss.item()} at epoch {epoch}, step {step + 1}; "
                                    "check scaled_labels.tsv for bad values or lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step += 1
            losses.append(loss.item())
            if on_step is not None:
                on_step(desc, step)
        val_loss = evaluate_loss(model, forward, placed, val, stage.batch_size, weights, device, bf16_cuda)
        row = {"epoch": epoch, "steps": step, "train_loss": float(np.mean(losses)), "val_loss": val_loss,
               "lr": optimizer.param_groups[0]["lr"]}
        log(f"{desc} epoch {epoch}: train_loss {row['train_loss']:.5f} val_loss {val_loss:.5f} lr {row['lr']:.2e}")
        history.append(row)
    model.eval()
    return pd.DataFrame(history)


def evaluate_loss(model: AestheticModel, forward: Forward, inputs: Inputs | np.ndarray, split: Split, batch_size: int,
                  weights: torch.Tensor, device: torch.device, bf16_cuda: bool) -> float:
    """Loss on a held-out split with dropout off (NaN when the split is empty)."""
    if len(split.rows) == 0:
        return math.nan
    model.eval()
    pred = predict(forward, inputs, split.rows, batch_size=batch_size, device=device, bf16_cuda=bf16_cuda)
    loss = weighted_mse(torch.from_numpy(pred), torch.from_numpy(split.y), weights.cpu()).item()
    if not math.isfinite(loss):
        raise TrainingError(f"validation loss is {loss}")
    return loss


@dataclass
class CachedDataset:
    """One dataset's feature caches and [0, 1] targets, opened once per training job and shared by its models."""

    name: str
    prefix: np.ndarray
    pooled: np.ndarray
    index: pd.DataFrame
    labels: pd.DataFrame         # the scaled labels (scaled_labels.tsv) less skipped images
    device: torch.device = torch.device("cpu")
    placement: str = "memmap"     # training.cache_placement: where the caches live while the job trains
    placed: dict[str, Inputs] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, name: str, cache_dir, scaled_labels_path, skipped_path=None, *,
             device: torch.device = torch.device("cpu"), placement: str = "memmap",
             log: Callable = print) -> "CachedDataset":
        """Memory-mapped caches and the scaled labels, less the images the image cache skipped (its skipped.tsv).
        Each cache moves where `placement` says when a stage first needs it, once for every model of the job."""
        from pathlib import Path

        from aesthetic_mtl.data.splits import drop_skipped
        from aesthetic_mtl.files import read_tsv
        from aesthetic_mtl.nn.feature_cache import open_feature_cache

        prefix, pooled, index = open_feature_cache(Path(cache_dir))
        labels = read_tsv(scaled_labels_path)
        if skipped_path is not None:
            skipped = set(read_tsv(skipped_path)["image"])
            kept = drop_skipped(labels, skipped)
            if len(kept) < len(labels):
                log(f"{name}: {len(labels) - len(kept)} split rows of {len(skipped)} image(s) the image cache "
                    f"skipped leave the splits (listed in {skipped_path})")
            labels = kept
        return cls(name, prefix, pooled, index, labels, device, placement)

    def split(self, split: str, columns: Sequence[str]) -> Split:
        return split_rows(self.labels, self.index, split, columns)

    def inputs(self, stage: str) -> Inputs:
        """What a stage trains and predicts from: pooled features (stage 1), prefix activations (stage 2)."""
        kind = "pooled" if stage == "stage1" else "prefix"
        if kind not in self.placed:
            self.placed[kind] = place(getattr(self, kind), self.device, self.placement)
        return self.placed[kind]

    def test_images(self) -> np.ndarray:
        return self.labels.loc[self.labels["split"] == "test", "image"].to_numpy()


@dataclass
class StageResult:
    """What one stage of one model produced; `model` is the live model right after the stage."""

    stage: str
    model: AestheticModel
    history: pd.DataFrame
    predictions: dict[str, pd.DataFrame]   # test dataset -> image, pred_<target>..., true_<target>...


def prediction_table(model: AestheticModel, stage: str, test: CachedDataset, test_attributes: Sequence[str], *,
                     device: torch.device, bf16_cuda: bool) -> pd.DataFrame:
    """The model's predictions for the test split of `test`, beside the truth (both on [0, 1]).

    A stage-1 model has the pretrained trunk, so the pooled features give its output; a stage-2 model
    changed the stage-2 layers and starts from the prefix activations.
    """
    split = test.split("test", test_attributes)
    forward = model.forward_from_pooled if stage == "stage1" else model.forward_from_prefix
    pred = predict(forward, test.inputs(stage), split.rows, batch_size=64, device=device, bf16_cuda=bf16_cuda)
    table = pd.DataFrame({"image": test.test_images()})
    for j, t in enumerate(model.targets):
        table[f"pred_{t}"] = pred[:, j] if len(pred) else np.zeros(0, np.float32)
    for j, t in enumerate(test_attributes):
        table[f"true_{t}"] = split.y[:, j]
    return table


def train_and_predict(spec: TrainingSpec, data: CachedDataset, targets: Sequence[str], seed: int, *,
                      test_sets: Mapping[str, tuple[CachedDataset, Sequence[str]]], weights_file=None,
                      device: torch.device = torch.device("cpu"), log: Callable = print,
                      on_stage: Callable[[StageResult], None] | None = None,
                      on_step: Callable[[str, int], None] | None = None) -> list[StageResult]:
    """One model of the paper, start to finish: stage 1 (head on pooled features), test predictions on every
    dataset in `test_sets`, stage 2 (stage-2 layers + head on prefix activations), test predictions again.

    `on_stage` sees each stage's live model (to save a checkpoint before stage 2 changes it); `on_step(stage, k)`
    is called after each optimisation step. Everything
    random is seeded from `seed` here, so a model's result does not depend on what ran before it in the
    process: the workflow may train any number of models per job.
    """
    torch.manual_seed(seed)  # head initialisation
    model = build_model(spec.backbone, targets, weights_file, spec.head).to(device)
    train, val = data.split("train", targets), data.split("validation", targets)
    loss_weights = [spec.head.loss_weights.get(t, 1.0) for t in targets]  # unweighted targets count 1
    log(f"{data.name} {list(targets)} seed {seed}: {len(train.rows)} train / {len(val.rows)} validation images, "
        f"device {device}")
    results = []
    for stage in STAGES:
        forward = model.forward_from_pooled if stage == "stage1" else model.forward_from_prefix
        start = time.perf_counter()
        history = fit(model, forward, data.inputs(stage), train, val, spec.stage(stage), seed=seed,
                      params=model.set_stage(stage), loss_weights=loss_weights, device=device,
                      bf16_cuda=spec.bf16_cuda, log=log, desc=stage, on_step=on_step)
        fitted = time.perf_counter()
        history.insert(0, "stage", stage)
        predictions = {name: prediction_table(model, stage, test, test_attributes, device=device,
                                              bf16_cuda=spec.bf16_cuda)
                       for name, (test, test_attributes) in test_sets.items()}
        log(f"{stage}: trained {len(train.rows)} images x {spec.stage(stage).epochs} epochs in "
            f"{fitted - start:.2f} s; {sum(len(t) for t in predictions.values())} test predictions in "
            f"{time.perf_counter() - fitted:.2f} s")  # read back by bench/gpu.py
        result = StageResult(stage, model, history, predictions)
        if on_stage is not None:
            on_stage(result)
        results.append(result)
    return results
