"""The paper's model: backbone -> global average pooling -> Dense 128 ReLU -> Dense 64 ReLU ->
Dropout 0.35 -> one sigmoid output per target, all outputs sharing the head.

The model can start from three points, so training can skip work that never changes: raw uint8 images
(`forward`), cached frozen-prefix activations (`forward_from_prefix`, stage 2) and cached pooled features
(`forward_from_pooled`, stage 1). All three compute the same function.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from aesthetic_mtl.nn.backbones import Backbone, build_backbone
from aesthetic_mtl.nn.device import full_precision

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


def parameter_counts(backbone: str, targets: Sequence[str], stage: str = "stage2",
                     hidden: Sequence[int] = (128, 64), dropout: float = 0.35) -> tuple[int, int]:
    """(total, trainable) parameters of backbone trunk + head, counted on a built model.

    The trunk is built once per (backbone, stage) and the head for the given number of outputs.
    """
    return _counts(backbone, len(targets), stage, tuple(hidden), float(dropout))


@functools.lru_cache(maxsize=None)
def _counts(backbone: str, n_outputs: int, stage: str, hidden: tuple, dropout: float) -> tuple[int, int]:
    model = build_model(backbone, [f"t{i}" for i in range(n_outputs)], None, hidden, dropout)
    total, stage2 = count_parameters(model)
    if stage == "stage2":
        return total, stage2
    return total, sum(p.numel() for p in model.head.parameters())
