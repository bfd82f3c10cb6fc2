"""Rule gradcam: Grad-CAM of the best- and worst-predicted test images on the overall score."""
from pathlib import Path

from aesthetic_mtl.joblog import logging_to
from aesthetic_mtl.nn.gradcam import gradcam_examples

with logging_to(snakemake.log[0]) as log:
    picks = gradcam_examples(snakemake.input.model, Path(snakemake.input.index).parent, snakemake.input.predictions,
                             snakemake.wildcards.dataset, snakemake.output.figure,
                             weights_file=snakemake.input.weights or None, k=snakemake.params.k,
                             device=snakemake.params.device, threads=snakemake.threads)
    log(picks[["group", "image", "error"]].to_string(index=False))
