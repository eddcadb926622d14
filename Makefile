# Two commands for a new user:  `make run` (set up, then the whole benchmark)  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
CORES ?= all
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup run smoke test test-fast lint dvc-check bench bench-gpu clean

# The venv is (re)installed whenever pyproject.toml changes; torch 2.14.1 / torchvision 0.29.1 are pinned there.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --editable '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)

## The whole study on the synthetic faces: data, every model at 64 and 128, Table 1, figures, report.
run: setup
	snakemake --cores $(CORES)

## The same DAG on tiny data (a couple of minutes).
smoke: setup
	snakemake --cores $(CORES) --configfile config/smoke.yaml

test: setup
	pytest

## Everything but the end-to-end runs of the DAG.
test-fast: setup
	pytest -m "not slow"

lint: setup
	ruff check .
	snakemake --lint
	python -m workflow.dvc_check

## Compare the hand-written dvc.yaml with the Snakemake DAG (after changing rules, models or params sections).
dvc-check: setup
	python -m workflow.dvc_check

## The speed benchmarks (ratios side by side in one run). benchmarks/quality.py and face_statistics.py
## measure models and data rather than speed and take arguments: see their --help.
SPEED_BENCHMARKS := prepare neighbours poisson step_options vaegan_backward startup train study_analysis
bench: setup
	for name in $(SPEED_BENCHMARKS); do python benchmarks/$$name.py || exit 1; done

## The training-throughput table on a CUDA GPU at the paper widths (batch 64; a few minutes).
bench-gpu: setup
	python benchmarks/train.py --device cuda --paper --steps 5 --fit-steps 10

clean:
	rm -rf results logs .snakemake
