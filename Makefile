# The two commands of the README:
#   make        create .venv, install, run the whole default pipeline, record it in dvc.lock
#               (dvc commit rewrites outputs from its cache; `snakemake --touch` then restores the
#               file times Snakemake compares, so `snakemake -n` and `dvc status` both say: up to date)
#   make test   create .venv, install, run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: all pipeline test dvc-yaml clean-results

all: pipeline

$(BIN)/kdlib-installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

pipeline: $(BIN)/kdlib-installed
	@start=$$(date +%s); \
	$(BIN)/python -m kdlib.pipeline dvc && \
	snakemake --cores all --resources gpu=1 && \
	dvc commit --force --quiet && \
	snakemake --touch --cores 1 --quiet && \
	echo "default pipeline finished in $$(( $$(date +%s) - start )) s; dvc.lock updated"

test: $(BIN)/kdlib-installed
	$(BIN)/python -m pytest

dvc-yaml: $(BIN)/kdlib-installed
	$(BIN)/python -m kdlib.pipeline dvc
