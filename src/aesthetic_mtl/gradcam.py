"""Grad-CAM (Selvaraju et al., ICCV 2017) on the last convolutional layer of the trunk, after its activation.

For one output (e.g. the overall score) the map is ReLU(sum_k alpha_k A_k), where A_k are the feature
maps of the last convolution in `model.features` taken after its activation (VGG16: `features[29]`, the
ReLU of `features[28]`, which is what Keras' `block5_conv3` outputs: Keras fuses the ReLU into the
layer) and alpha_k the spatial mean of d output / d A_k. The
map is upsampled bilinearly to the input size and scaled to [0, 1] per image (all zeros when nothing
in the image raises the output).

The hook makes the activations a leaf of their own graph, so the gradient exists even when every
trunk weight is frozen (stage 1), and an in-place activation after the convolution (VGG16's
`ReLU(inplace=True)`) cannot overwrite what was captured. Works for any backbone of the registry
whose trunk contains a convolution (vgg16, efficientnet_lite0, torchvision CNNs).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.LeakyReLU, nn.ELU)


def last_conv_layer(features: nn.Module) -> nn.Conv2d:
    """The last `nn.Conv2d` of a trunk, in module order."""
    convs = [m for m in features.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("the trunk has no Conv2d layer for Grad-CAM")
    return convs[-1]


def cam_layer(features: nn.Module) -> nn.Module:
    """Where Grad-CAM reads: the activation module that follows the last convolution (a normalisation may
    sit between them, as in EfficientNet-Lite's head), else the convolution itself."""
    modules = list(features.modules())
    conv = last_conv_layer(features)
    inside = {id(m) for m in conv.modules()}
    after = [m for m in modules[modules.index(conv) + 1:] if id(m) not in inside and not list(m.children())]
    for m in after:
        if isinstance(m, ACTIVATIONS):
            return m
        if isinstance(m, nn.Conv2d) or not isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            break
    return conv


class _Capture:
    """Forward hook: replace the layer output by a fresh leaf that requires grad, and keep it."""

    def __init__(self, layer: nn.Module) -> None:
        self.activations: torch.Tensor | None = None
        self.handle = layer.register_forward_hook(self)

    def __call__(self, module, inputs, output):
        leaf = output.detach().requires_grad_(True)
        self.activations = leaf
        return leaf.clone()  # later in-place ops change the clone, never the captured leaf

    def remove(self) -> None:
        self.handle.remove()


def grad_cam(model: nn.Module, images: np.ndarray | torch.Tensor, output_index: int, *,
             layer: nn.Module | None = None, batch_size: int = 8,
             device: torch.device | str | None = None) -> np.ndarray:
    """Grad-CAM maps (N, H, W) in [0, 1] of output `output_index` for uint8 NHWC `images`.

    `model` is an `AestheticModel` (its forward takes uint8 NHWC pixels); `layer` defaults to `cam_layer`
    (the activation after the last convolution). The model is put in eval mode and moved to `device`
    (default: where it is).
    """
    layer = layer if layer is not None else cam_layer(model.features)
    if device is not None:
        model.to(device)
    device = next(model.parameters()).device
    model.eval()
    batch = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"expected uint8 images of shape (N, H, W, 3), got {tuple(batch.shape)}")
    height, width = batch.shape[1:3]
    maps = []
    capture = _Capture(layer)
    try:
        with torch.enable_grad():
            for start in range(0, len(batch), batch_size):
                x = batch[start:start + batch_size].to(device)
                out = model(x)[:, output_index].float()
                acts = capture.activations
                grads, = torch.autograd.grad(out.sum(), acts)  # samples are independent in eval mode
                weights = grads.float().mean(dim=(2, 3), keepdim=True)
                cam = F.relu((weights * acts.float()).sum(dim=1, keepdim=True))
                cam = F.interpolate(cam, size=(height, width), mode="bilinear", align_corners=False)[:, 0]
                peak = cam.flatten(1).max(dim=1).values.view(-1, 1, 1)
                cam = torch.where(peak > 0, cam / peak.clamp_min(1e-12), torch.zeros_like(cam))
                maps.append(cam.clamp(0, 1).detach().cpu())
    finally:
        capture.remove()
    if not maps:
        return np.zeros((0, height, width), dtype=np.float32)
    return torch.cat(maps).numpy().astype(np.float32)
