"""Synthetic AADB and EVA releases: realistic labels and images that show them, in the official formats.

`generate(fmt, archives, params)` writes exactly the files `datasets.get_format(fmt).required_files`
lists for a `source: synthetic` config, so the demo runs the same extract -> parse path as the real
data. Output is deterministic for a seed: the same parameters give byte-identical archives (fixed zip
timestamps, per-image random streams, deterministic JPEG encoding).

Labels (`labels.py`): AADB rater means from a Gaussian copula calibrated to the real AADB statistics,
EVA votes from simulated users. Images (`render.py`): each picture is drawn from the same latent
values, so that labels and pictures agree. This module writes them in the release formats.

AADB image archives: `image_source: original` (default) writes train + validation images to
`datasetImages_originalSize.zip` and the test images, with the release's score prefix
(`0.650_<name>`), to `AADB_newtest_originalSize.zip`; sizes vary in aspect ratio (longer side
`image_size`). `image_source: warp256` writes every image once, squashed to 256 x 256, to
`datasetImages_warp256.zip`. Pass `image_source` inside `params` (see `params_for`).

EVA: `votes_filtered.csv` plus `EVA_together.zip` cut into `parts` raw pieces (default 3), named
`EVA_together.zip.001` ...; the zip also holds ~5 % images nobody voted on, as the release does.

Table (`format: table`, your own rated photos): the configured table (`table:`, with `image_column`,
an optional `split_column` and one column per configured target) plus `images.zip`, the way
`datasets.table` extracts a downloaded release. Each target borrows one AADB latent (same name, case
aside, if AADB has it; the dataset's `overall` borrows `score`; others take unused attributes in turn),
so values and pictures agree as in synthetic AADB; values are rescaled to the configured range. Images
sit in sub-folders (`2021/`, `2022/summer/`), every fifth one is a PNG, and ~5 % of the images have no
row (ignored by `parse`, as unlabelled files are). Parameters: `n_images`, `image_size`, `seed`;
`params_for` adds the layout keys from the dataset config.
"""

from __future__ import annotations

import io
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from aesthetic_mtl.data.synthetic.labels import (  # noqa: F401
    EVA_LATENT,
    STATS_FILE,
    aadb_labels,
    aadb_stats,
    calibrate_aadb,
    eva_votes,
    mean_vote_distribution,
    write_calibration,
)
from aesthetic_mtl.data.synthetic.render import (  # noqa: F401
    KNOBS,
    aadb_knobs,
    eva_knobs,
    render_image,
)
from aesthetic_mtl.errors import ConfigError
from aesthetic_mtl.files import atomic_path

AADB_DEFAULTS = {"n_train": 240, "n_validation": 40, "n_test": 80, "overlap": 8, "image_size": 256,
                 "seed": 0, "image_source": "original"}
EVA_DEFAULTS = {"n_images": 300, "min_votes": 6, "max_votes": 12, "image_size": 256, "seed": 0,
                "parts": 3}
TABLE_DEFAULTS = {"n_images": 120, "image_size": 256, "seed": 0}
TABLE_LAYOUT = ("table", "image_column", "split_column", "delimiter", "attributes", "overall")

# --------------------------------------------------------------------------------- public entry


def params_for(ds_cfg: dict) -> dict:
    """Generator parameters of a dataset config: its `synthetic:` block plus `image_source`.

    A table dataset's file layout (table name, columns, delimiter, targets with ranges, overall) is
    part of its config, not of the release format, so it is passed on too.
    """
    params = dict(ds_cfg.get("synthetic") or {})
    if "image_source" in ds_cfg:
        params.setdefault("image_source", ds_cfg["image_source"])
    if ds_cfg.get("format") == "table":
        params.update({k: ds_cfg[k] for k in TABLE_LAYOUT if ds_cfg.get(k) is not None})
    return params


def generate(fmt: str, archives: Path, params: dict, targets: list[str] | None = None) -> None:
    """Write a synthetic release of format `fmt` into `archives` (file names as the real one).

    `targets` is accepted for the pipeline's convenience and not needed: like the release, the files
    always hold every target, and `parse` picks the configured ones.
    """
    archives = Path(archives)
    archives.mkdir(parents=True, exist_ok=True)
    if fmt == "aadb":
        _generate_aadb(archives, {**AADB_DEFAULTS, **(params or {})})
    elif fmt == "eva":
        _generate_eva(archives, {**EVA_DEFAULTS, **(params or {})})
    elif fmt == "table":
        _generate_table(archives, {**TABLE_DEFAULTS, **(params or {})})
    else:
        raise ConfigError(f"no synthetic generator for format {fmt!r}; known: aadb, eva, table")


# ------------------------------------------------------------------------------------ generators


def _jpeg(img: Image.Image, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def _int_param(params: dict, key: str, minimum: int) -> int:
    value = params.get(key)
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"synthetic.{key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _aadb_names(n: int, rng: np.random.Generator) -> list[str]:
    names: list[str] = []
    seen = set()
    while len(names) < n:
        name = (f"farm1_{rng.integers(100, 1000)}_{rng.integers(10**10, 10**11)}_"
                f"{rng.integers(0, 16**10):010x}_b.jpg")
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


ASPECTS = ((1, 1), (4, 3), (3, 4), (3, 2), (2, 3))


def _generate_aadb(archives: Path, p: dict) -> None:
    from aesthetic_mtl.data.formats import aadb as fmt
    from aesthetic_mtl.data.formats import deterministic_zip

    n_train, n_val, n_test = (_int_param(p, "n_train", 1), _int_param(p, "n_validation", 1),
                              _int_param(p, "n_test", 1))
    overlap = _int_param(p, "overlap", 0)
    size = _int_param(p, "image_size", 32)
    seed = _int_param(p, "seed", 0)
    if overlap > min(n_val, n_test):
        raise ConfigError(f"synthetic.overlap ({overlap}) cannot exceed n_validation ({n_val}) or "
                          f"n_test ({n_test})")
    source = p["image_source"]
    if source not in fmt.IMAGE_ZIPS:
        raise ConfigError(f"image_source must be one of {sorted(fmt.IMAGE_ZIPS)}, got {source!r}")

    n = n_train + n_val + n_test - overlap
    rng = np.random.default_rng([seed, 0])
    z, labels = aadb_labels(n, rng)
    names = _aadb_names(n, rng)
    labels.insert(0, "image", names)
    idx = {"train": np.arange(n_train), "validation": np.arange(n_train, n_train + n_val),
           "test": np.arange(n_train + n_val - overlap, n)}
    table = pd.concat([labels.iloc[ix].assign(split=split) for split, ix in idx.items()],
                      ignore_index=True)
    fmt.write_label_archive(table[["image", "split", *fmt.ATTRIBUTES]], archives / fmt.LABEL_ZIP)

    def picture(i: int) -> Image.Image:
        img_rng = np.random.default_rng([seed, 1, i])
        return render_image(aadb_knobs(z[i]), img_rng, size)

    if source == "warp256":
        with deterministic_zip(archives / fmt.WARP_ZIP) as add:
            for i in range(n):
                img = picture(i).resize((256, 256), Image.BICUBIC)
                add(f"{fmt.WARP_ZIP[:-4]}/{names[i]}", _jpeg(img), False)
        return

    aspects = np.random.default_rng([seed, 2]).integers(0, len(ASPECTS), n)
    encoded: dict[int, bytes] = {}

    def jpeg(i: int) -> bytes:
        if i not in encoded:
            img = picture(i)
            aw, ah = ASPECTS[aspects[i]]
            w, h = (size, round(size * ah / aw)) if aw >= ah else (round(size * aw / ah), size)
            encoded[i] = _jpeg(img if (w, h) == (size, size) else img.resize((w, h), Image.BICUBIC))
        return encoded[i]

    test_set = set(idx["test"].tolist())
    with deterministic_zip(archives / fmt.ORIGINAL_ZIP) as add:
        for i in range(n_train + n_val):
            data = jpeg(i)
            add(f"{fmt.ORIGINAL_ZIP[:-4]}/{names[i]}", data, False)
            if i not in test_set:
                encoded.pop(i)
    with deterministic_zip(archives / fmt.NEWTEST_ZIP) as add:
        for i in idx["test"]:
            prefix = f"{labels['score'].iloc[i]:.3f}"
            add(f"{fmt.NEWTEST_ZIP[:-4]}/{prefix}_{names[i]}", jpeg(int(i)), False)


def _generate_eva(archives: Path, p: dict) -> None:
    from aesthetic_mtl.data.formats import deterministic_zip
    from aesthetic_mtl.data.formats import eva as fmt

    n_images = _int_param(p, "n_images", 1)
    min_votes, max_votes = _int_param(p, "min_votes", 1), _int_param(p, "max_votes", 1)
    size, seed, parts = (_int_param(p, "image_size", 32), _int_param(p, "seed", 0),
                         _int_param(p, "parts", 1))
    if max_votes < min_votes:
        raise ConfigError(f"synthetic.max_votes ({max_votes}) < min_votes ({min_votes})")

    rng = np.random.default_rng([seed, 0])
    n_extra = max(1, n_images // 20)                  # images in the zip that nobody voted on
    ids = [str(i) for i in rng.choice(np.arange(1000, 960000), n_images + n_extra, replace=False)]
    z, votes = eva_votes(n_images, min_votes, max_votes, rng, ids[:n_images])
    z_extra = rng.standard_normal((n_extra, 5))
    fmt.write_votes(votes, archives / fmt.VOTES)

    with tempfile.TemporaryDirectory(prefix=".eva-zip.", dir=archives) as tmpdir:
        whole = Path(tmpdir) / f"{fmt.ZIP_STEM}.zip"
        with deterministic_zip(whole) as add:
            for i, image_id in enumerate(ids):
                img_rng = np.random.default_rng([seed, 1, i])
                latent = z[i] if i < n_images else z_extra[i - n_images]
                knobs = eva_knobs(latent, img_rng)
                img = render_image(knobs, img_rng, size)
                quality = int(round(45 + 50 * knobs["sharpness"]))
                add(f"{fmt.ZIP_STEM}/{image_id}.jpg", _jpeg(img, quality), False)
        data = whole.read_bytes()
    chunk = math.ceil(len(data) / parts)
    for j, name in enumerate(fmt.part_names({"source": "synthetic", "synthetic": {"parts": parts}})):
        with atomic_path(archives / name) as tmp:
            tmp.write_bytes(data[j * chunk:(j + 1) * chunk])


# Order in which table targets without an AADB namesake borrow an AADB latent (most visible first).
BORROW_ORDER = ("score", "Light", "VividColor", "ColorHarmony", "DoF", "Content", "Object",
                "RuleOfThirds", "BalacingElements", "MotionBlur", "Symmetry", "Repetition")
TABLE_FOLDERS = ("2021", "2022/summer", "2022/winter")


def borrowed_latents(targets: list[str], overall: str | None) -> dict[str, str]:
    """{table target: AADB target whose latent and labels it borrows} (see the module docstring)."""
    from aesthetic_mtl.data.formats.aadb import ATTRIBUTES as AADB_ATTRIBUTES

    by_lower = {t.lower(): t for t in AADB_ATTRIBUTES}
    out = {t: by_lower[t.lower()] for t in targets if t.lower() in by_lower}
    if overall in targets and overall not in out and "score" not in out.values():
        out[overall] = "score"
    free = [t for t in BORROW_ORDER if t not in out.values()] or list(BORROW_ORDER)
    for i, target in enumerate(t for t in targets if t not in out):
        out[target] = free[i % len(free)]
    return {t: out[t] for t in targets}


def _table_split(n: int, rng: np.random.Generator) -> np.ndarray:
    """70 / 10 / 20 % train / validation / test in random order (every split non-empty for n >= 3)."""
    n_test, n_val = max(1, round(0.2 * n)), max(1, round(0.1 * n))
    names = np.array(["train"] * n, dtype=object)
    order = rng.permutation(n)
    names[order[:n_test]] = "test"
    names[order[n_test:n_test + n_val]] = "validation"
    return names


def _generate_table(archives: Path, p: dict) -> None:
    from aesthetic_mtl.data.formats import deterministic_zip
    from aesthetic_mtl.data.formats import table as fmt
    from aesthetic_mtl.data.formats.aadb import RANGES as AADB_RANGES

    n = _int_param(p, "n_images", 3)
    size, seed = _int_param(p, "image_size", 32), _int_param(p, "seed", 0)
    targets = p.get("attributes") or {}
    if not targets:
        raise ConfigError("synthetic table: the dataset config names no attributes")
    layout = {"source": "synthetic", "table": p.get("table"), "delimiter": p.get("delimiter")}
    table_file, delim = fmt.table_name(layout), fmt.delimiter(layout)
    image_col = p.get("image_column") or fmt.DEFAULT_IMAGE_COLUMN

    rng = np.random.default_rng([seed, 0])
    n_extra = max(1, n // 20)                          # image files no row names
    z, labels = aadb_labels(n + n_extra, rng)
    borrowed = borrowed_latents(list(targets), p.get("overall"))
    names = []
    for i in range(n + n_extra):
        folder = TABLE_FOLDERS[int(rng.integers(0, len(TABLE_FOLDERS)))]
        names.append(f"{folder}/IMG_{seed:02d}{i:05d}.{'png' if i % 5 == 4 else 'jpg'}")
    table = pd.DataFrame({image_col: names[:n]})
    if p.get("split_column"):
        table[p["split_column"]] = _table_split(n, rng)
    for target, (low, high) in targets.items():
        src = borrowed[target]
        a_low, a_high = AADB_RANGES[src]
        unit = (labels[src].to_numpy()[:n] - a_low) / (a_high - a_low)
        table[target] = np.round(low + np.clip(unit, 0, 1) * (high - low), 4)
    fmt.write_table(table, archives / table_file, delim)

    with deterministic_zip(archives / fmt.SYNTHETIC_ZIP) as add:
        for i, name in enumerate(names):
            img = render_image(aadb_knobs(z[i]), np.random.default_rng([seed, 1, i]), size)
            if name.endswith(".png"):
                buf = io.BytesIO()
                img.save(buf, format="PNG")
                add(name, buf.getvalue(), False)
            else:
                add(name, _jpeg(img), False)
