"""Rule metrics: score every predictions table into results/metrics.tsv, the paired comparisons into
results/comparisons.tsv, plus their provenance record."""
from aesthetic_mtl.joblog import logging_to
from aesthetic_mtl.provenance import write_provenance
from aesthetic_mtl.report.evaluate import write_metrics

p = snakemake.params
with logging_to(snakemake.log[0]):
    write_metrics(snakemake.output.metrics, snakemake.output.comparisons, zip(p.meta, snakemake.input.predictions),
                  p.cross, p.bootstrap, p.seed)
    write_provenance(snakemake.output.provenance, {"cross_dataset": p.cross, "bootstrap": p.bootstrap,
                                                   "bootstrap_seed": p.seed, "predictions": len(p.meta)})
