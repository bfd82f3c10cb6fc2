"""Rule fetch_weights: ImageNet weights of the backbone into resources/weights (needs internet once)."""
from pathlib import Path

from aesthetic_mtl.joblog import logging_to
from aesthetic_mtl.nn.weights import fetch_weights

with logging_to(snakemake.log[0]) as log:
    download = {k.removeprefix("download_"): v for k, v in snakemake.resources.items() if k.startswith("download_")}
    fetch_weights(snakemake.wildcards.backbone, Path(snakemake.output.weights), download=download, log=log)
