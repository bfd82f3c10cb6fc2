"""The generic table format through `snakemake`: your own rated photos beside AADB, cross-dataset pairs.

1. tests/configs/table.yaml: PHOTOS, written by the synthetic generator as a CSV + images, runs beside
   synthetic AADB and EVA through every setting, with AADB->PHOTOS and PHOTOS->AADB pairs.
2. config/photos.yaml as shipped (source: local): a folder of photos and labels.csv read in place; the
   data steps run, an edited table re-runs them, a bad value stops the run naming the user's file and line.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, TINY, TINY_CONFIG, copy_repo, run_snakemake

from aesthetic_mtl.config import load_config, settings
from aesthetic_mtl.data import synthetic

pytestmark = pytest.mark.slow
TABLE = [*TINY, "tests/configs/table.yaml"]
PHOTOS = [*TINY, "config/photos.yaml"]      # --configfile takes every path after it: targets go first


@pytest.fixture(scope="module")
def table_run(tmp_path_factory) -> Path:
    workdir = copy_repo(tmp_path_factory.mktemp("table") / "repo")
    run_snakemake(workdir, "--cores", "2", *TABLE)
    return workdir


@pytest.fixture(scope="module")
def table_config() -> dict:
    return load_config(REPO / "config.yaml", REPO / TINY_CONFIG, REPO / "tests/configs/table.yaml")


def test_photos_get_every_setting_and_both_cross_pairs(table_run, table_config):
    metrics = pd.read_csv(table_run / "results" / "metrics.tsv", sep="\t")
    srcc = metrics[metrics["metric"] == "srcc"]
    own = srcc[(srcc["dataset"] == "PHOTOS") & (srcc["train_dataset"] == "PHOTOS")]
    for setting, targets in settings(table_config, "PHOTOS").items():
        for stage in ("stage1", "stage2"):
            rows = own[(own["setting"] == setting) & (own["stage"] == stage)]
            assert set(rows["target"]) == set(targets), (setting, stage)
            assert rows["value"].between(-1, 1).all()
    multi = srcc[srcc["setting"] == "multitask"]
    for pair in ("AADB->PHOTOS", "PHOTOS->AADB"):
        train, test = pair.split("->")
        got = set(multi[(multi["train_dataset"] == train) & (multi["dataset"] == test)]["target"])
        assert got == {f"{a}->{b}" for a, b in table_config["experiment"]["cross_dataset"][pair].items()}
    cross = pd.read_csv(table_run / "results" / "tables" / "cross_dataset.csv")
    assert {"PHOTOS"} <= set(cross.astype(str).stack())
    table = pd.read_csv(table_run / "results" / "tables" / "PHOTOS_multitask_vs_single.csv")
    assert len(table) > 0


def test_photos_data_follow_the_table(table_run):
    labels = pd.read_csv(table_run / "results" / "PHOTOS" / "labels.tsv", sep="\t")
    assert len(labels) == 40 and labels["image"].str.contains("/").any()
    splits = pd.read_csv(table_run / "results" / "PHOTOS" / "splits.tsv", sep="\t")
    assert splits.set_index("image")["split"].to_dict() == labels.set_index("image")["split"].to_dict()
    targets = pd.read_csv(table_run / "results" / "PHOTOS" / "scaled_labels.tsv", sep="\t")
    assert targets[["rating", "brightness", "colourfulness"]].stack().between(0, 1).all()
    log = (table_run / "logs" / "parse_labels" / "PHOTOS.log").read_text()
    assert "2 image file(s)" in log and "have no label: ignored" in log


def _photo_folder(workdir: Path) -> Path:
    """data/photos as a researcher would have it: sub-folders of photos and labels.csv."""
    ds = load_config(REPO / "config.yaml", REPO / TINY_CONFIG, REPO / "config/photos.yaml")["datasets"]["PHOTOS"]
    release = workdir / "release"
    synthetic.generate("table", release, synthetic.params_for(
        {**ds, "synthetic": {"n_images": 30, "image_size": 64, "seed": 4}}))
    folder = workdir / "data" / "photos"
    with zipfile.ZipFile(release / "images.zip") as zf:
        zf.extractall(folder)
    shutil.copyfile(release / "labels.csv", folder / "labels.csv")
    shutil.rmtree(release)
    return folder


def test_local_folder_as_shipped_in_config_photos(tmp_path):
    workdir = copy_repo(tmp_path / "repo")
    folder = _photo_folder(workdir)
    target = "results/PHOTOS/scaled_labels.tsv"
    run_snakemake(workdir, target, "--cores", "2", *PHOTOS)
    targets = pd.read_csv(workdir / target, sep="\t")
    assert len(targets) == 30 and set(targets["split"]) == {"train", "validation", "test"}
    assert (workdir / "resources" / "PHOTOS" / "raw" / "images").is_symlink()
    assert not (workdir / "resources" / "PHOTOS" / "archives").exists()      # nothing copied
    run_snakemake(workdir, "-n", *PHOTOS)                                     # the whole DAG builds

    table = folder / "labels.csv"
    lines = table.read_text().splitlines()
    fields = lines[3].split(",")
    fields[2] = "7.5"                                                        # rating is in [1, 5]
    lines[3] = ",".join(fields)
    table.write_text("\n".join(lines) + "\n")
    proc = run_snakemake(workdir, target, "-n", *PHOTOS)
    assert "obtain_archives" in proc.stdout + proc.stderr                    # an edited table re-runs
    proc = run_snakemake(workdir, target, "--cores", "1", *PHOTOS, check=False)
    assert proc.returncode != 0
    log = (workdir / "logs" / "parse_labels" / "PHOTOS.log").read_text()
    assert f"{table}: 1 bad row(s)" in log
    assert "labels.csv line 4: column 'rating': value '7.5' outside the declared range [1, 5]" in log
