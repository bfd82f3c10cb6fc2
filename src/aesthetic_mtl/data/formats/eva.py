"""EVA release format (Kang, Valenzise & Dufaux 2020, github kang-gnak/eva-dataset).

Files:

* `votes_filtered.csv` - `=`-delimited, one row per vote, header
  `image_id=user_id=score=difficulty=visual=composition=quality=semantic=vote_time=1=2=3=4`:
  score 0-10 (integer), difficulty and the four attributes 1-4 (very bad .. very good), vote_time
  a string, then four 0/1 check boxes (which attribute mattered most).
* `EVA_together.zip.001` ... `.007` - one zip split in raw pieces: concatenated (`join_parts`) and
  unzipped; images are `<image_id>.jpg` (the release has more images than voted ones; unvoted images
  are ignored).

`parse` aggregates each image's votes by their mean (attributes: the configured ones among score,
visual, composition, quality, semantic - any numeric column of the file, e.g. difficulty, works) in
the order images first appear in the file. EVA has no official split: `split` is "".

Parts: for `source: official` the parts are the `files:` keys matching `EVA_together.zip.NNN`
(7 in the release; 7 assumed if the config lists none). For `source: synthetic` the generator's
`parts` parameter (`synthetic: {parts: N}`, default 3) decides how many pieces are written and needed.

Harmless variants that are normalised: CRLF / CR line endings, a UTF-8 BOM, spaces or tabs around
fields, blank lines. Errors (DataError naming the file, line and text): a header that is not
`=`-delimited or lacks a needed column, a row with the wrong number of fields, a non-numeric, NaN or
out-of-range vote, voted images without an image file (first few listed; with `on_bad_image: skip`
they are kept with their expected path instead, and the image cache skips and lists them in
skipped.tsv), an image_id that is absolute or contains `..` (in every policy: ids are data, not
paths), an image file that resolves (symbolic links followed) outside the extracted folder. Several rows of one image_id are its votes (by design, not duplicates). Image files
nobody voted on are ignored and counted (`attrs["unlabelled_images"]`, said in the parse_labels log).
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pandas as pd

from aesthetic_mtl.data.formats import (
    IMAGE_SUFFIXES,
    attribute_ranges,
    iter_files,
    offenders,
    outside_release,
    parse_row,
    read_text_lines,
    replace_dir,
    require_archives,
    unsafe_name,
)
from aesthetic_mtl.errors import DataError
from aesthetic_mtl.files import atomic_path

ATTRIBUTES = ["score", "visual", "composition", "quality", "semantic"]
RANGES = {"score": (0.0, 10.0), "visual": (1.0, 4.0), "composition": (1.0, 4.0),
          "quality": (1.0, 4.0), "semantic": (1.0, 4.0)}

VOTES = "votes_filtered.csv"
DELIMITER = "="
COLUMNS = ["image_id", "user_id", "score", "difficulty", "visual", "composition", "quality",
           "semantic", "vote_time", "1", "2", "3", "4"]
LABEL_NAMES = tuple(c for c in COLUMNS if c not in ("image_id", "user_id", "vote_time"))
RELEASE_FROM_ATTRIBUTES = False        # the release is fixed; attributes pick among its columns
"""The numeric columns of the votes, each usable as an attribute; anything else stops the config check."""
ZIP_STEM = "EVA_together"
OFFICIAL_PARTS = 7
DEFAULT_SYNTHETIC_PARTS = 3
_PART_RE = re.compile(rf"^{ZIP_STEM}\.zip\.(\d{{3}})$")


def part_name(i: int) -> str:
    """Name of part `i` (1-based) of the split image archive."""
    return f"{ZIP_STEM}.zip.{i:03d}"


def part_names(ds_cfg: dict) -> list[str]:
    """The split-zip parts this config needs (see the module docstring)."""
    if ds_cfg.get("source") == "synthetic":
        n = int((ds_cfg.get("synthetic") or {}).get("parts", DEFAULT_SYNTHETIC_PARTS))
        return [part_name(i) for i in range(1, n + 1)]
    listed = sorted((k for k in (ds_cfg.get("files") or {}) if _PART_RE.match(k)),
                    key=lambda k: int(_PART_RE.match(k).group(1)))
    return listed or [part_name(i) for i in range(1, OFFICIAL_PARTS + 1)]


def required_files(ds_cfg: dict) -> list[str]:
    """The votes table and the parts of the image zip."""
    return [VOTES, *part_names(ds_cfg)]


def extract(archives: Path, raw: Path, ds_cfg: dict) -> None:
    """Copy the votes to `raw/`, join the parts and unzip them into `raw/EVA_together/`."""
    from aesthetic_mtl.data.archives import join_parts, safe_extract_zip

    archives, raw = Path(archives), Path(raw)
    require_archives(archives, required_files(ds_cfg), "EVA")
    raw.mkdir(parents=True, exist_ok=True)
    with atomic_path(raw / VOTES) as tmp:
        shutil.copyfile(archives / VOTES, tmp)
    joined = raw / f".{ZIP_STEM}.zip"
    try:
        join_parts([archives / n for n in part_names(ds_cfg)], joined)
        safe_extract_zip(joined, replace_dir(raw / ZIP_STEM))
    finally:
        joined.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------- parsing

def _find_votes(raw: Path) -> Path:
    path = raw / VOTES
    if path.is_file():
        return path
    hits = [p for p in iter_files(raw) if p.name == VOTES]
    if len(hits) == 1:
        return hits[0]
    raise DataError(f"EVA: {'several' if hits else 'no'} {VOTES} under {raw}"
                    + (f": {', '.join(map(str, hits[:3]))}" if hits else ""))


def _header(path: Path, lines: list[str], needed: list[str]) -> dict[str, int]:
    """Column positions from the header line; wrong delimiter or missing columns -> DataError."""
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise DataError(f"{path}: empty file, expected the header {DELIMITER.join(COLUMNS)!r}")
    header = lines[first]
    names = [c.strip() for c in header.split(DELIMITER)]
    if len(names) < 2:
        guess = next((d for d in (",", ";", "\t", "|") if d in header), None)
        hint = f" (it looks {guess!r}-delimited)" if guess else ""
        raise DataError(f"{path} line {first + 1}: header {header!r} is not "
                        f"'{DELIMITER}'-delimited{hint}; expected {DELIMITER.join(COLUMNS)!r}")
    missing = [c for c in needed if c not in names]
    if missing:
        raise DataError(f"{path} line {first + 1}: header {header!r} lacks the column(s) "
                        f"{', '.join(missing)}; expected {DELIMITER.join(COLUMNS)!r}")
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise DataError(f"{path} line {first + 1}: header {header!r} repeats column(s) {dup}")
    return {name: i for i, name in enumerate(names)} | {"__line__": first}


def read_votes(path: Path, ranges: dict[str, tuple[float, float]]) -> pd.DataFrame:
    """The votes of the configured attributes: columns image_id, line, then one float per attribute."""
    lines = read_text_lines(path)
    cols = _header(path, lines, ["image_id", *ranges])
    width = len(cols) - 1
    first = cols["__line__"]
    records: list[dict] = []
    problems = []
    for i in range(first + 1, len(lines)):
        line, lineno = lines[i], i + 1
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(DELIMITER)]
        if len(fields) != width:
            problems.append(f"{path.name} line {lineno}: expected {width} '{DELIMITER}'-separated "
                            f"fields, got {len(fields)}: {line!r}")
            continue
        image = fields[cols["image_id"]]
        if not image:
            problems.append(f"{path.name} line {lineno}: empty image_id: {line!r}")
            continue
        unsafe = unsafe_name(image)
        if unsafe:
            problems.append(f"{path.name} line {lineno}: column 'image_id': {unsafe}")
            continue
        row, problem = parse_row(fields, cols, ranges, f"{path.name} line {lineno}")
        if problem:
            problems.append(problem)
            continue
        records.append({"image_id": image, "line": lineno, **row})
    if problems:
        raise DataError(f"{path}: {len(problems)} bad line(s):{offenders(problems)}")
    if not records:
        raise DataError(f"{path}: no votes after the header")
    return pd.DataFrame(records, columns=["image_id", "line", *ranges])


def _image_index(raw: Path) -> dict[str, Path]:
    """{image id: file} for images anywhere under raw (first in sorted order; .jpg preferred)."""
    index: dict[str, Path] = {}
    for path in iter_files(raw, IMAGE_SUFFIXES):
        stem = path.stem
        if stem not in index or (index[stem].suffix.lower() != ".jpg"
                                 and path.suffix.lower() == ".jpg"):
            index[stem] = path
    return index


def parse(raw: Path, ds_cfg: dict, *, on_bad_image: str) -> pd.DataFrame:
    """Per-image vote means: image, path, split (""), configured attributes (raw scale).

    A voted image without a file stops with a DataError (`on_bad_image="error"`), or keeps its row
    with the path where it was expected (`"skip"`): the image cache then skips and lists it.
    `attrs["unlabelled_images"]`: image files nobody voted on (ignored, as the release intends).
    """
    raw = Path(raw).resolve()
    ranges = attribute_ranges(ds_cfg, sys.modules[__name__])
    path = _find_votes(raw)
    votes = read_votes(path, ranges)
    grouped = votes.groupby("image_id", sort=False)
    means = grouped[list(ranges)].mean()
    first_line = grouped["line"].min()
    index = _image_index(raw)
    missing = [img for img in means.index if img not in index]
    if missing and on_bad_image == "skip":
        index = index | {img: raw / ZIP_STEM / f"{img}.jpg" for img in missing}   # listed by the cache
    elif missing:
        problems = [f"image_id {img!r} (first vote at {path.name} line {first_line[img]}): no file "
                    f"{img}.jpg" for img in missing]
        raise DataError(f"EVA: {len(missing)} voted image(s) have no image file under "
                        f"{raw}:{offenders(problems)}")
    escaped = [f"image_id {img!r} (first vote at {path.name} line {first_line[img]}): {index[img]} "
               f"resolves to {target}, outside the release folder {raw}"
               for img in means.index if (target := outside_release(index[img], raw)) is not None]
    if escaped:
        raise DataError(f"EVA: {len(escaped)} image file(s) lie outside {raw} once symbolic links are "
                        f"resolved:{offenders(escaped)}")
    out = pd.DataFrame({"image": means.index.astype(str),
                        "path": [str(index[i]) for i in means.index], "split": ""})
    for target in ranges:
        out[target] = means[target].to_numpy(dtype="float64")
    out = out.reset_index(drop=True)
    out.attrs["unlabelled_images"] = len(set(index) - set(means.index))
    return out


# ----------------------------------------------------------------------------------------- writing

def _format(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def write_votes(votes: pd.DataFrame, csv_path: Path) -> None:
    """Write `votes_filtered.csv` ('='-delimited, release header) from a table with `COLUMNS`."""
    missing = [c for c in COLUMNS if c not in votes.columns]
    if missing:
        raise DataError(f"write_votes: table lacks columns {missing}")
    rows = [DELIMITER.join(COLUMNS)]
    table = votes[COLUMNS].astype(object).to_numpy()
    rows.extend(DELIMITER.join(_format(v) for v in row) for row in table)
    with atomic_path(csv_path) as tmp:
        tmp.write_text("\n".join(rows) + "\n")
