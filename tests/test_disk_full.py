"""A full disk while writing a cache or a checkpoint: one clear error naming the output, nothing left
under the output's name (nor a temporary file), and after space is freed the rerun writes exactly
the bytes an undisturbed run writes.

Two ways to fill the disk: ENOSPC injected at the write (always runs), and a real full file system,
a small tmpfs mounted in a private user + mount namespace (`unshare -Urm`; skipped where the kernel
does not allow unprivileged namespaces).
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import can_mount_tmpfs, head_spec, image_spec, save_test_checkpoint
from PIL import Image

from aesthetic_mtl import files
from aesthetic_mtl.data.image_cache import build_image_cache, open_image_cache
from aesthetic_mtl.errors import OutputError
from aesthetic_mtl.nn.checkpoint import load_model
from aesthetic_mtl.nn.feature_cache import build_feature_cache, open_feature_cache
from aesthetic_mtl.nn.model import build_model

REPO = Path(__file__).resolve().parents[1]


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _photos(folder: Path, n: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (30 + i, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        rows.append({"image": str(i), "path": str(folder / f"{i}.png")})
    return pd.DataFrame(rows)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _assert_nothing_under(folder: Path, *names: str) -> None:
    present = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    assert not [n for n in present if n.startswith(".")], present          # no temporary file left
    assert not [n for n in names if n in present], present                 # nothing at the names


def _save(path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("vgg16", ["Light", "score"], None, head_spec())
    save_test_checkpoint(path, model, stage="stage2", ranges={"Light": [-1, 1], "score": [0, 1]}, image_size=32,
                    head={"hidden": [128, 64], "dropout": 0.35}, weights={"spec": "none", "file": None},
                    config={"images": {"size": 32}}, provenance={"code_version": "test"})


# ------------------------------------------------------------------------------ ENOSPC injected

def test_table_write_on_a_full_disk_names_the_output(tmp_path, monkeypatch):
    def full(self, path, *a, **k):
        Path(path).write_text("row 1\n")                   # part of it made it to disk
        raise _enospc()

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    out = tmp_path / "results" / "metrics.tsv"
    with pytest.raises(OutputError) as err:
        files.write_tsv(out, pd.DataFrame({"a": [1]}))
    assert str(err.value) == (f"{out}: not written: no space left on device in {out.parent}; nothing "
                              f"was left under this name: free space there and run again")
    _assert_nothing_under(out.parent, "metrics.tsv")


def test_checkpoint_on_a_full_disk_then_identical_after_space_is_freed(tmp_path, monkeypatch):
    reference = tmp_path / "reference" / "stage2.pt"
    _save(reference)
    real_write = Path.write_bytes

    def full(self, data):
        real_write(self, bytes(data)[: len(data) // 2])    # half of it made it to disk
        raise _enospc()

    monkeypatch.setattr(Path, "write_bytes", full)
    out = tmp_path / "models" / "stage2.pt"
    with pytest.raises(OutputError, match=rf"^{out}: not written: no space left on device"):
        _save(out)
    _assert_nothing_under(out.parent, "stage2.pt")
    monkeypatch.setattr(Path, "write_bytes", real_write)   # space freed
    _save(out)
    assert out.read_bytes() == reference.read_bytes()
    load_model(out)


def test_caches_on_a_full_disk_then_identical_after_space_is_freed(tmp_path, monkeypatch):
    table = _photos(tmp_path / "photos")
    ref_images, ref_features = tmp_path / "ref" / "images_32", tmp_path / "ref" / "features"
    build_image_cache(table, ref_images, image_spec(32), on_bad_image="error", workers=1, log=lambda m: None, progress=False)
    build_feature_cache(ref_images, ref_features, "vgg16", None, batch_size=2, dtype="float32", bf16_cuda=False,
                        log=lambda m: None)

    real = os.posix_fallocate
    full = {"on": True}

    def fallocate(fd, offset, length):
        if full["on"]:
            raise _enospc()
        return real(fd, offset, length)

    monkeypatch.setattr(os, "posix_fallocate", fallocate)
    images, features = tmp_path / "run" / "images_32", tmp_path / "run" / "features"
    with pytest.raises(OutputError, match=rf"^{images / 'images.npy'}: not written: no space left"):
        build_image_cache(table, images, image_spec(32), on_bad_image="error", workers=1, log=lambda m: None, progress=False)
    _assert_nothing_under(images, "images.npy", "index.tsv", "meta.json")

    full["on"] = False                                      # space freed: the image cache is written
    build_image_cache(table, images, image_spec(32), on_bad_image="error", workers=1, log=lambda m: None, progress=False)
    full["on"] = True                                       # ... and the disk fills up again
    with pytest.raises(OutputError, match=rf"^{features / 'prefix.npy'}: not written: no space left"):
        build_feature_cache(images, features, "vgg16", None, batch_size=2, dtype="float32", bf16_cuda=False,
                            log=lambda m: None)
    _assert_nothing_under(features, "prefix.npy", "pooled.npy", "index.tsv", "meta.json")

    full["on"] = False
    build_feature_cache(images, features, "vgg16", None, batch_size=2, dtype="float32", bf16_cuda=False, log=lambda m: None)
    assert _digests(images) == _digests(ref_images)
    assert _digests(features) == _digests(ref_features)
    open_image_cache(images), open_feature_cache(features)


# ------------------------------------------------------------------------ a real full file system

FULL_DISK_SCRIPT = r"""
import hashlib, os, sys
from pathlib import Path
import pandas as pd
from aesthetic_mtl.errors import OutputError
from aesthetic_mtl.data.image_cache import build_image_cache, open_image_cache
from aesthetic_mtl.specs import ImageSpec

image_spec = lambda size: ImageSpec.from_config({"size": size})
table, mount = pd.read_csv(sys.argv[1], dtype=str), Path(sys.argv[2])
out_size = lambda folder: sum(p.stat().st_size + 4096 for p in folder.iterdir())
filler = mount / "filler"
with open(filler, "wb") as fh:                     # leave ~40 KiB: less than the cache needs
    fh.write(b"\0" * (int(sys.argv[3]) * 1024 - 40 * 1024))
out = mount / "images_32"
try:
    build_image_cache(table, out, image_spec(32), on_bad_image="error", workers=1, log=lambda m: None, progress=False)
    print("UNEXPECTED: written")
except OutputError as e:
    print("ERROR:", e)
print("LEFT:", sorted(p.name for p in out.iterdir()))
filler.unlink()                                     # space freed
build_image_cache(table, out, image_spec(32), on_bad_image="error", workers=1, log=lambda m: None, progress=False)
open_image_cache(out)
for p in sorted(out.iterdir()):
    print("DIGEST:", p.name, hashlib.sha256(p.read_bytes()).hexdigest())

sys.path.insert(0, sys.argv[4])
from test_disk_full import _save                   # the same checkpoint as the other tests
with open(filler, "wb") as fh:
    fh.write(b"\0" * (int(sys.argv[3]) * 1024 - 40 * 1024 - out_size(out)))
try:
    _save(mount / "stage2.pt")
    print("UNEXPECTED: checkpoint written")
except OutputError as e:
    print("CKPT ERROR:", e)
print("CKPT LEFT:", sorted(p.name for p in mount.iterdir() if p.name != "images_32"))
filler.unlink()
_save(mount / "stage2.pt")
print("CKPT DIGEST:", hashlib.sha256((mount / "stage2.pt").read_bytes()).hexdigest())
"""


@pytest.mark.skipif(not can_mount_tmpfs(), reason="needs unprivileged user + mount namespaces")
def test_cache_and_checkpoint_on_a_really_full_tmpfs(tmp_path):
    table = _photos(tmp_path / "photos", n=20)                # 20 x 32 x 32 x 3 = 60 KiB of pixels
    table.to_csv(tmp_path / "table.csv", index=False)
    (tmp_path / "script.py").write_text(FULL_DISK_SCRIPT)
    mount = tmp_path / "small"
    mount.mkdir()
    size_kib = 40 * 1024                                      # the stage-2 checkpoint is ~19 MB
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = (f"mount -t tmpfs -o size={size_kib}k tmpfs {mount} && "
           f"{sys.executable} {tmp_path / 'script.py'} {tmp_path / 'table.csv'} {mount} {size_kib} "
           f"{Path(__file__).parent}")
    proc = subprocess.run(["unshare", "-Urm", "sh", "-c", cmd], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    out = mount / "images_32"
    assert f"ERROR: {out / 'images.npy'}: not written: no space left on device in {out}; nothing was " \
           f"left under this name: free space there and run again" in lines, proc.stdout
    assert "LEFT: []" in lines, proc.stdout                    # not even a temporary file

    reference = tmp_path / "ref"
    build_image_cache(table, reference, image_spec(32), on_bad_image="error", workers=1, log=lambda m: None, progress=False)
    expected = [f"DIGEST: {name} {digest}" for name, digest in _digests(reference).items()]
    assert [line for line in lines if line.startswith("DIGEST:")] == expected

    ckpt = mount / "stage2.pt"
    assert f"CKPT ERROR: {ckpt}: not written: no space left on device in {mount}; nothing was left " \
           f"under this name: free space there and run again" in lines, proc.stdout
    assert "CKPT LEFT: ['filler']" in lines, proc.stdout
    _save(tmp_path / "stage2.pt")
    assert f"CKPT DIGEST: {hashlib.sha256((tmp_path / 'stage2.pt').read_bytes()).hexdigest()}" in lines
