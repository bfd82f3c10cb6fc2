"""A dataset's release, the first three workflow steps: obtain its files (download and verify, synthesize, or
fingerprint a local folder), extract them, and parse the labels into one tidy table."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Mapping

import pandas as pd

from aesthetic_mtl.data.download import Limits, sha256_file
from aesthetic_mtl.data.formats import get_format
from aesthetic_mtl.data.lockfile import obtain_files
from aesthetic_mtl.data.synthetic import generate, params_for
from aesthetic_mtl.files import write_json, write_tsv


def obtain_archives(ds: Mapping, names: list[str], digests_path: Path, *, download: Mapping,
                    log: Callable = print) -> None:
    """Synthesize the release files, or download / verify them; then record their digests.

    A `source: local` folder (format `table`) is read in place: its fingerprint is recorded instead.
    `download`: the config's `download` section (the rate and deadline of a download).
    """
    if ds["source"] == "local":
        write_json(digests_path, get_format(ds["format"]).local_fingerprint(ds, log=log))
        return
    archives = digests_path.parent / "archives"
    archives.mkdir(parents=True, exist_ok=True)
    if ds["source"] == "synthetic":
        log(f"generating synthetic {ds['format']} release files in {archives}")
        generate(ds["format"], archives, params_for(ds))
        digests = {name: sha256_file(archives / name) for name in names}
    else:
        digests = obtain_files(ds["files"], names, archives, digests_path.parent / "archives.lock",
                               limits=Limits.from_config(download), log=log)
    write_json(digests_path, digests)


def extract(ds: Mapping, archives: Path, raw: Path, *, log: Callable = print) -> None:
    """Unpack into a sibling temporary folder, then rename, so `raw` is never half-extracted.

    A failed extraction (a full disk, a damaged archive) removes the temporary folder too: no partial
    copy of a release is left to fill the disk.
    """
    tmp = raw.with_name(raw.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        get_format(ds["format"]).extract(archives, tmp, ds)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(raw, ignore_errors=True)
    tmp.rename(raw)
    log(f"extracted {sum(1 for p in raw.rglob('*') if p.is_file())} files into {raw}")


def parse_labels(ds: Mapping, raw: Path, out: Path, *, on_bad_image: str, log: Callable = print) -> pd.DataFrame:
    """The release's labels as one tidy table.

    Labelled images without a file stop the job (`on_bad_image: error`) or stay in the table for the
    image cache to skip and list (`skip`); image files without labels are ignored and counted here.
    """
    labels = get_format(ds["format"]).parse(raw, ds, on_bad_image=on_bad_image)
    log(f"{len(labels)} label rows, {labels['image'].nunique()} images, attributes {list(ds['attributes'])}")
    absent = labels.loc[~labels["path"].map(lambda p: Path(p).is_file()), "image"].unique()
    if len(absent):
        log(f"{len(absent)} labelled image(s) have no file (on_bad_image: skip): the image cache skips "
            f"them and lists them in skipped.tsv; e.g. {list(absent[:3])}")
    log(f"{labels.attrs.get('unlabelled_images', 0)} image file(s) under {raw} have no label: ignored")
    write_tsv(out, labels)
    return labels
