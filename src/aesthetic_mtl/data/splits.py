"""Train / validation / test splits and the report of images shared between splits.

AADB ships official lists (TestNew is the test split; 127 of its images are also in the validation
list, which we count and report rather than silently drop). EVA ships none, so we draw a seeded split.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import pandas as pd

from aesthetic_mtl.errors import DataError
from aesthetic_mtl.files import read_tsv, write_json, write_tsv

SPLITS = ("train", "validation", "test")
MIN_IMAGES = {"train": 1, "validation": 0, "test": 3}
"""The fewest images each split needs for its use. Training needs one image. The test split needs 3:
SRCC needs 2 (and is then always +-1), its bootstrap interval 3, Grad-CAM 1; with fewer, every model
would train and then report empty metrics. Validation may be empty (`fractions.validation: 0`): its loss
is then not computed."""
USES = {"train": "training", "test": "the test metrics (SRCC and its bootstrap interval) and Grad-CAM"}


def make_splits(labels: pd.DataFrame, split_cfg: dict) -> pd.DataFrame:
    """Table of (image, split) rows; an image may be in two splits only where the release says so."""
    if split_cfg["method"] == "official":
        return _official_splits(labels)
    return random_splits(labels["image"].drop_duplicates().tolist(), split_cfg["fractions"], split_cfg["seed"])


def _official_splits(labels: pd.DataFrame) -> pd.DataFrame:
    unknown = sorted(set(labels["split"]) - set(SPLITS))
    if unknown:
        raise DataError(f"labels carry unknown split names {unknown}; expected {list(SPLITS)}")
    return labels[["image", "split"]].reset_index(drop=True)


def random_splits(images: list[str], fractions: dict, seed: int) -> pd.DataFrame:
    """Seeded split of unique images by `fractions` (train/validation/test, summing to 1)."""
    images = sorted(images)
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = int(round(fractions["test"] * len(images)))
    n_val = int(round(fractions["validation"] * len(images)))
    names = np.array(["train"] * len(images), dtype=object)
    names[order[:n_test]] = "test"
    names[order[n_test:n_test + n_val]] = "validation"
    return pd.DataFrame({"image": images, "split": names})


def check_split_sizes(splits: pd.DataFrame, split_cfg: dict, dataset: str) -> None:
    """Refuse a split too small for its use (`MIN_IMAGES`) here, before any model trains on it.

    One line naming the dataset, the split, its size and what to change (the split column of an
    official split, or the random split's fraction).
    """
    counts = {s: int(splits.loc[splits["split"] == s, "image"].nunique()) for s in SPLITS}
    for name in SPLITS:
        need, have = MIN_IMAGES[name], counts[name]
        if have >= need:
            continue
        size = "is empty" if have == 0 else f"has {_images(have)}"
        fix = (f"raise split.fractions.{name} or add images" if split_cfg["method"] == "random"
               else f"mark more rows '{name}' in the split column")
        found = ", ".join(f"{s} {n}" for s, n in counts.items())
        raise DataError(f"dataset {dataset}: the {name} split {size}; it needs at least {_images(need)} for "
                        f"{USES[name]} (split counts: {found}); {fix}")


def _images(n: int) -> str:
    return f"{n} image" + ("" if n == 1 else "s")


def split_report(splits: pd.DataFrame) -> dict:
    """Counts per split and the images shared by each pair of splits."""
    members = {s: set(splits.loc[splits["split"] == s, "image"]) for s in SPLITS}
    overlaps = {}
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1:]:
            shared = sorted(members[a] & members[b])
            overlaps[f"{a}&{b}"] = {"count": len(shared), "examples": shared[:10]}
    return {
        "counts": {s: len(members[s]) for s in SPLITS},
        "unique_images": int(splits["image"].nunique()),
        "overlaps": overlaps,
    }


def split_label_table(labels: pd.DataFrame, splits: pd.DataFrame, targets: list[str]) -> pd.DataFrame:
    """Join splits with raw attributes: one row per (image, split)."""
    keys = ["image", "split"] if (labels["split"] != "").all() else ["image"]
    values = labels[keys + targets].drop_duplicates(subset=keys)
    table = splits.merge(values, on=keys, how="left", validate="one_to_one")
    missing = table[table[targets].isna().any(axis=1)]
    if len(missing):
        raise DataError(f"{len(missing)} split rows have no labels, e.g. {missing['image'].head(3).tolist()}")
    return table.reset_index(drop=True)


def drop_skipped(table: pd.DataFrame, skipped: set[str]) -> pd.DataFrame:
    """The rows of images the image cache did not skip, in every split.

    The label tables keep every labelled image, so they do not depend on the input size; the images an
    image cache skipped (`on_bad_image: skip`, listed in its skipped.tsv) leave the splits here, when a
    training job reads that cache.
    """
    return table[~table["image"].isin(skipped)].reset_index(drop=True)


def write_splits(labels_path, split_cfg: Mapping, out_splits, out_report, *, dataset: str,
                 log: Callable = print) -> None:
    """Rule split: the splits table plus the report of counts and overlaps (AADB: validation & TestNew share
    images). A split too small for its use (no test image, say) is refused here, naming `dataset`, rather
    than after every model has trained."""
    splits = make_splits(read_tsv(labels_path), split_cfg)
    check_split_sizes(splits, split_cfg, dataset)
    report = split_report(splits)
    for pair, info in report["overlaps"].items():
        if info["count"]:
            log(f"note: {info['count']} images are in both {pair.replace('&', ' and ')}, "
                f"e.g. {info['examples'][:3]}")
    log(f"split counts: {report['counts']}")
    write_tsv(out_splits, splits)
    write_json(out_report, report)
