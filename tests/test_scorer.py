"""Scoring photos as people expect: the Python API (`aesthetic_mtl.load`), models that travel (trunk resolved by
name, `export`), the precision a model was trained in, output where people want it, and `models`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from conftest import head_spec, save_test_checkpoint
from PIL import Image
from test_keras_vgg16 import narrow_keras  # noqa: F401  (fixtures: the narrow Keras VGG16 in the registry,
from test_weights import served  # noqa: F401   and a directory served on 127.0.0.1)

import aesthetic_mtl
from aesthetic_mtl import scorer as scorer_module
from aesthetic_mtl.cli import main
from aesthetic_mtl.errors import DataError
from aesthetic_mtl.files import write_tsv
from aesthetic_mtl.nn.backbones import weights_source
from aesthetic_mtl.nn.checkpoint import is_export, user_cache
from aesthetic_mtl.nn.model import build_model
from aesthetic_mtl.nn.weights import fetch_weights
from aesthetic_mtl.provenance import provenance

TARGETS = ["Light", "score"]
RANGES = {"Light": [-1.0, 1.0], "score": [1.0, 5.0]}


def _save(path: Path, backbone: str = "vgg16", weights: dict | None = None, trunk=None, bf16: bool = False,
          size: int = 32, interpolation: str = "nearest") -> Path:
    torch.manual_seed(0)
    model = build_model(backbone, TARGETS, trunk, head_spec())
    config = {"datasets": {"AADB": {"attributes": RANGES, "overall": "score"}}, "dataset": "AADB", "seed": 1,
              "setting": "multitask",
              "images": {"size": size, "resize": "squash", "interpolation": interpolation},
              "training": {"batch_size": 8, "bf16_autocast_cuda": bf16}}
    save_test_checkpoint(path, model, stage="stage2", ranges=RANGES, image_size=size,
                    head={"hidden": [128, 64], "dropout": 0.35},
                    weights=weights or {"spec": "none", "file": None, "sha256": None}, config=config,
                    provenance=provenance())
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return _save(tmp_path_factory.mktemp("ckpt") / "stage2.pt")


@pytest.fixture
def photos(tmp_path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for k, (name, shape) in enumerate([("a.jpg", (40, 50, 3)), ("b.png", (33, 29, 3)), ("c.png", (45, 45))]):
        paths.append(tmp_path / name)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(paths[-1])
    return paths


def _cli_scores(model: Path, photos, tmp_path, *extra) -> pd.DataFrame:
    out = tmp_path / f"cli{len(list(tmp_path.glob('cli*')))}.csv"
    result = CliRunner().invoke(main, ["predict", "--model", str(model), *map(str, photos), "--out", str(out),
                                       "--quiet", *extra])
    assert result.exit_code == 0, result.output
    return pd.read_csv(out)


# --------------------------------------------------------------------------------------------------
# the Python API
# --------------------------------------------------------------------------------------------------

def test_load_and_predict_every_input_kind_equal_the_cli(checkpoint, photos, tmp_path):
    scorer = aesthetic_mtl.load(checkpoint)
    assert scorer.targets == ["score", "Light"] and scorer.ranges == {"score": (1.0, 5.0), "Light": (-1.0, 1.0)}
    assert (scorer.backbone, scorer.dataset, scorer.stage, scorer.overall) == ("vgg16", "AADB", "stage2", "score")
    assert scorer.test_srcc is None  # not in a run's results folder: nothing recorded

    by_path = scorer.predict(photos)
    assert list(by_path.columns) == ["image", "score", "Light"] and list(by_path.index) == [0, 1, 2]
    assert list(by_path["image"]) == [str(p) for p in photos]
    cli = _cli_scores(checkpoint, photos, tmp_path)
    np.testing.assert_allclose(by_path[["score", "Light"]].to_numpy(), cli[["score", "Light"]].to_numpy(), atol=1e-5)

    one = scorer.predict(str(photos[0]))
    assert len(one) == 1 and one["score"].iloc[0] == pytest.approx(by_path["score"].iloc[0])
    pil = scorer.predict([Image.open(p) for p in photos])
    arrays = scorer.predict([np.asarray(Image.open(p)) for p in photos])
    rgba = np.dstack([np.asarray(Image.open(photos[0])), np.full((40, 50), 255, np.uint8)])
    for table in (pil, arrays):
        assert table["image"].isna().all()
        np.testing.assert_allclose(table[["score", "Light"]].to_numpy(), by_path[["score", "Light"]].to_numpy(),
                                   atol=1e-6)
    batch = scorer.predict(np.stack([np.asarray(Image.open(photos[0]))] * 2))  # a 4-D array: two photos
    assert len(batch) == 2 and batch["score"].iloc[1] == pytest.approx(by_path["score"].iloc[0])
    assert scorer.predict(rgba)["score"].iloc[0] == pytest.approx(by_path["score"].iloc[0], abs=1e-6)
    mixed = scorer.predict([photos[1], Image.open(photos[2])], workers=0, batch_size=1)
    np.testing.assert_allclose(mixed["score"], by_path["score"].iloc[1:], atol=1e-6)


def test_bad_photos_raise_or_are_skipped(checkpoint, photos, tmp_path):
    scorer = aesthetic_mtl.load(checkpoint)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        scorer.predict([photos[0], broken])
    seen = []
    table = scorer.predict([photos[0], broken, photos[1]], on_error="skip", errors=lambda n, e: seen.append(n))
    assert list(table.index) == [0, 2] and seen == [str(broken)]
    with pytest.raises(DataError, match=r"photo 0: a float64 array of shape \(4, 4, 3\)"):
        scorer.predict(np.zeros((4, 4, 3)))
    with pytest.raises(TypeError, match="not a photo"):
        scorer.predict([42])


# --------------------------------------------------------------------------------------------------
# models that travel
# --------------------------------------------------------------------------------------------------

def test_export_is_one_self_contained_file(tmp_path, photos):
    """A model trained on a trunk weights file: its export scores the same with the file gone."""
    trunk = tmp_path / "weights" / "efficientnet_lite0.pth"
    trunk.parent.mkdir()
    fetch_weights("efficientnet_lite0", trunk, log=lambda *_: None)  # the packaged ImageNet weights, as the rule
    ckpt = _save(tmp_path / "stage2.pt", "efficientnet_lite0", trunk=trunk, size=64,
                 weights={"spec": "imagenet", "file": str(trunk),
                          "sha256": hashlib.sha256(trunk.read_bytes()).hexdigest()})
    before = aesthetic_mtl.load(ckpt).predict(photos)
    out = tmp_path / "shared" / "model.safetensors"
    result = CliRunner().invoke(main, ["export", str(ckpt), str(out)])
    assert result.exit_code == 0, result.output
    assert is_export(out) and b"\x80\x04" not in out.read_bytes()[:64]  # safetensors, not a pickle
    trunk.unlink()
    after = aesthetic_mtl.load(out)
    pd.testing.assert_frame_equal(after.predict(photos), before)
    assert after.card.weights["sha256"] and "file" not in after.card.weights
    np.testing.assert_allclose(_cli_scores(out, photos, tmp_path)["score"], before["score"], atol=1e-5)
    info = CliRunner().invoke(main, ["info", str(out)])
    assert info.exit_code == 0 and "(exported)" in info.output and "inside the file" in info.output
    again = CliRunner().invoke(main, ["export", str(ckpt), str(out)])
    assert again.exit_code == 2 and "pass --force" in again.output
    note = tmp_path / "notes.txt"
    note.write_text("mine")
    refused = CliRunner().invoke(main, ["export", str(ckpt), str(note), "--force"])
    assert refused.exit_code == 2 and "never replaced" in refused.output and note.read_text() == "mine"
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(len(b'{"a": 1}').to_bytes(8, "little") + b'{"a": 1}')
    bad = CliRunner().invoke(main, ["info", str(junk)])
    assert bad.exit_code == 2 and "not an aesthetic-mtl checkpoint" in bad.output


def test_a_copied_checkpoint_finds_its_packaged_trunk_by_name(tmp_path, photos):
    trunk = tmp_path / "resources" / "weights" / "efficientnet_lite0.pth"
    trunk.parent.mkdir(parents=True)
    fetch_weights("efficientnet_lite0", trunk, log=lambda *_: None)
    sha = hashlib.sha256(trunk.read_bytes()).hexdigest()
    ckpt = _save(tmp_path / "stage2.pt", "efficientnet_lite0", trunk=trunk, size=64,
                 weights={"spec": "imagenet", "file": str(trunk), "sha256": sha})
    here = aesthetic_mtl.load(ckpt).predict(photos)
    shutil.rmtree(tmp_path / "resources")  # another machine: the recorded file is not there
    there = aesthetic_mtl.load(ckpt)
    pd.testing.assert_frame_equal(there.predict(photos), here)
    assert (user_cache() / "weights" / "efficientnet_lite0.pth").is_file()
    assert weights_source("efficientnet_lite0")[0] == "file"


def test_a_copied_checkpoint_downloads_its_trunk_or_says_where_to_place_it(served, narrow_keras, tmp_path, photos):
    """vgg16_keras: downloaded from the registry's URL (a server on 127.0.0.1), md5-checked, converted; the
    stored trunk has the same bytes on every machine, so the checkpoint's sha256 is met."""
    from test_keras_vgg16 import H5_NAME, _kernels, write_keras_h5

    root, base = served
    write_keras_h5(root / H5_NAME, _kernels())
    narrow_keras(f"{base}/{H5_NAME}", hashlib.md5((root / H5_NAME).read_bytes()).hexdigest())
    trunk = tmp_path / "resources" / "weights" / "vgg16_keras.pth"
    trunk.parent.mkdir(parents=True)
    fetch_weights("vgg16_keras", trunk, log=lambda *_: None)
    ckpt = _save(tmp_path / "stage2.pt", "vgg16_keras", trunk=trunk,
                 weights={"spec": "imagenet", "file": str(trunk),
                          "sha256": hashlib.sha256(trunk.read_bytes()).hexdigest()})
    here = aesthetic_mtl.load(ckpt).predict(photos)
    shutil.rmtree(tmp_path / "resources")
    (root / H5_NAME).rename(root / "gone.h5")  # offline: the server has no file
    result = CliRunner().invoke(main, ["predict", "--model", str(ckpt), str(photos[0]), "--quiet"])
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith("127.0.0.1 - -")]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert f"{H5_NAME}: could not download {base}/{H5_NAME}: HTTP 404" in lines[0]
    assert f"place it in {user_cache() / 'weights'}/" in lines[0] and "--weights FILE" in lines[0]
    (root / "gone.h5").rename(root / H5_NAME)
    pd.testing.assert_frame_equal(aesthetic_mtl.load(ckpt).predict(photos), here)


# --------------------------------------------------------------------------------------------------
# precision
# --------------------------------------------------------------------------------------------------

def test_scores_in_the_precision_the_model_was_trained_in(tmp_path, photos, monkeypatch):
    """bf16 autocast forced on (on the CPU, standing in for CUDA): a float32-trained model still scores in
    float32 unless asked; a model trained with bf16 scores in bf16."""
    seen = []

    def forced(device, enabled=True):
        seen.append(enabled)
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)

    float32 = _save(tmp_path / "f32.pt")
    reference = aesthetic_mtl.load(float32).predict(photos)
    monkeypatch.setattr(scorer_module, "autocast", forced)
    same = aesthetic_mtl.load(float32).predict(photos)
    pd.testing.assert_frame_equal(same, reference)
    asked = aesthetic_mtl.load(float32).predict(photos, bf16=True)
    assert not np.allclose(asked["score"], reference["score"], atol=1e-6)
    trained_bf16 = aesthetic_mtl.load(_save(tmp_path / "bf16.pt", bf16=True)).predict(photos)
    np.testing.assert_allclose(trained_bf16["score"], asked["score"])
    assert seen == [False, True, True]
    cli = _cli_scores(float32, photos, tmp_path, "--no-bf16")
    np.testing.assert_allclose(cli["score"], reference["score"], atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_scores_equal_the_cpu_scores(checkpoint, photos):
    """Pinned memory and non-blocking copies change nothing: float32 on the GPU as on the CPU."""
    cpu = aesthetic_mtl.load(checkpoint, device="cpu").predict(photos)
    cuda = aesthetic_mtl.load(checkpoint, device="cuda").predict(photos, batch_size=2)
    np.testing.assert_allclose(cuda[["score", "Light"]], cpu[["score", "Light"]], atol=1e-4)


# --------------------------------------------------------------------------------------------------
# output where people want it
# --------------------------------------------------------------------------------------------------

def test_out_dash_writes_to_standard_output_in_each_format(checkpoint, photos, tmp_path):
    runner = CliRunner()
    csv = runner.invoke(main, ["predict", "--model", str(checkpoint), *map(str, photos), "--out", "-", "--quiet"])
    assert csv.exit_code == 0 and not (Path.cwd() / "-").exists()
    assert csv.stdout.splitlines()[0] == "image,score,Light" and len(csv.stdout.splitlines()) == 4
    assert "scored 3 image(s)" in csv.stderr and "scored" not in csv.stdout
    records = json.loads(runner.invoke(main, ["predict", "--model", str(checkpoint), *map(str, photos),
                                              "--format", "json", "--quiet"]).stdout)
    assert [list(r) for r in records] == [["image", "score", "Light"]] * 3
    lines = runner.invoke(main, ["predict", "--model", str(checkpoint), *map(str, photos), "--out",
                                 str(tmp_path / "s.jsonl"), "--quiet"])
    assert lines.exit_code == 0
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [r["image"] for r in rows] == [str(p) for p in photos]
    assert rows[0]["score"] == pytest.approx(records[0]["score"], abs=1e-5)
    again = runner.invoke(main, ["predict", "--model", str(checkpoint), str(photos[0]), "--out",
                                 str(tmp_path / "s.jsonl"), "--quiet"])
    assert again.exit_code == 2 and "pass --force" in again.output  # an earlier scores table, JSON lines too
    forced = runner.invoke(main, ["predict", "--model", str(checkpoint), str(photos[0]), "--out",
                                  str(tmp_path / "s.jsonl"), "--quiet", "--force"])
    assert forced.exit_code == 0 and len((tmp_path / "s.jsonl").read_text().splitlines()) == 1


def test_models_lists_a_runs_checkpoints_best_first(tmp_path):
    results = tmp_path / "results"
    rows = []
    for setting, seed, srcc in (("multitask", 1, 0.61), ("multitask", 2, 0.68), ("single_score", 1, 0.55)):
        folder = results / "models" / "AADB" / "vgg16" / setting / f"seed{seed}"
        folder.mkdir(parents=True)
        path = _save(folder / "stage2.pt")
        ckpt = torch.load(path, weights_only=True)
        ckpt["card"].update(seed=seed, setting=setting)
        torch.save(ckpt, path)
        rows.append({"dataset": "AADB", "train_dataset": "AADB", "backbone": "vgg16", "setting": setting,
                     "stage": "stage2", "seed": seed, "target": "score", "metric": "srcc", "value": srcc})
    write_tsv(results / "metrics.tsv", pd.DataFrame(rows))
    result = CliRunner().invoke(main, ["models", str(results), "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert [(r["setting"], r["seed"], r["test_srcc"]) for r in listed] == [
        ("multitask", 2, 0.68), ("multitask", 1, 0.61), ("single_score", 1, 0.55)]
    text = CliRunner().invoke(main, ["models", str(results)]).output
    assert text.splitlines()[1].split()[:2] == ["0.6800", "score"]
    best = aesthetic_mtl.load(listed[0]["checkpoint"])
    assert best.test_srcc == pytest.approx(0.68) and best.seed == 2


def test_workers_reach_the_scorer_and_do_not_change_the_scores(checkpoint, photos, tmp_path, monkeypatch):
    from aesthetic_mtl.scorer import Scorer

    seen, real = [], Scorer.predict

    def spy(self, images, **kwargs):
        seen.append(kwargs["workers"])
        return real(self, images, **kwargs)

    monkeypatch.setattr(Scorer, "predict", spy)
    tables = [_cli_scores(checkpoint, photos, tmp_path, "--batch-size", "1", *extra)
              for extra in ((), ("--workers", "0"), ("--workers", "2"))]
    assert seen == [None, 0, 2]                 # None: one decoding thread per core
    for table in tables[1:]:
        pd.testing.assert_frame_equal(table, tables[0])


def test_predict_lets_openmp_threads_sleep_unless_told_otherwise(monkeypatch):
    """Spinning OpenMP threads starved predict's decoding threads (bench/results.md section 8): the command sets
    OMP_WAIT_POLICY=PASSIVE before torch loads, and keeps a policy the user set."""
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert CliRunner().invoke(main, ["backbones"]).exit_code == 0
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert CliRunner().invoke(main, ["backbones"]).exit_code == 0
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
