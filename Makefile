# Two commands for a new user:  `make run` (set up, then the whole benchmark)  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
CORES ?= all
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup run smoke test test-fast lint dvc-check bench bench-gpu clean

# The venv is (re)installed whenever pyproject.toml changes; torch 2.14.1 / torchvision 0.29.1 are pinned there.
# Their first install needs about 6 GiB in the venv and room to unpack: refused up front, naming the cause, rather
# than pip's "No space left on device" halfway through.
SETUP_FREE_GIB ?= 8
define DISK_CHECK
import importlib.util, shutil, sys
venv, needed = sys.argv[1], float(sys.argv[2])
free = shutil.disk_usage(venv).free / 2**30
if importlib.util.find_spec("torch") is None and free < needed:
    sys.exit(f"make setup: {free:.1f} GiB free where {venv} lies, and installing torch there needs about {needed:g} GiB; "
             "free some space (or set SETUP_FREE_GIB if you know it needs less) and run make again")
endef
export DISK_CHECK
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "$$DISK_CHECK" $(VENV) $(SETUP_FREE_GIB)
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
SPEED_BENCHMARKS := prepare neighbours poisson step_options vaegan_backward startup malloc train study_analysis
bench: setup
	for name in $(SPEED_BENCHMARKS); do python benchmarks/$$name.py || exit 1; done

## The training-throughput table on a CUDA GPU at the paper widths (batch 64; a few minutes).
bench-gpu: setup
	python benchmarks/train.py --device cuda --paper --steps 5 --fit-steps 10

clean:
	rm -rf results logs .snakemake
