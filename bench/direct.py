"""The paper's procedure as a straightforward PyTorch port would write it: the reference the fast path
is measured against.

For every (dataset, setting, seed): a fresh network (the same trunk and weights as the pipeline, the
paper's head), a `torch.utils.data.Dataset` that opens and fully decodes each JPEG with PIL and resizes
it every time an image is used, the whole network run on every batch, stage 1 (head only, Adam 1e-3)
then stage 2 (stage-2 layers + head, Adam 1e-4 halved every `halve_every_steps` steps), a validation
loss after every epoch, and test predictions + SRCC after each stage.

It shares no code with the pipeline's training (train.py, feature_cache.py, images.py, image_cache.py); it only reuses the
backbone registry, so that both build exactly the same trunk. To make the two comparable number by
number it also follows the same conventions:

- pixels: full decode, RGB, then the resize `images.interpolation` names (`bicubic_fast`: Pillow's
  antialiased bicubic with `reducing_gap=3`; `images.load_image` adds JPEG draft decoding only for photos
  >= 2x the input size, which the benchmark's 256 px photos at 160 px are not; the others: one plain
  Pillow resize, as Keras' `load_img`), so the pixels are identical (checked);
- normalisation `(x - offset) / scale` on 0..255 values, the backbone's own constants;
- the trunk stays in eval mode (frozen BatchNorm statistics), as in the pipeline;
- random numbers: `torch.manual_seed(seed)` before the head is built and before each stage (dropout
  masks come from the global generator), and one `torch.randperm` per epoch from a generator seeded
  with `seed` for the batch order (stage 2: a seed derived from (seed, 1), so it does not repeat
  stage 1's order); the head starts as `head.init` says (Keras: glorot-uniform, zero bias), Adam follows
  `training.adam` (Keras' update written out below, or torch's) with `training.adam_eps`, and the halving
  follows `schedule` (continuous: Keras' ExponentialDecay). `DataLoader(shuffle=True)` would draw a worker base seed from the
  same stream and `RandomSampler` draws one extra permutation per epoch, so the port uses a
  three-line sampler and gives the loader its own generator.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from common import weights_file
from design import DesignRun
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler


def decode(path: str | Path, size: int, interpolation: str) -> np.ndarray:
    """Open, fully decode, convert to RGB, resize to size x size: `bicubic_fast` antialiased bicubic with a
    reducing gap of 3; otherwise as keras.utils.load_img does with that interpolation (one plain resize)."""
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    if interpolation == "bicubic_fast":
        return np.asarray(rgb.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0))
    return np.asarray(rgb.resize((size, size), Image.Resampling[interpolation.upper()]))


class JpegDataset(Dataset):
    """Images decoded from their files on every access, normalised, as float CHW tensors."""

    def __init__(self, paths: Sequence[str], y: np.ndarray, size: int, interpolation: str, offset, scale,
                 channel_order: str = "RGB") -> None:
        self.paths, self.y, self.size = list(paths), torch.from_numpy(np.asarray(y, np.float32)), size
        self.interpolation = interpolation
        self.bgr = channel_order == "BGR"   # vgg16_keras: caffe input
        self.offset = torch.tensor(offset, dtype=torch.float32).view(3, 1, 1)
        self.scale = torch.tensor(scale, dtype=torch.float32).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        x = torch.from_numpy(decode(self.paths[i], self.size, self.interpolation)).permute(2, 0, 1).float()
        if self.bgr:
            x = x.flip(0)
        return (x - self.offset) / self.scale, self.y[i]


class EpochShuffle(Sampler):
    """One permutation per epoch from its own seeded generator."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.generator = n, torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        yield from torch.randperm(self.n, generator=self.generator).tolist()


class Net(nn.Module):
    """Trunk -> global average pooling -> Dense 128 ReLU -> Dense 64 ReLU -> Dropout -> sigmoid outputs."""

    def __init__(self, features: nn.Sequential, width: int, n_out: int, hidden=(128, 64), dropout=0.35,
                 init: str = "torch") -> None:
        super().__init__()
        self.features = features
        layers, w = [], width
        for h in hidden:
            layers += [nn.Linear(w, h), nn.ReLU()]
            w = h
        self.head = nn.Sequential(*layers, nn.Dropout(dropout), nn.Linear(w, n_out), nn.Sigmoid())
        if init == "keras":  # Keras' Dense default: glorot-uniform kernel, zero bias
            for m in self.head:
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))

    def train(self, mode: bool = True) -> "Net":
        super().train(mode)
        self.features.eval()  # frozen BatchNorm statistics, in both stages
        return self


def _loader(ds: Dataset, batch_size: int, num_workers: int, sampler: Sampler | None = None) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=num_workers,
                      generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def _predict(net: Net, ds: Dataset, batch_size: int, num_workers: int) -> np.ndarray:
    net.eval()
    out = [net(x) for x, _ in _loader(ds, batch_size, num_workers)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def _stream_seed(seed: int, stream: int) -> int:
    """Stage 1 draws from `seed`, stage 2 from a seed derived from (seed, 1), as the pipeline's stages do."""
    if stream == 0:
        return seed
    return int(np.random.SeedSequence([seed, stream]).generate_state(1, dtype=np.uint64)[0] >> 1)


class TextbookKerasAdam(torch.optim.Optimizer):
    """keras.optimizers.Adam as its documentation writes it: t += 1; m = 0.9 m + 0.1 g; v = 0.999 v + 0.001 g^2;
    theta -= lr * sqrt(1 - 0.999^t) / (1 - 0.9^t) * m / (sqrt(v) + eps)."""

    def __init__(self, params, lr: float, eps: float) -> None:
        super().__init__(params, {"lr": lr, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in (p for p in group["params"] if p.grad is not None):
                state = self.state[p]
                if not state:
                    state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                state["t"] += 1
                state["m"] = 0.9 * state["m"] + 0.1 * p.grad
                state["v"] = 0.999 * state["v"] + 0.001 * p.grad ** 2
                step = group["lr"] * (1 - 0.999 ** state["t"]) ** 0.5 / (1 - 0.9 ** state["t"])
                p -= step * state["m"] / (state["v"].sqrt() + group["eps"])


def _scheduler(optimizer, halve_every: int | None, schedule: str):
    """lr0 * 0.5 ** (step // n) (staircase) or lr0 * 0.5 ** (step / n) (continuous, Keras' default)."""
    if not halve_every:
        return None
    if schedule == "staircase":
        return torch.optim.lr_scheduler.StepLR(optimizer, halve_every, gamma=0.5)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** (step / halve_every))


def train_stage(net: Net, params: list[nn.Parameter], train: JpegDataset, val: JpegDataset, *, epochs: int,
                lr: float, batch_size: int, halve_every: int | None, seed: int, num_workers: int,
                schedule: str = "staircase", adam: str = "torch", eps: float = 1e-8) -> list[dict]:
    torch.manual_seed(seed)
    sampler = EpochShuffle(len(train), seed)
    loader = _loader(train, batch_size, num_workers, sampler)
    optimizer = (TextbookKerasAdam if adam == "keras" else torch.optim.Adam)(params, lr=lr, eps=eps)
    scheduler = _scheduler(optimizer, halve_every, schedule)
    mse = nn.MSELoss()
    history = []
    for epoch in range(epochs):
        net.train()
        losses = []
        for x, y in loader:
            loss = mse(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            losses.append(loss.item())
        val_pred = _predict(net, val, batch_size, num_workers)
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
                        "val_loss": float(np.mean((val_pred - val.y.numpy()) ** 2))})
    net.eval()
    return history


def direct_path(cfg: dict, data: dict, *, threads: int) -> DesignRun:
    """Every (dataset, setting, seed), both stages, from the JPEG files, on the CPU."""
    from aesthetic_mtl.config import settings
    from aesthetic_mtl.nn.backbones import build_backbone
    from aesthetic_mtl.report.metrics import srcc

    torch.set_num_threads(threads)
    run = DesignRun()
    tcfg, hcfg = cfg["training"], cfg["head"]
    size, name_bb, wfile = cfg["images"]["size"], cfg["backbone"]["name"], weights_file(cfg)
    interpolation = cfg["images"].get("interpolation", "bicubic_fast")
    workers = 0  # the images are decoded in this process, as a plain port would
    for name, ds in data.items():
        path_of = dict(zip(ds.labels["image"], ds.labels["path"]))
        for setting, targets in settings(cfg, name).items():
            parts = {}
            for split in ("train", "validation", "test"):
                rows = ds.scaled[ds.scaled["split"] == split]
                parts[split] = ([path_of[i] for i in rows["image"]], rows[list(targets)].to_numpy(np.float32))
            for seed in tcfg["seeds"]:
                t0 = time.perf_counter()
                torch.manual_seed(seed)
                backbone = build_backbone(name_bb, wfile)
                net = Net(backbone.features, backbone.pooled_width, len(targets), hcfg["hidden"], hcfg["dropout"],
                          hcfg.get("init", "torch"))
                sets = {s: JpegDataset(p, y, size, interpolation, backbone.offset, backbone.scale, backbone.channel_order)
                        for s, (p, y) in parts.items()}
                run.add_time("build_model", time.perf_counter() - t0)
                for stream, stage in enumerate(("stage1", "stage2")):  # stage 2 draws from its own stream
                    for p in net.features.parameters():
                        p.requires_grad_(False)
                    params = list(net.head.parameters())
                    if stage == "stage2":
                        for i in backbone.stage2_layers:
                            for p in net.features[i].parameters():
                                p.requires_grad_(True)
                                params.append(p)
                    st = tcfg[stage]
                    t0 = time.perf_counter()
                    train_stage(net, params, sets["train"], sets["validation"], epochs=st["epochs"], lr=st["lr"],
                                batch_size=tcfg["batch_size"], halve_every=st.get("halve_every_steps"),
                                seed=_stream_seed(seed, stream), num_workers=workers,
                                schedule=st.get("schedule", "staircase"), adam=tcfg.get("adam", "torch"),
                                eps=tcfg.get("adam_eps", 1e-8))
                    run.add_time(f"train_{stage}", time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    pred = _predict(net, sets["test"], 64, workers)
                    run.add_time("predict", time.perf_counter() - t0)
                    run.preds[(name, setting, seed, stage)] = pred
                    y = parts["test"][1]
                    for j, target in enumerate(targets):
                        run.srcc[(name, setting, seed, stage, target)] = srcc(pred[:, j], y[:, j])
    return run


def pixel_check(data: dict, fast_workdir: Path, size: int, interpolation: str) -> dict:
    """Compare this port's decoded pixels with the fast path's image cache, image by image."""
    from aesthetic_mtl.data.image_cache import open_image_cache

    worst, differing, n = 0, 0, 0
    for name, ds in data.items():
        images, index = open_image_cache(fast_workdir / name / f"images_{size}")
        path_of = dict(zip(ds.labels["image"], ds.labels["path"]))
        for row, image in zip(index["row"], index["image"]):
            diff = np.abs(decode(path_of[image], size, interpolation).astype(np.int16) - images[row].astype(np.int16)).max()
            worst, differing, n = max(worst, int(diff)), differing + int(diff > 0), n + 1
    return {"images": n, "differing": differing, "max_abs": worst}
