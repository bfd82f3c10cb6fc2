"""Synthetic releases: determinism, the official file set, realistic labels, attributes visible in images."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.stats import spearmanr

from aesthetic_mtl.data import synthetic
from aesthetic_mtl.data.formats import aadb, eva, get_format
from aesthetic_mtl.errors import ConfigError

TINY_AADB = {"n_train": 10, "n_validation": 4, "n_test": 5, "overlap": 2, "image_size": 48,
             "seed": 3}
TINY_EVA = {"n_images": 12, "min_votes": 3, "max_votes": 5, "image_size": 48, "seed": 4,
            "parts": 2}


def _cfg(fmt: str, params: dict, **extra) -> dict:
    mod = get_format(fmt)
    return {"format": fmt, "source": "synthetic", "synthetic": params,
            "attributes": {t: list(mod.RANGES[t]) for t in mod.ATTRIBUTES},
            **({"image_source": "original"} if fmt == "aadb" else {}), **extra}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _parse(fmt: str, cfg: dict, tmp: Path) -> pd.DataFrame:
    mod = get_format(fmt)
    synthetic.generate(fmt, tmp / "archives", synthetic.params_for(cfg))
    mod.extract(tmp / "archives", tmp / "raw", cfg)
    return mod.parse(tmp / "raw", cfg, on_bad_image="error")


# ----------------------------------------------------------------------------- files, determinism

@pytest.mark.parametrize("fmt, params", [("aadb", TINY_AADB), ("eva", TINY_EVA)])
def test_deterministic_and_exactly_the_required_files(tmp_path, fmt, params):
    synthetic.generate(fmt, tmp_path / "a", params)
    synthetic.generate(fmt, tmp_path / "b", params)
    first, second = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert first == second                                   # byte-identical, names included
    assert sorted(first) == sorted(get_format(fmt).required_files(_cfg(fmt, params)))
    synthetic.generate(fmt, tmp_path / "c", {**params, "seed": params["seed"] + 1})
    assert _files(tmp_path / "c") != first


def test_aadb_warp256_writes_the_warp_archive(tmp_path):
    cfg = _cfg("aadb", TINY_AADB, image_source="warp256")
    out = _parse("aadb", cfg, tmp_path)
    assert sorted(p.name for p in (tmp_path / "archives").iterdir()) == sorted(
        aadb.required_files(cfg))
    assert len(out) == 10 + 4 + 5
    sizes = {Image.open(p).size for p in out["path"]}
    assert sizes == {(256, 256)}


def test_aadb_splits_overlap_and_prefixed_test_files(tmp_path):
    out = _parse("aadb", _cfg("aadb", TINY_AADB), tmp_path)
    assert out["split"].value_counts().to_dict() == {"train": 10, "validation": 4, "test": 5}
    val = out[out.split == "validation"].set_index("image")
    test = out[out.split == "test"].set_index("image")
    both = val.index.intersection(test.index)
    assert len(both) == 2
    pd.testing.assert_frame_equal(val.loc[both, aadb.ATTRIBUTES], test.loc[both, aadb.ATTRIBUTES])
    with zipfile.ZipFile(tmp_path / "archives" / aadb.NEWTEST_ZIP) as zf:
        names = [Path(n).name for n in zf.namelist()]
    assert all(n.split("_", 1)[0].replace(".", "").isdigit() for n in names)   # 0.650_farm1_...
    assert {Image.open(p).size for p in out["path"]} <= {(48, 48), (48, 36), (36, 48), (48, 32),
                                                          (32, 48)}


def test_eva_votes_are_release_like(tmp_path):
    params = {**TINY_EVA, "n_images": 30}
    synthetic.generate("eva", tmp_path / "archives", params)
    lines = (tmp_path / "archives" / eva.VOTES).read_text().splitlines()
    assert lines[0] == "=".join(eva.COLUMNS)
    votes = pd.read_csv(tmp_path / "archives" / eva.VOTES, sep="=", dtype={"image_id": str})
    assert votes["score"].between(0, 10).all()
    for col in ("difficulty", "visual", "composition", "quality", "semantic"):
        assert votes[col].between(1, 4).all()
    assert (votes[["score", "visual"]] % 1 == 0).all().all()
    counts = votes.groupby("image_id").size()
    assert len(counts) == 30 and counts.between(3, 5).all()
    assert not votes.duplicated(["image_id", "user_id"]).any()


def test_bad_parameters(tmp_path):
    with pytest.raises(ConfigError, match="overlap"):
        synthetic.generate("aadb", tmp_path, {**TINY_AADB, "overlap": 5})
    with pytest.raises(ConfigError, match="max_votes"):
        synthetic.generate("eva", tmp_path, {**TINY_EVA, "min_votes": 6, "max_votes": 4})
    with pytest.raises(ConfigError, match="n_train"):
        synthetic.generate("aadb", tmp_path, {**TINY_AADB, "n_train": 0})
    with pytest.raises(ConfigError, match="known: aadb, eva"):
        synthetic.generate("ava", tmp_path, {})


# -------------------------------------------------------------------------------------- labels

def test_aadb_label_statistics_are_realistic():
    _, labels = synthetic.aadb_labels(800, np.random.default_rng(0))
    real = synthetic.aadb_stats()["targets"]
    for target in aadb.ATTRIBUTES:
        col, ref = labels[target], real[target]
        low, high = aadb.RANGES[target]
        assert col.between(low, high).all(), target
        assert abs(col.mean() - ref["mean"]) < 0.06, target
        assert abs(col.std() - ref["std"]) < 0.3 * ref["std"] + 0.01, target
        assert abs((col == 0).mean() - ref["zero_fraction"]) < 0.07, target
        if target != "score":
            rho = spearmanr(col, labels["score"])[0]
            assert rho > 0, target
            assert abs(rho - ref["spearman_with_score"]) < 0.15, target
    assert (labels[["Repetition", "Symmetry"]] >= 0).all().all()      # never negative in AADB
    on_grid = np.isclose(labels["score"] * 20, np.round(labels["score"] * 20), atol=1e-6)
    assert on_grid.mean() > 0.9                                       # 5 raters on a 1..5 scale
    assert np.isclose(labels["Light"] * 5, np.round(labels["Light"] * 5), atol=1e-6).mean() > 0.9


def test_eva_label_statistics_are_realistic():
    ids = [str(i) for i in range(400)]
    _, votes = synthetic.eva_votes(400, 20, 30, np.random.default_rng(0), ids)
    means = votes.groupby("image_id")[eva.ATTRIBUTES].mean()
    assert 5.5 < means["score"].mean() < 6.7 and 0.7 < means["score"].std() < 1.3
    for target in eva.ATTRIBUTES[1:]:
        assert 2.0 < means[target].mean() < 3.2
        assert spearmanr(means[target], means["score"])[0] > 0.4


# ------------------------------------------------------------------------- attributes in images

def _brightness(path: str) -> float:
    return float(np.asarray(Image.open(path).convert("L"), float).mean())


def _saturation(path: str) -> float:
    return float(np.asarray(Image.open(path).convert("HSV"))[..., 1].mean())


def _mirror_similarity(path: str) -> float:
    a = np.asarray(Image.open(path).convert("L").resize((64, 64)), float)
    return -float(np.abs(a - a[:, ::-1]).mean())


def test_aadb_attributes_are_visible(tmp_path):
    params = {"n_train": 160, "n_validation": 20, "n_test": 30, "overlap": 10, "image_size": 96,
              "seed": 7}
    out = _parse("aadb", _cfg("aadb", params), tmp_path).drop_duplicates("image")
    assert len(out) == 200
    assert spearmanr(out["Light"], out["path"].map(_brightness))[0] > 0.5
    assert spearmanr(out["VividColor"], out["path"].map(_saturation))[0] > 0.5
    assert spearmanr(out["Symmetry"], out["path"].map(_mirror_similarity))[0] > 0.15  # 91 % ties


def test_eva_attributes_are_visible(tmp_path):
    params = {"n_images": 150, "min_votes": 8, "max_votes": 12, "image_size": 96, "seed": 8,
              "parts": 2}
    out = _parse("eva", _cfg("eva", params), tmp_path)
    assert len(out) == 150
    assert spearmanr(out["visual"], out["path"].map(_brightness))[0] > 0.5
    # low quality = defocus blur, sensor noise and a low JPEG quality: sharp, fine JPEGs are larger
    sizes = out["path"].map(lambda p: Path(p).stat().st_size)
    assert spearmanr(out["quality"], sizes)[0] > 0.4
