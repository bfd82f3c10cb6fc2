"""`aesthetic-mtl` commands on a tiny checkpoint and generated photos (CliRunner, no subprocess)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from aesthetic_mtl.cli import collect_images, main
from aesthetic_mtl.data.images import load_image
from aesthetic_mtl.nn.checkpoint import load_model
from aesthetic_mtl.nn.model import build_model
from aesthetic_mtl.provenance import provenance

from conftest import head_spec, image_spec, save_test_checkpoint

TARGETS = ["Light", "score"]
RANGES = {"Light": [-1.0, 1.0], "score": [1.0, 5.0]}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "stage2.pt"
    torch.manual_seed(0)
    model = build_model("vgg16", TARGETS, None, head_spec())
    config = {"datasets": {"AADB": {"attributes": RANGES, "overall": "score"}},
              "images": {"size": 32, "resize": "squash"},
              "training": {"batch_size": 8, "stage1": {"epochs": 1, "lr": 1e-3}, "stage2": {"epochs": 1, "lr": 1e-4},
                           "seeds": [1]}}
    save_test_checkpoint(path, model, stage="stage2", ranges=RANGES, image_size=32,
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
    (folder / "notes.txt").write_text("not an image: counted, not scored")
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
    assert "broken.jpg" in stderr and stderr.strip().splitlines()[-1] == (
        "not scored: 2 file(s): 1 unreadable image (named above), 1 not an image (Pillow cannot open it)")
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
        unit = model(torch.from_numpy(np.array(load_image(folder / "a.jpg", image_spec(32))[None])))[0].numpy()
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
    model = build_model("vgg16", ["score"], None, head_spec())
    save_test_checkpoint(path, model, stage="stage1", ranges={"score": [0, 1]}, image_size=32,
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
    model = build_model("vgg16", ["score"], None, head_spec())
    save_test_checkpoint(path, model, stage="stage1", ranges={"score": [0, 1]}, image_size=32,
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


# --------------------------------------------------------------------------------------------------
# files that are not checkpoints: one line, exit code 2, never advice to unpickle
# --------------------------------------------------------------------------------------------------

class _NotData:
    """A class: torch.save pickles it, weights_only loading must refuse it."""


def _bad_checkpoints(folder, good) -> dict[str, tuple]:
    """name -> (file, words the reason must contain)."""
    import os
    import pickle

    folder.mkdir(exist_ok=True)
    made = {}

    def put(name, data: bytes, why):
        (folder / name).write_bytes(data)
        made[name] = (folder / name, why)

    def save(name, obj, why):
        torch.save(obj, folder / name)
        made[name] = (folder / name, why)

    ckpt = torch.load(good, weights_only=True)
    raw = good.read_bytes()
    put("random.pt", os.urandom(4096), "unknown binary content")
    put("config.json", json.dumps({"format": 1, "targets": ["score"]}).encode(), "JSON or text")
    put("empty.pt", b"", "empty file")
    put("truncated.pt", raw[: len(raw) // 2], "truncated or damaged")
    put("pickle.pt", pickle.dumps({"format": 1}), "plain Python pickle")
    save("trunk.pth", build_model("vgg16", ["score"], None, head_spec()).features.state_dict(), "bare state_dict")
    save("plain_dict.pt", {"weights": 1, "backbone": "vgg16"}, "without a format version")
    save("list.pt", [1, 2, 3], "holds a list")
    save("object.pt", {"format": 1, "x": _NotData()}, "never unpickled")
    card = ckpt["card"]
    save("older.pt", {**ckpt, "format": 0}, "format version 0 is older than the versions [1, 2]")
    save("newer.pt", {**ckpt, "format": 7}, "format version 7 is newer than the versions [1, 2]")
    save("no_card.pt", {k: v for k, v in ckpt.items() if k != "card"}, "format 2 but the key 'card' is missing")
    save("no_targets.pt", {**ckpt, "card": {k: v for k, v in card.items() if k != "targets"}},
         "its model card does not fit this aesthetic-mtl ('targets')")
    save("bad_ranges.pt", {**ckpt, "card": {**card, "ranges": {"Light": [-1, 1]}}}, "no [low, high] for target 'score'")
    save("bad_stage.pt", {**ckpt, "card": {**card, "stage": "stage3"}}, "'stage' is 'stage3'")
    save("other_backbone.pt", {**ckpt, "card": {**card, "backbone": "vgg17"}},
         "its backbone 'vgg17' is not one this aesthetic-mtl knows")
    wrong = dict(ckpt["state_dict"])
    key = next(k for k in wrong if k.startswith("head.") and k.endswith("weight"))
    wrong[key] = torch.zeros(3, 3)
    save("wrong_shape.pt", {**ckpt, "state_dict": wrong}, "do not fit a vgg16 model")
    fewer = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("features.")}
    save("stage1_params.pt", {**ckpt, "state_dict": fewer}, "missing ['features.19.bias'")
    return made


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory, checkpoint):
    return _bad_checkpoints(tmp_path_factory.mktemp("bad"), checkpoint)


BAD_NAMES = ["random.pt", "config.json", "empty.pt", "truncated.pt", "pickle.pt", "trunk.pth",
             "plain_dict.pt", "list.pt", "object.pt", "older.pt", "newer.pt", "no_card.pt", "no_targets.pt",
             "bad_ranges.pt", "bad_stage.pt", "other_backbone.pt", "wrong_shape.pt", "stage1_params.pt"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_predict_and_info_refuse_a_bad_checkpoint_in_one_line(bad_checkpoints, photos, tmp_path, name):
    path, why = bad_checkpoints[name]
    folder, _ = photos
    runs = {"predict": ["predict", "--model", str(path), str(folder), "--out", str(tmp_path / "s.csv"),
                        "--device", "cpu"]}
    if name not in ("other_backbone.pt", "wrong_shape.pt", "stage1_params.pt"):   # info does not build
        runs["info"] = ["info", str(path)]
    for command, args in runs.items():
        result = CliRunner().invoke(main, args)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2, (command, result.output, result.exception)
        assert len(lines) == 1, (command, result.output)
        assert lines[0].startswith(f"Error: not an aesthetic-mtl checkpoint: {path}: "), lines[0]
        assert why in lines[0], lines[0]
        assert "weights_only" not in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "s.csv").exists()


def test_bad_checkpoint_from_the_console_script_is_one_line_on_stderr(bad_checkpoints):
    import subprocess
    import sys

    path, _ = bad_checkpoints["random.pt"]
    proc = subprocess.run([sys.executable, "-m", "aesthetic_mtl.cli", "info", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"Error: not an aesthetic-mtl checkpoint: {path}: not a torch.save archive (unknown binary "
        f"content); checkpoints are written by training as stage1.pt / stage2.pt"]


@pytest.mark.parametrize("device, message", [
    ("banana", "'banana' is not a device; use cpu, cuda, cuda:N or mps"),
    ("meta", "device type 'meta' is not supported"),
])
def test_predict_refuses_an_unknown_device_in_one_line(checkpoint, photos, tmp_path, device, message):
    folder, _ = photos
    result = CliRunner().invoke(main, ["predict", "--model", str(checkpoint), str(folder), "--out",
                                       str(tmp_path / "s.csv"), "--device", device])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Invalid value for '--device'" in result.output and "Traceback" not in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_predict_on_cuda_without_a_gpu_is_one_line(checkpoint, photos, tmp_path):
    folder, _ = photos
    for device in ("cuda", "cuda:1"):
        result = CliRunner().invoke(main, ["predict", "--model", str(checkpoint), str(folder), "--out",
                                           str(tmp_path / "s.csv"), "--device", device])
        assert result.exit_code == 2, result.output
        assert f"'{device}': torch finds no CUDA GPU on this machine; use --device cpu" in result.output
    assert not (tmp_path / "s.csv").exists()


def test_one_file_under_two_spellings_is_scored_once(checkpoint, photos, tmp_path):
    folder, _ = photos
    detour = folder / "nested" / ".." / "a.jpg"                  # the same file as folder/a.jpg
    link = tmp_path / "link.jpg"
    link.symlink_to(folder / "a.jpg")
    found = collect_images([detour, folder, link])
    assert [p.resolve() for p in found].count((folder / "a.jpg").resolve()) == 1
    assert found[0] == detour                                     # the first spelling is kept
    out = tmp_path / "s.csv"
    result = CliRunner().invoke(main, ["predict", "--model", str(checkpoint), str(detour), str(folder),
                                       "--out", str(out), "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    names = [Path(p).name for p in pd.read_csv(out)["image"]]
    assert sorted(names) == ["a.jpg", "b.png", "c.JPEG", "d.webp"]   # a.jpg once (broken.jpg skipped)


# --------------------------------------------------------------------------------------------------
# predict never overwrites a file it did not write as a scores table
# --------------------------------------------------------------------------------------------------

def _predict(checkpoint, *args):
    return CliRunner().invoke(main, ["predict", "--model", str(checkpoint), *map(str, args), "--device", "cpu",
                                     "--quiet"])


def _one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_predict_refuses_to_write_over_an_input_photo(checkpoint, photos, tmp_path):
    """`predict a.jpg b.png --out a.jpg` (a shell glob) would replace the photo with CSV text."""
    folder, single = photos
    a, b = folder / "a.jpg", folder / "nested" / "b.png"
    before = a.read_bytes()
    for out, extra in ((a, []), (a, ["--force"]), (folder / "nested" / ".." / "a.jpg", []), (b, [])):
        inputs = [a, b] if out != b else [folder]                  # b.png is found in the folder
        line = _one_error_line(_predict(checkpoint, *inputs, "--out", out, *extra))
        assert line.startswith(f"Error: --out {out} is one of the photos to score"), line
    link = tmp_path / "link.csv"
    link.symlink_to(a)                                              # the photo under another name
    assert "is one of the photos to score" in _one_error_line(_predict(checkpoint, a, "--out", link, "--force"))
    assert a.read_bytes() == before and b.is_file()


def test_predict_never_replaces_a_file_it_did_not_write(checkpoint, photos, tmp_path):
    folder, single = photos
    for name, data in (("notes.csv", b"my notes, not scores\n"), ("other.jpg", (folder / "a.jpg").read_bytes())):
        other = tmp_path / name
        other.write_bytes(data)
        for extra in ([], ["--force"]):
            line = _one_error_line(_predict(checkpoint, single, "--out", other, *extra))
            assert line == (f"Error: --out {other} exists and is not a scores table written by predict; "
                            f"it is never replaced: choose another file"), line
        assert other.read_bytes() == data


def test_predict_replaces_earlier_scores_only_with_force(checkpoint, photos, tmp_path):
    folder, single = photos
    out = tmp_path / "scores.csv"
    assert _predict(checkpoint, single, "--out", out).exit_code == 0
    first = out.read_bytes()
    line = _one_error_line(_predict(checkpoint, folder / "a.jpg", "--out", out))
    assert line == (f"Error: --out {out} exists (scores from an earlier predict); pass --force to replace it, "
                    f"or choose another file"), line
    assert out.read_bytes() == first
    result = _predict(checkpoint, folder / "a.jpg", "--out", out, "--force")
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out)["image"].tolist() == [str(folder / "a.jpg")]


# --------------------------------------------------------------------------------------------------
# predict finds every photo Pillow can open, follows linked folders once, and counts what it left out
# --------------------------------------------------------------------------------------------------

def test_predict_scores_gif_jfif_unsuffixed_and_linked_folders(checkpoint, tmp_path):
    rng = np.random.default_rng(1)

    def photo(path: Path, fmt: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)).save(path, format=fmt)

    folder, other_disk = tmp_path / "photos", tmp_path / "other_disk"
    photo(folder / "anim.gif", "GIF")
    photo(folder / "browser.jfif", "JPEG")                 # how some browsers save JPEGs
    photo(folder / "IMG_0001", "PNG")                      # no suffix: Pillow knows it is a PNG
    photo(folder / "tweet.jpg_large", "JPEG")
    photo(other_disk / "trip" / "far.png", "PNG")
    (folder / "trip").symlink_to(other_disk / "trip", target_is_directory=True)    # photos on another disk
    (folder / "trip" / "loop").symlink_to(folder, target_is_directory=True)        # a link back up: no loop
    (folder / "notes.txt").write_text("not an image")
    (folder / "._anim.gif").write_bytes(b"\x00\x05\x16\x07 AppleDouble")           # macOS resource fork
    (folder / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")                     # a broken link
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    found = collect_images([folder])
    assert sorted(p.relative_to(folder).as_posix() for p in found) == [
        "IMG_0001", "anim.gif", "broken.png", "browser.jfif", "trip/far.png", "tweet.jpg_large"]
    out = tmp_path / "scores.csv"
    result = _predict(checkpoint, folder, "--out", out)
    assert result.exit_code == 0, result.output
    scored = sorted(Path(p).relative_to(folder).as_posix() for p in pd.read_csv(out)["image"])
    assert scored == ["IMG_0001", "anim.gif", "browser.jfif", "trip/far.png", "tweet.jpg_large"]
    last = result.output.strip().splitlines()[-1]
    assert last == ("not scored: 4 file(s): 1 unreadable image (named above), 1 not an image (Pillow cannot open "
                    "it), 1 macOS metadata file (._*, .DS_Store), 1 broken symbolic link"), result.output
