"""The paper's model: backbone -> global average pooling -> Dense 128 ReLU -> Dense 64 ReLU ->
Dropout 0.35 -> one sigmoid output per target, all outputs sharing the head.

The model can start from three points, so training can skip work that never changes: raw uint8 images
(`forward`), cached frozen-prefix activations (`forward_from_prefix`, stage 2) and cached pooled features
(`forward_from_pooled`, stage 1). All three compute the same function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import nn

from aesthetic_mtl.nn.backbones import Backbone, build_backbone
from aesthetic_mtl.nn.device import full_precision
from aesthetic_mtl.specs import STAGES, HeadSpec

HEAD_INITS = ("torch", "keras")


class Head(nn.Module):
    """Shared fully connected head with one sigmoid unit per target.

    `spec.init`: "torch" keeps PyTorch's Linear default (kaiming-uniform weights, uniform bias); "keras" is the
    Keras Dense default (glorot-uniform kernel, zero bias), what the paper's Keras code would start from.
    """

    def __init__(self, in_features: int, n_outputs: int, spec: HeadSpec) -> None:
        super().__init__()
        if spec.init not in HEAD_INITS:
            raise ValueError(f"head init must be one of {HEAD_INITS}, got {spec.init!r}")
        layers: list[nn.Module] = []
        width = in_features
        for h in spec.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers += [nn.Dropout(spec.dropout), nn.Linear(width, n_outputs), nn.Sigmoid()]
        self.layers = nn.Sequential(*layers)
        if spec.init == "keras":
            for m in self.layers:
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.layers(pooled)


class Trunk(nn.Module):
    """The backbone's convolutional trunk with its input normalisation, cut at the stage-2 split: the frozen
    prefix (what the feature cache stores) and the rest up to global average pooling. Always in eval mode
    (frozen BatchNorm statistics)."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone_name = backbone.name
        self.features = backbone.features
        self.split_index = backbone.split_index
        self.stage2_layers = list(backbone.stage2_layers)
        self.register_buffer("offset", torch.tensor(backbone.offset).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(backbone.scale).view(1, 3, 1, 1), persistent=False)
        self.channel_order = backbone.channel_order
        self.pooled_width = backbone.pooled_width

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

    def train(self, mode: bool = True) -> "Trunk":
        super().train(mode)
        self.features.eval()
        return self


class AestheticModel(Trunk):
    """Trunk + the paper's head."""

    def __init__(self, backbone: Backbone, targets: Sequence[str], head: HeadSpec) -> None:
        super().__init__(backbone)
        self.targets = list(targets)
        self.head = Head(backbone.pooled_width, len(self.targets), head)
        self.set_stage("stage1")

    def forward_from_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """The head in float32 whatever autocast region it is called from (scores must not tie)."""
        with full_precision(pooled.device):
            return self.head(pooled.float())

    def forward_from_prefix(self, activations: torch.Tensor) -> torch.Tensor:
        return self.forward_from_pooled(self.pooled_from_prefix(activations))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_from_prefix(self.prefix(images))

    def trainable_parameters(self, stage: str) -> Iterator[tuple[str, nn.Parameter]]:
        """(name, parameter) of what `stage` trains: the head (stage 1), plus the stage-2 layers of the trunk
        (stage 2). The one definition training, checkpoints and parameter counts all use."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage '{stage}'")
        keep = ("head.",) + (tuple(f"features.{i}." for i in self.stage2_layers) if stage == "stage2" else ())
        return ((name, p) for name, p in self.named_parameters() if name.startswith(keep))

    def set_stage(self, stage: str) -> list[nn.Parameter]:
        """Make exactly `stage`'s parameters trainable; returns them (what its optimizer updates)."""
        chosen = dict(self.trainable_parameters(stage))
        for name, p in self.named_parameters():
            p.requires_grad_(name in chosen)
        return list(chosen.values())

    def trainable_state(self, stage: str) -> dict[str, torch.Tensor]:
        """The values of `stage`'s parameters (what a checkpoint stores: the rest is the frozen trunk)."""
        return {name: p.detach().cpu().clone() for name, p in self.trainable_parameters(stage)}


def count_parameters(model: AestheticModel) -> dict[str, int]:
    """Parameters of trunk + head, and those each stage trains (counted on the built model)."""
    counts = {"total": sum(p.numel() for p in model.parameters())}
    counts.update({stage: sum(p.numel() for _, p in model.trainable_parameters(stage)) for stage in STAGES})
    return counts


def build_model(backbone_name: str, targets: Sequence[str], weights_file: str | Path | None,
                head: HeadSpec) -> AestheticModel:
    """A fresh model: pretrained trunk (or random when `weights_file` is None) and a new head; the head draws
    from torch's global generator."""
    return AestheticModel(build_backbone(backbone_name, weights_file), targets, head)
