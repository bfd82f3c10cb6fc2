"""Results figures from synthetic inputs (non-empty PNGs) and Grad-CAM on tiny models."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from test_paper_tables import DATASETS, synthetic_metrics
from torch import nn

from aesthetic_mtl.files import write_tsv
from aesthetic_mtl.nn.gradcam import (
    cam_layer,
    grad_cam,
    gradcam_examples,
    last_conv_layer,
)
from aesthetic_mtl.nn.model import build_model
from aesthetic_mtl.provenance import provenance
from aesthetic_mtl.report.figures import (
    cross_heatmap,
    prediction_scatter,
    srcc_bars,
    training_curves,
)
from conftest import REPO, head_spec, save_test_checkpoint

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_size=(300, 200)):
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as im:
        assert im.size[0] >= min_size[0] and im.size[1] >= min_size[1]


def _history(path, stage, epochs, offset):
    write_tsv(path, pd.DataFrame({"stage": stage, "epoch": np.arange(1, epochs + 1),
                                  "steps": np.arange(1, epochs + 1) * 10,
                                  "train_loss": 0.05 / (np.arange(epochs) + 1) + offset,
                                  "val_loss": 0.06 / (np.arange(epochs) + 1) + offset, "lr": 1e-3}))


def test_training_curves(tmp_path):
    histories = {}
    for seed in (1, 2):
        h1, h2 = tmp_path / f"h1_{seed}.tsv", tmp_path / f"h2_{seed}.tsv"
        _history(h1, "stage1", 5, 0.001 * seed)
        _history(h2, "stage2", 3, 0.001 * seed)
        histories[seed] = (h1, h2)
    out = tmp_path / "curves.png"
    training_curves(histories, "AADB", out)
    assert_png(out)
    one = tmp_path / "one.png"  # one epoch per stage, one seed (the tiny test config)
    _history(tmp_path / "a.tsv", "stage1", 1, 0)
    _history(tmp_path / "b.tsv", "stage2", 1, 0)
    training_curves({1: (tmp_path / "a.tsv", tmp_path / "b.tsv")}, "EVA", one)
    assert_png(one)


def test_prediction_scatter(tmp_path):
    rng = np.random.default_rng(0)
    n = 40
    truth = rng.uniform(size=(n, 3))
    table = pd.DataFrame({"image": [f"im{i}" for i in range(n)]})
    for j, t in enumerate(DATASETS["AADB"]["attributes"]):
        table[f"pred_{t}"] = np.clip(truth[:, j] + rng.normal(0, 0.1, n), 0, 1)
    for j, t in enumerate(DATASETS["AADB"]["attributes"]):
        table[f"true_{t}"] = truth[:, j]
    table["pred_Content"] = 0.5  # constant prediction: SRCC undefined, still drawn
    write_tsv(tmp_path / "AADB.tsv", table)
    out = tmp_path / "scatter.png"
    prediction_scatter(tmp_path / "AADB.tsv", DATASETS["AADB"]["attributes"], "AADB", out, overall="score")
    assert_png(out)


def test_srcc_bars_and_cross_heatmap(tmp_path):
    metrics = synthetic_metrics()
    write_tsv(tmp_path / "metrics.tsv", metrics)
    bars = tmp_path / "bars.png"
    srcc_bars(tmp_path / "metrics.tsv", "AADB", list(DATASETS["AADB"]["attributes"]), bars, overall="score")
    assert_png(bars)
    one_seed = tmp_path / "bars1.png"
    srcc_bars(synthetic_metrics(seeds=[1]), "EVA", list(DATASETS["EVA"]["attributes"]), one_seed, overall="score")
    assert_png(one_seed)
    heat = tmp_path / "heat.png"
    cross_heatmap(tmp_path / "metrics.tsv", DATASETS, heat)
    assert_png(heat)


class _Probe(nn.Module):
    """A model whose output is the mean of channel 0 of a 1x1 conv that copies the red channel."""

    def __init__(self):
        super().__init__()
        conv = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            conv.weight.zero_()
            conv.weight[0, 0] = 1.0
            conv.weight[1, 1] = -1.0
        self.features = nn.Sequential(conv, nn.ReLU(inplace=True))

    def forward(self, images):
        x = images.permute(0, 3, 1, 2).float() / 255
        return self.features(x).mean(dim=(2, 3))


def test_gradcam_points_at_what_raises_the_output():
    images = np.zeros((2, 16, 16, 3), dtype=np.uint8)
    images[0, :8, :8, 0] = 255      # red only in the top-left quadrant
    images[1, 8:, 8:, 0] = 200      # bottom-right
    cams = grad_cam(_Probe(), images, 0)
    assert cams.shape == (2, 16, 16) and cams.dtype == np.float32
    assert cams.min() >= 0 and cams.max() <= 1
    assert cams[0, :6, :6].mean() > 0.9 and cams[0, 10:, 10:].max() < 0.1
    assert cams[1, 10:, 10:].mean() > 0.9 and cams[1, :6, :6].max() < 0.1
    # output 1 falls wherever green rises; with no green the map is all zeros, never NaN
    assert np.array_equal(grad_cam(_Probe(), images, 1), np.zeros_like(cams))


@pytest.fixture(scope="module")
def tiny_vgg():
    torch.manual_seed(0)
    return build_model("vgg16", ["Light", "score"], None, head_spec())


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_gradcam_on_vgg16_last_conv(tiny_vgg, tiny_images, stage):
    tiny_vgg.set_stage(stage)  # frozen trunk (stage 1) still gives gradients at the activations
    assert last_conv_layer(tiny_vgg.features) is tiny_vgg.features[28]
    # Grad-CAM reads after the ReLU, as Keras' block5_conv3 output (Keras fuses the activation)
    assert cam_layer(tiny_vgg.features) is tiny_vgg.features[29]
    cams = grad_cam(tiny_vgg, tiny_images[:3], 1)
    assert cams.shape == (3, 32, 32)
    assert np.isfinite(cams).all() and cams.min() >= 0 and cams.max() <= 1
    assert all(c.max() in (0.0, 1.0) or np.isclose(c.max(), 1.0) for c in cams)
    assert not any(p.grad is not None for p in tiny_vgg.parameters())  # no gradients left on weights


def test_gradcam_reads_the_activation_not_the_raw_convolution(tiny_vgg, tiny_images):
    """A map from the pre-ReLU output differs: negative activations would count."""
    tiny_vgg.set_stage("stage1")
    after = grad_cam(tiny_vgg, tiny_images[:2], 1)
    before = grad_cam(tiny_vgg, tiny_images[:2], 1, layer=tiny_vgg.features[28])
    assert np.array_equal(after, grad_cam(tiny_vgg, tiny_images[:2], 1, layer=tiny_vgg.features[29]))
    assert not np.allclose(after, before)


def test_gradcam_on_efficientnet_lite0(tiny_images):
    model = build_model("efficientnet_lite0", ["score"], None, head_spec())
    assert isinstance(cam_layer(model.features), torch.nn.ReLU6)  # after the head's BatchNorm
    cams = grad_cam(model, tiny_images[:2], 0)
    assert cams.shape == (2, 32, 32) and np.isfinite(cams).all() and cams.max() <= 1


def test_gradcam_examples_figure(tiny_vgg, tiny_images, tmp_path):
    ckpt = tmp_path / "stage2.pt"
    tiny_vgg.set_stage("stage2")
    save_test_checkpoint(ckpt, tiny_vgg, stage="stage2", ranges={"Light": [-1, 1], "score": [0, 1]}, image_size=32,
                    head={"hidden": [128, 64], "dropout": 0.35}, weights={"spec": "none", "file": None,
                                                                         "sha256": None},
                    config={"datasets": {"AADB": {"attributes": {"Light": [-1, 1], "score": [0, 1]},
                                                  "overall": "score"}}}, provenance=provenance())
    cache = tmp_path / "images_32"
    cache.mkdir()
    np.save(cache / "images.npy", tiny_images)
    ids = [f"img{i:02d}.jpg" for i in range(len(tiny_images))]
    write_tsv(cache / "index.tsv", pd.DataFrame({"row": range(len(ids)), "image": ids}))
    rng = np.random.default_rng(1)
    test_ids = ids[4:14]
    pred = pd.DataFrame({"image": test_ids, "pred_Light": rng.uniform(size=10), "pred_score": rng.uniform(size=10),
                         "true_Light": rng.uniform(size=10), "true_score": rng.uniform(size=10)})
    write_tsv(tmp_path / "AADB.tsv", pred)
    out = tmp_path / "gradcam.png"
    picks = gradcam_examples(ckpt, cache, tmp_path / "AADB.tsv", "AADB", out, k=3)
    assert_png(out)
    errors = (pred["pred_score"] - pred["true_score"]).abs()
    best = set(pred.loc[errors.nsmallest(3).index, "image"])
    worst = set(pred.loc[errors.nlargest(3).index, "image"])
    assert set(picks.loc[picks["group"] == "best", "image"]) == best
    assert set(picks.loc[picks["group"] == "worst", "image"]) == worst


def test_the_functions_the_figure_rules_name(tmp_path):
    """Each figure rule names the function it runs (`draw` in workflow/rules/report.smk): every one of them
    exists and draws from the rule's named inputs."""
    from aesthetic_mtl.report import figures

    named = re.findall(r'draw="aesthetic_mtl\.report\.figures\.(\w+)"', (REPO / "workflow/rules/report.smk").read_text())
    assert len(named) == 4 and all(callable(getattr(figures, name)) for name in named)
    write_tsv(tmp_path / "metrics.tsv", synthetic_metrics(seeds=[1]))
    figures.srcc_bars_figure({"metrics": tmp_path / "metrics.tsv"}, tmp_path / "b.png", dataset="EVA",
                             datasets=DATASETS, backbone="vgg16")
    assert_png(tmp_path / "b.png")


def test_display_names_label_the_figures(tmp_path, monkeypatch):
    """The figures show an attribute's display name (EVA: "light and color") where one is configured."""
    from aesthetic_mtl.report import figures

    drawn = []
    monkeypatch.setattr(figures, "save", lambda fig, out: drawn.append(fig))
    names = {"visual": "light and color"}
    metrics = synthetic_metrics()
    srcc_bars(metrics, "EVA", list(DATASETS["EVA"]["attributes"]), tmp_path / "bars.png", overall="score",
              names=names)
    assert "light and color" in [t.get_text() for t in drawn[-1].axes[0].get_xticklabels()]
    datasets = {**DATASETS, "EVA": {**DATASETS["EVA"], "display_names": names}}
    cross_heatmap(metrics, datasets, tmp_path / "cross.png")
    labels = [t.get_text() for ax in drawn[-1].axes for t in (*ax.get_xticklabels(), *ax.get_yticklabels())]
    assert "light and color" in labels and "visual" not in labels
