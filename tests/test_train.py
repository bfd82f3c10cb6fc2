"""Training from caches computes exactly what training end to end on images computes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import head_spec, image_spec, stage_spec
from aesthetic_mtl.errors import TrainingError
from aesthetic_mtl.nn.model import build_model
from aesthetic_mtl.nn.optim import adam
from aesthetic_mtl.nn.train import Split, fit, predict
from aesthetic_mtl.specs import StageSpec

TARGETS = ["a", "b", "c"]


def _data(n: int = 16):
    y = np.random.default_rng(2).random((n, len(TARGETS)), dtype=np.float32)
    return Split(np.arange(12), y[:12]), Split(np.arange(12, n), y[12:])


def _fresh(seed: int):
    torch.manual_seed(seed)
    return build_model("vgg16", TARGETS, None, head_spec())


def _caches(model, images):
    with torch.no_grad():
        prefix = model.prefix(torch.from_numpy(images)).numpy()
        pooled = model.pooled_from_prefix(torch.from_numpy(prefix)).numpy()
    return prefix, pooled


def _fit(model, forward, inputs, stage, cfg, seed=3):
    train, val = _data()
    return fit(model, forward, inputs, train, val, cfg, seed=seed, params=model.set_stage(stage),
               loss_weights=[1.0] * 3, log=lambda m: None, bf16_cuda=False)


def test_stage1_cached_equals_end_to_end(tiny_images):
    cfg = stage_spec(2, 1e-3, 5)
    cached, direct = _fresh(7), _fresh(7)
    _, pooled = _caches(cached, tiny_images)
    h1 = _fit(cached, cached.forward_from_pooled, pooled, "stage1", cfg)
    h2 = _fit(direct, direct.forward, tiny_images, "stage1", cfg)
    np.testing.assert_allclose(h1[["train_loss", "val_loss"]], h2[["train_loss", "val_loss"]], rtol=1e-5)
    rows = np.arange(16)
    np.testing.assert_allclose(predict(cached.forward_from_pooled, pooled, rows, bf16_cuda=False),
                               predict(direct.forward, tiny_images, rows, bf16_cuda=False), atol=1e-5)


def test_stage2_cached_equals_end_to_end(tiny_images):
    cfg = stage_spec(2, 1e-4, 5, halve_every_steps=2)
    cached, direct = _fresh(7), _fresh(7)
    prefix, _ = _caches(cached, tiny_images)
    h1 = _fit(cached, cached.forward_from_prefix, prefix, "stage2", cfg)
    h2 = _fit(direct, direct.forward, tiny_images, "stage2", cfg)
    np.testing.assert_allclose(h1[["train_loss", "val_loss"]], h2[["train_loss", "val_loss"]], rtol=1e-4)
    rows = np.arange(16)
    np.testing.assert_allclose(predict(cached.forward_from_prefix, prefix, rows, bf16_cuda=False),
                               predict(direct.forward, tiny_images, rows, bf16_cuda=False), atol=1e-4)
    for i in (19, 21):
        torch.testing.assert_close(cached.features[i].weight, direct.features[i].weight, atol=1e-5, rtol=1e-4)


def test_same_seed_same_result_different_seed_different(tiny_images):
    cfg = stage_spec(1, 1e-3, 4)
    runs = []
    for model_seed, seed in [(1, 3), (1, 3), (1, 4)]:
        model = _fresh(model_seed)
        _, pooled = _caches(model, tiny_images)
        _fit(model, model.forward_from_pooled, pooled, "stage1", cfg, seed=seed)
        runs.append(predict(model.forward_from_pooled, pooled, np.arange(16), bf16_cuda=False))
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_learning_rate_halves_every_n_steps(tiny_images):
    model = _fresh(0)
    _, pooled = _caches(model, tiny_images)
    hist = _fit(model, model.forward_from_pooled, pooled, "stage1",
                stage_spec(2, 1e-4, 3, halve_every_steps=2))
    # 12 training images / batch 3 = 4 steps per epoch: lr halves twice per epoch
    assert hist["steps"].tolist() == [4, 8]
    assert hist["lr"].tolist() == pytest.approx([1e-4 / 4, 1e-4 / 16])


def test_nan_loss_stops_with_a_clear_error(tiny_images):
    model = _fresh(0)
    _, pooled = _caches(model, tiny_images)
    train, val = _data()
    train.y[0, 0] = np.nan
    with pytest.raises(TrainingError, match="loss is nan at epoch 1"):
        fit(model, model.forward_from_pooled, pooled, train, val, stage_spec(1, 1e-3, 4), seed=0,
            params=model.set_stage("stage1"), loss_weights=[1.0] * 3, log=lambda m: None, bf16_cuda=False)


# --------------------------------------------------------------------------------------------------
# Keras defaults as choices, float32 head, independent stage-2 stream
# --------------------------------------------------------------------------------------------------

def test_continuous_schedule_decays_every_step_staircase_every_n(tiny_images):
    lrs = {}
    for schedule in ("staircase", "continuous"):
        model = _fresh(0)
        _, pooled = _caches(model, tiny_images)
        hist = _fit(model, model.forward_from_pooled, pooled, "stage1",
                    stage_spec(2, 1e-4, 3, halve_every_steps=3, schedule=schedule))
        lrs[schedule] = hist["lr"].tolist()
    # 4 steps per epoch, halving every 3 steps
    assert lrs["staircase"] == pytest.approx([1e-4 * 0.5 ** 1, 1e-4 * 0.5 ** 2])
    assert lrs["continuous"] == pytest.approx([1e-4 * 0.5 ** (4 / 3), 1e-4 * 0.5 ** (8 / 3)])


def test_adam_epsilon_reaches_the_optimizer(tiny_images, monkeypatch):
    seen = []
    real = torch.optim.Adam

    def spy(params, **kwargs):
        seen.append(kwargs)
        return real(params, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", spy)
    model = _fresh(0)
    _, pooled = _caches(model, tiny_images)
    _fit(model, model.forward_from_pooled, pooled, "stage1", stage_spec(1, 1e-3, 4, adam_eps=1e-7))
    _fit(model, model.forward_from_pooled, pooled, "stage1", stage_spec(1, 1e-3, 4))
    assert [k["eps"] for k in seen] == [1e-7, 1e-8]


def test_stage_spec_from_the_training_section():
    training = {"batch_size": 16, "adam": "keras", "adam_eps": 1e-7, "stage1": {"epochs": 5, "lr": 1e-3},
                "stage2": {"epochs": 3, "lr": 1e-4, "halve_every_steps": 125, "schedule": "continuous"}}
    s1, s2 = (StageSpec.from_config(training, s) for s in ("stage1", "stage2"))
    assert s1 == StageSpec(5, 1e-3, 16, None, "staircase", 1e-7, "keras", stream=0)
    assert s2 == StageSpec(3, 1e-4, 16, 125, "continuous", 1e-7, "keras", stream=1)
    plain = StageSpec.from_config({"batch_size": 8, "stage2": {"epochs": 1, "lr": 1e-4, "halve_every_steps": 9}}, "stage2")
    assert (plain.schedule, plain.adam_eps, plain.adam) == ("staircase", 1e-8, "torch")  # the schema's defaults
    with pytest.raises(ValueError, match="adam must be one of"):
        adam(_fresh(0).set_stage("stage1"), variant="sgd", lr=1e-3, eps=1e-7)


def test_stage2_does_not_replay_stage1_shuffle_order(tiny_images):
    """Same seed, stage-1 and stage-2 streams: the batches come in a different order."""
    firsts = {}
    for stream in (0, 1, 0):
        model = _fresh(0)
        _, pooled = _caches(model, tiny_images)
        batches = []

        def forward(x, model=model, batches=batches):
            batches.append(x.clone())
            return model.forward_from_pooled(x)

        _fit(model, forward, pooled, "stage1", replace(stage_spec(1, 1e-3, 4), stream=stream))
        firsts.setdefault(stream, []).append(torch.cat(batches[:3]))
    assert torch.equal(firsts[0][0], firsts[0][1])          # a stream is reproducible
    assert not torch.equal(firsts[0][0], firsts[1][0])      # stage 2's stream is not stage 1's


def test_head_loss_and_predictions_are_float32_under_bf16_autocast(tiny_images, monkeypatch):
    """The CUDA code path on the CPU: autocast forced to bf16 must reach the trunk and never the head."""
    from aesthetic_mtl.nn import train

    monkeypatch.setattr(train, "autocast", lambda device, enabled=True: torch.autocast("cpu", dtype=torch.bfloat16))
    model = _fresh(0)
    prefix, _ = _caches(model, tiny_images)
    trunk, head = [], []
    model.features[19].register_forward_hook(lambda m, i, o: trunk.append(o.dtype))
    for layer in model.head.layers:
        layer.register_forward_hook(lambda m, i, o: head.append((i[0].dtype, o.dtype)))
    losses = []
    real_loss = train.weighted_mse
    monkeypatch.setattr(train, "weighted_mse", lambda p, y, w: losses.append(real_loss(p, y, w)) or losses[-1])
    _fit(model, model.forward_from_prefix, prefix, "stage2", stage_spec(1, 1e-4, 5))
    assert trunk and set(trunk) == {torch.bfloat16}       # the trunk did run in bf16
    assert head and set(head) == {(torch.float32, torch.float32)}
    assert losses and all(loss.dtype == torch.float32 for loss in losses)
    with torch.no_grad(), train.autocast(torch.device("cpu")):
        out = model.forward_from_prefix(torch.from_numpy(prefix[:8]))
    assert out.dtype == torch.float32
    pred = predict(model.forward_from_prefix, prefix, np.arange(16), bf16_cuda=False)
    assert pred.dtype == np.float32 and len(np.unique(pred[:, 0])) == 16   # no bf16 ties
