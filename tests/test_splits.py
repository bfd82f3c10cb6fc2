"""Splits, the overlap report and target scaling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aesthetic_mtl.data.scaling import from_unit, scale_table, to_unit, unscale_table
from aesthetic_mtl.data.splits import (
    drop_skipped,
    make_splits,
    random_splits,
    split_label_table,
    split_report,
)
from aesthetic_mtl.errors import DataError


def test_random_split_is_seeded_and_exact():
    images = [f"{i}.jpg" for i in range(100)]
    fr = {"train": 0.7, "validation": 0.1, "test": 0.2}
    a, b = random_splits(images, fr, 3), random_splits(images[::-1], fr, 3)
    assert a.equals(b)
    assert a["split"].value_counts().to_dict() == {"train": 70, "test": 20, "validation": 10}
    assert not a.equals(random_splits(images, fr, 4))


def test_official_split_keeps_and_reports_overlap():
    labels = pd.DataFrame({"image": ["a", "b", "c", "c", "d"],
                           "split": ["train", "train", "validation", "test", "test"], "score": [.1] * 5})
    splits = make_splits(labels, {"method": "official"})
    report = split_report(splits)
    assert report["counts"] == {"train": 2, "validation": 1, "test": 2}
    assert report["overlaps"]["validation&test"] == {"count": 1, "examples": ["c"]}
    assert report["overlaps"]["train&test"]["count"] == 0


def test_split_label_table_joins_and_skipped_images_leave_every_split():
    labels = pd.DataFrame({"image": ["a", "b", "c"], "split": ["", "", ""], "score": [1.0, 2.0, 3.0]})
    splits = pd.DataFrame({"image": ["a", "b", "c"], "split": ["train", "test", "validation"]})
    table = split_label_table(labels, splits, ["score"])
    assert table["image"].tolist() == ["a", "b", "c"] and table["score"].tolist() == [1.0, 2.0, 3.0]
    kept = drop_skipped(table, {"b"})
    assert kept["image"].tolist() == ["a", "c"] and kept["score"].tolist() == [1.0, 3.0]
    with pytest.raises(DataError, match="no labels"):
        split_label_table(labels.iloc[:2], splits, ["score"])


def test_scaling_round_trip():
    ranges = {"score": [0, 10], "Light": [-1, 1]}
    raw = pd.DataFrame({"image": ["x", "y"], "score": [0.0, 7.5], "Light": [-1.0, 0.2]})
    unit = scale_table(raw, ranges)
    assert unit["score"].tolist() == [0.0, 0.75] and unit["Light"].tolist() == pytest.approx([0.0, 0.6])
    pd.testing.assert_frame_equal(unscale_table(unit, ranges), raw)
    assert from_unit(to_unit(np.array([1.0, 4.0]), 1, 4), 1, 4).tolist() == [1.0, 4.0]


# ------------------------------------------------------------------ splits too small for their use

def _labels_tsv(tmp_path, splits: list[str]):
    from aesthetic_mtl.files import write_tsv

    path = tmp_path / "results" / "PHOTOS" / "labels.tsv"
    n = len(splits)
    write_tsv(path, pd.DataFrame({"image": [f"{i}.jpg" for i in range(n)], "path": [f"/p/{i}.jpg" for i in range(n)],
                                  "split": splits, "rating": np.linspace(1, 5, n)}))
    return path


def test_split_without_test_rows_is_refused_naming_the_dataset(tmp_path):
    """A table's split column with train and validation rows only: refused before any model trains."""
    from aesthetic_mtl.data.splits import write_splits as split

    labels = _labels_tsv(tmp_path, ["train"] * 8 + ["validation"] * 2)
    out, report = tmp_path / "splits.tsv", tmp_path / "report.json"
    with pytest.raises(DataError) as err:
        split(labels, {"method": "official"}, out, report, dataset="PHOTOS", log=lambda m: None)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("dataset PHOTOS: the test split is empty;"), message
    assert "needs at least 3 images" in message and "train 8, validation 2, test 0" in message
    assert not out.exists() and not report.exists()


def test_split_too_small_for_its_use_is_refused(tmp_path):
    """Two test images give an SRCC of +-1 and no bootstrap interval; no training image trains nothing."""
    from aesthetic_mtl.data.splits import write_splits as split

    labels = _labels_tsv(tmp_path, ["train"] * 8 + ["test"] * 2)
    with pytest.raises(DataError, match=r"^dataset PHOTOS: the test split has 2 images; it needs at least 3"):
        split(labels, {"method": "official"}, tmp_path / "s.tsv", tmp_path / "r.json", dataset="PHOTOS",
              log=lambda m: None)
    labels = _labels_tsv(tmp_path, ["validation"] * 2 + ["test"] * 5)
    with pytest.raises(DataError, match=r"^dataset PHOTOS: the train split is empty"):
        split(labels, {"method": "official"}, tmp_path / "s.tsv", tmp_path / "r.json", dataset="PHOTOS",
              log=lambda m: None)
    # a random split of 10 images with 10 % test draws 1 test image: refused, naming the fraction
    labels = _labels_tsv(tmp_path, [""] * 10)
    cfg = {"method": "random", "seed": 1, "fractions": {"train": 0.8, "validation": 0.1, "test": 0.1}}
    with pytest.raises(DataError, match=r"the test split has 1 image; .*split\.fractions\.test"):
        split(labels, cfg, tmp_path / "s.tsv", tmp_path / "r.json", dataset="PHOTOS", log=lambda m: None)
    # an empty validation split is allowed (fractions.validation may be 0)
    labels = _labels_tsv(tmp_path, ["train"] * 5 + ["test"] * 3)
    split(labels, {"method": "official"}, tmp_path / "s.tsv", tmp_path / "r.json", dataset="PHOTOS",
              log=lambda m: None)
    assert (tmp_path / "s.tsv").exists()
