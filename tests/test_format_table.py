"""Generic table format: your own photos + a CSV/TSV, from a local folder, a download or the generator."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aesthetic_mtl.data import image_cache as _image_cache, release, scaling as _scaling, splits as _splits
from aesthetic_mtl.config import check_config, load_config
from aesthetic_mtl.data import synthetic
from aesthetic_mtl.data.formats import get_format, table
from aesthetic_mtl.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"rating": [1, 5], "sharp": [0, 10]}


def _cfg(source: str = "local", **extra) -> dict:
    cfg = {"format": "table", "source": source, "table": "labels.csv", "attributes": dict(TARGETS),
           "overall": "rating", "split": {"method": "random", "seed": 1,
                                         "fractions": {"train": 0.6, "validation": 0.2, "test": 0.2}}}
    return cfg | extra


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    color = tuple(int(c) for c in np.random.default_rng(seed).integers(0, 256, 3))
    Image.new("RGB", (10, 7), color).save(buf, format="PNG")
    return buf.getvalue()


def _folder(tmp: Path, rows: list[str], files=("a.png", "sub/b.png", "sub/c.png"),
            name: str = "labels.csv") -> Path:
    """A photo folder with `files` and a table whose lines are `rows` (header first)."""
    folder = tmp / "photos"
    for i, rel in enumerate(files):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(_png(i))
    (folder / name).write_text("\n".join(rows) + "\n")
    return folder


GOOD = ["image,rating,sharp,notes", "a.png,4.5,3,nice", "sub/b.png,1,10,", "sub\\c.png,2.25,0,x"]


def _parse_local(tmp: Path, rows: list[str], on_bad_image: str = "error", **extra):
    folder = _folder(tmp, rows)
    cfg = _cfg(path=str(folder), **extra)
    table.extract(tmp / "archives", tmp / "raw", cfg)
    return table.parse(tmp / "raw", cfg, on_bad_image=on_bad_image), folder


# ----------------------------------------------------------------------------------- round trips

def test_registered_and_required_files():
    assert get_format("table") is table
    assert table.required_files(_cfg("local", path="/x")) == []
    assert table.required_files(_cfg("synthetic")) == ["labels.csv", "images.zip"]
    files = {"labels.csv": {"url": "u"}, "a.zip": {"url": "u"}, "b.zip": {"url": "u"}}
    assert table.required_files(_cfg("official", files=files)) == ["labels.csv", "a.zip", "b.zip"]


def test_local_folder_is_read_in_place(tmp_path):
    (tmp_path / "photos" / "extra").mkdir(parents=True)
    out, folder = _parse_local(tmp_path, GOOD, )
    assert list(out.columns) == ["image", "path", "split", "rating", "sharp"]
    assert out["image"].tolist() == ["a.png", "sub/b.png", "sub/c.png"]   # Windows separator normalised
    assert out["rating"].tolist() == [4.5, 1.0, 2.25] and out["sharp"].tolist() == [3.0, 10.0, 0.0]
    assert (out["split"] == "").all()
    assert (tmp_path / "raw" / "images").is_symlink()                     # no copy of the photos
    assert (tmp_path / "raw" / "images").resolve() == folder.resolve()
    assert all(Path(p).is_file() for p in out["path"])
    assert out.attrs["unlabelled_images"] == 0


def test_unlabelled_images_are_counted(tmp_path):
    out, _ = _parse_local(tmp_path, GOOD[:3])
    assert len(out) == 2 and out.attrs["unlabelled_images"] == 1


def test_split_column_tsv_quotes_bom_and_crlf(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, rel in enumerate(["x, y.png", "z.png", "w.png"]):
        (folder / rel).write_bytes(_png(i))
    text = ("\ufeffimage\tset\trating\tsharp\r\n\"x, y.png\"\tTrain\t 3 \t1\r\n\r\n"
            "z.png\tval\t2\t2\r\nw.png\ttest\t5\t9\r\n")
    (folder / "labels.tsv").write_bytes(text.encode())
    cfg = _cfg(path=str(folder), table="labels.tsv", split_column="set", split={"method": "official"})
    table.extract(tmp_path / "a", tmp_path / "raw", cfg)
    out = table.parse(tmp_path / "raw", cfg, on_bad_image="error")
    assert out["image"].tolist() == ["x, y.png", "z.png", "w.png"]
    assert out["split"].tolist() == ["train", "validation", "test"]
    assert out["rating"].tolist() == [3.0, 2.0, 5.0]


def test_semicolon_delimiter_from_config(tmp_path):
    rows = [r.replace(",", ";") for r in GOOD]
    out, _ = _parse_local(tmp_path, rows, delimiter=";")
    assert out["image"].tolist() == ["a.png", "sub/b.png", "sub/c.png"]


def test_synthetic_release_round_trip_and_determinism(tmp_path):
    cfg = _cfg("synthetic", image_column="file", split_column="split", split={"method": "official"},
               synthetic={"n_images": 24, "image_size": 40, "seed": 2})
    synthetic.generate("table", tmp_path / "a", synthetic.params_for(cfg))
    synthetic.generate("table", tmp_path / "b", synthetic.params_for(cfg))
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(table.required_files(cfg))
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in names)
    table.extract(tmp_path / "a", tmp_path / "raw", cfg)
    out = table.parse(tmp_path / "raw", cfg, on_bad_image="error")
    assert len(out) == 24 and out.attrs["unlabelled_images"] == 1
    assert set(out["split"]) == {"train", "validation", "test"}
    assert out["rating"].between(1, 5).all() and out["sharp"].between(0, 10).all()
    assert out["rating"].nunique() > 5
    assert any("/" in i for i in out["image"]) and any(i.endswith(".png") for i in out["image"])
    assert all(Image.open(p).size == (40, 40) for p in out["path"][:3])


def test_synthetic_targets_borrow_aadb_latents():
    got = synthetic.borrowed_latents(["quality", "LIGHT", "mood", "dof"], overall="quality")
    assert got == {"quality": "score", "LIGHT": "Light", "mood": "VividColor", "dof": "DoF"}


def test_official_release_zips_are_merged(tmp_path):
    archives = tmp_path / "archives"
    archives.mkdir()
    (archives / "labels.csv").write_text("image,rating,sharp\nset1/a.png,2,2\nset2/b.png,3,3\n")
    for i, name in enumerate(["one.zip", "two.zip"]):
        with zipfile.ZipFile(archives / name, "w") as zf:
            zf.writestr(f"set{i + 1}/{'ab'[i]}.png", _png(i))
    cfg = _cfg("official", files={n: {"url": "u"} for n in ["labels.csv", "one.zip", "two.zip"]})
    table.extract(archives, tmp_path / "raw", cfg)
    out = table.parse(tmp_path / "raw", cfg, on_bad_image="error")
    assert out["image"].tolist() == ["set1/a.png", "set2/b.png"]
    assert all(Path(p).is_file() for p in out["path"])


# ---------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("row, needles", [
    ("../secret.png,3,3", ["line 2", "escapes the image folder", "'../secret.png'"]),
    ("sub/../../x.png,3,3", ["line 2", "escapes the image folder"]),
    ("/etc/passwd,3,3", ["line 2", "escapes the image folder", "'/etc/passwd'"]),
    ("C:\\photos\\a.png,3,3", ["line 2", "escapes the image folder"]),
    (",3,3", ["line 2", "empty image path"]),
    ("a.png,six,3", ["line 2", "column 'rating'", "not a number: 'six'"]),
    ("a.png,,3", ["line 2", "column 'rating'", "not a number: ''"]),
    ("a.png,3,11", ["line 2", "column 'sharp'", "'11' outside the declared range [0, 10]"]),
    ("a.png,nan,3", ["line 2", "NaN value"]),
    ("a.png,3", ["line 2", "expected 3 fields", "got 2"]),
])
def test_bad_rows_name_file_line_and_value(tmp_path, row, needles):
    with pytest.raises(DataError) as err:
        _parse_local(tmp_path, ["image,rating,sharp", row])
    message = str(err.value)
    assert "labels.csv" in message and str(tmp_path / "photos") in message   # the user's own file
    for needle in needles:
        assert needle in message


def test_duplicate_image_even_when_spelled_differently(tmp_path):
    with pytest.raises(DataError, match=r"line 3: image './a.png' listed twice \(first at line 2\)"):
        _parse_local(tmp_path, ["image,rating,sharp", "a.png,1,1", "./a.png,2,2"])


def test_several_offenders_are_listed(tmp_path):
    with pytest.raises(DataError, match=r"3 bad row\(s\)") as err:
        _parse_local(tmp_path, ["image,rating,sharp", "a.png,0,1", "sub/b.png,x,1", "sub/c.png,1,-1"])
    assert all(f"line {n}" in str(err.value) for n in (2, 3, 4))


def test_missing_configured_column_lists_the_header(tmp_path):
    with pytest.raises(DataError) as err:
        _parse_local(tmp_path, ["image,rating,sharpness", "a.png,1,1"])
    message = str(err.value)
    assert "labels.csv line 1: no column 'sharp' (attributes)" in message
    assert "'image', 'rating', 'sharpness'" in message


def test_missing_image_and_split_columns(tmp_path):
    with pytest.raises(DataError, match=r"no column 'file' \(image_column\)"):
        _parse_local(tmp_path, GOOD, image_column="file")
    with pytest.raises(DataError, match=r"no column 'split' \(split_column\)"):
        _parse_local(tmp_path / "2", GOOD, split_column="split")


def test_bad_split_value(tmp_path):
    rows = ["image,split,rating,sharp", "a.png,train,1,1", "sub/b.png,holdout,1,1"]
    with pytest.raises(DataError, match=r"line 3: column 'split': 'holdout' is not a split"):
        _parse_local(tmp_path, rows, split_column="split")


def test_repeated_header_column(tmp_path):
    with pytest.raises(DataError, match=r"line 1: the header repeats column\(s\) \['rating'\]"):
        _parse_local(tmp_path, ["image,rating,rating,sharp", "a.png,1,1,1"])


def test_missing_file_is_an_error_or_a_recorded_skip(tmp_path):
    rows = [*GOOD, "gone.png,3,3,"]
    with pytest.raises(DataError, match=r"(?s)1 image\(s\) have no file .*line 5: no file 'gone.png'"):
        _parse_local(tmp_path, rows)
    out, folder = _parse_local(tmp_path / "skip", rows, on_bad_image="skip")
    assert out["image"].tolist()[-1] == "gone.png"
    assert not Path(out["path"].iloc[-1]).exists()          # the image cache skips and lists it


def test_missing_local_folder_and_table(tmp_path):
    with pytest.raises(DataError, match="local dataset folder .*nowhere does not exist"):
        table.local_fingerprint(_cfg(path=str(tmp_path / "nowhere")), log=lambda m: None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="labels.csv: the label table of the local dataset does not exist"):
        table.local_fingerprint(_cfg(path=str(tmp_path / "empty")), log=lambda m: None)


# ---------------------------------------------------------------------------- pipeline and config

def test_pipeline_local_fingerprint_then_extract(tmp_path):
    folder = _folder(tmp_path, GOOD)
    cfg = _cfg(path=str(folder))
    ok = tmp_path / "resources" / "PHOTOS" / "archives.sha256.json"
    release.obtain_archives(cfg, [], ok, download={}, log=lambda m: None)
    first = json.loads(ok.read_text())
    assert set(first) == {"labels.csv", "images_listing"}
    assert not (ok.parent / "archives").exists()                       # nothing copied or downloaded
    raw = ok.parent / "raw"
    release.extract(cfg, ok.parent / "archives", raw, log=lambda m: None)
    labels = release.parse_labels(cfg, raw, tmp_path / "labels.tsv", on_bad_image="error", log=lambda m: None)
    assert len(labels) == 3
    (folder / "sub" / "new.png").write_bytes(_png(9))
    release.obtain_archives(cfg, [], ok, download={}, log=lambda m: None)
    second = json.loads(ok.read_text())
    assert second["labels.csv"] == first["labels.csv"]
    assert second["images_listing"] != first["images_listing"]


@pytest.fixture
def paper():
    return load_config(REPO / "config.yaml")


def _with(paper: dict, **ds) -> dict:
    config = json.loads(json.dumps(paper))
    config["datasets"]["PHOTOS"] = ds
    return config


@pytest.mark.parametrize("ds, needle", [
    (_cfg(path="/p") | {"split": {"method": "official"}},
     "'datasets.PHOTOS.split.method': 'official' needs 'split_column'"),
    ({k: v for k, v in _cfg().items()}, "'datasets.PHOTOS.path': 'source: local' needs the folder"),
    ({k: v for k, v in _cfg(path="/p").items() if k != "table"}, "'datasets.PHOTOS.table': 'format: table' needs"),
    (_cfg(path="/p", table="labels.xlsx"), "'datasets.PHOTOS.table': table 'labels.xlsx': cannot tell the delimiter"),
    (_cfg("synthetic", table="sub/labels.csv", synthetic={}), "must be a plain file name"),
    (_cfg("official", files={"labels.csv": {"url": "u"}}), "at least one .zip of the images"),
    (_cfg("synthetic", path="/p", synthetic={}), "'datasets.PHOTOS.path': only for 'source: local'"),
    (_cfg(path="/p", image_column="rating"), "'datasets.PHOTOS.attributes.rating': is also the image or split"),
])
def test_table_config_errors_name_the_key(paper, ds, needle):
    with pytest.raises(ConfigError, match="^config key ") as err:
        check_config(_with(paper, **ds))
    assert needle in str(err.value)


def test_table_keys_only_for_the_table_format(paper):
    config = json.loads(json.dumps(paper))
    config["datasets"]["EVA"]["table"] = "labels.csv"
    with pytest.raises(ConfigError, match=r"'datasets.EVA.table': only for 'format: table'"):
        check_config(config)
    config = json.loads(json.dumps(paper))
    config["datasets"]["EVA"]["source"] = "local"
    with pytest.raises(ConfigError, match=r"'datasets.EVA.source': 'local' is for 'format: table'"):
        check_config(config)


def test_valid_table_configs(paper):
    check_config(_with(paper, **_cfg(path="/anywhere")))
    check_config(_with(paper, **_cfg("synthetic", split_column="split", split={"method": "official"},
                                     synthetic={"n_images": 10})))


# ------------------------------------------------------------------- tables as people save them

def test_composed_names_find_files_stored_decomposed(tmp_path):
    """A CSV typed with 'café.png' (NFC) finds the file macOS stored as 'cafe' + U+0301 (NFD)."""
    import unicodedata

    composed, decomposed = "caf\u00e9.png", unicodedata.normalize("NFD", "caf\u00e9.png")
    assert composed != decomposed
    folder = tmp_path / "photos"
    (folder / unicodedata.normalize("NFD", "Zürich")).mkdir(parents=True)
    for rel in (decomposed, unicodedata.normalize("NFD", "Zürich/straße.png"), "plain.png"):
        (folder / rel).write_bytes(_png(len(rel)))
    rows = ["image,rating,sharp", f"{composed},4,3", "Z\u00fcrich/stra\u00dfe.png,2,1", "plain.png,3,3"]
    (folder / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    cfg = _cfg(path=str(folder))
    table.extract(tmp_path / "archives", tmp_path / "raw", cfg)
    out = table.parse(tmp_path / "raw", cfg, on_bad_image="error")
    assert out["image"].tolist() == [composed, "Z\u00fcrich/stra\u00dfe.png", "plain.png"]
    assert [Path(p).name for p in out["path"]] == [decomposed, unicodedata.normalize("NFD", "straße.png"),
                                                   "plain.png"]
    assert all(Path(p).is_file() for p in out["path"])
    assert out.attrs["unlabelled_images"] == 0            # the decomposed files are the labelled ones
    # the same name in both forms is one photo listed twice
    (folder / "labels.csv").write_text(f"image,rating,sharp\n{composed},4,3\n{decomposed},2,2\n", encoding="utf-8")
    table.extract(tmp_path / "archives", tmp_path / "raw", cfg)
    with pytest.raises(DataError, match=r"labels.csv line 3: image .* listed twice \(first at line 2\)"):
        table.parse(tmp_path / "raw", cfg, on_bad_image="error")


EXCEL_UNICODE_TEXT = ("image\trating\tsharp\tnotes\r\n"
                      "caf\u00e9.png\t4.5\t3\t\"tab\tinside\"\r\n"
                      "sub/b.png\t1\t10\t\u65e5\u672c\r\n")


def test_excel_unicode_text_utf16_is_read(tmp_path):
    """Excel's "Unicode Text" export: UTF-16 LE with a byte-order mark, tab-separated, CRLF."""
    import codecs

    folder = _folder(tmp_path, ["image"], files=("caf\u00e9.png", "sub/b.png"))
    (folder / "labels.txt").write_bytes(codecs.BOM_UTF16_LE + EXCEL_UNICODE_TEXT.encode("utf-16-le"))
    cfg = _cfg(path=str(folder), table="labels.txt")
    table.extract(tmp_path / "archives", tmp_path / "raw", cfg)
    out = table.parse(tmp_path / "raw", cfg, on_bad_image="error")
    assert out["image"].tolist() == ["caf\u00e9.png", "sub/b.png"]
    assert out["rating"].tolist() == [4.5, 1.0] and out["sharp"].tolist() == [3.0, 10.0]
    # big-endian with its BOM too
    (folder / "labels.txt").write_bytes(codecs.BOM_UTF16_BE + EXCEL_UNICODE_TEXT.encode("utf-16-be"))
    table.extract(tmp_path / "archives", tmp_path / "raw", cfg)
    assert table.parse(tmp_path / "raw", cfg, on_bad_image="error")["image"].tolist() == ["caf\u00e9.png", "sub/b.png"]


def test_utf16_without_bom_is_named_with_the_fix(tmp_path):
    folder = _folder(tmp_path, ["image"], files=("caf\u00e9.png", "sub/b.png"))
    (folder / "labels.txt").write_bytes(EXCEL_UNICODE_TEXT.encode("utf-16-le"))
    cfg = _cfg(path=str(folder), table="labels.txt")
    table.extract(tmp_path / "archives", tmp_path / "raw", cfg)
    with pytest.raises(DataError) as err:
        table.parse(tmp_path / "raw", cfg, on_bad_image="error")
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{folder / 'labels.txt'}: ")
    assert "UTF-16" in message and "CSV UTF-8" in message
