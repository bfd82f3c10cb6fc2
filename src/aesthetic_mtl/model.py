"""The paper's model: backbone -> global average pooling -> Dense 128 ReLU -> Dense 64 ReLU ->
Dropout 0.35 -> one sigmoid output per target, all outputs sharing the head.

The model can start from three points, so training can skip work that never changes: raw uint8 images
(`forward`), cached frozen-prefix activations (`forward_from_prefix`, stage 2) and cached pooled features
(`forward_from_pooled`, stage 1). All three compute the same function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .backbones import Backbone, build_backbone
from .device import full_precision
from .io import atomic_path

HEAD_INITS = ("torch", "keras")


class Head(nn.Module):
    """Shared fully connected head with one sigmoid unit per target.

    `init`: "torch" keeps PyTorch's Linear default (kaiming-uniform weights, uniform bias); "keras" is the
    Keras Dense default (glorot-uniform kernel, zero bias), what the paper's Keras code would start from.
    """

    def __init__(self, in_features: int, n_outputs: int, hidden: Sequence[int] = (128, 64),
                 dropout: float = 0.35, init: str = "torch") -> None:
        super().__init__()
        if init not in HEAD_INITS:
            raise ValueError(f"head init must be one of {HEAD_INITS}, got {init!r}")
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers += [nn.Dropout(dropout), nn.Linear(width, n_outputs), nn.Sigmoid()]
        self.layers = nn.Sequential(*layers)
        if init == "keras":
            for m in self.layers:
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.layers(pooled)


class AestheticModel(nn.Module):
    """Backbone trunk + head. The trunk always runs in eval mode (frozen BatchNorm statistics)."""

    def __init__(self, backbone: Backbone, targets: Sequence[str], hidden: Sequence[int] = (128, 64),
                 dropout: float = 0.35, head_init: str = "torch") -> None:
        super().__init__()
        self.backbone_name = backbone.name
        self.targets = list(targets)
        self.features = backbone.features
        self.split_index = backbone.split_index
        self.stage2_layers = list(backbone.stage2_layers)
        self.register_buffer("offset", torch.tensor(backbone.offset).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(backbone.scale).view(1, 3, 1, 1), persistent=False)
        self.channel_order = backbone.channel_order
        self.head = Head(backbone.pooled_width, len(self.targets), hidden, dropout, head_init)
        self.set_stage("stage1")

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC RGB pixels -> normalised float NCHW input of the backbone (BGR first where the trunk
        was trained on BGR: Keras' caffe mode)."""
        x = images.permute(0, 3, 1, 2).float()
        if self.channel_order == "BGR":
            x = x.flip(1)
        return (x - self.offset) / self.scale

    def prefix(self, images: torch.Tensor) -> torch.Tensor:
        """Frozen-prefix activations (what the feature cache stores)."""
        return self.features[: self.split_index](self.preprocess(images))

    def pooled_from_prefix(self, activations: torch.Tensor) -> torch.Tensor:
        """Global average pooling of the trunk's output, averaged in float32."""
        return self.features[self.split_index:](activations).float().mean(dim=(2, 3))

    def forward_from_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """The head in float32 whatever autocast region it is called from (scores must not tie)."""
        with full_precision(pooled.device):
            return self.head(pooled.float())

    def forward_from_prefix(self, activations: torch.Tensor) -> torch.Tensor:
        return self.forward_from_pooled(self.pooled_from_prefix(activations))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_from_prefix(self.prefix(images))

    def train(self, mode: bool = True) -> "AestheticModel":
        super().train(mode)
        self.features.eval()
        return self

    def set_stage(self, stage: str) -> None:
        """Stage 1: every backbone weight frozen. Stage 2: only the stage-2 layers are trainable."""
        for p in self.features.parameters():
            p.requires_grad_(False)
        if stage == "stage2":
            for i in self.stage2_layers:
                for p in self.features[i].parameters():
                    p.requires_grad_(True)
        elif stage != "stage1":
            raise ValueError(f"unknown stage '{stage}'")

    def trainable_state(self, stage: str) -> dict[str, torch.Tensor]:
        """Parameters a stage can change: the head, plus the stage-2 layers in stage 2."""
        keep = ("head.",)
        if stage == "stage2":
            keep += tuple(f"features.{i}." for i in self.stage2_layers)
        return {k: v.detach().cpu().clone() for k, v in self.state_dict().items() if k.startswith(keep)}


def count_parameters(model: AestheticModel) -> tuple[int, int]:
    """(total, trained in stage 2) parameters of trunk + head, counted on the built model.

    Stage 2 trains the head and the stage-2 layers; the count does not depend on the stage the model is in.
    """
    total = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.head.parameters())
    trained += sum(p.numel() for i in model.stage2_layers for p in model.features[i].parameters())
    return total, trained


def build_model(backbone_name: str, targets: Sequence[str], weights_file: str | Path | None,
                hidden: Sequence[int] = (128, 64), dropout: float = 0.35, head_init: str = "torch") -> AestheticModel:
    """A fresh model: pretrained trunk (or random when `weights_file` is None) and a new head.

    `head_init`: "torch" or "keras" (config `head.init`); the head draws from torch's global generator.
    """
    return AestheticModel(build_backbone(backbone_name, weights_file), targets, hidden, dropout, head_init)


def save_checkpoint(path: str | Path, model: AestheticModel, *, stage: str, ranges: dict,
                    image_size: int, head: dict, weights: dict, config: dict, provenance: dict) -> None:
    """Store what training changed plus everything needed to rebuild and interpret the model.

    The frozen trunk is not stored (it would repeat ~60 MB of VGG16 per checkpoint); `weights` names
    the trunk's weights file and its sha256 so loading can check it gets the same trunk.
    """
    payload = {
        "format": 1,
        "stage": stage,
        "backbone": model.backbone_name,
        "targets": list(model.targets),
        "ranges": {t: [float(v) for v in ranges[t]] for t in model.targets},
        "image_size": int(image_size),
        "head": {"hidden": list(head["hidden"]), "dropout": float(head["dropout"]),
                 "init": str(head.get("init", "torch"))},
        "weights": weights,
        "state_dict": model.trainable_state(stage),
        "config": config,
        "provenance": provenance,
    }
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(payload, tmp)


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint dict safely (`weights_only=True`: tensors and builtins only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def load_model(path: str | Path, weights_file: str | Path | None = None) -> tuple[AestheticModel, dict]:
    """Rebuild the model of a checkpoint; `weights_file` overrides where the trunk weights are read.

    The trunk file must be the one training used: its sha256 is checked against the checkpoint's record.
    """
    ckpt = read_checkpoint(path)
    trunk = weights_file if weights_file is not None else ckpt["weights"].get("file")
    check_trunk(path, ckpt.get("weights") or {}, trunk)
    model = build_model(ckpt["backbone"], ckpt["targets"], trunk, ckpt["head"]["hidden"], ckpt["head"]["dropout"])
    missing = set(model.trainable_state(ckpt["stage"])) - set(ckpt["state_dict"])
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {sorted(missing)[:3]}")
    model.load_state_dict(ckpt["state_dict"], strict=False)
    model.set_stage(ckpt["stage"])
    model.eval()
    return model, ckpt


def check_trunk(checkpoint: str | Path, recorded: dict, trunk: str | Path | None) -> None:
    """Refuse trunk weights other than those the checkpoint was trained with (a clear error, both digests).

    The checkpoint stores only what training changed; a different trunk file would load silently and
    give other scores. A checkpoint trained on a random trunk (`weights: none`) accepts no file.
    """
    from .errors import DataError

    expected = recorded.get("sha256")
    if trunk is None:
        if expected:
            raise DataError(f"{checkpoint}: the checkpoint was trained with trunk weights of sha256 {expected} "
                            "but no weights file was given")
        return
    if not expected:
        if recorded.get("file") is None:
            raise DataError(f"{checkpoint}: the checkpoint was trained on a random trunk (weights: "
                            f"{recorded.get('spec', 'none')}), not on {trunk}")
        return
    actual = _sha256_cached(str(trunk))
    if actual != expected:
        raise DataError(f"{trunk}: trunk weights of sha256 {actual}, but {checkpoint} was trained with "
                        f"sha256 {expected}; pass the weights file it was trained with (--weights)")


def _sha256_cached(path: str) -> str:
    """sha256 of a weights file, computed once per (path, size, mtime): predict loads dozens of models."""
    from .download import sha256_file

    st = Path(path).stat()
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


_DIGESTS: dict[tuple, str] = {}
