"""Release formats: one module per dataset release, looked up by the config's `format:` key.

Every format module exposes the same small interface:

* `ATTRIBUTES` - the release's attribute names in their default order, `RANGES` - their raw ranges;
  `LABEL_NAMES` - every name the release can provide as an attribute (the config check refuses others;
  None: any column, checked when the table is parsed); `RELEASE_FROM_ATTRIBUTES` - whether the configured
  attributes shape the release files (the synthetic table's columns), so that the workflow re-makes them
  when the attributes change;
* `required_files(ds_cfg) -> list[str]` - archive names needed for this dataset config;
* `extract(archives, raw, ds_cfg)` - unpack the archives into `raw`;
* `parse(raw, ds_cfg, *, on_bad_image) -> DataFrame` - columns `image`, `path`, `split`,
  then the configured attributes (raw scale, config order); malformed input raises `DataError` naming
  the file, line and text. A labelled image without a file is such an error, unless
  `on_bad_image="skip"`: then its row stays, with the path where the file was expected, and the image
  cache skips it and lists it in skipped.tsv like any bad image. `attrs["unlabelled_images"]` counts
  the image files no label names (ignored);
* a writer used by `aesthetic_mtl.data.synthetic` to emit the official files (AADB
  `write_label_archive`, EVA `write_votes`, table `write_table`), so that write -> extract -> parse
  round-trips.

The helpers below are shared by the format modules: deterministic zip writing (fixed timestamps and
permissions, so a seeded synthetic release is byte-identical on every run), recursive file indexing
that ignores macOS resource forks, the "first few offenders" error formatting, and the two checks
that keep a release's label names inside the release: `unsafe_name` (a name is data, not a path:
no `..`, no absolute path, no drive letter) and `outside_release` (every image path, after symbolic
links are resolved, lies inside the extracted folder). Both apply whatever `on_bad_image` says, so
the policy only changes what is reported, never which files are read.
"""

from __future__ import annotations

import codecs
import contextlib
import importlib
import math
import os
import re
import shutil
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterator, Sequence

from aesthetic_mtl.errors import ConfigError, DataError
from aesthetic_mtl.files import atomic_path

FORMATS = ("aadb", "eva", "table")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)   # the earliest date a zip can hold: fixed, so bytes are reproducible
MAX_LISTED = 5                      # offenders listed in an error message
_SEPARATORS = re.compile(r"[/\\]")   # both, whatever the platform: a release may come from Windows
_DRIVE = re.compile(r"^[A-Za-z]:")


def get_format(name: str) -> ModuleType:
    """The module implementing release format `name` (`aadb`, `eva`, `table`: your own CSV/TSV)."""
    if name not in FORMATS:
        raise ConfigError(f"unknown dataset format {name!r}; known formats: {', '.join(FORMATS)}")
    return importlib.import_module(f"{__name__}.{name}")


def require_archives(archives: Path, names: Sequence[str], release: str) -> None:
    """Stop before extracting anything when a release file is absent, naming every missing one."""
    missing = [n for n in names if not (Path(archives) / n).is_file()]
    if missing:
        raise DataError(f"{release} archives missing in {archives}: {', '.join(missing)}")


def attribute_ranges(ds_cfg: dict, module: ModuleType) -> dict[str, tuple[float, float]]:
    """Configured attributes (config order) with their declared ranges; the module's defaults if none."""
    configured = ds_cfg.get("attributes") or {t: module.RANGES[t] for t in module.ATTRIBUTES}
    out = {}
    for name, rng in configured.items():
        if rng is None:
            rng = module.RANGES.get(name)
        if rng is None or len(rng) != 2 or not float(rng[0]) < float(rng[1]):
            raise ConfigError(f"attribute {name!r}: range must be [low, high] with low < high, "
                              f"got {rng!r}")
        out[str(name)] = (float(rng[0]), float(rng[1]))
    return out


def offenders(problems: Sequence[str], limit: int = MAX_LISTED) -> str:
    """'first few' listing of problems for an error message."""
    shown = "\n  ".join(problems[:limit])
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"\n  {shown}{more}"


def parse_value(text: str, low: float, high: float) -> tuple[float | None, str | None]:
    """A number from `text` checked against [low, high]; (value, None) or (None, reason)."""
    try:
        value = float(text)
    except ValueError:
        return None, f"not a number: {text!r}"
    if math.isnan(value):
        return None, f"NaN value: {text!r}"
    if math.isinf(value):
        return None, f"infinite value: {text!r}"
    tol = 1e-6 * (high - low)
    if value < low - tol or value > high + tol:
        return None, f"value {text!r} outside the declared range [{low:g}, {high:g}]"
    return value, None


def parse_row(fields: Sequence[str], columns: dict[str, int], ranges: dict[str, tuple[float, float]],
              where: str) -> tuple[dict[str, float] | None, str | None]:
    """Every attribute of one delimited line, checked against its range: (values, None), or (None, the first
    problem, naming `where` and the column)."""
    row = {}
    for target, (low, high) in ranges.items():
        value, why = parse_value(fields[columns[target]], low, high)
        if why:
            return None, f"{where}: column {target!r}: {why}"
        row[target] = value
    return row, None


def unsafe_name(name: str) -> str | None:
    """Why a label's image name could reach outside the release folder, or None when it cannot.

    A release's image names are data: `photo.jpg`, or `sub/photo.jpg` inside the folder. An absolute
    path, a drive letter, a `..` component (with / or \\ as separator) or a NUL byte would make the
    label pick a file anywhere on the machine, so such a name is an error in every on_bad_image policy.
    """
    if not name:
        return "empty image name"
    if "\0" in name:
        return f"image name {name!r} contains a NUL byte"
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return f"image name {name!r} is an absolute path, not a name inside the release"
    if ".." in _SEPARATORS.split(name):
        return f"image name {name!r} contains '..', which leaves the release folder"
    return None


def outside_release(path: str | os.PathLike, root: Path) -> Path | None:
    """The resolved target of `path` when it lies outside `root` (symbolic links followed), else None.

    `root` is the extracted release folder; `path` need not exist (a missing image under
    on_bad_image: skip), in which case the part that exists is resolved.
    """
    target = Path(path).resolve()
    base = Path(root).resolve()
    return None if target == base or base in target.parents else target


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),   # before UTF-16: FF FE 00 00
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"), (codecs.BOM_UTF8, "utf-8-sig"))


def read_text(path: Path, shown: Path | None = None) -> str:
    """A label file's text with LF endings, in the encodings people's tools write.

    UTF-8 (a BOM is dropped; Latin-1 as fallback), or UTF-16 / UTF-32 with a byte-order mark (Excel's
    "Unicode Text" export is UTF-16 LE with one). UTF-16 without a mark (a quarter of its bytes NUL) is
    refused, naming `shown` (default `path`) and how to convert it, instead of read as a header of garbage.
    """
    data = Path(path).read_bytes()
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), None)
    if encoding is None:
        _refuse_unmarked_utf16(data[:4096], shown or path)
    try:
        text = data.decode(encoding or "utf-8-sig")
    except UnicodeDecodeError:
        if encoding not in (None, "utf-8-sig"):
            raise DataError(f"{shown or path}: not valid {encoding.upper()} text although it starts with "
                            f"that byte-order mark; save it again as CSV UTF-8") from None
        text = data.decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _refuse_unmarked_utf16(sample: bytes, shown: Path) -> None:
    """UTF-16 without a byte-order mark: NUL bytes in the odd (LE) or even (BE) places of ASCII text."""
    if sample.count(0) * 4 < len(sample) or not sample:
        return
    order = "LE" if sample[1::2].count(0) >= sample[0::2].count(0) else "BE"
    raise DataError(f"{shown}: looks like UTF-16 {order} text without a byte-order mark, which is not read "
                    f"by guessing: save it again as CSV UTF-8 (Excel: Save As > CSV UTF-8), or convert it: "
                    f"iconv -f UTF-16{order} -t UTF-8 {Path(shown).name} > {Path(shown).stem}.csv")


def read_text_lines(path: Path) -> list[str]:
    """Lines of a text file (`read_text`: UTF-8, Latin-1, UTF-16 with a BOM; CR/CRLF/LF endings)."""
    lines = read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def is_junk(path: Path) -> bool:
    """macOS resource forks and metadata folders that zips made on a Mac carry."""
    return path.name.startswith("._") or "__MACOSX" in path.parts or path.name == ".DS_Store"


def iter_files(root: Path, suffixes: Sequence[str] | None = None) -> Iterator[Path]:
    """Files under `root`, recursively and sorted (deterministic), without macOS junk."""
    root = Path(root)
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if is_junk(rel) or not path.is_file():
            continue
        if suffixes is not None and path.suffix.lower() not in suffixes:
            continue
        yield path


@contextlib.contextmanager
def deterministic_zip(path: Path) -> Iterator[Callable[[str, bytes, bool], None]]:
    """Write a zip atomically with fixed timestamps/permissions; yields `add(name, data, compress)`."""
    with atomic_path(path, suffix=".zip") as tmp:
        with zipfile.ZipFile(tmp, "w") as zf:
            def add(name: str, data: bytes, compress: bool = True) -> None:
                info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
                info.create_system = 3                 # unix, whatever the writing platform
                info.external_attr = 0o644 << 16
                zf.writestr(info, data, compresslevel=6 if compress else None)
            yield add


def replace_dir(path: Path) -> Path:
    """Remove a previous extraction at `path` so stale files cannot survive a re-extraction."""

    path = Path(path)
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
    return path
