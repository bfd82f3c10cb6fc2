"""Shared fixtures: tiny models and data so every test runs in seconds on a CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _single_thread():
    """Deterministic, quick CPU math regardless of the machine."""
    torch.set_num_threads(1)
    yield


@pytest.fixture
def tiny_images() -> np.ndarray:
    """16 random uint8 images of 32 x 32 px (NHWC, as the image cache stores them)."""
    return np.random.default_rng(0).integers(0, 256, size=(16, 32, 32, 3), dtype=np.uint8)
