"""Training from caches computes exactly what training end to end on images computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aesthetic_mtl.errors import TrainingError
from aesthetic_mtl.model import build_model
from aesthetic_mtl.train import Split, StageConfig, fit, predict, stage_params

TARGETS = ["a", "b", "c"]


def _data(n: int = 16):
    y = np.random.default_rng(2).random((n, len(TARGETS)), dtype=np.float32)
    return Split(np.arange(12), y[:12]), Split(np.arange(12, n), y[12:])


def _fresh(seed: int):
    torch.manual_seed(seed)
    return build_model("vgg16", TARGETS, None)


def _caches(model, images):
    with torch.no_grad():
        prefix = model.prefix(torch.from_numpy(images)).numpy()
        pooled = model.pooled_from_prefix(torch.from_numpy(prefix)).numpy()
    return prefix, pooled


def _fit(model, forward, inputs, stage, cfg, seed=3):
    train, val = _data()
    return fit(model, forward, inputs, train, val, cfg, seed=seed, params=stage_params(model, stage),
               loss_weights=[1.0] * 3, log=lambda m: None)


def test_stage1_cached_equals_end_to_end(tiny_images):
    cfg = StageConfig(epochs=2, lr=1e-3, batch_size=5)
    cached, direct = _fresh(7), _fresh(7)
    _, pooled = _caches(cached, tiny_images)
    h1 = _fit(cached, cached.forward_from_pooled, pooled, "stage1", cfg)
    h2 = _fit(direct, direct.forward, tiny_images, "stage1", cfg)
    np.testing.assert_allclose(h1[["train_loss", "val_loss"]], h2[["train_loss", "val_loss"]], rtol=1e-5)
    rows = np.arange(16)
    np.testing.assert_allclose(predict(cached.forward_from_pooled, pooled, rows),
                               predict(direct.forward, tiny_images, rows), atol=1e-5)


def test_stage2_cached_equals_end_to_end(tiny_images):
    cfg = StageConfig(epochs=2, lr=1e-4, batch_size=5, halve_every_steps=2)
    cached, direct = _fresh(7), _fresh(7)
    prefix, _ = _caches(cached, tiny_images)
    h1 = _fit(cached, cached.forward_from_prefix, prefix, "stage2", cfg)
    h2 = _fit(direct, direct.forward, tiny_images, "stage2", cfg)
    np.testing.assert_allclose(h1[["train_loss", "val_loss"]], h2[["train_loss", "val_loss"]], rtol=1e-4)
    rows = np.arange(16)
    np.testing.assert_allclose(predict(cached.forward_from_prefix, prefix, rows),
                               predict(direct.forward, tiny_images, rows), atol=1e-4)
    for i in (19, 21):
        torch.testing.assert_close(cached.features[i].weight, direct.features[i].weight, atol=1e-5, rtol=1e-4)


def test_same_seed_same_result_different_seed_different(tiny_images):
    cfg = StageConfig(epochs=1, lr=1e-3, batch_size=4)
    runs = []
    for model_seed, seed in [(1, 3), (1, 3), (1, 4)]:
        model = _fresh(model_seed)
        _, pooled = _caches(model, tiny_images)
        _fit(model, model.forward_from_pooled, pooled, "stage1", cfg, seed=seed)
        runs.append(predict(model.forward_from_pooled, pooled, np.arange(16)))
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_learning_rate_halves_every_n_steps(tiny_images):
    model = _fresh(0)
    _, pooled = _caches(model, tiny_images)
    hist = _fit(model, model.forward_from_pooled, pooled, "stage1",
                StageConfig(epochs=2, lr=1e-4, batch_size=3, halve_every_steps=2))
    # 12 training images / batch 3 = 4 steps per epoch: lr halves twice per epoch
    assert hist["steps"].tolist() == [4, 8]
    assert hist["lr"].tolist() == pytest.approx([1e-4 / 4, 1e-4 / 16])


def test_nan_loss_stops_with_a_clear_error(tiny_images):
    model = _fresh(0)
    _, pooled = _caches(model, tiny_images)
    train, val = _data()
    train.y[0, 0] = np.nan
    with pytest.raises(TrainingError, match="loss is nan at epoch 1"):
        fit(model, model.forward_from_pooled, pooled, train, val, StageConfig(1, 1e-3, 4), seed=0,
            params=stage_params(model, "stage1"), loss_weights=[1.0] * 3, log=lambda m: None)
