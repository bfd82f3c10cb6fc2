"""AADB release format (Kong et al. 2016, "Photo aesthetics ranking network with attributes").

Archives (names as released):

* `imgListFiles_label.zip` - one text file per split and attribute,
  `imgList{Train,Validation,TestNew}Regression_{<Attr>|score}.txt`, one `<file> <value>` per line,
  no header. The files may sit in a folder inside the zip or not: they are found recursively. Other
  lists in the zip (the old `imgListTestRegression_*`, `*Classification*`) are ignored.
  Attribute names are the release's own, typo included (`BalacingElements`).
* `datasetImages_originalSize.zip` (train + validation images) and `AADB_newtest_originalSize.zip`
  (TestNew images) for `image_source: original`; `datasetImages_warp256.zip` (all images squashed to
  256 x 256) for `image_source: warp256`.

Splits: train / validation / test (= TestNew, the test set the paper uses). The release has images in
both Validation and TestNew (127 in the real data); `parse` keeps one row per (image, split).

Image resolution: archives are searched in the order of the label's split (new-test archive first for
`test`, original archive first for train/validation; so an image in both validation and TestNew uses
each archive's own copy); in each, a file with exactly the label's name wins, otherwise the unique file
whose name ends with `_<name>` (the new-test archive names files `0.650_farm1_..._b.jpg`, a score
prefix). Several candidates, or none at all, is a DataError listing the first few.

Harmless variants that are normalised (not errors): CRLF or CR line endings, a UTF-8 BOM, leading /
trailing / repeated spaces and tabs between the two fields, blank lines. Errors (DataError naming file,
line and text, first few offenders): a line without exactly two fields, a value that is not a number,
NaN/inf, a value outside the configured range, an image listed twice in one file, per-attribute files of
one split listing different images, a configured attribute without a label file, images without a file
(with `on_bad_image: skip` these are kept with their expected path instead, and the image cache skips
and lists them in skipped.tsv). Label names are data, not paths: a name that is absolute or contains
`..` is an error in every policy (file, line, name), and an image file that resolves (symbolic links
followed) outside the extracted release folder is refused (`datasets.unsafe_name`, `outside_release`). Image files that no list names (e.g. the old test set's) are ignored
and counted: `parse` returns the count in `attrs["unlabelled_images"]` and the parse_labels log says it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd

from aesthetic_mtl.data.formats import (
    IMAGE_SUFFIXES,
    attribute_ranges,
    deterministic_zip,
    iter_files,
    offenders,
    outside_release,
    parse_value,
    read_text_lines,
    replace_dir,
    require_archives,
    unsafe_name,
)
from aesthetic_mtl.errors import ConfigError, DataError

ATTRIBUTES = ["BalacingElements", "ColorHarmony", "Content", "DoF", "Light", "MotionBlur", "Object",
           "Repetition", "RuleOfThirds", "Symmetry", "VividColor", "score"]
RANGES = {t: (-1.0, 1.0) for t in ATTRIBUTES[:-1]} | {"score": (0.0, 1.0)}
LABEL_NAMES = tuple(ATTRIBUTES)
RELEASE_FROM_ATTRIBUTES = False        # the release is fixed; attributes pick among its lists
"""Every attribute the release has a label list for (`imgList*Regression_<name>.txt`): the 12 above. A
configured attribute outside this list stops the config check (`snakemake -n`), before any download."""

LABEL_ZIP = "imgListFiles_label.zip"
ORIGINAL_ZIP = "datasetImages_originalSize.zip"
NEWTEST_ZIP = "AADB_newtest_originalSize.zip"
WARP_ZIP = "datasetImages_warp256.zip"
IMAGE_ZIPS = {"original": [ORIGINAL_ZIP, NEWTEST_ZIP], "warp256": [WARP_ZIP]}

SPLITS = {"train": "Train", "validation": "Validation", "test": "TestNew"}
LABEL_DIR = "imgListFiles_label"          # folder inside the zip written by `write_label_archive`
_LIST_RE = re.compile(r"^imgList(Train|Validation|TestNew)Regression_(.+)\.txt$")


def label_file_name(split: str, target: str) -> str:
    """Release name of the list of `target` for `split` (train / validation / test)."""
    return f"imgList{SPLITS[split]}Regression_{target}.txt"


def image_source(ds_cfg: dict) -> str:
    """Which image archives: `ds_cfg["image_source"]` (validation fills in the schema's default)."""
    source = ds_cfg["image_source"]
    if source not in IMAGE_ZIPS:
        raise ConfigError(f"AADB image_source must be one of {sorted(IMAGE_ZIPS)}, got {source!r}")
    return source


def required_files(ds_cfg: dict) -> list[str]:
    """The label archive plus the image archives of `ds_cfg['image_source']` (default original)."""
    return [LABEL_ZIP, *IMAGE_ZIPS[image_source(ds_cfg)]]


def _stem(archive: str) -> str:
    return archive[:-len(".zip")] if archive.endswith(".zip") else archive


def extract(archives: Path, raw: Path, ds_cfg: dict) -> None:
    """Unzip each required archive into `raw/<archive name without .zip>/` (replacing old ones)."""
    from aesthetic_mtl.data.archives import safe_extract_zip

    archives, raw = Path(archives), Path(raw)
    require_archives(archives, required_files(ds_cfg), "AADB")
    raw.mkdir(parents=True, exist_ok=True)
    for name in required_files(ds_cfg):
        safe_extract_zip(archives / name, replace_dir(raw / _stem(name)))


# ----------------------------------------------------------------------------------------- parsing

def _find_label_files(raw: Path) -> dict[tuple[str, str], Path]:
    """{(split, target): path} of the per-attribute lists under raw/imgListFiles_label (or raw)."""
    root = raw / _stem(LABEL_ZIP)
    root = root if root.is_dir() else raw
    found: dict[tuple[str, str], Path] = {}
    split_of = {v: k for k, v in SPLITS.items()}
    for path in iter_files(root, (".txt",)):
        match = _LIST_RE.match(path.name)
        if not match:
            continue
        key = (split_of[match.group(1)], match.group(2))
        if key in found:
            raise DataError(f"two copies of {path.name} under {root}: {found[key]} and {path}; "
                            f"remove one")
        found[key] = path
    if not found:
        raise DataError(f"no AADB label lists (imgList{{Train,Validation,TestNew}}Regression_*.txt) "
                        f"found under {root}; is {LABEL_ZIP} extracted there?")
    return found


def read_list(path: Path, low: float, high: float) -> dict[str, tuple[float, int]]:
    """One `<file> <value>` list as {file: (value, line number)}; every bad line is reported."""
    entries: dict[str, tuple[float, int]] = {}
    problems = []
    for lineno, line in enumerate(read_text_lines(path), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            problems.append(f"{path.name} line {lineno}: expected '<file> <value>', got {line!r}")
            continue
        name, text = fields
        unsafe = unsafe_name(name)
        if unsafe:
            problems.append(f"{path.name} line {lineno}: {unsafe}")
            continue
        value, why = parse_value(text, low, high)
        if why:
            problems.append(f"{path.name} line {lineno}: {why} (line {line!r})")
            continue
        if name in entries:
            problems.append(f"{path.name} line {lineno}: duplicate image id {name!r} "
                            f"(first listed at line {entries[name][1]})")
            continue
        entries[name] = (value, lineno)
    if problems:
        raise DataError(f"{path}: {len(problems)} bad line(s):{offenders(problems)}")
    if not entries:
        raise DataError(f"{path}: no labels in the file")
    return entries


class _ImageIndex:
    """Image files of one extracted archive folder, by exact name and by `_<name>` suffix."""

    def __init__(self, root: Path):
        self.root = root
        self.exact: dict[str, list[Path]] = {}
        self.suffix: dict[str, list[Path]] = {}
        for path in iter_files(root, IMAGE_SUFFIXES):
            name = path.name
            self.exact.setdefault(name, []).append(path)
            for i, char in enumerate(name):
                if char == "_" and i + 1 < len(name):
                    self.suffix.setdefault(name[i + 1:], []).append(path)


def _image_dirs(raw: Path, ds_cfg: dict, split: str) -> list[Path]:
    """Where a split's images are looked up, its own archive first; all of raw if none extracted."""
    zips = IMAGE_ZIPS[image_source(ds_cfg)]
    if len(zips) == 2 and split == "test":
        zips = [zips[1], zips[0]]
    dirs = [raw / _stem(z) for z in zips if (raw / _stem(z)).is_dir()]
    return dirs or [raw]


def _resolve(name: str, indexes: list[_ImageIndex]) -> tuple[Path | None, str | None]:
    for index in indexes:
        for kind in ("exact", "suffix"):
            hits = getattr(index, kind).get(name, [])
            if len(hits) == 1:
                return hits[0], None
            if len(hits) > 1:
                listed = ", ".join(str(h) for h in hits[:3])
                return None, f"{name!r} matches {len(hits)} files: {listed}"
    return None, None


def parse(raw: Path, ds_cfg: dict, *, on_bad_image: str) -> pd.DataFrame:
    """Tidy labels: image, path, split (train/validation/test), configured attributes (raw scale).

    A listed image without a file stops with a DataError (`on_bad_image="error"`), or keeps its row
    with the path where it was expected (`"skip"`): the image cache then skips and lists it.
    `attrs["unlabelled_images"]`: image files in the archives that no label list names (ignored).
    """
    raw = Path(raw).resolve()
    ranges = attribute_ranges(ds_cfg, sys.modules[__name__])
    files = _find_label_files(raw)
    cache: dict[Path, _ImageIndex] = {}
    missing: dict[str, str] = {}
    used: set[Path] = set()
    frames = []
    for split in SPLITS:
        tables: dict[str, dict[str, tuple[float, int]]] = {}
        for target, (low, high) in ranges.items():
            path = files.get((split, target))
            if path is None:
                have = sorted({t for (s, t) in files if s == split})
                raise DataError(f"AADB: no label file {label_file_name(split, target)} for the "
                                f"configured attribute {target!r} under {raw}; the {split} lists found "
                                f"are for: {', '.join(have) or 'nothing'}")
            tables[target] = read_list(path, low, high)
        first = next(iter(ranges))
        ref = tables[first]
        for target, table in tables.items():
            if table.keys() != ref.keys():
                only_ref = [n for n in ref if n not in table]
                only_this = [n for n in table if n not in ref]
                raise DataError(
                    f"AADB {split}: {files[(split, target)]} and {files[(split, first)]} list "
                    f"different images ({len(only_ref)} only in {label_file_name(split, first)}, "
                    f"{len(only_this)} only in {label_file_name(split, target)}); first few: "
                    f"{(only_ref + only_this)[:5]}")
        dirs = _image_dirs(raw, ds_cfg, split)
        indexes = [cache.setdefault(d, _ImageIndex(d)) for d in dirs]
        paths, problems = [], []
        ref_file = files[(split, first)]
        for name, (_, lineno) in ref.items():
            path, why = _resolve(name, indexes)
            if path is None and why is None and on_bad_image == "skip":
                missing[name] = str(dirs[0] / name)     # no file at all: the image cache lists it
                paths.append(None)
                continue
            if path is None:
                detail = why or f"no image file named {name!r} or ending in '_{name}'"
                problems.append(f"{ref_file.name} line {lineno}: {detail}")
            elif (target := outside_release(path, raw)) is not None:
                problems.append(f"{ref_file.name} line {lineno}: image {name!r} is {path}, which "
                                f"resolves to {target}, outside the release folder {raw}")
            used.add(path)
            paths.append(str(path))
        if problems:
            where = ", ".join(str(d) for d in dirs)
            raise DataError(f"AADB {split}: {len(problems)} image(s) listed in {ref_file} cannot be "
                            f"resolved to exactly one file under {where}:{offenders(problems)}")
        frame = pd.DataFrame({"image": list(ref), "path": paths, "split": split})
        for target, table in tables.items():
            frame[target] = [table[n][0] for n in ref]
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out[list(ranges)] = out[list(ranges)].astype("float64")
    # An image listed in two splits (validation and TestNew) ships once per archive; both files are the
    # same photo, so every row of it points at the first copy and the image cache decodes it once.
    out["path"] = out.groupby("image", sort=False)["path"].transform("first")
    out["path"] = out["path"].fillna(out["image"].map(missing))
    found = {p for index in cache.values() for hits in index.exact.values() for p in hits}
    out.attrs["unlabelled_images"] = len(found - used)
    return out


# ----------------------------------------------------------------------------------------- writing

def format_value(value: float) -> str:
    """The value as written in a list: shortest form up to 6 significant digits (0.2, 0.333333)."""
    text = f"{float(value):.6g}"
    return "0" if text == "-0" else text


def write_label_archive(labels: pd.DataFrame, zip_path: Path) -> None:
    """Write `imgListFiles_label.zip` from a table with image, split and attribute columns.

    One list per split present and per attribute column (every column except image/split/path), lines
    `<image> <value>` in table order, inside the folder `imgListFiles_label/`; fixed zip timestamps.
    """
    missing = {"image", "split"} - set(labels.columns)
    if missing:
        raise DataError(f"write_label_archive: table lacks columns {sorted(missing)}")
    targets = [c for c in labels.columns if c not in ("image", "split", "path")]
    unknown = set(labels["split"]) - set(SPLITS)
    if unknown:
        raise DataError(f"write_label_archive: unknown splits {sorted(unknown)}; use {list(SPLITS)}")
    with deterministic_zip(Path(zip_path)) as add:
        for split in SPLITS:
            part = labels[labels["split"] == split]
            if part.empty:
                continue
            for target in targets:
                text = "".join(f"{img} {format_value(v)}\n"
                               for img, v in zip(part["image"], part[target]))
                add(f"{LABEL_DIR}/{label_file_name(split, target)}", text.encode())
