"""Image decoding and the uint8 image cache: pixel values of odd formats, failures, cache layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFile, JpegImagePlugin

from aesthetic_mtl.data import image_cache, images
from aesthetic_mtl.data.image_cache import (
    build_image_cache,
    iter_batches,
    open_image_cache,
)
from aesthetic_mtl.data.images import load_image
from aesthetic_mtl.errors import DataError
from aesthetic_mtl.files import read_tsv
from conftest import image_spec

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)


def _save(arr: np.ndarray, path: Path, mode: str | None = None, **kw) -> Path:
    """Write an array as an image file (format from the suffix)."""
    im = Image.fromarray(arr) if mode is None else Image.fromarray(arr, mode)
    im.save(path, **kw)
    return path


def _opened(path: Path, what: str = "mode"):
    """An attribute of the image as Pillow opens it (closing the file again)."""
    with Image.open(path) as im:
        return getattr(im, what)


def _halves(w: int, h: int, left=RED, right=BLUE) -> np.ndarray:
    """An RGB image whose left half is `left` and right half `right`."""
    arr = np.empty((h, w, 3), np.uint8)
    arr[:, : w // 2] = left
    arr[:, w // 2:] = right
    return arr


def _smooth_photo(w: int, h: int, seed: int = 0) -> np.ndarray:
    """Photo-like content: smooth gradients plus mild noise (random noise alone is unlike a photo)."""
    yy, xx = np.mgrid[0:h, 0:w] / h
    base = np.stack([np.sin(xx * (3 + c) + c) * np.cos(yy * 2 + c) for c in range(3)], -1)
    noise = np.random.default_rng(seed).normal(0, 8, base.shape)
    return (127 + 90 * base + noise).clip(0, 255).astype(np.uint8)


@pytest.fixture
def jpeg(tmp_path: Path) -> Path:
    return _save(_smooth_photo(320, 240), tmp_path / "photo.jpg", quality=92)


# ------------------------------------------------------------------------------------------------
# colour modes: exact values (same-size squash is an identity resize, so pixels compare exactly)
# ------------------------------------------------------------------------------------------------

def test_grayscale_replicated_to_three_channels(tmp_path):
    grey = np.tile(np.array([0, 10, 128, 255], np.uint8), (4, 1))
    out = load_image(_save(grey, tmp_path / "g.png"), image_spec(4))
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)


def test_one_bit_image_is_black_and_white(tmp_path):
    bits = np.zeros((4, 4), bool)
    bits[:, 2:] = True
    path = _save(bits, tmp_path / "b.png")               # bool array -> mode "1"
    assert _opened(path) == "1"
    out = load_image(path, image_spec(4))
    np.testing.assert_array_equal(out[:, :2], 0)
    np.testing.assert_array_equal(out[:, 2:], 255)


def test_rgba_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[0] = (200, 100, 0, 128)   # half transparent
    rgba[1] = (10, 20, 30, 0)      # fully transparent -> white, whatever the colour under it
    rgba[2] = (10, 20, 30, 255)    # opaque -> unchanged
    rgba[3] = (0, 0, 0, 64)
    out = load_image(_save(rgba, tmp_path / "a.png"), image_spec(4)).astype(int)
    c, a = rgba[..., :3].astype(int), rgba[..., 3:].astype(int)
    expected = (c * a + 255 * (255 - a) + 127) // 255
    np.testing.assert_array_equal(out, expected)
    assert tuple(out[0, 0]) == (227, 177, 127)
    assert tuple(out[1, 0]) == (255, 255, 255)
    assert tuple(out[2, 0]) == (10, 20, 30)


def test_la_composited_on_white(tmp_path):
    la = np.zeros((4, 4, 2), np.uint8)
    la[..., 0] = 40
    la[:2, :, 1] = 255
    out = load_image(_save(la, tmp_path / "la.png", "LA"), image_spec(4))
    np.testing.assert_array_equal(out[:2], 40)
    np.testing.assert_array_equal(out[2:], 255)


@pytest.mark.parametrize("suffix", ["png", "gif"])
def test_palette_with_transparency(tmp_path, suffix):
    idx = np.zeros((4, 4), np.uint8)
    idx[:, 2:] = 1                                   # index 0 transparent, index 1 red
    im = Image.fromarray(idx, "P")
    im.putpalette([0, 255, 0] + list(RED) + [0, 0, 0] * 254)
    path = tmp_path / f"p.{suffix}"
    im.save(path, transparency=0)
    out = load_image(path, image_spec(4))
    np.testing.assert_array_equal(out[:, :2], 255)    # transparent green -> white
    np.testing.assert_array_equal(out[:, 2:], np.broadcast_to(RED, (4, 2, 3)))


def test_palette_without_transparency(tmp_path):
    path = tmp_path / "p.png"
    Image.fromarray(_halves(4, 4)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(path)
    assert _opened(path) == "P"
    np.testing.assert_array_equal(load_image(path, image_spec(4)), _halves(4, 4))


@pytest.mark.parametrize("name,dtype", [("g16.png", np.uint16), ("g16b.tif", ">u2")])
def test_sixteen_bit_scaled_not_clipped(tmp_path, name, dtype):
    values = np.array([[0, 257, 25828, 25829],
                       [32896, 65279, 65534, 65535]] * 2, np.uint16)
    path = tmp_path / name
    Image.fromarray(values.astype(dtype)).save(path)
    assert _opened(path) in ("I;16", "I;16B", "I")
    out = load_image(path, image_spec(4))
    expected = np.array([[0, 1, 100, 101], [128, 254, 255, 255]] * 2, np.uint8)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], expected)


def test_cmyk_jpeg_including_adobe_inverted(tmp_path):
    cmyk = np.zeros((16, 16, 4), np.uint8)
    cmyk[:, :8] = (0, 255, 255, 0)    # red
    cmyk[:, 8:] = (255, 255, 0, 0)    # blue
    path = _save(cmyk, tmp_path / "c.jpg", "CMYK", quality=100)
    assert _opened(path, "info").get("adobe")  # Pillow writes (and reads back) Adobe-inverted CMYK
    out = load_image(path, image_spec(16)).astype(int)
    assert np.abs(out[:, :6] - RED).max() <= 4
    assert np.abs(out[:, 10:] - BLUE).max() <= 4


# ------------------------------------------------------------------------------------------------
# geometry
# ------------------------------------------------------------------------------------------------

def test_exif_orientation_6_rotates_clockwise(tmp_path):
    # stored landscape, red left half; orientation 6 = "rotate 90 deg clockwise to display",
    # so the stored left edge ends up at the top
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(_halves(64, 32), tmp_path / "rot.jpg", quality=95, exif=exif.tobytes())
    out = load_image(path, image_spec(32)).astype(int)
    assert np.abs(out[:12] - RED).max() < 20, "top should be red"
    assert np.abs(out[-12:] - BLUE).max() < 20, "bottom should be blue"
    unrotated = np.abs(out[:, :12] - RED).max()
    assert unrotated > 100, "left edge must not be all red (orientation ignored)"


def test_center_crop_keeps_the_middle(tmp_path):
    arr = np.empty((100, 300, 3), np.uint8)
    arr[:, :100], arr[:, 100:200], arr[:, 200:] = RED, GREEN, BLUE
    path = _save(arr, tmp_path / "wide.png")
    crop = load_image(path, image_spec(50, resize="center_crop")).astype(int)
    # as "resize the shorter side to 50, then crop": the kernel still sees the neighbours at the
    # crop's left/right edge, so only the interior is exactly green
    np.testing.assert_array_equal(crop[:, 2:-2], np.broadcast_to(GREEN, (50, 46, 3)))
    assert np.abs(crop - GREEN).max() <= 20
    with Image.open(path) as im:
        whole = im.resize((150, 50), Image.Resampling.BICUBIC).crop((50, 0, 100, 50))
    assert np.abs(crop - np.asarray(whole)).max() <= 2
    squash = load_image(path, image_spec(30, resize="squash"))
    assert tuple(squash[15, 2]) == RED and tuple(squash[15, -3]) == BLUE


def test_draft_decoding_matches_full_decode(tmp_path, monkeypatch):
    path = _save(_smooth_photo(2000, 1500), tmp_path / "big.jpg", quality=90)
    drafted = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = real_draft(self, mode, size)
        drafted.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    out = load_image(path, image_spec(224))
    assert drafted and drafted[0] == (1000, 750), drafted   # reduced DCT, still >= 2 x 224
    with Image.open(path) as im:
        full = np.asarray(im.convert("RGB").resize((224, 224), Image.Resampling.BICUBIC))
    assert np.abs(out.astype(int) - full).mean() < 3


def test_keras_filters_decode_in_full(tmp_path, monkeypatch):
    """Every interpolation but bicubic_fast decodes the whole JPEG (as keras.utils.load_img does) and applies
    its own filter; tests/test_keras_reference.py compares the pixels with Keras itself."""
    path = _save(_smooth_photo(2000, 1500), tmp_path / "big.jpg", quality=90)
    drafted = []
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", lambda self, *a: drafted.append(a))
    with Image.open(path) as im:
        full = im.convert("RGB")
    for name, resample in images.KERAS_FILTERS.items():
        expected = np.asarray(full.resize((224, 224), resample))
        np.testing.assert_array_equal(load_image(path, image_spec(224, interpolation=name)), expected)
    assert drafted == []
    load_image(path, image_spec(224, interpolation="bicubic_fast"))
    assert len(drafted) == 1


def test_draft_keeps_twice_the_target(tmp_path):
    path = _save(_smooth_photo(1000, 460), tmp_path / "pano.jpg")
    with Image.open(path) as im:
        images._draft(im, 224)
        assert min(im.size) >= 448          # 460 // 448 = 1: no reduction on the short side


# ------------------------------------------------------------------------------------------------
# failures: DataError naming the file and the reason
# ------------------------------------------------------------------------------------------------

def _raises(path: Path, reason: str, **kw) -> None:
    with pytest.raises(DataError) as err:
        load_image(path, image_spec(32, **kw))
    assert str(path) in str(err.value) and reason in str(err.value), str(err.value)


def test_truncated_jpeg(tmp_path, jpeg):
    data = jpeg.read_bytes()
    bad = tmp_path / "trunc.jpg"
    bad.write_bytes(data[: len(data) // 2])
    _raises(bad, "truncated image")


def test_corrupt_png(tmp_path):
    data = bytearray(_save(_smooth_photo(64, 64), tmp_path / "ok.png").read_bytes())
    data[100:140] = b"\x00" * 40                     # inside IDAT: CRC mismatch / bad zlib data
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(bytes(data))
    with pytest.raises(DataError, match="corrupt|truncated") as err:
        load_image(bad, image_spec(32))
    assert str(bad) in str(err.value)


@pytest.mark.parametrize("damage, reason", [
    ("stray SOF marker in the scan", "corrupt image data"),
    ("zeroed frame header", "not an image file"),
])
def test_corrupt_jpeg(tmp_path, jpeg, damage, reason):
    """Corruption libjpeg detects is a DataError. (Garbage inside the entropy-coded data that still
    parses is decoded to wrong pixels, as by any viewer: JPEG has no checksum to detect it.)"""
    data = bytearray(jpeg.read_bytes())
    sos = data.index(b"\xff\xda")
    if damage.startswith("stray"):
        mid = sos + (len(data) - sos) // 3
        data[mid:mid + 2] = b"\xff\xc0"
    else:
        sof = data.index(b"\xff\xc0")
        data[sof + 2:sof + 10] = bytes(8)
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(bytes(data))
    _raises(bad, reason)


def test_empty_file(tmp_path):
    path = tmp_path / "zero.jpg"
    path.write_bytes(b"")
    _raises(path, "empty file")


def test_text_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a photo\n")
    _raises(path, "not an image file")


def test_missing_file(tmp_path):
    _raises(tmp_path / "nowhere.jpg", "missing file")


def test_directory_is_not_an_image(tmp_path):
    (tmp_path / "d.jpg").mkdir()
    _raises(tmp_path / "d.jpg", "not a regular file")


def test_decompression_bomb_refused_from_header(tmp_path, jpeg, monkeypatch):
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(1))
    _raises(jpeg, "decompression bomb", max_pixels=320 * 240 - 1)
    assert not decoded, "the bomb check must happen before decoding"


def test_pillow_bomb_error_becomes_data_error(tmp_path, jpeg, monkeypatch):
    monkeypatch.setattr(images, "_lift_pillow_limit", lambda max_pixels: None)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    _raises(jpeg, "decompression bomb", max_pixels=None)


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_pillow_bomb_warning_becomes_data_error(tmp_path, jpeg, monkeypatch):
    monkeypatch.setattr(images, "_lift_pillow_limit", lambda max_pixels: None)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 320 * 240 - 1)   # warns (does not raise) itself
    _raises(jpeg, "decompression bomb", max_pixels=None)


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_configured_limit_above_pillows_applies(jpeg, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert load_image(jpeg, image_spec(32, max_pixels=10**6)).shape == (32, 32, 3)


def test_bad_arguments_are_not_data_errors(jpeg):
    with pytest.raises(ValueError, match="resize"):
        load_image(jpeg, image_spec(32, resize="stretch"))
    with pytest.raises(ValueError, match="size"):
        load_image(jpeg, image_spec(0))
    with pytest.raises(ValueError, match="interpolation must be one of"):
        load_image(jpeg, image_spec(32, interpolation="area"))


# ------------------------------------------------------------------------------------------------
# the cache
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def photo_table(tmp_path: Path) -> pd.DataFrame:
    """Five photos of different formats/sizes; 'b' appears in two splits."""
    d = tmp_path / "raw"
    d.mkdir()
    paths = {
        "a": _save(_smooth_photo(300, 200, 1), d / "a.jpg"),
        "b": _save(_smooth_photo(150, 260, 2), d / "b.png"),
        "c": _save(_smooth_photo(90, 90, 3)[..., 0], d / "c.png"),
        "d": _save(_smooth_photo(640, 480, 4), d / "d.jpg"),
        "e": _save(_smooth_photo(50, 70, 5), d / "e.jpg"),
    }
    rows = [("b", "train"), ("a", "train"), ("b", "test"), ("d", "test"), ("c", "validation"),
            ("e", "train")]
    return pd.DataFrame({"image": [r[0] for r in rows], "path": [str(paths[r[0]]) for r in rows],
                         "split": [r[1] for r in rows]})


def _no_leftovers(out: Path) -> None:
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.startswith(".") or "shrink" in n], names


@pytest.mark.parametrize("workers", [1, 2])
def test_cache_unique_in_first_appearance_order(tmp_path, photo_table, workers):
    out = tmp_path / "cache"
    skipped = build_image_cache(photo_table, out, image_spec(32), on_bad_image="error", workers=workers, log=lambda m: None, progress=False)
    assert skipped.empty and list(skipped.columns) == ["image", "path", "reason"]
    arr, index = open_image_cache(out)
    assert list(index["image"]) == ["b", "a", "d", "c", "e"]
    assert list(index["row"]) == [0, 1, 2, 3, 4]
    assert arr.shape == (5, 32, 32, 3) and arr.dtype == np.uint8
    first = photo_table.drop_duplicates("image").set_index("image")["path"]
    for row, image in zip(index["row"], index["image"]):
        np.testing.assert_array_equal(arr[row], load_image(first[image], image_spec(32)))
    assert read_tsv(out / "skipped.tsv").empty
    assert (out / "skipped.tsv").read_text().strip() == "image\tpath\treason"
    _no_leftovers(out)


def test_cache_center_crop_matches_loader(tmp_path, photo_table):
    out = tmp_path / "cache"
    build_image_cache(photo_table, out, image_spec(16, resize="center_crop"), on_bad_image="error", workers=1, log=lambda m: None, progress=False)
    arr, index = open_image_cache(out)
    np.testing.assert_array_equal(arr[1], load_image(photo_table["path"][1], image_spec(16, resize="center_crop")))


def test_cache_uses_the_interpolation_and_records_it(tmp_path, photo_table):
    out = tmp_path / "cache"
    build_image_cache(photo_table, out, image_spec(16, interpolation="nearest"), on_bad_image="error", workers=1, log=lambda m: None, progress=False)
    arr, index = open_image_cache(out)
    np.testing.assert_array_equal(arr[2], load_image(photo_table["path"][3], image_spec(16, interpolation="nearest")))
    assert not np.array_equal(arr[2], load_image(photo_table["path"][3], image_spec(16)))
    assert json.loads((out / "meta.json").read_text())["interpolation"] == "nearest"


def _with_bad_images(table: pd.DataFrame, tmp_path: Path) -> pd.DataFrame:
    trunc = tmp_path / "raw" / "trunc.jpg"
    trunc.write_bytes(Path(table["path"][1]).read_bytes()[:400])
    extra = pd.DataFrame({"image": ["t", "m"], "path": [str(trunc), str(tmp_path / "gone.jpg")],
                          "split": ["train", "test"]})
    return pd.concat([table.iloc[:2], extra, table.iloc[2:]], ignore_index=True)


def test_skip_mode_leaves_bad_images_out(tmp_path, photo_table):
    table = _with_bad_images(photo_table, tmp_path)
    out, messages = tmp_path / "cache", []
    skipped = build_image_cache(table, out, image_spec(24), on_bad_image="skip", workers=1, log=messages.append, progress=False)
    assert list(skipped["image"]) == ["t", "m"]
    on_disk = read_tsv(out / "skipped.tsv")
    assert list(on_disk["image"]) == ["t", "m"]
    assert "truncated image" in on_disk["reason"][0] and "trunc.jpg" in on_disk["reason"][0]
    assert "missing file" in on_disk["reason"][1]
    assert any("skipping image t" in m for m in messages)
    arr, index = open_image_cache(out)
    assert list(index["image"]) == ["b", "a", "d", "c", "e"] and arr.shape[0] == 5
    np.testing.assert_array_equal(arr[4], load_image(photo_table["path"][5], image_spec(24)))
    _no_leftovers(out)


def test_error_mode_stops_naming_the_file(tmp_path, photo_table):
    table = _with_bad_images(photo_table, tmp_path)
    out = tmp_path / "cache"
    with pytest.raises(DataError, match=r"trunc\.jpg: truncated image"):
        build_image_cache(table, out, image_spec(24), on_bad_image="error", workers=2, log=lambda m: None, progress=False)
    assert not (out / "images.npy").exists() and not (out / "index.tsv").exists()
    _no_leftovers(out)


def test_interrupted_build_leaves_no_cache(tmp_path, photo_table, monkeypatch):
    out = tmp_path / "cache"
    build_image_cache(photo_table, out, image_spec(16), on_bad_image="error", workers=1, log=lambda m: None, progress=False)   # a complete one
    calls = []
    real = images.load_image

    def dies_midway(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(images, "load_image", dies_midway)
    (out / "images.npy").unlink()
    with pytest.raises(KeyboardInterrupt):
        build_image_cache(photo_table, out, image_spec(16), on_bad_image="error", workers=1, log=lambda m: None, progress=False)
    assert not (out / "images.npy").exists() and not (out / "index.tsv").exists()
    _no_leftovers(out)
    with pytest.raises(DataError, match="incomplete"):
        open_image_cache(out)


def test_rebuild_removes_the_old_index_first(tmp_path, photo_table, monkeypatch):
    out = tmp_path / "cache"
    build_image_cache(photo_table, out, image_spec(16), on_bad_image="error", workers=1, log=lambda m: None, progress=False)
    monkeypatch.setattr(images, "load_image", lambda *a, **k: (_ for _ in ()).throw(RuntimeError))
    with pytest.raises(RuntimeError):
        build_image_cache(photo_table, out, image_spec(16), on_bad_image="error", workers=2, log=lambda m: None, progress=False)
    with pytest.raises(DataError, match="incomplete"):
        open_image_cache(out)   # the old images.npy is still there, but no index vouches for it


def test_all_images_bad_or_none_is_an_error(tmp_path):
    bad = pd.DataFrame({"image": ["x"], "path": [str(tmp_path / "gone.jpg")]})
    with pytest.raises(DataError, match="none of the 1 images"):
        build_image_cache(bad, tmp_path / "cache", image_spec(16), on_bad_image="skip", workers=1, log=lambda m: None, progress=False)
    assert not (tmp_path / "cache" / "index.tsv").exists()
    with pytest.raises(DataError, match="empty"):
        build_image_cache(bad.iloc[:0], tmp_path / "cache", image_spec(16), on_bad_image="error", workers=1, progress=False)


def test_same_image_with_two_paths_is_an_error(tmp_path, photo_table):
    table = photo_table.copy()
    table.loc[2, "path"] = "/elsewhere/b.png"
    with pytest.raises(DataError, match="'b' has different paths"):
        build_image_cache(table, tmp_path / "cache", image_spec(16), on_bad_image="error", workers=1, log=lambda m: None, progress=False)


def test_open_cache_checks_shapes(tmp_path, photo_table):
    out = tmp_path / "cache"
    build_image_cache(photo_table, out, image_spec(16), on_bad_image="error", workers=1, log=lambda m: None, progress=False)
    arr, index = open_image_cache(out)
    with pytest.raises(ValueError):
        arr[0, 0, 0, 0] = 1          # read-only
    del arr
    index.iloc[:-1].to_csv(out / "index.tsv", sep="\t", index=False)
    with pytest.raises(DataError, match="rebuild"):
        open_image_cache(out)
    np.save(out / "images.npy", np.zeros((4, 16, 8, 3), np.uint8))
    with pytest.raises(DataError, match=r"\(N, S, S, 3\)"):
        open_image_cache(out)


def test_shrink_npy_keeps_a_valid_file(tmp_path):
    path = tmp_path / "x.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(1000, 2, 2, 3))
    mm[:] = np.arange(1000, dtype=np.uint8)[:, None, None, None]
    mm.flush()
    del mm
    image_cache._shrink_npy(path, 7)
    small = np.load(path)
    assert small.shape == (7, 2, 2, 3)
    np.testing.assert_array_equal(small[:, 0, 0, 0], np.arange(7))
    image_cache._copy_rows(path, 3)      # the fallback path
    assert np.load(path).shape == (3, 2, 2, 3)


def test_iter_batches():
    arr = np.arange(10 * 2 * 2 * 3, dtype=np.uint8).reshape(10, 2, 2, 3)
    rows = np.array([5, 1, 7, 2, 9])
    got = list(iter_batches(arr, rows, 2))
    assert [list(r) for r, _ in got] == [[5, 1], [7, 2], [9]]
    np.testing.assert_array_equal(np.concatenate([b for _, b in got]), arr[rows])


def test_bomb_over_twice_pillows_limit_names_the_configured_limit(jpeg, monkeypatch):
    """Pillow refuses > 2x its own limit inside Image.open; the message must still name max_pixels."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)            # the default case: both limits equal
    with pytest.raises(DataError) as err:
        load_image(jpeg, image_spec(32, max_pixels=1000))
    msg = str(err.value)
    assert msg == f"{jpeg}: decompression bomb refused: 76800 pixels > images.max_pixels = 1000"
    assert "2000" not in msg                                        # not Pillow's doubled limit


def test_float_tiff_in_zero_one_is_scaled_not_blackened(tmp_path):
    values = np.array([[0.0, 0.25, 0.5, 1.0]] * 4, dtype=np.float32)
    path = _save(values, tmp_path / "f.tif")
    assert _opened(path) == "F"
    out = load_image(path, image_spec(4))
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], np.tile([0, 64, 128, 255], (4, 1)))


@pytest.mark.parametrize("values, reason", [
    (np.array([[0.0, 300.0]] * 2, dtype=np.float32), "values in [0, 300]"),
    (np.array([[-1.0, 0.5]] * 2, dtype=np.float32), "values in [-1, 0.5]"),
    (np.array([[np.nan, 0.5]] * 2, dtype=np.float32), "NaN or infinite"),
])
def test_float_tiff_outside_zero_one_is_refused(tmp_path, values, reason):
    path = _save(values, tmp_path / "f.tif")
    _raises(path, f"32-bit float image (mode F) with {reason}")


# ------------------------------------------------------------------------------------------------
# memory: large photos that convert late are reduced first
# ------------------------------------------------------------------------------------------------

def _gradient_rgba(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth RGBA photo with a checkerboard of half and fully opaque squares (PNGs of it compress fast)."""
    y, x = np.mgrid[0:height, 0:width]
    rgba = np.empty((height, width, 4), dtype=np.uint8)
    rgba[..., 0] = (x * 255 // width + 40 * seed) % 256
    rgba[..., 1] = y * 255 // height
    rgba[..., 2] = ((x + y) // 7 + seed) % 256
    rgba[..., 3] = ((x // 50 + y // 50) % 2) * 127 + 128
    return rgba


PEAK_RSS_SCRIPT = r"""
import re, sys
from pathlib import Path
from aesthetic_mtl.data.image_cache import build_from_labels
from aesthetic_mtl.specs import ImageSpec
build_from_labels(sys.argv[1], sys.argv[2], ImageSpec.from_config({"size": 224, "max_pixels": int(sys.argv[3])}),
                  on_bad_image="error", workers=2, log=lambda m: None)
# VmHWM: this process's own peak (ru_maxrss would count the forked pytest process it started as)
print(int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) // 1024)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak RSS from /proc (Linux)")
def test_image_cache_peak_memory_stays_inside_the_declared_mem_mb(tmp_path):
    """Large transparent PNGs (one EXIF-rotated) through the image cache with 2 workers, as the rule runs it:
    compositing at full size took ~50 bytes a pixel; the job's peak RSS must stay inside its mem_mb."""
    import subprocess
    import sys

    from aesthetic_mtl.files import write_tsv

    width, height = 3000, 2000
    rows = []
    for i in range(4):
        path = tmp_path / f"{i}.png"
        exif = Image.Exif()
        exif[0x0112] = 6 if i == 0 else 1                                # the first one is turned upright
        Image.fromarray(_gradient_rgba(width, height, i)).save(path, compress_level=1, exif=exif)
        rows.append({"image": str(i), "path": str(path)})
    write_tsv(tmp_path / "labels.tsv", pd.DataFrame(rows))
    (tmp_path / "peak.py").write_text(PEAK_RSS_SCRIPT)
    proc = subprocess.run([sys.executable, str(tmp_path / "peak.py"), str(tmp_path / "labels.tsv"),
                           str(tmp_path / "images_224"), str(width * height)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    peak_mb = int(proc.stdout.split()[-1])
    declared = image_cache.memory_mb(image_spec(224, max_pixels=width * height), workers=2)
    assert peak_mb <= declared, f"peak RSS {peak_mb} MiB > declared mem_mb {declared}"
    assert open_image_cache(tmp_path / "images_224")[0].shape == (4, 224, 224, 3)


def test_memory_mb_grows_with_max_pixels_and_workers():
    default = image_cache.memory_mb(image_spec(224), workers=2)
    assert default == image_cache.memory_mb(image_spec(224, max_pixels=images.PILLOW_MAX_PIXELS), workers=2)
    assert image_cache.memory_mb(image_spec(224), workers=1) < default
    assert image_cache.memory_mb(image_spec(224, max_pixels=24_000_000), workers=2) < default


def _large_photo(mode: str, width: int = 1000, height: int = 700) -> Image.Image:
    """A smooth photo in `mode`, large enough at size 64 for `_reduce_early` to reduce it (factor 5)."""
    rgba = _gradient_rgba(width, height, 3)
    if mode == "RGBA":
        return Image.fromarray(rgba)
    if mode == "LA":
        return Image.fromarray(np.ascontiguousarray(rgba[..., [1, 3]]))          # 2 channels: LA
    if mode == "P":
        im = Image.fromarray(rgba[..., 0]).convert("P")
        im.info["transparency"] = 0
        return im
    if mode == "CMYK":
        return Image.frombytes("CMYK", (width, height), rgba.tobytes())
    if mode == "I;16":
        return Image.fromarray(rgba[..., 1].astype(np.uint16) * 257 + rgba[..., 0] // 3)
    return Image.fromarray(rgba[..., 1].astype(np.float32) / 255)            # F


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "CMYK", "I;16", "F"])
@pytest.mark.parametrize("resize", ["squash", "center_crop"])
def test_reducing_before_converting_matches_converting_first(tmp_path, mode, resize):
    """Compositing (or converting) after the box reduction gives the pixels of converting first and then
    reducing by the same factor, up to rounding (the box filter averages premultiplied colour); against the
    old path (convert at full size, then `_resize`'s own reduction) the photo stays visually the same."""
    im = _large_photo(mode)
    path = tmp_path / ("x.tif" if mode in ("CMYK", "F") else "x.png")
    im.save(path)
    with Image.open(path) as full:
        full.load()
        factor = min(full.size) // (2 * 64)
        assert images._converts_late(full) and factor >= 2
        rgb = images._to_rgb(full, path)                                   # converted at full size
        same_factor = images._resize(rgb.reduce(factor), image_spec(64, resize=resize))
        old_path = images._resize(rgb, image_spec(64, resize=resize))
    got = load_image(path, image_spec(64, resize=resize)).astype(int)
    assert np.abs(got - same_factor).max() <= 1
    old = np.abs(got - old_path)
    assert old.max() <= 8 and old.mean() < 1, (old.max(), old.mean())


def test_float_range_is_checked_before_averaging(tmp_path):
    """One pixel out of [0, 1] would average away in the reduction: it is refused at full size."""
    values = np.full((700, 1000), 0.5, dtype=np.float32)
    values[10, 10] = 1.5
    Image.fromarray(values).save(tmp_path / "f.tif")
    with pytest.raises(DataError, match=r"values in \[0\.5, 1\.5\]"):
        load_image(tmp_path / "f.tif", image_spec(64))
    values[10, 10] = np.nan                                     # NaN survives the average
    Image.fromarray(values).save(tmp_path / "f.tif")
    with pytest.raises(DataError, match="NaN or infinite"):
        load_image(tmp_path / "f.tif", image_spec(64))
