"""Cache fingerprints: what a cache held when its rule wrote it, checked whenever a job opens it.

The image cache and the feature cache are large memory-mapped `.npy` files that Snakemake trusts by
their time stamps. A cache changed afterwards (a truncated `prefix.npy`, a copied-over file, an
`index.tsv` edited or replaced) would otherwise be read as if it were the one the rule wrote, or fail
deep inside numpy. So the writer records, in the cache's `meta.json` under `integrity`, for every
array its shape, dtype, size in bytes and a BLAKE2b checksum of up to `SAMPLE_ROWS` rows spread over
the array (first and last included), and for the index its row count and a checksum of its image
ids. Opening checks all of it and names the rule to rerun.

The checksum is cheap on purpose (a training job opens the cache every time; 16 rows of VGG16's
prefix cache are ~13 MB): it catches truncation, replacement, reordering and edits of the index for
certain, and changed bytes inside rows it samples; a change confined to unsampled rows of an array
with the same size goes unseen.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from aesthetic_mtl.errors import DataError

SAMPLE_ROWS = 16
META = "meta.json"
KEY = "integrity"


def sample_rows(n: int, k: int = SAMPLE_ROWS) -> list[int]:
    """Up to `k` row numbers spread evenly over 0..n-1, first and last included."""
    if n <= 0:
        return []
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, min(n, k))})


def array_fingerprint(path: Path) -> dict:
    """Shape, dtype, file size and the sampled-rows checksum of a finished `.npy` file."""
    array = np.load(path, mmap_mode="r")
    return {"shape": list(array.shape), "dtype": str(array.dtype), "bytes": Path(path).stat().st_size,
            "blake2b": _rows_digest(array)}


def index_fingerprint(index: pd.DataFrame) -> dict:
    """Row count and a checksum of the image ids in row order."""
    digest = hashlib.blake2b(digest_size=16)
    for image in index["image"].astype(str):
        digest.update(image.encode("utf-8") + b"\0")
    return {"rows": int(len(index)), "blake2b": digest.hexdigest()}


def record(folder: Path, arrays: list[str], index: pd.DataFrame) -> dict:
    """The `integrity` entry of meta.json for the arrays (file names in `folder`) and the index."""
    entry = {name: array_fingerprint(Path(folder) / name) for name in arrays}
    entry["index.tsv"] = index_fingerprint(index)
    return entry


def load(folder: Path, rule: str) -> dict:
    """The recorded fingerprints of the cache in `folder`; a cache without them is refused."""
    path = Path(folder) / META
    try:
        entry = json.loads(path.read_text())[KEY]
    except FileNotFoundError:
        raise altered(path, "missing, so the cache cannot be checked", rule, folder) from None
    except (ValueError, KeyError, TypeError):
        raise altered(path, f"unreadable or without its '{KEY}' record", rule, folder) from None
    return entry


def check_sizes(folder: Path, entry: Mapping, rule: str) -> None:
    """File sizes against the record, before any array is mapped (a short file cannot be mapped)."""
    for name, want in entry.items():
        if name == "index.tsv":
            continue
        path = Path(folder) / name
        size = path.stat().st_size if path.exists() else None
        if size != want["bytes"]:
            found = "missing" if size is None else f"{size} bytes"
            raise altered(path, f"{found}, but rule {rule} wrote {want['bytes']} bytes "
                                f"(truncated or replaced)", rule, folder)


def check(folder: Path, entry: Mapping, arrays: Mapping[str, np.ndarray], index: pd.DataFrame,
          rule: str) -> None:
    """Every opened array and the index against the record; raise naming the first difference."""
    check_sizes(folder, entry, rule)
    for name, array in arrays.items():
        want, path = entry.get(name), Path(folder) / name
        if want is None:
            raise altered(Path(folder) / META, f"has no record of {name}", rule, folder)
        if list(array.shape) != want["shape"] or str(array.dtype) != want["dtype"]:
            raise altered(path, f"holds {tuple(array.shape)} {array.dtype}, but rule {rule} wrote "
                                f"{tuple(want['shape'])} {want['dtype']}", rule, folder)
        if _rows_digest(array) != want["blake2b"]:
            raise altered(path, f"content checksum differs from the one rule {rule} recorded",
                          rule, folder)
    want, got = entry.get("index.tsv"), index_fingerprint(index)
    if want is None or got != want:
        detail = ("has no record of index.tsv" if want is None else
                  f"{got['rows']} rows, but rule {rule} wrote {want['rows']}" if got["rows"] != want["rows"]
                  else "image ids differ from those rule " + rule + " wrote")
        raise altered(Path(folder) / "index.tsv", f"no longer matches the cache: {detail}", rule, folder)


def altered(path: Path, what: str, rule: str, folder: Path) -> DataError:
    """The one-line error for a cache that is not what its rule wrote, naming the rule to rerun."""
    return DataError(f"{path}: {what}; the cache was changed after it was written: rerun rule "
                     f"{rule} to rebuild it (delete {folder}, then run snakemake again)")


def _rows_digest(array: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((tuple(array.shape), str(array.dtype))).encode())
    for row in sample_rows(len(array)):
        digest.update(np.ascontiguousarray(array[row]).tobytes())
    return digest.hexdigest()
