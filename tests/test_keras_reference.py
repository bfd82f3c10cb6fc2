"""Keras 3 itself as the reference of the Keras-faithful path (`vgg16_keras`, caffe input, Glorot head, Keras'
Adam and ExponentialDecay): the paper's wording points to Keras, and the paper config claims to train as Keras
would. Keras runs here on its torch backend, on the same weights and batches as our code, dropout off.

The VGG16 weights are random (Keras' own initialisation, biases perturbed so they matter), written in the
legacy `.h5` layout that `keras.applications.VGG16` downloads and loads; both sides read that one file.
Tolerances are relative to the largest value compared and sit near float32 rounding. Weight updates are
compared rather than weights (a step is small next to the weight it moves); Adam divides each gradient by its
own running magnitude, so a gradient element near zero turns its float rounding into a visible share of a
full step: stage 2's updates agree to about 5e-5, its losses to 1e-7. PyTorch's Adam misses by 1e-3 (losses)
and 0.3 to 20 (single updates at |g| <= 1e-5).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported: the backend is chosen once, at import
os.environ.setdefault("KERAS_HOME", tempfile.mkdtemp(prefix="keras-home-"))  # keras.json not in the user's home

import h5py  # noqa: E402
import keras  # noqa: E402  (a test dependency, pyproject [dev]: missing, these tests fail rather than skip)
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from conftest import REPO, image_spec  # noqa: E402
from keras.src.legacy.saving import legacy_h5_format  # noqa: E402
from scipy import stats  # noqa: E402

from aesthetic_mtl.config import load_config  # noqa: E402
from aesthetic_mtl.data.images import FAST, KERAS_FILTERS, load_image  # noqa: E402
from aesthetic_mtl.nn.backbones import build_backbone, keras_vgg16_layer_names  # noqa: E402
from aesthetic_mtl.nn.model import AestheticModel, Head  # noqa: E402
from aesthetic_mtl.nn.optim import adam  # noqa: E402
from aesthetic_mtl.nn.train import Split, fit, lr_scheduler  # noqa: E402
from aesthetic_mtl.specs import HeadSpec, StageSpec  # noqa: E402

PAPER = load_config(REPO / "config.yaml")
PAPER_HEAD = HeadSpec.from_config(PAPER["head"])
NO_DROPOUT = replace(PAPER_HEAD, dropout=0.0)  # the paper config's Keras head, dropout off
SIZE = 32        # the smallest input keras.applications.VGG16 accepts: quick on a CPU
GRADIENT_SCALES = [1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8]


def paper_stage(stage: str, **changes) -> StageSpec:
    """A stage as the paper config trains it (Keras' Adam and epsilon, continuous halving), with `changes`."""
    return replace(StageSpec.from_config(PAPER["training"], stage), **changes)


def relative(ours, theirs) -> float:
    """Largest absolute difference relative to the largest absolute reference value."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def photos(n: int = 8, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """Smooth colour fields with edges (not white noise), uint8 NHWC, as the image cache stores photos."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(-3, 3, size=(3, 3))
        field = np.stack([np.sin(a[k] * xx + b[k] * yy + c[k]) for k in range(3)], axis=-1)
        field[yy > rng.uniform(0.3, 0.7)] *= -0.5  # a horizon
        out.append(np.clip(127.5 + 110 * field + rng.normal(0, 6, field.shape), 0, 255))
    return np.asarray(out, dtype=np.uint8)


# --------------------------------------------------------------------------------------------------
# the trunk, its input and the stage-2 layers
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keras_vgg16(tmp_path_factory):
    """Keras' VGG16 trunk (no top) with random weights, and those weights saved in the legacy `.h5` layout."""
    keras.utils.set_random_seed(7)
    model = keras.applications.VGG16(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3))
    rng = np.random.default_rng(7)
    for layer in model.layers:
        if layer.weights:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0, 0.05, bias.shape).astype(np.float32)])
    path = tmp_path_factory.mktemp("keras") / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return model, path


def test_trunk_on_keras_weights_matches_keras(keras_vgg16):
    """The pooled features of our `vgg16_keras` trunk and of keras.applications.VGG16 loading the same .h5."""
    _, path = keras_vgg16
    theirs_model = keras.applications.VGG16(weights=str(path), include_top=False, input_shape=(SIZE, SIZE, 3),
                                            pooling="avg")  # Keras reads the file itself
    images = photos()
    theirs = keras.ops.convert_to_numpy(theirs_model(keras.applications.vgg16.preprocess_input(
        images.astype(np.float32))))
    ours_model = AestheticModel(build_backbone("vgg16_keras", path), ["score"], PAPER_HEAD).eval()
    with torch.no_grad():
        ours = ours_model.pooled_from_prefix(ours_model.prefix(torch.from_numpy(images))).numpy()
    assert theirs.shape == ours.shape == (len(images), 512)
    assert np.abs(theirs).max() > 0.1  # the trunk did not die on the way
    assert relative(ours, theirs) < 1e-5


@pytest.mark.parametrize("interpolation", list(KERAS_FILTERS))
@pytest.mark.parametrize("kind", ["JPEG", "PNG", "grey PNG"])
def test_image_loader_matches_keras_load_img(tmp_path, interpolation, kind):
    """`images.interpolation` other than bicubic_fast gives the pixels keras.utils.load_img gives (squash)."""
    from PIL import Image

    photo = Image.fromarray(photos(1, 480, seed=5)[0]).resize((640, 480))
    photo = photo.convert("L") if kind == "grey PNG" else photo
    path = tmp_path / ("photo.jpg" if kind == "JPEG" else "photo.png")
    photo.save(path, quality=90) if kind == "JPEG" else photo.save(path)
    theirs = keras.utils.img_to_array(keras.utils.load_img(path, target_size=(224, 224), interpolation=interpolation))
    ours = load_image(path, image_spec(224, interpolation=interpolation))
    np.testing.assert_array_equal(ours.astype(np.float32), theirs)
    if interpolation == "nearest":  # Keras' default; our fast path differs from it (antialiased, drafted)
        assert np.abs(load_image(path, image_spec(224, interpolation=FAST)).astype(np.float32) - theirs).mean() > 1


def test_preprocessing_is_keras_caffe_bit_for_bit():
    images = photos(4, 16)
    theirs = keras.applications.vgg16.preprocess_input(images.astype(np.float32))  # NHWC, BGR, mean off
    model = AestheticModel(build_backbone("vgg16_keras"), ["score"], PAPER_HEAD)
    ours = model.preprocess(torch.from_numpy(images)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(ours, keras.ops.convert_to_numpy(theirs))


def test_stage2_layers_are_keras_block4_conv2_and_conv3(keras_vgg16):
    keras_model, _ = keras_vgg16
    backbone = build_backbone("vgg16_keras")
    convs = [i for i, m in enumerate(backbone.features) if isinstance(m, torch.nn.Conv2d)]
    names = dict(zip(convs, keras_vgg16_layer_names()))
    assert [names[i] for i in backbone.stage2_layers] == ["block4_conv2", "block4_conv3"]
    for i in backbone.stage2_layers:
        ours = sum(p.numel() for p in backbone.features[i].parameters())
        assert ours == keras_model.get_layer(names[i]).count_params() == 2_359_808


# --------------------------------------------------------------------------------------------------
# the head's initial weights and the learning-rate schedule
# --------------------------------------------------------------------------------------------------

def test_head_starts_as_keras_dense_layers():
    """Glorot-uniform kernels (the same bound and distribution as keras.initializers.GlorotUniform) and zero
    biases, layer by layer; PyTorch's own Linear init is told apart by the same test."""
    torch.manual_seed(0)
    ours = Head(512, 12, replace(PAPER_HEAD, init="keras"))
    torch_default = Head(512, 12, replace(PAPER_HEAD, init="torch"))
    linear = [m for m in ours.layers if isinstance(m, torch.nn.Linear)]
    other = [m for m in torch_default.layers if isinstance(m, torch.nn.Linear)]
    for k, (mine, theirs_shape) in enumerate(zip(linear, [(512, 128), (128, 64), (64, 12)])):
        reference = keras.ops.convert_to_numpy(keras.initializers.GlorotUniform(seed=k)(theirs_shape)).ravel()
        limit = np.sqrt(6 / sum(theirs_shape))
        weights = mine.weight.detach().numpy().ravel()
        assert np.abs(weights).max() <= limit and np.abs(reference).max() <= limit
        assert stats.ks_2samp(weights, reference).pvalue > 1e-3
        assert stats.ks_2samp(other[k].weight.detach().numpy().ravel(), reference).pvalue < 1e-6
        assert not mine.bias.detach().any()


@pytest.mark.parametrize("schedule, staircase", [("continuous", False), ("staircase", True)])
def test_learning_rate_schedule_is_keras_exponential_decay(schedule, staircase):
    stage = paper_stage("stage2", schedule=schedule)
    theirs = keras.optimizers.schedules.ExponentialDecay(stage.lr, stage.halve_every_steps, 0.5, staircase=staircase)
    optimizer = adam([torch.nn.Parameter(torch.zeros(1))], variant=stage.adam, lr=stage.lr, eps=stage.adam_eps)
    scheduler = lr_scheduler(optimizer, stage)
    ours = []
    for _ in range(400):
        ours.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [float(keras.ops.convert_to_numpy(theirs(step))) for step in range(400)]
    assert relative(ours, expected) < 1e-6


# --------------------------------------------------------------------------------------------------
# Adam
# --------------------------------------------------------------------------------------------------

def _updates(variant: str | None, gradients: list[np.ndarray], start: np.ndarray, lr: float, eps: float) -> np.ndarray:
    """Weights after applying `gradients` in turn: our Adam `variant`, or Keras' (None)."""
    if variant is None:
        weights = keras.Variable(start.copy())
        optimizer = keras.optimizers.Adam(learning_rate=lr, epsilon=eps)
        for g in gradients:
            optimizer.apply_gradients([(torch.from_numpy(g), weights)])
        return keras.ops.convert_to_numpy(weights)
    weights = torch.nn.Parameter(torch.from_numpy(start.copy()))
    optimizer = adam([weights], variant=variant, lr=lr, eps=eps)
    for g in gradients:
        weights.grad = torch.from_numpy(g)
        optimizer.step()
    return weights.detach().numpy()


@pytest.mark.parametrize("steps", [1, 10])
@pytest.mark.parametrize("scale", GRADIENT_SCALES)
def test_adam_updates_match_keras(scale, steps):
    """The paper config's Adam against keras.optimizers.Adam, at gradient scales from stage 1's to stage 2's
    smallest; PyTorch's Adam with the same epsilon misses wherever the gradients are small."""
    stage = paper_stage("stage2")
    rng = np.random.default_rng(int(-np.log10(scale)) * 100 + steps)
    start = rng.normal(0, 0.05, (64, 32)).astype(np.float32)
    gradients = [(rng.normal(0, 1, start.shape) * scale).astype(np.float32) for _ in range(steps)]
    theirs = _updates(None, gradients, start, stage.lr, stage.adam_eps) - start
    ours = _updates(stage.adam, gradients, start, stage.lr, stage.adam_eps) - start
    assert stage.adam == "keras"
    assert relative(ours, theirs) < 1e-6
    if scale <= 1e-5:
        torch_way = _updates("torch", gradients, start, stage.lr, stage.adam_eps) - start
        assert relative(torch_way, theirs) > 0.1


# --------------------------------------------------------------------------------------------------
# training: stage 1 and stage 2 from identical weights and batches
# --------------------------------------------------------------------------------------------------

def keras_head(inputs, ours: Head, n_outputs: int):
    """Keras' layers of the paper's head on `inputs`, starting from our head's weights (kernel = weight.T)."""
    x = inputs
    linear = [m for m in ours.layers if isinstance(m, torch.nn.Linear)]
    layers = [keras.layers.Dense(128, activation="relu"), keras.layers.Dense(64, activation="relu"),
              keras.layers.Dropout(0.0), keras.layers.Dense(n_outputs, activation="sigmoid")]
    for layer in layers:
        x = layer(x)
    dense = [layer for layer in layers if isinstance(layer, keras.layers.Dense)]
    for layer, mine in zip(dense, linear):
        layer.set_weights([mine.weight.detach().numpy().T.copy(), mine.bias.detach().numpy().copy()])
    return x, dense


def keras_train(model, x: np.ndarray, y: np.ndarray, stage: StageSpec, steps: int) -> list[float]:
    """`steps` Keras steps on the whole batch (x, y) with the stage's Adam and schedule; the losses."""
    lr = (keras.optimizers.schedules.ExponentialDecay(stage.lr, stage.halve_every_steps, 0.5)
          if stage.halve_every_steps else stage.lr)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr, epsilon=stage.adam_eps), loss="mse")
    return [float(model.train_on_batch(x, y)) for _ in range(steps)]


def our_train(model: AestheticModel, forward, inputs: np.ndarray, y: np.ndarray, stage: StageSpec,
              steps: int) -> list[float]:
    """`steps` of our `fit` on the whole batch (one step per epoch); the losses."""
    stage = replace(stage, epochs=steps, batch_size=len(y))
    everything = Split(np.arange(len(y)), y)
    params = [p for p in model.parameters() if p.requires_grad]
    history = fit(model, forward, inputs, everything, everything, stage, seed=0, params=params,
                  loss_weights=[1.0] * y.shape[1], log=lambda *_: None, bf16_cuda=False)
    return list(history["train_loss"])


def test_twenty_stage1_steps_match_keras():
    rng = np.random.default_rng(1)
    pooled = np.abs(rng.normal(0, 2, (48, 512))).astype(np.float32)  # ReLU features after pooling
    y = rng.uniform(0, 1, (48, 12)).astype(np.float32)
    torch.manual_seed(1)
    ours = AestheticModel(build_backbone("vgg16_keras"), [f"t{k}" for k in range(12)], NO_DROPOUT)
    inputs = keras.Input((512,))
    outputs, dense = keras_head(inputs, ours.head, 12)
    theirs = keras.Model(inputs, outputs)

    linear = [m for m in ours.head.layers if isinstance(m, torch.nn.Linear)]
    start = [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy()) for m in linear]

    stage = paper_stage("stage1")
    keras_losses = keras_train(theirs, pooled, y, stage, 20)
    our_losses = our_train(ours, ours.forward_from_pooled, pooled, y, stage, 20)

    assert keras_losses[-1] < 0.9 * keras_losses[0]  # it learned something
    assert relative(our_losses, keras_losses) < 1e-5
    for layer, mine, (kernel0, bias0) in zip(dense, linear, start):
        kernel, bias = layer.get_weights()
        assert relative(mine.weight.detach().numpy().T - kernel0, kernel - kernel0) < 1e-4  # the updates
        assert relative(mine.bias.detach().numpy() - bias0, bias - bias0) < 1e-4


def test_stage2_steps_match_keras(keras_vgg16):
    """block4_conv2/3 and the head trained together, Keras on the images end to end, ours from the cached
    frozen-prefix activations (as the workflow trains stage 2)."""
    _, path = keras_vgg16
    images = photos(12, seed=3)
    y = np.random.default_rng(3).uniform(0, 1, (12, 5)).astype(np.float32)
    torch.manual_seed(3)
    ours = AestheticModel(build_backbone("vgg16_keras", path), [f"t{k}" for k in range(5)], NO_DROPOUT)
    trunk = keras.applications.VGG16(weights=str(path), include_top=False, input_shape=(SIZE, SIZE, 3),
                                     pooling="avg")
    for layer in trunk.layers:
        layer.trainable = layer.name in ("block4_conv2", "block4_conv3")
    outputs, _ = keras_head(trunk.output, ours.head, 5)
    theirs = keras.Model(trunk.input, outputs)

    layers = {"block4_conv2": ours.features[19], "block4_conv3": ours.features[21]}
    start = {name: trunk.get_layer(name).get_weights() for name in layers}

    stage = paper_stage("stage2")
    keras_losses = keras_train(theirs, keras.applications.vgg16.preprocess_input(images.astype(np.float32)), y,
                               stage, 3)
    ours.set_stage("stage2")
    with torch.no_grad():
        prefix = ours.prefix(torch.from_numpy(images)).numpy()
    our_losses = our_train(ours, ours.forward_from_prefix, prefix, y, stage, 3)

    assert relative(our_losses, keras_losses) < 1e-5
    for name, conv in layers.items():
        (kernel, bias), (kernel0, bias0) = trunk.get_layer(name).get_weights(), start[name]
        ours_kernel = conv.weight.detach().numpy().transpose(2, 3, 1, 0)  # OIHW -> Keras' HWIO
        assert np.abs(kernel - kernel0).max() > 0  # stage 2 moved it
        assert relative(ours_kernel - kernel0, kernel - kernel0) < 1e-4  # the updates
        assert relative(conv.bias.detach().numpy() - bias0, bias - bias0) < 1e-4
