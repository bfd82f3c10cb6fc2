# Reproduction of Soydaner & Wagemans (2023), "Multi-task convolutional neural network for image
# aesthetic assessment". Run: snakemake --cores 4 --resources gpu=1   (demo: make demo)
from snakemake.utils import min_version

min_version("9.20")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
