"""Floor 2, the network: the paper's model (`model`) and its two training stages (`train`, `optim`), on a
backbone of the registry (`backbones`, `weights`), from feature caches (`feature_cache`, `placement`), saved as
checkpoints (`checkpoint`); `job` is one training job of the workflow, `gradcam` the Grad-CAM maps and figure,
`device` / `gpu` where tensors run. Everything here receives typed specs (`aesthetic_mtl.specs`), never the
config's dicts.
"""
