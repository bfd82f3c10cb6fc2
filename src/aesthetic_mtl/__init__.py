"""Multi-task CNN for image aesthetic assessment (Soydaner & Wagemans 2023), reproduced as a workflow.

    import aesthetic_mtl
    scorer = aesthetic_mtl.load("model.safetensors")     # or a checkpoint written by training
    scores = scorer.predict(["photo.jpg"])                # DataFrame, every target on its original scale
"""

__version__ = "0.1.0"


def load(path, **kwargs):
    """A `Scorer` of a trained model (`aesthetic_mtl.scorer.load`; imported on first use, so the workflow's
    jobs that import the package do not pay for torch)."""
    from aesthetic_mtl.scorer import load as _load

    return _load(path, **kwargs)


__all__ = ["load", "__version__"]
