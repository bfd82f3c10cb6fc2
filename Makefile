# Two commands set everything up on a fresh machine: `make demo` and `make test`.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
# As many as the machine has: more oversubscribes the training jobs (make demo on 2 cores: 4m32s with 4, 2m20s with 2)
CORES  ?= $(shell nproc 2>/dev/null || echo 4)

.PHONY: install demo test test-slurm test-catalog lint config-doc bench bench-gpu clean

install: $(VENV)/.installed

# Re-install when the dependencies change; torch comes from PyPI (or a local wheel cache).
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: install
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml
	$(BIN)/snakemake --cores 1 --configfile config/demo.yaml --report results/demo/report.html

test: install
	$(BIN)/python -m pytest -m "not slurm"

# The tiny workflow through a real SLURM cluster (tests/test_slurm.py); start one first: .ci/slurm-up.sh
test-slurm: install
	AESTHETIC_MTL_SLURM_REQUIRED=1 $(BIN)/python -m pytest -m slurm -rA tests/test_slurm.py

# The Snakemake workflow catalog's test config (.test/config/config.yaml) and its report.
test-catalog: install
	$(BIN)/snakemake --cores $(CORES) --configfile .test/config/config.yaml
	$(BIN)/snakemake --cores 1 --configfile .test/config/config.yaml --report results/report.zip

# Snakemake's linter on the whole workflow, then the Snakefiles' and rule files' formatting (snakefmt, settings in
# pyproject.toml).
lint: install
	$(BIN)/snakemake --lint --configfile config/demo.yaml
	$(BIN)/snakefmt --check Snakefile workflow/Snakefile workflow/rules/
	$(BIN)/ruff check src workflow/scripts bench tests

# config/README.md from the schema's descriptions (tests/test_config_doc.py fails when they disagree).
config-doc: install
	$(BIN)/python -m aesthetic_mtl.config_doc

bench: install
	$(BIN)/python bench/run.py
	$(BIN)/python bench/predict.py --write

# The paper grid at the real datasets' sizes through snakemake on one GPU (bench/gpu.py -> bench/gpu-results.md).
bench-gpu: install
	$(BIN)/python bench/gpu.py

clean:
	rm -rf results/*/ results/*.tsv results/*.md resources logs benchmarks .snakemake
