"""Where a training job keeps its caches (memory-mapped, resident on the device, streamed from host
memory) changes nothing in what it trains: same batches, same histories, same predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import head_spec, image_spec, stage_spec
from aesthetic_mtl.nn.model import build_model
from aesthetic_mtl.nn.placement import PLACEMENTS, auto_placement, place
from aesthetic_mtl.nn.train import Split, fit, predict

CPU = torch.device("cpu")
TARGETS = ["a", "b"]


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("placement", ["memmap", "resident", "streamed"])
def test_every_placement_yields_the_same_float32_batches(tmp_path, placement, dtype):
    array = np.random.default_rng(0).standard_normal((2500, 3, 4)).astype(dtype)  # > one copy slice
    np.save(tmp_path / "a.npy", array)
    mapped = np.load(tmp_path / "a.npy", mmap_mode="r")
    rows = [np.array([2499, 0, 7]), np.array([1024, 1023]), np.array([], dtype=np.int64), np.arange(5)]
    got = list(place(mapped, CPU, placement).batches(rows))
    assert len(got) == len(rows)
    for r, batch in zip(rows, got):
        assert batch.dtype == torch.float32 and batch.shape == (len(r), 3, 4)
        np.testing.assert_array_equal(batch.numpy(), array[r].astype(np.float32))


def test_auto_is_memmap_on_the_cpu_and_unknown_placements_are_refused():
    assert auto_placement(10**12, CPU) == "memmap"
    assert place(np.zeros((2, 2), np.float32), CPU).placement == "memmap"
    with pytest.raises(ValueError, match="cache placement must be one of"):
        place(np.zeros((2, 2), np.float32), CPU, "gpu")
    assert set(PLACEMENTS) == {"auto", "memmap", "resident", "streamed"}


def test_training_does_not_depend_on_the_placement(tiny_images):
    """Stage 2 on prefix activations (float16 cache): histories and predictions identical to the bit."""
    torch.manual_seed(0)
    reference = build_model("vgg16", TARGETS, None, head_spec())
    with torch.no_grad():
        prefix = reference.prefix(torch.from_numpy(tiny_images)).numpy().astype(np.float16)
    y = np.random.default_rng(1).random((16, 2), dtype=np.float32)
    train, val = Split(np.arange(10), y[:10]), Split(np.arange(10, 16), y[10:])
    results = {}
    for placement in ("memmap", "resident", "streamed"):
        torch.manual_seed(0)
        model = build_model("vgg16", TARGETS, None, head_spec())
        inputs = place(prefix, CPU, placement)
        history = fit(model, model.forward_from_prefix, inputs, train, val, stage_spec(2, 1e-4, 4), seed=3,
                      params=model.set_stage("stage2"), loss_weights=[1.0, 1.0], log=lambda m: None, bf16_cuda=False)
        results[placement] = (history, predict(model.forward_from_prefix, inputs, np.arange(16), batch_size=5, bf16_cuda=False))
    for placement in ("resident", "streamed"):
        assert results[placement][0].equals(results["memmap"][0]), placement
        np.testing.assert_array_equal(results[placement][1], results["memmap"][1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_placements_agree_with_the_cpu_batches(tmp_path):
    array = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float16)
    cuda = torch.device("cuda")
    rows = [np.arange(0, 300, 7), np.array([5, 1])]
    for placement in ("resident", "streamed"):
        for r, batch in zip(rows, place(array, cuda, placement).batches(rows)):
            assert batch.device.type == "cuda"
            np.testing.assert_array_equal(batch.cpu().numpy(), array[r].astype(np.float32))
    assert auto_placement(1, cuda) == "resident"
