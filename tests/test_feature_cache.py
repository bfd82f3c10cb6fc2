"""The feature cache: float16 and float32 prefixes from the same trunk, and float16's range guarded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from aesthetic_mtl.data.image_cache import build_image_cache
from aesthetic_mtl.errors import DataError
from aesthetic_mtl.nn.feature_cache import build_feature_cache, open_feature_cache
from conftest import image_spec


@pytest.fixture
def image_dir(tmp_path, tiny_images):
    raw = tmp_path / "raw"
    raw.mkdir()
    paths = []
    for i, img in enumerate(tiny_images[:6]):
        paths.append(raw / f"{i}.png")
        Image.fromarray(img).save(paths[-1])
    table = pd.DataFrame({"image": [p.stem for p in paths], "path": [str(p) for p in paths], "split": "train"})
    build_image_cache(table, tmp_path / "images", image_spec(32), on_bad_image="error", workers=1, log=lambda m: None, progress=False)
    return tmp_path / "images"


def test_float16_cache_rounds_the_float32_one(image_dir, tmp_path):
    for dtype in ("float32", "float16"):
        build_feature_cache(image_dir, tmp_path / dtype, "vgg16_keras", None, batch_size=32, dtype=dtype, bf16_cuda=False, log=lambda m: None)
    p32, pooled32, _ = open_feature_cache(tmp_path / "float32")
    p16, pooled16, _ = open_feature_cache(tmp_path / "float16")
    assert p16.dtype == np.float16 and p32.dtype == np.float32
    np.testing.assert_array_equal(pooled16, pooled32)          # pooled features are float32 either way
    np.testing.assert_array_equal(p16, p32.astype(np.float16))  # float16 is the rounded float32 prefix


def test_float16_overflow_stops_the_build(image_dir, tmp_path, monkeypatch):
    from aesthetic_mtl.nn.model import Trunk

    real = Trunk.prefix
    monkeypatch.setattr(Trunk, "prefix", lambda self, images: real(self, images) * 0 + 1e5)
    with pytest.raises(DataError, match="beyond float16's range .*cache_dtype: float32"):
        build_feature_cache(image_dir, tmp_path / "f16", "vgg16_keras", None, batch_size=32, dtype="float16", bf16_cuda=False, log=lambda m: None)
    build_feature_cache(image_dir, tmp_path / "f32", "vgg16_keras", None, batch_size=32, dtype="float32", bf16_cuda=False, log=lambda m: None)
