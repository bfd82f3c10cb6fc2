"""Generic table format: a folder of images plus one CSV / TSV file of labels (your own rated photos).

The table (`table:`, e.g. `labels.csv`) has a header row, one row per image, and these columns:

* `image_column` (default `image`): the image file, a path relative to the image folder
  (`2021/IMG_0042.jpg`); Windows separators are accepted and normalised to `/`;
* one column per configured attribute (the names under `attributes:`, with their raw ranges from the config);
* optionally `split_column` (`train` / `validation` / `test`, case-insensitive, `val` accepted) - then
  `split: {method: official}` uses it; without it the config asks for a seeded random split, as for EVA.

Other columns are ignored (notes, columns you do not train on). The delimiter follows the table's
extension (`.csv`: comma, `.tsv` / `.txt`: tab) unless `delimiter:` says otherwise; fields may be quoted
as in any CSV; a UTF-8 BOM, UTF-16 with a BOM (Excel's "Unicode Text"), CRLF / CR line endings, spaces
around fields and blank lines are harmless. Image names are matched under Unicode normalization (NFC),
so `café.png` typed in the table finds the file macOS stored decomposed.

Where the files come from (`source:`):

* `local` - `path:` names an existing folder holding the images and the table (`table:` relative to it).
  Nothing is copied: `extract` copies the table into `raw/` and links `raw/images` to the folder.
  `obtain_archives` records the table's sha256 and a fingerprint of the image listing (names, sizes,
  modification times) in `archives.sha256.json`; the workflow re-runs from the start when the table changes.
* `official` - `files:` lists the table (by its `table:` name) and one or more `.zip` archives of the
  images, with URLs; the zips are unpacked together into `raw/images/`, so image paths are relative to
  the zips' root.
* `synthetic` - `aesthetic_mtl.data.synthetic` writes the table and `images.zip`, packed as for `official`.

Errors (DataError naming the file, line and value; several offenders are listed): a configured column
missing from the header (the columns found are listed), a repeated header name, a row with the wrong
number of fields, an empty or absolute image path or one that escapes the image folder (`../x.jpg`), an
image listed twice (also in two Unicode forms), UTF-16 without a byte-order mark, an attribute value that is not a number, NaN / inf or outside the configured range, a
split value that is not a split name, images without a file (with `on_bad_image: skip` those keep their
row with the expected path, and the image cache skips and lists them in skipped.tsv). Image files that
no row names are ignored and counted (`attrs["unlabelled_images"]`, said in the parse_labels log).
"""

from __future__ import annotations

import csv
import hashlib
import io
import posixpath
import shutil
import sys
import unicodedata
from pathlib import Path
from typing import Callable

import pandas as pd

from aesthetic_mtl.data.formats import (
    IMAGE_SUFFIXES,
    attribute_ranges,
    iter_files,
    offenders,
    parse_row,
    read_text,
    replace_dir,
    require_archives,
)
from aesthetic_mtl.errors import ConfigError, DataError
from aesthetic_mtl.files import atomic_path

ATTRIBUTES: list[str] = []             # no defaults: the config names every attribute with its range
RANGES: dict[str, tuple[float, float]] = {}

IMAGES = "images"                   # raw/images: the image folder (a link for `source: local`)
SYNTHETIC_ZIP = "images.zip"        # the synthetic generator's image archive
DEFAULT_IMAGE_COLUMN = "image"
DELIMITERS = {".csv": ",", ".tsv": "\t", ".txt": "\t"}
LABEL_NAMES = None                   # any column of the table (the header is checked when it is parsed)
RELEASE_FROM_ATTRIBUTES = True        # a synthetic table is written with one column per configured attribute
SPLIT_NAMES = {"train": "train", "validation": "validation", "val": "validation", "test": "test"}


# ----------------------------------------------------------------------------------------- config

def table_name(ds_cfg: dict) -> str:
    """The configured table file (`table:`); a plain file name unless the source is a local folder."""
    name = ds_cfg.get("table")
    if not name:
        raise ConfigError("format 'table' needs 'table:' (the CSV/TSV file of labels)")
    if ds_cfg.get("source") != "local" and (Path(name).name != name or name in (".", "..")):
        raise ConfigError(f"table {name!r}: for source {ds_cfg.get('source')!r} the table is a release "
                          f"file and must be a plain file name (no folder)")
    return name


def delimiter(ds_cfg: dict) -> str:
    """The field delimiter: `delimiter:` if given, else from the table's extension."""
    if ds_cfg.get("delimiter"):
        return ds_cfg["delimiter"]
    suffix = Path(table_name(ds_cfg)).suffix.lower()
    if suffix not in DELIMITERS:
        raise ConfigError(f"table {table_name(ds_cfg)!r}: cannot tell the delimiter from the extension "
                          f"{suffix or '(none)'!r}; name it .csv or .tsv, or set 'delimiter:'")
    return DELIMITERS[suffix]


def image_zips(ds_cfg: dict) -> list[str]:
    """The image archives of a downloaded / synthetic release (config order)."""
    if ds_cfg.get("source") == "synthetic":
        return [SYNTHETIC_ZIP]
    table = table_name(ds_cfg)
    others = [name for name in (ds_cfg.get("files") or {}) if name != table]
    not_zip = [name for name in others if not name.lower().endswith(".zip")]
    if not_zip:
        raise ConfigError(f"files {not_zip}: a table dataset's files are its table {table!r} and "
                          f".zip archives of the images")
    if not others:
        raise ConfigError(f"files: list the table {table!r} and at least one .zip of the images")
    return others


def required_files(ds_cfg: dict) -> list[str]:
    """The table and the image zips; nothing for a local folder (it is read in place)."""
    if ds_cfg.get("source") == "local":
        return []
    return [table_name(ds_cfg), *image_zips(ds_cfg)]


def local_folder(ds_cfg: dict) -> Path:
    """The absolute folder of a `source: local` dataset, which must exist."""
    if not ds_cfg.get("path"):
        raise ConfigError("source 'local' needs 'path:' (the folder of images and the table)")
    folder = Path(ds_cfg["path"]).expanduser().absolute()
    if not folder.is_dir():
        raise DataError(f"local dataset folder {folder} does not exist (datasets.<name>.path)")
    return folder


def local_table(ds_cfg: dict) -> Path:
    """The table file of a `source: local` dataset (which must be inside its folder)."""
    folder = local_folder(ds_cfg)
    path = inside(folder, table_name(ds_cfg))
    if path is None:
        raise ConfigError(f"table {ds_cfg['table']!r} must be a path inside the folder {folder}")
    if not path.is_file():
        raise DataError(f"{path}: the label table of the local dataset does not exist")
    return path


def local_fingerprint(ds_cfg: dict, *, log: Callable = print) -> dict[str, str]:
    """What `archives.sha256.json` records for a local folder: the table's sha256 and an image-listing digest.

    Hashing every photo could take long on a big collection; names, sizes and modification times
    identify a changed folder well enough and cost one directory walk.
    """
    from aesthetic_mtl.data.download import sha256_file

    folder, table = local_folder(ds_cfg), local_table(ds_cfg)
    listing = hashlib.sha256()
    count = 0
    for path in iter_files(folder, IMAGE_SUFFIXES):
        stat = path.stat()
        listing.update(f"{path.relative_to(folder).as_posix()}\t{stat.st_size}\t{stat.st_mtime_ns}\n"
                       .encode())
        count += 1
    log(f"local folder {folder}: table {table.name}, {count} image file(s); read in place, not copied")
    return {table.name: sha256_file(table), "images_listing": listing.hexdigest()}


# ----------------------------------------------------------------------------------------- extract

def extract(archives: Path, raw: Path, ds_cfg: dict) -> None:
    """`raw/<table>` plus `raw/images/`: unzipped archives, or a link to a local folder."""
    archives, raw = Path(archives), Path(raw)
    raw.mkdir(parents=True, exist_ok=True)
    if ds_cfg.get("source") == "local":
        table, images = local_table(ds_cfg), local_folder(ds_cfg)
    else:
        from aesthetic_mtl.data.archives import safe_extract_zip

        require_archives(archives, required_files(ds_cfg), "table dataset")
        table, images = archives / table_name(ds_cfg), None
        dest = replace_dir(raw / IMAGES)
        for name in image_zips(ds_cfg):
            safe_extract_zip(archives / name, dest)
    with atomic_path(raw / table.name) as tmp:
        shutil.copyfile(table, tmp)
    if images is not None:
        replace_dir(raw / IMAGES).symlink_to(images, target_is_directory=True)


# ----------------------------------------------------------------------------------------- parsing

def relative_name(name: str) -> str | None:
    """`name` as a normalised relative POSIX path, or None when it would leave its folder.

    Purely lexical (absolute paths, drive letters and `..` that climb out are refused), so a folder
    whose photos are symbolic links into another disk still works. Windows separators become `/`.
    """
    text = name.replace("\\", "/").strip()
    if not text or text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        return None
    norm = posixpath.normpath(text)
    if norm in (".", "..") or norm.startswith("../"):
        return None
    return norm


def inside(folder: Path, name: str) -> Path | None:
    """`folder / name` when `name` stays inside `folder`, else None (see `relative_name`)."""
    rel = relative_name(name)
    return None if rel is None else Path(folder) / rel


def _read_rows(path: Path, delim: str, shown: Path) -> list[tuple[int, list[str]]]:
    """(line number, stripped fields) of every non-blank row (encodings: `datasets.read_text`)."""
    text = read_text(path, shown)
    reader = csv.reader(io.StringIO(text), delimiter=delim, skipinitialspace=True)
    rows, start = [], 1
    try:
        for fields in reader:
            if any(f.strip() for f in fields):
                rows.append((start, [f.strip() for f in fields]))
            start = reader.line_num + 1
    except csv.Error as err:
        raise DataError(f"{shown} line {reader.line_num}: unreadable CSV ({err})") from err
    return rows


def _columns(path: Path, lineno: int, header: list[str], needed: dict[str, str]) -> dict[str, int]:
    """Positions of the needed columns ({column: config key}); missing or repeated -> DataError."""
    dup = sorted({c for c in header if c and header.count(c) > 1})
    if dup:
        raise DataError(f"{path} line {lineno}: the header repeats column(s) {dup}")
    missing = [f"{col!r} ({key})" for col, key in needed.items() if col not in header]
    if missing:
        raise DataError(f"{path} line {lineno}: no column {', '.join(missing)} in the header; its "
                        f"columns are: {', '.join(repr(c) for c in header)}")
    return {col: header.index(col) for col in needed}


def _display(raw: Path, ds_cfg: dict) -> Path:
    """The table as the user knows it: their own file for a local folder, else the extracted copy."""
    if ds_cfg.get("source") == "local" and ds_cfg.get("path"):
        return Path(ds_cfg["path"]).expanduser().absolute() / table_name(ds_cfg)
    return raw / Path(table_name(ds_cfg)).name


def read_table(path: Path, ds_cfg: dict, shown: Path | None = None) -> pd.DataFrame:
    """The table's rows as image (normalised relative path), line, split, attributes; all checked.

    `shown` is the file name used in messages (the user's own table for a local folder).
    """
    shown = shown or path
    ranges = attribute_ranges(ds_cfg, sys.modules[__name__])
    image_col = ds_cfg.get("image_column") or DEFAULT_IMAGE_COLUMN
    split_col = ds_cfg.get("split_column")
    rows = _read_rows(path, delimiter(ds_cfg), shown)
    if not rows:
        raise DataError(f"{shown}: empty file, expected a header with the column {image_col!r}")
    header_line, header = rows[0]
    needed = {image_col: "image_column"} | ({split_col: "split_column"} if split_col else {})
    needed |= {t: "attributes" for t in ranges}
    cols = _columns(shown, header_line, header, needed)
    records: list[dict] = []
    first_seen: dict[str, int] = {}
    problems = []
    for lineno, fields in rows[1:]:
        where = f"{shown.name} line {lineno}"
        if len(fields) != len(header):
            problems.append(f"{where}: expected {len(header)} fields as in the header, got "
                            f"{len(fields)}: {fields!r}")
            continue
        name = fields[cols[image_col]]
        rel = relative_name(name)
        if rel is None:
            why = "empty image path" if not name else "escapes the image folder"
            problems.append(f"{where}: column {image_col!r}: {why}: {name!r}")
            continue
        key = unicodedata.normalize("NFC", rel)      # 'café' typed and 'café' pasted from a Mac: one photo
        if key in first_seen:
            problems.append(f"{where}: image {name!r} listed twice (first at line {first_seen[key]})")
            continue
        split = ""
        if split_col:
            split = SPLIT_NAMES.get(fields[cols[split_col]].lower(), "")
            if not split:
                problems.append(f"{where}: column {split_col!r}: {fields[cols[split_col]]!r} is not a "
                                f"split (train, validation or val, test)")
                continue
        row, problem = parse_row(fields, cols, ranges, where)
        if problem:
            problems.append(problem)
            continue
        first_seen[key] = lineno
        records.append({"image": rel, "line": lineno, "split": split, **row})
    if problems:
        raise DataError(f"{shown}: {len(problems)} bad row(s):{offenders(problems)}")
    if not records:
        raise DataError(f"{shown}: no rows after the header")
    return pd.DataFrame(records, columns=["image", "line", "split", *ranges])


def on_disk(folder: Path, names: list[str]) -> list[str]:
    """Each name as the file is named under `folder`: itself when that file exists, else the one file whose
    name is equal under Unicode normalization (NFC), else itself (missing).

    macOS stores `café.png` decomposed (`e` + U+0301, NFD), a CSV typed anywhere has it composed; Linux
    compares bytes, so the file would be "missing" while `ls` shows it. The folder is listed only when a
    name is not found as written.
    """
    index: dict[str, list[str]] | None = None
    out = []
    for name in names:
        if not (folder / name).is_file():
            if index is None:
                index = {}
                for path in iter_files(folder):
                    rel = path.relative_to(folder).as_posix()
                    index.setdefault(unicodedata.normalize("NFC", rel), []).append(rel)
            matches = index.get(unicodedata.normalize("NFC", name), [])
            name = matches[0] if len(matches) == 1 else name
        out.append(name)
    return out


def parse(raw: Path, ds_cfg: dict, *, on_bad_image: str) -> pd.DataFrame:
    """Tidy labels: image (relative path), path, split ("" without a split column), attributes (raw).

    A row whose image file does not exist stops with a DataError (`on_bad_image="error"`) or keeps its
    row with the expected path (`"skip"`): the image cache then skips and lists it.
    """
    raw = Path(raw).absolute()
    path = raw / Path(table_name(ds_cfg)).name
    if not path.is_file():
        raise DataError(f"{path}: no label table; is the dataset extracted into {raw}?")
    shown = _display(raw, ds_cfg)
    table = read_table(path, ds_cfg, shown)
    folder = raw / IMAGES
    found = on_disk(folder, table["image"].tolist())
    paths = [folder / rel for rel in found]
    missing = [(rel, line) for rel, line, p in zip(table["image"], table["line"], paths)
               if not p.is_file()]
    if missing and on_bad_image != "skip":
        where = Path(ds_cfg["path"]).expanduser().absolute() if ds_cfg.get("source") == "local" \
            else folder
        problems = [f"{shown.name} line {line}: no file {rel!r}" for rel, line in missing]
        raise DataError(f"{shown}: {len(missing)} image(s) have no file under {where}:"
                        f"{offenders(problems)}")
    out = table.drop(columns="line")
    out.insert(1, "path", [str(p) for p in paths])
    named = set(found)
    root = folder.resolve()
    files = {p.relative_to(root).as_posix() for p in iter_files(root, IMAGE_SUFFIXES)}
    out.attrs["unlabelled_images"] = len(files - named)
    return out


# ----------------------------------------------------------------------------------------- writing

def _format(value) -> str:
    if isinstance(value, float):
        text = f"{value:.6g}"
        return "0" if text == "-0" else text
    return str(value)


def write_table(table: pd.DataFrame, path: Path, delim: str = ",") -> None:
    """Write a label table (header + one row per image, CSV quoting where needed) atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delim, lineterminator="\n")
    writer.writerow(list(table.columns))
    for row in table.astype(object).itertuples(index=False):
        writer.writerow([_format(v) for v in row])
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(buf.getvalue())
