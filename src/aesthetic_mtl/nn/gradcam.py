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

`gradcam_examples` draws the results figure: the maps of the best- and worst-predicted test images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from aesthetic_mtl.files import read_tsv
from aesthetic_mtl.report.figures import (  # pyplot on the Agg backend that figures selects
    plt,
    save,
    styled,
)

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


# --------------------------------------------------------------------------------------------------
# the figure
# --------------------------------------------------------------------------------------------------

@styled
def gradcam_examples(checkpoint, image_dir, predictions, dataset: str, out, *, weights_file=None, k: int = 3,
                     target: str | None = None, device: str | None = None,
                     threads: int | None = None) -> pd.DataFrame:
    """Grad-CAM of the best- and worst-predicted test images on the overall score.

    Images come from the uint8 image cache (`image_dir`: images.npy + index.tsv), so the network sees
    exactly the pixels it was evaluated on. Returns the chosen images with their errors.
    """
    from aesthetic_mtl.data.scaling import from_unit
    from aesthetic_mtl.nn.checkpoint import load_model

    model, card = load_model(checkpoint, weights_file)
    target = target or card.overall or card.targets[0]
    pred = read_tsv(predictions)
    pred = pred.assign(error=(pred[f"pred_{target}"] - pred[f"true_{target}"]).abs())
    ranked = pred.sort_values(["error", "image"], kind="stable").reset_index(drop=True)
    k = max(1, min(k, len(ranked) // 2 if len(ranked) >= 2 else 1))
    picks = pd.concat([ranked.head(k).assign(group="best"), ranked.tail(k)[::-1].assign(group="worst")])
    index = read_tsv(Path(image_dir) / "index.tsv")
    row_of = dict(zip(index["image"].astype(str), index["row"]))
    cache = np.load(Path(image_dir) / "images.npy", mmap_mode="r")
    images = np.stack([cache[row_of[str(im)]] for im in picks["image"]])
    dev = torch.device(device) if device else (torch.device("cuda") if torch.cuda.is_available()
                                               else torch.device("cpu"))
    if dev.type == "cpu" and threads:
        torch.set_num_threads(int(threads))
    cams = grad_cam(model, images, model.targets.index(target), device=dev)
    low, high = card.ranges[target]
    layer_name = _layer_name(model, cam_layer(model.features))
    fig, axes = plt.subplots(4, k, figsize=(2.9 * k + 1.2, 12.0), squeeze=False, layout="constrained")
    for g, group in enumerate(("best", "worst")):
        sel = picks[picks["group"] == group]
        for j, (img, cam, (_, r)) in enumerate(zip(images[g * k:(g + 1) * k], cams[g * k:(g + 1) * k],
                                                   sel.iterrows())):
            top, bottom = axes[2 * g, j], axes[2 * g + 1, j]
            top.imshow(img)
            t, p = from_unit(r[f"true_{target}"], low, high), from_unit(r[f"pred_{target}"], low, high)
            top.set_title(f"{group} #{j + 1}: {str(r['image'])[:22]}\ntrue {float(t):.2f}, "
                          f"predicted {float(p):.2f}", fontsize=10)
            bottom.imshow(img)
            overlay = bottom.imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
            bottom.set_title("Grad-CAM", fontsize=10)
            for ax in (top, bottom):
                ax.set_xticks([])
                ax.set_yticks([])
    fig.colorbar(overlay, ax=list(axes.flat), shrink=0.4, label="Grad-CAM (0 = none, 1 = max)")
    fig.suptitle(f"{dataset}: Grad-CAM on {layer_name} for {target} (raw scale {low:g} to {high:g})\n"
                 f"top two rows: {k} best-predicted test images; bottom two rows: {k} worst",
                 fontsize=12)
    save(fig, out)
    return picks


def _layer_name(model, layer) -> str:
    for name, module in model.named_modules():
        if module is layer:
            return name
    return type(layer).__name__
