"""A cache altered after its rule wrote it is refused when a job opens it, naming the rule to rerun.

Real caches of a few photos (image cache at 32 px, feature cache of a random VGG16 trunk) are built,
then changed the ways files get changed by hand or by accident: truncated, overwritten in place,
replaced by another array, index rows swapped or dropped, the record deleted.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from aesthetic_mtl.data.image_cache import build_image_cache, open_image_cache
from aesthetic_mtl.data.integrity import sample_rows
from aesthetic_mtl.errors import DataError
from aesthetic_mtl.nn.feature_cache import build_feature_cache, open_feature_cache
from conftest import image_spec


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """An image cache and the feature cache made from it, both complete, as the rules write them."""
    root = tmp_path_factory.mktemp("caches")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        path = root / "photos" / f"p{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8)).save(path)
        rows.append({"image": f"p{i}", "path": str(path)})
    build_image_cache(pd.DataFrame(rows), root / "images_32", image_spec(32), on_bad_image="error", workers=1, log=lambda m: None, progress=False)
    build_feature_cache(root / "images_32", root / "features", "vgg16", None, batch_size=4,
                        dtype="float32", bf16_cuda=False, log=lambda m: None)
    return root


@pytest.fixture
def caches(built, tmp_path) -> tuple[Path, Path]:
    """A private copy to alter."""
    shutil.copytree(built, tmp_path / "c")
    return tmp_path / "c" / "images_32", tmp_path / "c" / "features"


def _refused(open_fn, folder: Path, *needles: str) -> str:
    with pytest.raises(DataError) as err:
        open_fn(folder)
    msg = str(err.value)
    for needle in needles:
        assert needle in msg, msg
    assert "\n" not in msg
    return msg


FEATURE_RULE = "rerun rule feature_cache to rebuild it (delete {}, then run snakemake again)"
IMAGE_RULE = "rerun rule image_cache to rebuild it (delete {}, then run snakemake again)"


def test_untouched_caches_open(caches):
    images_dir, features_dir = caches
    images, index = open_image_cache(images_dir)
    prefix, pooled, findex = open_feature_cache(features_dir)
    assert images.shape == (6, 32, 32, 3) and len(prefix) == len(pooled) == 6
    assert list(index["image"]) == list(findex["image"]) == [f"p{i}" for i in range(6)]
    record = json.loads((features_dir / "meta.json").read_text())["integrity"]
    assert record["prefix.npy"]["shape"] == list(prefix.shape)
    assert record["prefix.npy"]["bytes"] == (features_dir / "prefix.npy").stat().st_size
    assert record["index.tsv"]["rows"] == 6


def test_truncated_prefix_is_named_with_the_rule_to_rerun(caches):
    _, features = caches
    path = features / "prefix.npy"
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size // 2)
    msg = _refused(open_feature_cache, features, f"{path}: {size // 2} bytes, but rule feature_cache "
                                                 f"wrote {size} bytes (truncated or replaced)",
                   FEATURE_RULE.format(features))
    assert "mmap" not in msg


def test_bytes_changed_in_place_are_caught_by_the_checksum(caches):
    _, features = caches
    prefix = np.load(features / "prefix.npy", mmap_mode="r+")
    row = sample_rows(len(prefix))[-1]
    prefix[row, 0, 0, 0] += 1.0                    # same size, same shape: one value in a sampled row
    prefix.flush()
    del prefix
    _refused(open_feature_cache, features,
             f"{features / 'prefix.npy'}: content checksum differs from the one rule feature_cache "
             f"recorded", FEATURE_RULE.format(features))


def test_pooled_replaced_by_another_array_of_the_same_shape(caches):
    _, features = caches
    pooled = np.load(features / "pooled.npy")
    np.save(features / "pooled.npy", pooled[::-1].copy())      # e.g. copied over from another run
    _refused(open_feature_cache, features, "pooled.npy: content checksum differs", "feature_cache")


def test_pooled_replaced_by_another_dtype(caches):
    _, features = caches
    pooled = np.load(features / "pooled.npy")
    np.save(features / "pooled.npy", pooled.astype(np.float16))
    _refused(open_feature_cache, features, "pooled.npy", "rerun rule feature_cache")


@pytest.mark.parametrize("change, needle", [
    (lambda ix: ix.iloc[[1, 0, 2, 3, 4, 5]].assign(row=range(6)), "image ids differ from those rule"),
    (lambda ix: ix.assign(image=ix["image"].str.upper()), "image ids differ from those rule"),
    (lambda ix: ix.iloc[:5], "index.tsv: 5 rows, but prefix.npy holds 6"),
])
def test_feature_index_that_no_longer_matches(caches, change, needle):
    _, features = caches
    index = pd.read_csv(features / "index.tsv", sep="\t", dtype=str)
    change(index).to_csv(features / "index.tsv", sep="\t", index=False)
    _refused(open_feature_cache, features, needle, FEATURE_RULE.format(features))


def test_a_cache_without_its_record_is_refused(caches):
    images_dir, features = caches
    (features / "meta.json").unlink()
    _refused(open_feature_cache, features, f"{features / 'meta.json'}: missing, so the cache cannot be "
                                           f"checked", FEATURE_RULE.format(features))
    (images_dir / "meta.json").write_text("{}")
    _refused(open_image_cache, images_dir, "without its 'integrity' record", IMAGE_RULE.format(images_dir))


def test_truncated_image_cache_is_named_with_its_rule(caches):
    images_dir, _ = caches
    path = images_dir / "images.npy"
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size - 100)
    _refused(open_image_cache, images_dir, f"{path}: {size - 100} bytes, but rule image_cache wrote "
                                           f"{size} bytes", IMAGE_RULE.format(images_dir))


def test_image_cache_index_edited(caches):
    images_dir, _ = caches
    index = pd.read_csv(images_dir / "index.tsv", sep="\t", dtype=str)
    index.loc[2, "image"] = "someone_else"
    index.to_csv(images_dir / "index.tsv", sep="\t", index=False)
    _refused(open_image_cache, images_dir, "index.tsv: no longer matches the cache: image ids differ",
             IMAGE_RULE.format(images_dir))


def test_feature_cache_build_refuses_an_altered_image_cache(caches, tmp_path):
    """The feature_cache job opens the image cache: an altered one stops it before any batch."""
    images_dir, _ = caches
    images = np.load(images_dir / "images.npy", mmap_mode="r+")
    images[0, 0, 0, 0] ^= 0xFF
    images.flush()
    del images
    with pytest.raises(DataError, match="rerun rule image_cache"):
        build_feature_cache(images_dir, tmp_path / "new", "vgg16", None, batch_size=4,
                            dtype="float32", bf16_cuda=False, log=lambda m: None)
    assert not (tmp_path / "new" / "index.tsv").exists()


def test_sample_rows_cover_first_and_last():
    assert sample_rows(0) == [] and sample_rows(1) == [0] and sample_rows(5) == [0, 1, 2, 3, 4]
    rows = sample_rows(10_000)
    assert rows[0] == 0 and rows[-1] == 9_999 and len(rows) == 16
