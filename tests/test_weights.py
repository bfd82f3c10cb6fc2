"""Fetching torchvision weights: real download code against a server on 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading

import pytest
import torch

from aesthetic_mtl.errors import DownloadError
from aesthetic_mtl.nn import backbones
from aesthetic_mtl.nn.backbones import BackboneSpec, build_backbone, vgg16_features
from aesthetic_mtl.nn.weights import fetch_weights


@pytest.fixture
def served(tmp_path):
    """A directory served over HTTP on 127.0.0.1; yields (dir, base_url)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _publish(root, name: str, state: dict, corrupt_hash: bool = False) -> str:
    """Save a torchvision-style checkpoint as <name>-<sha256 prefix>.pth, like download.pytorch.org."""
    tmp = root / "tmp.pth"
    torch.save(state, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    if corrupt_hash:
        digest = "00000000"
    final = root / f"{name}-{digest}.pth"
    tmp.rename(final)
    return final.name


def _full_vgg_state() -> dict:
    torch.manual_seed(1)
    state = {f"features.{k}": v for k, v in vgg16_features().state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(8, 8)  # stands in for the 120M-parameter classifier
    return state


def test_fetch_verifies_hash_and_stores_the_trunk(served, tmp_path, monkeypatch):
    root, base = served
    state = _full_vgg_state()
    name = _publish(root, "vgg16", state)
    monkeypatch.setitem(backbones.REGISTRY, "vgg16",
                        BackboneSpec(backbones._build_vgg16, weights_url=f"{base}/{name}"))
    out = tmp_path / "weights" / "vgg16.pth"
    fetch_weights("vgg16", out, log=lambda m: None)
    trunk = torch.load(out, weights_only=True)
    assert "classifier.0.weight" not in trunk and "0.weight" in trunk
    loaded = build_backbone("vgg16", out)
    assert torch.equal(loaded.features[19].weight, state["features.19.weight"])
    assert not list(out.parent.glob("*.download"))


def test_fetch_refuses_a_hash_mismatch(served, tmp_path, monkeypatch):
    root, base = served
    name = _publish(root, "vgg16", _full_vgg_state(), corrupt_hash=True)
    monkeypatch.setitem(backbones.REGISTRY, "vgg16",
                        BackboneSpec(backbones._build_vgg16, weights_url=f"{base}/{name}"))
    out = tmp_path / "vgg16.pth"
    with pytest.raises(DownloadError, match="does not start with the published 00000000"):
        fetch_weights("vgg16", out, log=lambda m: None)
    assert not out.exists() and not list(tmp_path.glob("*.download"))


def test_packaged_weights_are_copied(tmp_path):
    out = tmp_path / "lite.pth"
    fetch_weights("efficientnet_lite0", out, log=lambda m: None)
    assert out.stat().st_size > 10_000_000


def test_offline_fetch_names_the_file_its_url_and_the_folder_to_place_it_in(tmp_path, monkeypatch):
    """No network: one attempt, one line with the file a user downloads by hand and where it goes."""
    import socket

    def offline(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    out = tmp_path / "resources" / "weights" / "vgg16.pth"
    with pytest.raises(DownloadError) as err:
        fetch_weights("vgg16", out, log=lambda m: None)
    url = backbones.spec("vgg16").remote().url
    assert str(err.value).startswith(f"vgg16-397923af.pth: could not download {url}: the host name did not resolve")
    assert str(err.value).endswith(f"(not retried); download it by hand and place it in {out.parent.resolve()}/, "
                                   f"then run again")
    assert not list(out.parent.iterdir())
