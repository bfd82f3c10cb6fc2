"""What `aesthetic-mtl predict` scores and where it may write.

In a folder, a photo is a file with a photo suffix or any file Pillow can open (a `.gif`, a browser's
`.jfif`, `IMG_0001` without a suffix); linked folders (photos on another disk) are searched, each real
folder once; every other file is counted by reason, so the command can end by saying what it left out.
The scores go to a file that is never one of the photos, nor any existing file but an earlier scores table.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

from PIL import Image, UnidentifiedImageError

from aesthetic_mtl.data.formats import is_junk
from aesthetic_mtl.errors import DataError

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".gif", ".webp", ".bmp", ".dib",
                            ".tif", ".tiff", ".heic", ".heif", ".avif", ".jp2", ".j2k", ".tga", ".ppm", ".pgm",
                            ".pbm", ".pnm", ".psd", ".qoi"})
"""Files with these suffixes found in a folder are photos even when Pillow cannot read them (then they are
named as unreadable); any other file is a photo when Pillow can open it (`IMG_0001`, `x.jpg_large`)."""

NOT_SCORED = {  # reason -> how the closing count names it
    "unreadable": "unreadable image (named above)",
    "not an image": "not an image (Pillow cannot open it)",
    "macOS metadata": "macOS metadata file (._*, .DS_Store)",
    "broken link": "broken symbolic link",
    "not a file": "not a regular file (a device or pipe)",
    "unreadable folder": "folder that could not be listed",
}


def collect_images(inputs: Iterable[str | os.PathLike], skipped: Counter | None = None) -> list[Path]:
    """Files given directly (any suffix), plus the photos found recursively in folders, sorted per folder.

    In folders a photo is what `_not_a_photo` accepts (a photo suffix, or a file Pillow opens); linked folders
    (photos on another disk) are searched, each real folder once, so a link back up is no loop. Every file
    of a folder that is not collected is counted in `skipped` by reason (`NOT_SCORED`). A file given
    twice, found twice, or reached under two spellings (`dir/../dir/x.jpg`, a folder, a symbolic link) is
    scored once, under the first spelling: paths are compared after resolving.
    """
    skipped = Counter() if skipped is None else skipped
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += _photos_in(path, skipped)
        elif path.exists():
            found.append(path)
        else:
            why = "a broken symbolic link" if path.is_symlink() else "no such file or folder"
            raise DataError(f"{path}: {why}")
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _photos_in(folder: Path, skipped: Counter) -> list[Path]:
    """The photos under `folder`, sorted; every other file counted in `skipped` by reason."""
    photos = []
    for path in _walk(folder, skipped):
        reason = _not_a_photo(path, folder)
        if reason:
            skipped[reason] += 1
        else:
            photos.append(path)
    return sorted(photos)


def _walk(folder: Path, skipped: Counter) -> Iterator[Path]:
    """Every file under `folder`, following linked folders, each real folder (device, inode) once."""
    seen: set[tuple[int, int]] = set()

    def unlisted(err: OSError) -> None:
        skipped["unreadable folder"] += 1

    for root, dirs, files in os.walk(folder, followlinks=True, onerror=unlisted):
        st = os.stat(root)
        if (st.st_dev, st.st_ino) in seen:
            dirs.clear()
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort()
        yield from (Path(root) / name for name in files)


def _not_a_photo(path: Path, folder: Path) -> str | None:
    """Why a file found in a folder is not scored (a `NOT_SCORED` key), or None for a photo."""

    if is_junk(path.relative_to(folder)):
        return "macOS metadata"
    if not path.exists():
        return "broken link"
    if not path.is_file():
        return "not a file"
    return None if path.suffix.lower() in PHOTO_SUFFIXES or _pillow_opens(path) else "not an image"


def _pillow_opens(path: Path) -> bool:
    """Whether Pillow recognises the file as an image from its header (nothing is decoded)."""


    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")             # a bomb warning: an image all the same
            with Image.open(path):
                return True
    except UnidentifiedImageError:
        return False
    except Exception:  # noqa: BLE001 - a bomb, an unreadable header: an image that scoring will name
        return True


def not_scored_line(skipped: Counter) -> str:
    """The closing count of every file not scored, by reason: `not scored: N file(s): ...`."""
    parts = [f"{skipped[key]} {NOT_SCORED[key]}" for key in NOT_SCORED if skipped[key]]
    return f"not scored: {sum(skipped.values())} file(s): {', '.join(parts)}"


def check_out(out: Path, photos: list[Path], force: bool) -> None:
    """Refuse (DataError, one line) an `--out` that would replace a photo, a file predict did not write, or,
    without `force`, an earlier scores table. A shell glob easily puts the output among the inputs."""
    same = next((p for p in photos if _same_file(p, out)), None)
    if same is not None:
        raise DataError(f"--out {out} is one of the photos to score ({same}); write the scores to another file")
    if not (out.exists() or out.is_symlink()):
        return
    if not is_scores_table(out):
        raise DataError(f"--out {out} exists and is not a scores table written by predict; it is never "
                      f"replaced: choose another file")
    if not force:
        raise DataError(f"--out {out} exists (scores from an earlier predict); pass --force to replace it, "
                      f"or choose another file")


def _same_file(a: Path, b: Path) -> bool:
    """The same file under any spelling: a link, `..`, a hard link."""
    try:
        return a.resolve() == b.resolve() or os.path.samefile(a, b)
    except OSError:
        return False


def is_scores_table(path: Path) -> bool:
    """Whether `path` is a scores table as predict writes it: a CSV with a header `image,<target>,...` then rows
    of a name and numbers, or JSON / JSON lines records {"image": ..., "<target>": number, ...}. Anything else
    (a photo, notes, another program's table) is not predict's to replace."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return _is_scores_csv(text) or _is_scores_json(text)


def _is_scores_csv(text: str) -> bool:
    try:
        rows = csv.reader(text.splitlines())
        header = next(rows, [])
        if len(header) < 2 or header[0] != "image":
            return False
        for row in rows:
            if len(row) != len(header):
                return False
            [float(v or "nan") for v in row[1:]]
    except (ValueError, csv.Error):
        return False
    return True


def _is_scores_json(text: str) -> bool:
    try:
        records = json.loads(text) if text.lstrip().startswith("[") else [json.loads(line)
                                                                          for line in text.splitlines() if line]
    except ValueError:
        return False
    return bool(records) and all(isinstance(r, dict) and list(r)[:1] == ["image"] and len(r) > 1
                                 and all(v is None or isinstance(v, (int, float)) for k, v in r.items() if k != "image")
                                 for r in records)
