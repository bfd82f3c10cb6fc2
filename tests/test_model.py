"""The paper's architecture, the stage-wise freezing and the checkpoint format."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from conftest import head_spec, image_spec, save_test_checkpoint, stage_spec
from aesthetic_mtl.nn.checkpoint import load_model, read_checkpoint
from aesthetic_mtl.nn.model import AestheticModel, build_model
from aesthetic_mtl.nn.train import Split, fit

AADB = ["BalacingElements", "ColorHarmony", "Content", "DoF", "Light", "MotionBlur", "Object",
        "Repetition", "RuleOfThirds", "Symmetry", "VividColor", "score"]


@pytest.fixture
def vgg() -> AestheticModel:
    torch.manual_seed(0)
    return build_model("vgg16", AADB, None, head_spec())


def test_head_is_the_papers(vgg):
    layers = list(vgg.head.layers)
    kinds = [type(m) for m in layers]
    assert kinds == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.Sigmoid]
    assert (layers[0].in_features, layers[0].out_features) == (512, 128)
    assert (layers[2].in_features, layers[2].out_features) == (128, 64)
    assert layers[4].p == pytest.approx(0.35)
    assert layers[5].out_features == 12


def test_output_shapes_and_range(vgg, tiny_images):
    vgg.eval()
    with torch.no_grad():
        out = vgg(torch.from_numpy(tiny_images[:4]))
    assert out.shape == (4, 12)
    assert bool(((out > 0) & (out < 1)).all())
    eva = build_model("vgg16", ["score", "visual", "composition", "quality", "semantic"], None, head_spec()).eval()
    with torch.no_grad():
        assert eva(torch.from_numpy(tiny_images[:3])).shape == (3, 5)


def test_three_entry_points_agree(vgg, tiny_images):
    vgg.eval()
    x = torch.from_numpy(tiny_images[:4])
    with torch.no_grad():
        prefix = vgg.prefix(x)
        pooled = vgg.pooled_from_prefix(prefix)
        torch.testing.assert_close(vgg(x), vgg.forward_from_prefix(prefix))
        torch.testing.assert_close(vgg(x), vgg.forward_from_pooled(pooled))


def _trainable(model: AestheticModel) -> set[str]:
    return {n for n, p in model.features.named_parameters() if p.requires_grad}


def test_stage1_freezes_the_whole_trunk(vgg):
    vgg.set_stage("stage1")
    assert _trainable(vgg) == set()
    assert all(p.requires_grad for p in vgg.head.parameters())


def test_stage2_unfreezes_exactly_block4_last_two_convs(vgg):
    vgg.set_stage("stage2")
    assert _trainable(vgg) == {"19.weight", "19.bias", "21.weight", "21.bias"}
    assert isinstance(vgg.features[19], nn.Conv2d) and isinstance(vgg.features[21], nn.Conv2d)


def test_stage2_changes_nothing_outside_its_layers(vgg, tiny_images):
    before = {k: v.clone() for k, v in vgg.state_dict().items()}
    y = np.random.default_rng(1).random((16, 12), dtype=np.float32)
    data = Split(np.arange(16), y)
    fit(vgg, vgg.forward, tiny_images, data, Split(np.arange(0), y[:0]), stage_spec(1, 1e-3, 8),
        seed=0, params=vgg.set_stage("stage2"), loss_weights=[1.0] * 12, log=lambda m: None, bf16_cuda=False)
    after = vgg.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    trained = ("features.19.", "features.21.", "head.")
    assert changed and all(k.startswith(trained) for k in changed)
    assert any(k.startswith("features.19.") for k in changed) and any(k.startswith("features.21.") for k in changed)
    for k in before:
        if not k.startswith(trained):
            assert torch.equal(before[k], after[k]), k


def test_trunk_stays_in_eval_mode(vgg):
    vgg.train()
    assert vgg.head.training and not vgg.features.training


def test_checkpoint_round_trip(tmp_path, vgg, tiny_images):
    vgg.set_stage("stage2")
    with torch.no_grad():
        vgg.features[19].weight.add_(0.01)  # something a stage-1 trunk would not have
    path = tmp_path / "m.pt"
    save_test_checkpoint(path, vgg, stage="stage2", ranges={t: [-1, 1] for t in AADB}, image_size=32,
                    head={"hidden": [128, 64], "dropout": 0.35}, weights={"spec": "none", "file": None},
                    config={"a": 1}, provenance={"code_version": "x"})
    ckpt = read_checkpoint(path)
    assert ckpt.card.targets == tuple(AADB) and ckpt.card.stage == "stage2" and ckpt.card.image_size == 32
    assert "features.19.weight" in ckpt.state_dict and "features.0.weight" not in ckpt.state_dict
    loaded, _ = load_model(path)
    vgg.eval()
    x = torch.from_numpy(tiny_images[:4])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), vgg(x))


def test_efficientnet_lite0_loads_packaged_imagenet_weights(tiny_images):
    from aesthetic_mtl.nn.backbones import weights_source

    kind, path = weights_source("efficientnet_lite0")
    model = build_model("efficientnet_lite0", ["score"], path, head_spec()).eval()
    assert kind == "file" and model.head.layers[0].in_features == 1280
    model.set_stage("stage2")
    assert {n.split(".")[0] for n in _trainable(model)} == {str(i) for i in model.stage2_layers}


def test_vgg16_trunk_matches_torchvision_layout():
    from torchvision.models import vgg16

    from aesthetic_mtl.nn.backbones import vgg16_features

    ours, theirs = vgg16_features(), vgg16(weights=None).features
    assert [type(m) for m in ours] == [type(m) for m in theirs]
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}


# --------------------------------------------------------------------------------------------------
# head initialisation, parameter counts, the trunk's sha256 on load
# --------------------------------------------------------------------------------------------------

def _linears(model):
    return [m for m in model.head.layers if isinstance(m, nn.Linear)]


def test_keras_head_init_is_glorot_uniform_with_zero_bias():
    torch.manual_seed(0)
    keras = build_model("vgg16", AADB, None, head_spec(init="keras"))
    torch.manual_seed(0)
    default = build_model("vgg16", AADB, None, head_spec())
    for layer in _linears(keras):
        fan_out, fan_in = layer.weight.shape
        bound = np.sqrt(6 / (fan_in + fan_out))
        assert torch.count_nonzero(layer.bias) == 0
        assert layer.weight.abs().max() <= bound
        assert float(layer.weight.detach().std()) == pytest.approx(bound / np.sqrt(3), rel=0.15)  # uniform(-b, b)
    # PyTorch's default: kaiming-uniform weights (bound 1/sqrt(fan_in)) and a non-zero uniform bias
    for layer in _linears(default):
        assert torch.count_nonzero(layer.bias) == layer.bias.numel()
        assert layer.weight.abs().max() <= 1 / np.sqrt(layer.weight.shape[1]) + 1e-7
    with pytest.raises(ValueError, match="head init must be one of"):
        build_model("vgg16", AADB, None, head_spec(init="xavier"))


def test_count_parameters_total_and_stage2(vgg):
    from aesthetic_mtl.nn.model import count_parameters

    head = 512 * 128 + 128 + 128 * 64 + 64 + 64 * 12 + 12
    assert count_parameters(vgg) == {"total": 14_714_688 + head, "stage1": head,
                                     "stage2": 2 * (3 * 3 * 512 * 512 + 512) + head}
    for stage in ("stage1", "stage2"):
        vgg.set_stage(stage)
        assert count_parameters(vgg)[stage] == sum(p.numel() for p in vgg.parameters() if p.requires_grad)


@pytest.fixture
def narrow_vgg16(monkeypatch):
    """`vgg16` as a narrow trunk (same layer indices) so weights files stay small."""
    from aesthetic_mtl.nn import backbones

    layout = [4, 4, "M", 8, 8, "M", 8, 8, 8, "M", 16, 16, 16, "M", 16, 16, 16, "M"]
    monkeypatch.setitem(backbones.REGISTRY, "vgg16", backbones.BackboneSpec(
        lambda: backbones.Backbone("vgg16", backbones.vgg16_features(layout), 19, [19, 21],
                                   **backbones._imagenet_norm())))


def _trunk_file(path, seed):
    from aesthetic_mtl.nn.backbones import build_backbone

    features = build_backbone("vgg16").features
    torch.manual_seed(seed)
    for p in features.parameters():
        p.data.normal_()
    torch.save(features.state_dict(), path)
    return path


def test_load_model_checks_the_trunk_sha256(tmp_path, narrow_vgg16):
    from aesthetic_mtl.data.download import sha256_file
    from aesthetic_mtl.errors import DataError

    trained_on, other = _trunk_file(tmp_path / "a.pth", 1), _trunk_file(tmp_path / "b.pth", 2)
    model = build_model("vgg16", ["score"], trained_on, head_spec())
    path = tmp_path / "m.pt"
    save_test_checkpoint(path, model, stage="stage1", ranges={"score": [0, 1]}, image_size=32,
                    head={"hidden": [128, 64], "dropout": 0.35},
                    weights={"spec": "imagenet", "file": str(trained_on), "sha256": sha256_file(trained_on)},
                    config={}, provenance={})
    load_model(path)                 # the recorded file
    load_model(path, trained_on)     # the same file named explicitly
    with pytest.raises(DataError) as err:
        load_model(path, other)
    message = str(err.value)
    assert sha256_file(other) in message and sha256_file(trained_on) in message and "--weights" in message


def test_a_random_trunk_checkpoint_refuses_a_weights_file(tmp_path, narrow_vgg16):
    from aesthetic_mtl.errors import DataError

    model = build_model("vgg16", ["score"], None, head_spec())
    path = tmp_path / "m.pt"
    save_test_checkpoint(path, model, stage="stage1", ranges={"score": [0, 1]}, image_size=32,
                    head={"hidden": [128, 64], "dropout": 0.35}, weights={"spec": "none", "file": None,
                                                                        "sha256": None},
                    config={}, provenance={})
    load_model(path)
    with pytest.raises(DataError, match="trained on a random trunk"):
        load_model(path, _trunk_file(tmp_path / "a.pth", 1))


def test_checkpoints_carry_a_format_version_and_other_versions_are_refused(tmp_path, vgg):
    from aesthetic_mtl.errors import CheckpointError
    from aesthetic_mtl.nn.checkpoint import CHECKPOINT_FORMAT

    path = tmp_path / "stage1.pt"
    save_test_checkpoint(path, vgg, stage="stage1", ranges={t: [-1, 1] for t in AADB}, image_size=32,
                    head={"hidden": [128, 64], "dropout": 0.35}, weights={"spec": "none", "file": None},
                    config={}, provenance={})
    stored = torch.load(path, weights_only=True)
    assert stored["format"] == CHECKPOINT_FORMAT == 2
    for version, word in ((CHECKPOINT_FORMAT + 1, "newer"), (0, "older")):
        torch.save({**stored, "format": version}, tmp_path / "other.pt")
        with pytest.raises(CheckpointError, match=f"format version {version} is {word}") as err:
            load_model(tmp_path / "other.pt")
        assert str(err.value).startswith(f"not an aesthetic-mtl checkpoint: {tmp_path / 'other.pt'}: ")


def _format_1_payload(model, config: dict, stage: str = "stage1") -> dict:
    """A checkpoint as aesthetic-mtl 0.1.0 wrote it (format 1, checkpoint.save_checkpoint before the ModelCard):
    each fact a key of its own, the overall target only inside the stored config, and the state_dict entries
    (BatchNorm statistics included) of the head and, in stage 2, the stage-2 layers."""
    keep = ("head.",) + (tuple(f"features.{i}." for i in model.stage2_layers) if stage == "stage2" else ())
    state = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(keep)}
    return {"format": 1, "stage": stage, "backbone": model.backbone_name, "targets": list(model.targets),
            "ranges": {t: [-1.0, 1.0] for t in model.targets}, "image_size": 32,
            "head": {"hidden": [128, 64], "dropout": 0.35, "init": "torch"},
            "weights": {"spec": "none", "file": None, "sha256": None},
            "state_dict": state, "config": config, "provenance": {"code_version": "old"}}


def test_format_1_checkpoints_still_load_with_their_overall_target(tmp_path, vgg, tiny_images):
    config = {"datasets": {"AADB": {"overall": "score", "attributes": AADB}},
              "images": {"interpolation": "nearest"}, "training": {"batch_size": 8, "stage1": {"lr": 1e-3}}}
    torch.save(_format_1_payload(vgg, config), tmp_path / "old.pt")
    ckpt = read_checkpoint(tmp_path / "old.pt")
    assert ckpt.card.overall == "score" and ckpt.card.targets == tuple(AADB) and ckpt.card.image_size == 32
    assert ckpt.card.images.interpolation == "nearest" and ckpt.card.code_version == "old"
    assert ckpt.card.training == {"stage1": {"batch_size": 8, "lr": 1e-3}}
    loaded, card = load_model(tmp_path / "old.pt")
    vgg.eval()
    x = torch.from_numpy(tiny_images[:4])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), vgg(x))
    # settings format 1 predates take the values it was trained with
    torch.save(_format_1_payload(vgg, {}), tmp_path / "bare.pt")
    bare = read_checkpoint(tmp_path / "bare.pt").card
    assert (bare.images.resize, bare.images.interpolation, bare.bf16) == ("squash", "bicubic_fast", False)


def test_format_1_checkpoints_with_batchnorm_statistics_load(tmp_path, tiny_images):
    from aesthetic_mtl.nn.backbones import weights_source

    _, trunk = weights_source("efficientnet_lite0")
    model = build_model("efficientnet_lite0", ["score"], trunk, head_spec()).eval()
    payload = _format_1_payload(model, {}, stage="stage2")
    assert any(k.endswith("running_mean") for k in payload["state_dict"])       # as 0.1.0's stage2.pt files hold
    payload["weights"] = {"spec": "packaged", "file": str(trunk), "sha256": None}
    torch.save(payload, tmp_path / "old.pt")
    loaded, card = load_model(tmp_path / "old.pt")
    x = torch.from_numpy(tiny_images[:4])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
