"""`aesthetic-mtl` commands on a tiny checkpoint and generated photos (CliRunner, no subprocess)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from aesthetic_mtl.cli import collect_images, main
from aesthetic_mtl.io import provenance
from aesthetic_mtl.images import load_image
from aesthetic_mtl.model import build_model, load_model, save_checkpoint

TARGETS = ["Light", "score"]
RANGES = {"Light": [-1.0, 1.0], "score": [1.0, 5.0]}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "stage2.pt"
    torch.manual_seed(0)
    model = build_model("vgg16", TARGETS, None)
    config = {"datasets": {"AADB": {"targets": RANGES, "overall": "score"}},
              "images": {"size": 32, "resize": "squash"},
              "training": {"batch_size": 8, "stage1": {"epochs": 1, "lr": 1e-3}, "stage2": {"epochs": 1, "lr": 1e-4},
                           "seeds": [1]}}
    save_checkpoint(path, model, stage="stage2", ranges=RANGES, image_size=32,
                    head={"hidden": [128, 64], "dropout": 0.35},
                    weights={"spec": "none", "file": None, "sha256": None}, config=config,
                    provenance=provenance())
    return path


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    (folder / "nested" / "deeper").mkdir(parents=True)
    for name in ("a.jpg", "nested/b.png", "nested/deeper/c.JPEG", "nested/d.webp"):
        Image.fromarray(rng.integers(0, 256, (30 + len(name), 41, 3), dtype=np.uint8)).save(folder / name)
    (folder / "nested" / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (folder / "notes.txt").write_text("not an image, and not scanned")
    single = tmp_path / "single.bmp"
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(single)
    return folder, single


def test_collect_images_recurses_and_filters(photos):
    folder, single = photos
    found = collect_images([single, folder, single])
    names = [p.name for p in found]
    assert names[0] == "single.bmp" and names.count("single.bmp") == 1
    assert set(names) == {"single.bmp", "a.jpg", "b.png", "c.JPEG", "d.webp", "broken.jpg"}


def test_predict_scores_on_the_original_scale_and_skips_unreadable(checkpoint, photos, tmp_path):
    folder, single = photos
    out = tmp_path / "out" / "scores.csv"
    result = CliRunner().invoke(main, ["predict", "--model", str(checkpoint), str(folder), str(single),
                                       "--out", str(out), "--batch-size", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out)
    assert list(scores.columns) == ["image", "score", "Light"]      # overall score first, then the attributes
    assert len(scores) == 5 and not scores["image"].str.contains("broken").any()
    assert scores["score"].between(1, 5).all() and scores["Light"].between(-1, 1).all()
    stderr = result.stderr if hasattr(result, "stderr") else result.output
    assert "broken.jpg" in stderr and "1 unreadable file(s) skipped" in stderr
    assert not list(out.parent.glob(".*"))                          # atomic write: no temporary left

    # the same photos scored one by one give the same numbers (batching does not change results)
    again = tmp_path / "again.csv"
    result = CliRunner().invoke(main, ["predict", "--model", str(checkpoint), str(folder / "a.jpg"),
                                       "--out", str(again), "--batch-size", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    first = pd.read_csv(again).iloc[0]
    row = scores[scores["image"] == str(folder / "a.jpg")].iloc[0]
    assert first["score"] == pytest.approx(row["score"], abs=1e-5)
    # and they are the network's [0, 1] outputs mapped onto each target's range
    model, _ = load_model(checkpoint)
    with torch.no_grad():
        unit = model(torch.from_numpy(np.array(load_image(folder / "a.jpg", 32)[None])))[0].numpy()
    assert row["score"] == pytest.approx(1 + 4 * unit[TARGETS.index("score")], abs=1e-4)
    assert row["Light"] == pytest.approx(-1 + 2 * unit[TARGETS.index("Light")], abs=1e-4)


def test_predict_fails_only_when_nothing_is_readable(checkpoint, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    result = CliRunner().invoke(main, ["predict", "--model", str(checkpoint), str(bad), "--out",
                                       str(tmp_path / "s.csv")])
    assert result.exit_code != 0 and "could be read" in result.output
    assert not (tmp_path / "s.csv").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(main, ["predict", "--model", str(checkpoint), str(empty), "--out",
                                       str(tmp_path / "s.csv")])
    assert result.exit_code != 0 and "no image files" in result.output
    result = CliRunner().invoke(main, ["predict", "--model", str(checkpoint), str(tmp_path / "missing"),
                                       "--out", str(tmp_path / "s.csv")])
    assert result.exit_code != 0 and "no such file" in result.output


def test_predict_names_missing_trunk_weights(tmp_path):
    path = tmp_path / "needs_weights.pt"
    model = build_model("vgg16", ["score"], None)
    save_checkpoint(path, model, stage="stage1", ranges={"score": [0, 1]}, image_size=32,
                    head={"hidden": [128, 64], "dropout": 0.35},
                    weights={"spec": "imagenet", "file": "resources/weights/nowhere.pth", "sha256": "ab" * 32},
                    config={}, provenance={"code_version": "test"})
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(img)
    result = CliRunner().invoke(main, ["predict", "--model", str(path), str(img), "--out", str(tmp_path / "o.csv")])
    assert result.exit_code != 0 and "--weights" in result.output


def test_predict_refuses_a_trunk_it_was_not_trained_with(tmp_path):
    path = tmp_path / "trained_on_a.pt"
    other = tmp_path / "b.pth"
    torch.save({"x": torch.zeros(1)}, other)
    model = build_model("vgg16", ["score"], None)
    save_checkpoint(path, model, stage="stage1", ranges={"score": [0, 1]}, image_size=32,
                    head={"hidden": [128, 64], "dropout": 0.35},
                    weights={"spec": "imagenet", "file": str(tmp_path / "a.pth"), "sha256": "ab" * 32},
                    config={}, provenance={"code_version": "test"})
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(img)
    result = CliRunner().invoke(main, ["predict", "--model", str(path), str(img), "--weights", str(other),
                                       "--out", str(tmp_path / "o.csv")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "ab" * 32 in result.output and "was trained with" in result.output


def test_info_text_and_json(checkpoint):
    result = CliRunner().invoke(main, ["info", str(checkpoint)])
    assert result.exit_code == 0, result.output
    for expected in ("vgg16", "stage2", "32 px", "Light", "[-1, 1]", "score", "[1, 5]", "overall: score",
                     "code version", "sha256", "AADB"):
        assert expected in result.output
    result = CliRunner().invoke(main, ["info", "--json", str(checkpoint)])
    data = json.loads(result.output)
    assert data["targets"] == RANGES and data["stage"] == "stage2" and data["image_size"] == 32
    assert data["weights"] == {"spec": "none", "file": None, "sha256": None}
    assert data["code_version"] and data["config"]["datasets"] == ["AADB"]


def test_backbones_lists_the_registry():
    result = CliRunner().invoke(main, ["backbones"])
    assert result.exit_code == 0
    assert "vgg16" in result.output and "efficientnet_lite0" in result.output
    full = CliRunner().invoke(main, ["backbones", "--all"])
    assert "resnet50" in full.output
