"""The Keras-faithful VGG16: Keras' .h5 weights converted to the trunk, caffe preprocessing, and the
download -> verify (md5, as Keras' get_file) -> convert path against a server on 127.0.0.1.

The .h5 files are written here in Keras' layer / weight naming with known random kernels, on a narrow VGG16
(the same 13 convolutions and layer indices, fewer channels) so they stay small; the reference is an
independent numpy convolution that reads the HWIO kernels as they are stored.
"""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest
import torch
from test_weights import served  # noqa: F401  (the 127.0.0.1 server fixture)

from aesthetic_mtl.errors import DataError, DownloadError
from aesthetic_mtl.nn import backbones
from aesthetic_mtl.nn.backbones import (
    CAFFE_MEAN_BGR,
    KERAS_VGG16_NOTOP_MD5,
    KERAS_VGG16_NOTOP_URL,
    BackboneSpec,
    RemoteWeights,
    _build_vgg16_keras,
    build_backbone,
    keras_vgg16_layer_names,
    keras_vgg16_trunk_state,
)
from aesthetic_mtl.nn.model import AestheticModel, build_model
from aesthetic_mtl.nn.weights import fetch_weights

from conftest import head_spec

NARROW = [4, 4, "M", 8, 8, "M", 8, 8, 8, "M", 16, 16, 16, "M", 16, 16, 16, "M"]
H5_NAME = KERAS_VGG16_NOTOP_URL.rsplit("/", 1)[1]


def _kernels(layout=NARROW, seed: int = 3) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Known random HWIO kernels and biases for each Keras layer name."""
    rng = np.random.default_rng(seed)
    out, channels = {}, 3
    widths = [w for w in layout if w != "M"]
    for name, width in zip(keras_vgg16_layer_names(), widths):
        kernel = rng.normal(0, np.sqrt(2 / (9 * channels)), size=(3, 3, channels, width)).astype(np.float32)
        out[name] = (kernel, rng.normal(0, 0.1, size=width).astype(np.float32))
        channels = width
    return out


def write_keras_h5(path, kernels, style: str = "2016") -> None:
    """A weights file as Keras' save_weights writes it (the 2016 file names weights <layer>_W_1:0)."""
    layer_names = ["input_1"]
    for block in range(1, 6):
        layer_names += [n for n in kernels if n.startswith(f"block{block}_")] + [f"block{block}_pool"]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in layer_names])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.0.8"
        for name in layer_names:
            g = f.create_group(name)
            if name not in kernels:
                g.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            if style == "2016":
                names = [f"{name}_W_1:0", f"{name}_b_1:0"]
            else:
                names = [f"{name}/kernel:0", f"{name}/bias:0"]
            g.attrs["weight_names"] = np.array([n.encode() for n in names])
            for n, value in zip(names, kernels[name]):
                g.create_dataset(n, data=value)


def _conv_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Keras Conv2D(3x3, padding="same"): out[o, y, x] = sum_{dy, dx, i} K[dy, dx, i, o] xpad[i, y+dy, x+dx] + b."""
    _, h, w = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    out = np.zeros((kernel.shape[3], h, w))
    for dy in range(3):
        for dx in range(3):
            out += np.einsum("chw,co->ohw", xp[:, dy:dy + h, dx:dx + w], kernel[dy, dx].astype(np.float64))
    return out + bias[:, None, None]


def keras_reference(image_rgb: np.ndarray, kernels: dict) -> list[np.ndarray]:
    """Every conv+ReLU output of Keras' VGG16 on one uint8 RGB image, in float64 numpy."""
    x = image_rgb[..., ::-1].astype(np.float64) - np.array(CAFFE_MEAN_BGR)   # caffe: BGR, minus mean
    x = x.transpose(2, 0, 1)
    outputs = []
    for name in keras_vgg16_layer_names():
        x = np.maximum(_conv_same(x, *kernels[name]), 0)
        outputs.append(x)
        if name.endswith(("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3")):
            c, h, w = x.shape
            x = x[:, : h // 2 * 2, : w // 2 * 2].reshape(c, h // 2, 2, w // 2, 2).max(axis=(2, 4))
    return outputs


@pytest.mark.parametrize("style", ["2016", "keras2"])
def test_converter_gives_keras_activations(tmp_path, style):
    kernels = _kernels()
    path = tmp_path / "weights.h5"
    write_keras_h5(path, kernels, style)
    backbone = _build_vgg16_keras(NARROW)
    backbone.features.load_state_dict(keras_vgg16_trunk_state(path, backbone.features))
    model = AestheticModel(backbone, ["score"], head_spec()).eval()
    image = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    reference = keras_reference(image, kernels)
    conv_outputs = {}
    relus = [i + 1 for i, m in enumerate(model.features) if isinstance(m, torch.nn.Conv2d)]
    hooks = [model.features[i].register_forward_hook(
        lambda m, inp, out, i=i: conv_outputs.__setitem__(i, out.detach().clone())) for i in relus]
    with torch.no_grad():
        model.pooled_from_prefix(model.prefix(torch.from_numpy(image[None])))
    for h in hooks:
        h.remove()
    for k, i in enumerate(relus):   # all 13 conv+ReLU outputs, block1_conv1 ... block5_conv3
        ref = reference[k]
        np.testing.assert_allclose(conv_outputs[i][0].numpy(), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max(),
                                   err_msg=keras_vgg16_layer_names()[k])


def test_caffe_preprocessing_of_a_known_pixel():
    model = build_model("vgg16_keras", ["score"], None, head_spec())
    pixel = torch.tensor([255, 0, 128], dtype=torch.uint8).view(1, 1, 1, 3)
    got = model.preprocess(pixel).flatten().tolist()
    # RGB (255, 0, 128) -> BGR (128, 0, 255) minus the ImageNet mean in BGR order, no scaling
    assert got == pytest.approx([128 - 103.939, 0 - 116.779, 255 - 123.68], abs=1e-4)
    # torchvision's vgg16 keeps RGB with mean / std normalisation
    tv = build_model("vgg16", ["score"], None, head_spec()).preprocess(pixel).flatten().tolist()
    assert tv == pytest.approx([(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225], abs=1e-4)


def test_registry_has_keras_url_and_md5():
    remote = backbones.spec("vgg16_keras").remote()
    assert remote.url == ("https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
                          "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
    assert (remote.algorithm, remote.digest) == ("md5", "6d6bbae143d832006294945121d1f1fc") == ("md5",
                                                                                               KERAS_VGG16_NOTOP_MD5)
    assert remote.converter is keras_vgg16_trunk_state
    tv = backbones.spec("vgg16").remote()
    assert (tv.algorithm, tv.digest) == ("sha256-prefix", "397923af")


def test_random_trunk_works_and_is_keras_initialised():
    model = build_model("vgg16_keras", ["a", "b"], None, head_spec())
    assert [i for i, m in enumerate(model.features) if isinstance(m, torch.nn.Conv2d)] == \
        [i for i, m in enumerate(build_model("vgg16", ["a"], None, head_spec()).features) if isinstance(m, torch.nn.Conv2d)]
    conv = model.features[19]
    assert torch.count_nonzero(conv.bias) == 0
    assert conv.weight.abs().max() <= np.sqrt(6 / (9 * 512 + 9 * 512)) + 1e-6   # glorot-uniform bound
    with torch.no_grad():
        assert model(torch.zeros(2, 32, 32, 3, dtype=torch.uint8)).shape == (2, 2)


@pytest.fixture
def narrow_keras(monkeypatch):
    """Register the narrow Keras VGG16 under `vgg16_keras`, with weights served from `url` (set later)."""
    def register(url: str, digest: str) -> None:
        monkeypatch.setitem(backbones.REGISTRY, "vgg16_keras", BackboneSpec(
            lambda: _build_vgg16_keras(NARROW),
            weights=RemoteWeights(url, "md5", digest, converter=keras_vgg16_trunk_state)))
    return register


def test_fetch_downloads_verifies_md5_and_converts(served, tmp_path, narrow_keras):
    root, base = served
    kernels = _kernels()
    write_keras_h5(root / H5_NAME, kernels)
    narrow_keras(f"{base}/{H5_NAME}", hashlib.md5((root / H5_NAME).read_bytes()).hexdigest())
    out = tmp_path / "weights" / "vgg16_keras.pth"
    logs = []
    fetch_weights("vgg16_keras", out, log=logs.append)
    trunk = torch.load(out, weights_only=True)
    assert set(trunk) == {f"{i}.{p}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28) for p in ("weight", "bias")}
    kernel, bias = kernels["block4_conv2"]
    assert torch.equal(trunk["19.weight"], torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
    assert torch.equal(trunk["19.bias"], torch.from_numpy(bias))
    loaded = build_backbone("vgg16_keras", out)
    assert torch.equal(loaded.features[21].weight, torch.from_numpy(kernels["block4_conv3"][0].transpose(3, 2, 0, 1).copy()))
    assert any("verified md5" in m for m in logs)
    assert sorted(p.name for p in out.parent.iterdir()) == ["vgg16_keras.pth"]


def test_fetch_refuses_an_md5_mismatch(served, tmp_path, narrow_keras):
    root, base = served
    write_keras_h5(root / H5_NAME, _kernels())
    narrow_keras(f"{base}/{H5_NAME}", "0" * 32)
    out = tmp_path / "vgg16_keras.pth"
    with pytest.raises(DownloadError, match=r"md5 [0-9a-f]{32} does not match the published 0{32}"):
        fetch_weights("vgg16_keras", out, log=lambda m: None)
    assert not out.exists() and not list(tmp_path.glob("*.download*"))


def test_fetch_uses_a_file_placed_by_hand(tmp_path, narrow_keras):
    weights = tmp_path / "weights"
    weights.mkdir()
    kernels = _kernels(seed=9)
    write_keras_h5(weights / H5_NAME, kernels)
    # nothing listens on this port: a download attempt would fail
    narrow_keras(f"http://127.0.0.1:9/{H5_NAME}", hashlib.md5((weights / H5_NAME).read_bytes()).hexdigest())
    fetch_weights("vgg16_keras", weights / "vgg16_keras.pth", log=lambda m: None)
    assert (weights / H5_NAME).exists()   # the user's file stays
    trunk = torch.load(weights / "vgg16_keras.pth", weights_only=True)
    assert torch.equal(trunk["0.bias"], torch.from_numpy(kernels["block1_conv1"][1]))


def test_a_keras_file_loads_directly_and_a_wrong_one_is_named(tmp_path, narrow_keras):
    path = tmp_path / "mine.h5"
    kernels = _kernels(seed=5)
    write_keras_h5(path, kernels)
    narrow_keras("http://127.0.0.1:9/x.h5", "0" * 32)
    backbone = build_backbone("vgg16_keras", path)
    assert torch.equal(backbone.features[0].bias, torch.from_numpy(kernels["block1_conv1"][1]))
    del kernels["block3_conv2"]
    bad = tmp_path / "bad.h5"
    write_keras_h5(bad, kernels)
    with pytest.raises(DataError, match="no layer 'block3_conv2'"):
        build_backbone("vgg16_keras", bad)
    wide = tmp_path / "wide.h5"
    write_keras_h5(wide, _kernels(layout=backbones.VGG16_LAYOUT[:3] + NARROW[3:]))
    with pytest.raises(DataError, match=r"block1_conv1' has kernel \(3, 3, 3, 64\)"):
        build_backbone("vgg16_keras", wide)
