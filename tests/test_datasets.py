"""Release formats: write -> extract -> parse round trips, normalised variants, and error messages."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from aesthetic_mtl.data.formats import aadb, eva, get_format
from aesthetic_mtl.errors import ConfigError, DataError
from conftest import image_spec
from aesthetic_mtl.config import load_config, validate_config

AADB_CFG = {"format": "aadb", "source": "official", "image_source": "original",
            "attributes": {t: list(aadb.RANGES[t]) for t in aadb.ATTRIBUTES}}
EVA_CFG = {"format": "eva", "source": "official",
           "attributes": {t: list(eva.RANGES[t]) for t in eva.ATTRIBUTES}}


def _jpeg(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    color = tuple(int(c) for c in np.random.default_rng(seed).integers(0, 256, 3))
    Image.new("RGB", (8, 6), color).save(buf, format="JPEG")
    return buf.getvalue()


def _zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


# ------------------------------------------------------------------------------------------- AADB

def _aadb_table(n_train=6, n_val=4, n_test=5, overlap=2, seed=0) -> pd.DataFrame:
    """A label table on the release's value grid (thirds included), overlap shared by val and test."""
    rng = np.random.default_rng(seed)
    n = n_train + n_val + n_test - overlap
    names = [f"farm1_{100 + i}_{10**10 + i}_{i:010x}_b.jpg" for i in range(n)]
    values = {t: rng.integers(-5, 6, n) / 5 for t in aadb.ATTRIBUTES[:-1]}
    values["Repetition"] = np.abs(values["Repetition"])
    values["Content"][0] = 1 / 3
    values["score"] = rng.integers(0, 21, n) / 20
    base = pd.DataFrame({"image": names, **values})
    parts = [base.iloc[:n_train].assign(split="train"),
             base.iloc[n_train:n_train + n_val].assign(split="validation"),
             base.iloc[n_train + n_val - overlap:].assign(split="test")]
    return pd.concat(parts, ignore_index=True)[["image", "split", *aadb.ATTRIBUTES]]


def _aadb_archives(tmp: Path, table: pd.DataFrame, prefix_test: bool = True) -> Path:
    archives = tmp / "archives"
    archives.mkdir()
    aadb.write_label_archive(table, archives / aadb.LABEL_ZIP)
    trainval = table[table["split"] != "test"].drop_duplicates("image")
    test = table[table["split"] == "test"]
    _zip(archives / aadb.ORIGINAL_ZIP,
         {f"datasetImages_originalSize/{n}": _jpeg(i) for i, n in enumerate(trainval["image"])})
    _zip(archives / aadb.NEWTEST_ZIP,
         {f"AADB_newtest_originalSize/{f'{s:.3f}_' if prefix_test else ''}{n}": _jpeg(i)
          for i, (n, s) in enumerate(zip(test["image"], test["score"]))})
    return archives


def test_get_format_registry():
    assert get_format("aadb") is aadb and get_format("eva") is eva
    with pytest.raises(ConfigError, match="aadb, eva"):
        get_format("ava")


def test_aadb_required_files():
    assert aadb.required_files(AADB_CFG) == [aadb.LABEL_ZIP, aadb.ORIGINAL_ZIP, aadb.NEWTEST_ZIP]
    assert aadb.required_files({**AADB_CFG, "image_source": "warp256"}) == [aadb.LABEL_ZIP,
                                                                            aadb.WARP_ZIP]
    config = load_config("config.yaml")                                  # the default comes from the schema
    del config["datasets"]["AADB"]["image_source"]
    validate_config(config)
    assert aadb.required_files(config["datasets"]["AADB"]) == aadb.required_files(AADB_CFG)
    with pytest.raises(ConfigError, match="image_source"):
        aadb.required_files({**AADB_CFG, "image_source": "huge"})


def test_aadb_round_trip(tmp_path):
    table = _aadb_table()
    archives = _aadb_archives(tmp_path, table)
    raw = tmp_path / "raw"
    aadb.extract(archives, raw, AADB_CFG)
    out = aadb.parse(raw, AADB_CFG, on_bad_image="error")

    assert list(out.columns) == ["image", "path", "split", *aadb.ATTRIBUTES]
    assert out["split"].value_counts().to_dict() == {"train": 6, "validation": 4, "test": 5}
    both = set(out.loc[out.split == "validation", "image"]) & set(out.loc[out.split == "test", "image"])
    assert len(both) == 2
    merged = table.merge(out, on=["image", "split"], suffixes=("", "_parsed"))
    assert len(merged) == len(table)
    for t in aadb.ATTRIBUTES:
        np.testing.assert_allclose(merged[t], merged[f"{t}_parsed"], atol=1e-6)
        assert out[t].dtype == np.float64
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in out["path"])
    # test images carry a score prefix in the new-test archive; validation copies do not
    only_test = out[(out.split == "test") & ~out.image.isin(both)]
    assert all(Path(p).name != img and Path(p).name.endswith("_" + img)
               for p, img in zip(only_test["path"], only_test["image"]))
    # an image in both validation and test is one photo: every row points at its first copy
    shared = out[out.image.isin(both)]
    assert shared.groupby("image")["path"].nunique().eq(1).all()
    assert all(Path(p).name == img for p, img in zip(shared["path"], shared["image"]))


def test_aadb_configured_subset_keeps_config_order(tmp_path):
    archives = _aadb_archives(tmp_path, _aadb_table())
    aadb.extract(archives, tmp_path / "raw", AADB_CFG)
    cfg = {**AADB_CFG, "attributes": {"score": [0, 1], "Light": [-1, 1]}}
    out = aadb.parse(tmp_path / "raw", cfg, on_bad_image="error")
    assert list(out.columns) == ["image", "path", "split", "score", "Light"]


def test_aadb_missing_target_file(tmp_path):
    archives = _aadb_archives(tmp_path, _aadb_table())
    aadb.extract(archives, tmp_path / "raw", AADB_CFG)
    cfg = {**AADB_CFG, "attributes": {"score": [0, 1], "Sharpness": [-1, 1]}}
    with pytest.raises(DataError, match="imgListTrainRegression_Sharpness.txt"):
        aadb.parse(tmp_path / "raw", cfg, on_bad_image="error")


def _aadb_raw_dir(tmp: Path, lists: dict[tuple[str, str], str], images: list[str]) -> Path:
    """An extracted-looking raw folder written by hand (labels without an inner folder)."""
    raw = tmp / "raw"
    (raw / "imgListFiles_label").mkdir(parents=True)
    for (split, target), text in lists.items():
        (raw / "imgListFiles_label" / aadb.label_file_name(split, target)).write_bytes(text.encode())
    img_dir = raw / "datasetImages_originalSize" / "datasetImages_originalSize"
    img_dir.mkdir(parents=True)
    for i, name in enumerate(images):
        (img_dir / name).write_bytes(_jpeg(i))
    (raw / "AADB_newtest_originalSize").mkdir()
    return raw


SMALL_CFG = {"image_source": "original", "attributes": {"Light": [-1, 1], "score": [0, 1]}}


def _small_lists(light_train: str) -> dict[tuple[str, str], str]:
    lists = {("train", "Light"): light_train,
             ("train", "score"): "a.jpg 0.5\nb.jpg 0.25\nc.jpg 1\n"}
    for split in ("validation", "test"):
        lists[(split, "Light")] = "d.jpg 0.2\n"
        lists[(split, "score")] = "d.jpg 0.4\n"
    return lists


def test_aadb_normalises_crlf_spaces_tabs_blank_lines(tmp_path):
    messy = "\ufeffa.jpg 0.2\r\n\r\n  b.jpg\t\t-0.4  \r\nc.jpg    1\r\n\r\n"
    raw = _aadb_raw_dir(tmp_path, _small_lists(messy), ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    out = aadb.parse(raw, SMALL_CFG, on_bad_image="error")
    train = out[out.split == "train"].set_index("image")
    assert list(train.index) == ["a.jpg", "b.jpg", "c.jpg"]
    np.testing.assert_allclose(train["Light"], [0.2, -0.4, 1.0])
    np.testing.assert_allclose(train["score"], [0.5, 0.25, 1.0])
    assert out["split"].tolist() == ["train"] * 3 + ["validation", "test"]


@pytest.mark.parametrize("bad_line, expected", [
    ("b.jpg nan", "NaN"),
    ("b.jpg 1.4", "outside the declared range"),
    ("b.jpg abc", "not a number"),
    ("b.jpg 0.2 0.4", "expected '<file> <value>'"),
    ("b.jpg", "expected '<file> <value>'"),
    ("a.jpg 0.2", "duplicate image id 'a.jpg'"),
])
def test_aadb_bad_line_names_file_line_and_text(tmp_path, bad_line, expected):
    text = f"a.jpg 0.2\n{bad_line}\nc.jpg 0.4\n"
    raw = _aadb_raw_dir(tmp_path, _small_lists(text), ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    with pytest.raises(DataError) as err:
        aadb.parse(raw, SMALL_CFG, on_bad_image="error")
    msg = str(err.value)
    assert "imgListTrainRegression_Light.txt line 2" in msg
    assert expected in msg
    assert bad_line.split()[0] in msg


def test_aadb_lists_several_offenders(tmp_path):
    text = "a.jpg 2\nb.jpg 3\nc.jpg nan\n"
    raw = _aadb_raw_dir(tmp_path, _small_lists(text), ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    with pytest.raises(DataError, match=r"3 bad line\(s\)") as err:
        aadb.parse(raw, SMALL_CFG, on_bad_image="error")
    assert all(f"line {i}" in str(err.value) for i in (1, 2, 3))


def test_aadb_inconsistent_image_sets(tmp_path):
    lists = _small_lists("a.jpg 0.2\nb.jpg 0\nx.jpg 0.4\n")
    raw = _aadb_raw_dir(tmp_path, lists, ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "x.jpg"])
    with pytest.raises(DataError, match="list different images") as err:
        aadb.parse(raw, SMALL_CFG, on_bad_image="error")
    assert "imgListTrainRegression_score.txt" in str(err.value)
    assert "x.jpg" in str(err.value) and "c.jpg" in str(err.value)


def test_aadb_missing_image(tmp_path):
    raw = _aadb_raw_dir(tmp_path, _small_lists("a.jpg 0.2\nb.jpg 0\nc.jpg 0.4\n"),
                        ["a.jpg", "c.jpg", "d.jpg"])
    with pytest.raises(DataError, match="cannot be resolved") as err:
        aadb.parse(raw, SMALL_CFG, on_bad_image="error")
    assert "imgListTrainRegression_Light.txt line 2" in str(err.value)
    assert "'b.jpg'" in str(err.value)


def test_aadb_score_prefix_resolution_and_ambiguity(tmp_path):
    raw = _aadb_raw_dir(tmp_path, _small_lists("a.jpg 0.2\nb.jpg 0\nc.jpg 0.4\n"),
                        ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    newtest = raw / "AADB_newtest_originalSize"
    (newtest / "0.400_d.jpg").write_bytes(_jpeg(9))
    out = aadb.parse(raw, SMALL_CFG, on_bad_image="error")
    paths = dict(zip(out["split"], out["path"]))
    # d is in validation and test: one photo, so both rows use the first copy (original archive)
    assert Path(paths["test"]).name == Path(paths["validation"]).name == "d.jpg"
    # ambiguous suffix matches are an error, listing the candidates
    (raw / "datasetImages_originalSize" / "datasetImages_originalSize" / "d.jpg").unlink()
    (newtest / "0.500_d.jpg").write_bytes(_jpeg(10))
    with pytest.raises(DataError, match="matches 2 files") as err:
        aadb.parse(raw, SMALL_CFG, on_bad_image="error")
    assert "0.400_d.jpg" in str(err.value) and "0.500_d.jpg" in str(err.value)


def test_aadb_warp256_source(tmp_path):
    table = _aadb_table()
    archives = tmp_path / "archives"
    archives.mkdir()
    aadb.write_label_archive(table, archives / aadb.LABEL_ZIP)
    _zip(archives / aadb.WARP_ZIP, {f"datasetImages_warp256/{n}": _jpeg(i)
                                    for i, n in enumerate(table["image"].unique())})
    cfg = {**AADB_CFG, "image_source": "warp256"}
    aadb.extract(archives, tmp_path / "raw", cfg)
    out = aadb.parse(tmp_path / "raw", cfg, on_bad_image="error")
    assert len(out) == len(table)
    assert all("datasetImages_warp256" in p for p in out["path"])


def test_aadb_extract_needs_archives(tmp_path):
    (tmp_path / "archives").mkdir()
    with pytest.raises(DataError, match=aadb.LABEL_ZIP):
        aadb.extract(tmp_path / "archives", tmp_path / "raw", AADB_CFG)


# -------------------------------------------------------------------------------------------- EVA

def _eva_votes(ids: list[str], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for image in ids:
        for v in range(int(rng.integers(3, 6))):
            rows.append([image, f"E{v}", int(rng.integers(0, 11)), int(rng.integers(1, 5)),
                         *rng.integers(1, 5, 4).tolist(), "2019-03-01 10:00:00",
                         *rng.integers(0, 2, 4).tolist()])
    return pd.DataFrame(rows, columns=eva.COLUMNS)


def _eva_archives(tmp: Path, votes: pd.DataFrame, image_ids: list[str], parts: int) -> Path:
    archives = tmp / "archives"
    archives.mkdir()
    eva.write_votes(votes, archives / eva.VOTES)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, image in enumerate(image_ids):
            zf.writestr(f"EVA_together/{image}.jpg", _jpeg(i))
    data = buf.getvalue()
    size = -(-len(data) // parts)
    for j in range(parts):
        (archives / eva.part_name(j + 1)).write_bytes(data[j * size:(j + 1) * size])
    return archives


def test_eva_required_files():
    assert eva.required_files(EVA_CFG) == [eva.VOTES] + [f"EVA_together.zip.{i:03d}"
                                                         for i in range(1, 8)]
    files = {eva.VOTES: {}, "EVA_together.zip.002": {}, "EVA_together.zip.001": {}}
    assert eva.required_files({**EVA_CFG, "files": files}) == [
        eva.VOTES, "EVA_together.zip.001", "EVA_together.zip.002"]
    synth = {**EVA_CFG, "source": "synthetic", "synthetic": {"parts": 2}, "files": files | {
        "EVA_together.zip.003": {}}}
    assert eva.required_files(synth) == [eva.VOTES, "EVA_together.zip.001", "EVA_together.zip.002"]
    assert len(eva.required_files({**EVA_CFG, "source": "synthetic", "synthetic": {}})) == 1 + 3


def test_eva_round_trip(tmp_path):
    ids = ["101", "20", "3333", "42"]
    votes = _eva_votes(ids).sample(frac=1.0, random_state=0)      # votes interleaved across images
    archives = _eva_archives(tmp_path, votes, ids + ["999"], parts=3)   # 999: image without votes
    cfg = {**EVA_CFG, "source": "synthetic", "synthetic": {"parts": 3}}
    eva.extract(archives, tmp_path / "raw", cfg)
    assert not list((tmp_path / "raw").glob("*.zip"))               # the joined zip is removed
    out = eva.parse(tmp_path / "raw", cfg, on_bad_image="error")
    assert list(out.columns) == ["image", "path", "split", *eva.ATTRIBUTES]
    assert sorted(out["image"]) == sorted(ids)
    assert (out["split"] == "").all()
    expected = votes.groupby("image_id")[eva.ATTRIBUTES].mean()
    got = out.set_index("image")[eva.ATTRIBUTES]
    pd.testing.assert_frame_equal(got.loc[expected.index], expected.astype(float),
                                  check_names=False)
    assert all(Path(p).is_file() and Path(p).name == f"{i}.jpg"
               for p, i in zip(out["path"], out["image"]))


def _eva_raw(tmp: Path, text: str, ids=("1", "2")) -> Path:
    raw = tmp / "raw"
    (raw / "EVA_together").mkdir(parents=True)
    (raw / eva.VOTES).write_bytes(text.encode())
    for i, image in enumerate(ids):
        (raw / "EVA_together" / f"{image}.jpg").write_bytes(_jpeg(i))
    return raw


HEADER = "=".join(eva.COLUMNS)


def _row(image="1", score="7", attrs=("3", "2", "4", "1"), user="E1") -> str:
    return "=".join([image, user, score, "2", *attrs, "2019-03-01 10:00:00", "1", "0", "0", "0"])


def test_eva_normalises_crlf_and_spaces(tmp_path):
    text = (HEADER + "\r\n" + _row("1", "6").replace("=", " = ") + "\r\n\r\n"
            + _row("1", "8", user="E2") + "\r\n" + _row("2", "4") + "\r\n")
    out = eva.parse(_eva_raw(tmp_path, text), EVA_CFG, on_bad_image="error")
    got = out.set_index("image")
    assert got.loc["1", "score"] == 7.0 and got.loc["2", "score"] == 4.0
    assert got.loc["1", "visual"] == 3.0


def test_eva_wrong_delimiter(tmp_path):
    text = ",".join(eva.COLUMNS) + "\n" + _row().replace("=", ",") + "\n"
    with pytest.raises(DataError, match="not '='-delimited") as err:
        eva.parse(_eva_raw(tmp_path, text), EVA_CFG, on_bad_image="error")
    assert eva.VOTES in str(err.value) and "image_id,user_id" in str(err.value)
    assert "','-delimited" in str(err.value)


def test_eva_missing_column(tmp_path):
    cols = [c for c in eva.COLUMNS if c != "semantic"]
    text = "=".join(cols) + "\n" + "=".join(["1", "E1", "7", "2", "3", "3", "3", "t", "1", "0",
                                             "0", "0"]) + "\n"
    with pytest.raises(DataError, match="lacks the column") as err:
        eva.parse(_eva_raw(tmp_path, text), EVA_CFG, on_bad_image="error")
    assert eva.VOTES in str(err.value) and "semantic" in str(err.value)
    assert "line 1" in str(err.value)


@pytest.mark.parametrize("row, expected", [
    (_row(score="11"), "column 'score': value '11' outside the declared range [0, 10]"),
    (_row(score="nan"), "NaN"),
    (_row(attrs=("3", "5", "3", "3")), "column 'composition': value '5' outside"),
    (_row(attrs=("3", "x", "3", "3")), "not a number"),
    ("1=E1=7=2=3", "expected 13 '='-separated fields, got 5"),
])
def test_eva_bad_rows(tmp_path, row, expected):
    text = "\n".join([HEADER, _row(), _row("2"), row]) + "\n"
    with pytest.raises(DataError) as err:
        eva.parse(_eva_raw(tmp_path, text), EVA_CFG, on_bad_image="error")
    msg = str(err.value)
    assert f"{eva.VOTES} line 4" in msg and expected in msg


def test_eva_votes_without_image(tmp_path):
    text = "\n".join([HEADER, _row("1"), _row("77"), _row("88"), _row("77", user="E2")]) + "\n"
    with pytest.raises(DataError, match="2 voted image") as err:
        eva.parse(_eva_raw(tmp_path, text, ids=("1",)), EVA_CFG, on_bad_image="error")
    assert "'77'" in str(err.value) and "line 3" in str(err.value) and "'88'" in str(err.value)


def test_eva_configured_target_missing_from_file(tmp_path):
    cfg = {**EVA_CFG, "attributes": {"score": [0, 10], "emotion": [1, 4]}}
    with pytest.raises(DataError, match="emotion"):
        eva.parse(_eva_raw(tmp_path, HEADER + "\n" + _row() + "\n"), cfg, on_bad_image="error")


def test_eva_other_numeric_column_as_target(tmp_path):
    cfg = {**EVA_CFG, "attributes": {"difficulty": [1, 4], "score": [0, 10]}}
    out = eva.parse(_eva_raw(tmp_path, HEADER + "\n" + _row() + "\n", ids=("1",)), cfg, on_bad_image="error")
    assert list(out.columns) == ["image", "path", "split", "difficulty", "score"]
    assert out.loc[0, "difficulty"] == 2.0


# ------------------------------------------------------- on_bad_image for labels without an image file

def _pipeline_to_targets(raw: Path, ds: dict, tmp: Path, split_cfg: dict) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                                   list[str]]:
    """parse_labels -> image_cache -> splits -> scale_labels with on_bad_image: skip, as the workflow runs them,
    and the targets a training job then sees (less the skipped images)."""
    from aesthetic_mtl.data import image_cache as _image_cache, release, scaling as _scaling, splits as _splits
    from aesthetic_mtl.data.splits import drop_skipped, make_splits
    from aesthetic_mtl.files import read_tsv, write_tsv

    messages: list[str] = []
    res = tmp / "results"
    release.parse_labels(ds, raw, res / "labels.tsv", on_bad_image="skip", log=messages.append)
    _image_cache.build_from_labels(res / "labels.tsv", res / "images_16", image_spec(16), on_bad_image="skip",
                                  workers=1, log=messages.append)
    # the split step proper refuses test splits this small (test_splits.py); these lists are about bad images
    write_tsv(res / "splits.tsv", make_splits(read_tsv(res / "labels.tsv"), split_cfg))
    _scaling.write_scaled_labels(res / "labels.tsv", res / "splits.tsv", ds["attributes"], res / "scaled_labels.tsv",
                       log=messages.append)
    skipped = read_tsv(res / "images_16" / "skipped.tsv")
    return skipped, drop_skipped(read_tsv(res / "scaled_labels.tsv"), set(skipped["image"])), messages


def test_aadb_label_without_image_follows_on_bad_image(tmp_path):
    from aesthetic_mtl.data import image_cache as _image_cache, release, scaling as _scaling, splits as _splits

    # b.jpg (train) and d.jpg (validation and test) have labels but no file; zz.jpg has a file only
    raw = _aadb_raw_dir(tmp_path, _small_lists("a.jpg 0.2\nb.jpg 0\nc.jpg 0.4\n"), ["a.jpg", "c.jpg", "zz.jpg"])
    ds = {**SMALL_CFG, "format": "aadb"}
    with pytest.raises(DataError, match="cannot be resolved") as err:             # error (default): stop
        release.parse_labels(ds, raw, tmp_path / "labels.tsv", on_bad_image="error", log=lambda m: None)
    assert "imgListTrainRegression_Light.txt line 2" in str(err.value) and "'b.jpg'" in str(err.value)
    assert not (tmp_path / "labels.tsv").exists()

    skipped, targets, messages = _pipeline_to_targets(raw, ds, tmp_path, {"method": "official"})
    assert sorted(skipped["image"]) == ["b.jpg", "d.jpg"]                       # listed, with the reason
    assert skipped["reason"].str.contains("missing file").all()
    assert skipped["reason"].str.contains("b.jpg").any()
    assert list(targets["image"]) == ["a.jpg", "c.jpg"]                         # gone from every split
    assert any("2 labelled image(s) have no file" in m for m in messages)
    assert any("1 image file(s)" in m and "have no label: ignored" in m for m in messages)


def test_eva_votes_without_image_follow_on_bad_image(tmp_path):
    text = "\n".join([HEADER, _row("1"), _row("2"), _row("77"), _row("2", user="E2")]) + "\n"
    raw = _eva_raw(tmp_path, text, ids=("1", "2", "5"))                     # 77: votes only; 5: file only
    with pytest.raises(DataError, match="1 voted image"):
        eva.parse(raw, EVA_CFG, on_bad_image="error")
    parsed = eva.parse(raw, EVA_CFG, on_bad_image="skip")
    assert list(parsed["image"]) == ["1", "2", "77"] and not Path(parsed["path"][2]).exists()
    assert parsed.attrs["unlabelled_images"] == 1
    split = {"method": "random", "seed": 0, "fractions": {"train": 0.4, "validation": 0.3, "test": 0.3}}
    skipped, targets, messages = _pipeline_to_targets(raw, {**EVA_CFG, "format": "eva"}, tmp_path, split)
    assert list(skipped["image"]) == ["77"] and "missing file" in skipped["reason"][0]
    assert sorted(targets["image"]) == ["1", "2"]
    assert any("1 image file(s)" in m and "have no label: ignored" in m for m in messages)


def test_aadb_images_without_labels_are_ignored_and_counted(tmp_path):
    table = _aadb_table()
    archives = _aadb_archives(tmp_path, table)
    with zipfile.ZipFile(archives / aadb.ORIGINAL_ZIP, "a") as zf:                # e.g. the old test set
        zf.writestr("datasetImages_originalSize/farm1_unlisted_1_b.jpg", _jpeg(1))
        zf.writestr("datasetImages_originalSize/farm1_unlisted_2_b.jpg", _jpeg(2))
    aadb.extract(archives, tmp_path / "raw", AADB_CFG)
    out = aadb.parse(tmp_path / "raw", AADB_CFG, on_bad_image="error")
    assert not out["image"].str.contains("unlisted").any() and len(out) == len(table)
    # the overlap images' second copies (new-test archive) are used files, not unlabelled ones
    assert out.attrs["unlabelled_images"] == 2


# ------------------------------------------- label names are data: they cannot reach outside the release

OUTSIDE_NAMES = ["../../../../outside/photo.jpg", "ABS", "sub/../../photo.jpg", "..\\..\\photo.jpg",
                 "C:photo.jpg"]


def _outside_photo(tmp: Path) -> Path:
    """A real photo outside the release folder: what an escaping label name would pull in."""
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "photo.jpg").write_bytes(_jpeg(3))
    return outside / "photo.jpg"


@pytest.mark.parametrize("policy", ["error", "skip"])
@pytest.mark.parametrize("name", OUTSIDE_NAMES)
def test_aadb_label_name_leaving_the_release_is_an_error_in_every_policy(tmp_path, name, policy):
    photo = _outside_photo(tmp_path)
    name = str(photo) if name == "ABS" else name
    raw = _aadb_raw_dir(tmp_path, _small_lists(f"a.jpg 0.2\n{name} 0.5\nc.jpg 0.4\n"),
                        ["a.jpg", "c.jpg", "d.jpg"])
    (raw / "imgListFiles_label" / aadb.label_file_name("train", "score")).write_text(
        f"a.jpg 0.5\n{name} 0.25\nc.jpg 1\n")   # same images in both lists: only the name is wrong
    with pytest.raises(DataError) as err:
        aadb.parse(raw, SMALL_CFG, on_bad_image=policy)
    msg = str(err.value)
    assert "imgListTrainRegression_Light.txt line 2" in msg and repr(name) in msg
    assert "'..'" in msg or "absolute path" in msg


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_aadb_image_symlinked_outside_the_release_is_refused(tmp_path, policy):
    photo = _outside_photo(tmp_path)
    raw = _aadb_raw_dir(tmp_path, _small_lists("a.jpg 0.2\nb.jpg 0\nc.jpg 0.4\n"),
                        ["a.jpg", "c.jpg", "d.jpg"])
    (raw / "datasetImages_originalSize" / "datasetImages_originalSize" / "b.jpg").symlink_to(photo)
    with pytest.raises(DataError, match="outside the release folder") as err:
        aadb.parse(raw, SMALL_CFG, on_bad_image=policy)
    assert "imgListTrainRegression_Light.txt line 2" in str(err.value) and str(photo) in str(err.value)
    # a symbolic link that stays inside the release is fine
    (raw / "datasetImages_originalSize" / "datasetImages_originalSize" / "b.jpg").unlink()
    (raw / "datasetImages_originalSize" / "datasetImages_originalSize" / "b.jpg").symlink_to(
        raw / "datasetImages_originalSize" / "datasetImages_originalSize" / "a.jpg")
    assert len(aadb.parse(raw, SMALL_CFG, on_bad_image=policy)) == 5


def test_aadb_name_with_a_folder_inside_the_release_is_not_an_escape(tmp_path):
    raw = _aadb_raw_dir(tmp_path, _small_lists("a.jpg 0.2\nsub/b.jpg 0\nc.jpg 0.4\n"),
                        ["a.jpg", "c.jpg", "d.jpg"])
    (raw / "imgListFiles_label" / aadb.label_file_name("train", "score")).write_text(
        "a.jpg 0.5\nsub/b.jpg 0.25\nc.jpg 1\n")
    out = aadb.parse(raw, SMALL_CFG, on_bad_image="skip")    # no such file: kept for the cache to list
    path = Path(out.loc[out["image"] == "sub/b.jpg", "path"].iloc[0])
    assert raw.resolve() in path.parents and not path.exists()


@pytest.mark.parametrize("policy", ["error", "skip"])
@pytest.mark.parametrize("image_id", ["../../outside/photo", "ABS", "a/../../outside/photo"])
def test_eva_image_id_leaving_the_release_is_an_error_in_every_policy(tmp_path, image_id, policy):
    photo = _outside_photo(tmp_path)
    image_id = str(photo.with_suffix("")) if image_id == "ABS" else image_id
    text = "\n".join([HEADER, _row("1"), _row("2"), _row(image_id)]) + "\n"
    raw = _eva_raw(tmp_path, text)
    with pytest.raises(DataError) as err:
        eva.parse(raw, EVA_CFG, on_bad_image=policy)
    msg = str(err.value)
    assert f"{eva.VOTES} line 4" in msg and repr(image_id) in msg
    assert "'..'" in msg or "absolute path" in msg


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_eva_image_symlinked_outside_the_release_is_refused(tmp_path, policy):
    photo = _outside_photo(tmp_path)
    text = "\n".join([HEADER, _row("1"), _row("2"), _row("3")]) + "\n"
    raw = _eva_raw(tmp_path, text)
    (raw / "EVA_together" / "3.jpg").symlink_to(photo)
    with pytest.raises(DataError, match="outside the release folder") as err:
        eva.parse(raw, EVA_CFG, on_bad_image=policy)
    assert "'3'" in str(err.value) and "line 4" in str(err.value) and str(photo) in str(err.value)


def test_skip_policy_never_reads_a_file_outside_the_release(tmp_path):
    """The reported case: with skip, '../..' used to be decoded, cached and trained on."""
    from aesthetic_mtl.data import image_cache as _image_cache, release, scaling as _scaling, splits as _splits

    photo = _outside_photo(tmp_path)
    rel = Path("..") / ".." / photo.relative_to(tmp_path)       # from raw/datasetImages_originalSize
    raw = _aadb_raw_dir(tmp_path, _small_lists(f"a.jpg 0.2\n{rel} 0\nc.jpg 0.4\n"),
                        ["a.jpg", "c.jpg", "d.jpg"])
    (raw / "imgListFiles_label" / aadb.label_file_name("train", "score")).write_text(
        f"a.jpg 0.5\n{rel} 0.25\nc.jpg 1\n")
    assert (raw / "datasetImages_originalSize" / rel).resolve() == photo.resolve()   # it would escape
    with pytest.raises(DataError, match="contains '..'"):
        release.parse_labels({**SMALL_CFG, "format": "aadb"}, raw, tmp_path / "labels.tsv",
                              on_bad_image="skip", log=lambda m: None)
    assert not (tmp_path / "labels.tsv").exists()
