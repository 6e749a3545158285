# The commands of the README:
#   make        create .venv, install, run the whole default pipeline, record it in dvc.lock
#               (under kdlib.warm: every job is forked from one process that has imported torch and kdlib)
#               (dvc commit rewrites outputs from its cache; `snakemake --touch` then restores the
#               file times Snakemake compares, so `snakemake -n` and `dvc status` both say: up to date)
#   make test   create .venv, install, run the test suite
#   make bench  the benchmark suite (benchmarks/suite.py) on the finished workspace: results/<profile>/benchmarks.{json,md}
#   make push   upload datasets and checkpoints to the DVC remote (.dvc/config: a folder beside the checkout)
#   make pull   in a fresh clone: download them, check that the checkout is what dvc.lock records, then align
#               the file times (`snakemake --touch --forceall`) so that neither tool re-runs anything
# PARAMS=configs/tiny.yaml (any params file) does the same for that profile: its DVC pipeline is
# pipelines/<profile>/dvc.yaml (written first), its files data/<profile>/ and results/<profile>/.
PYTHON ?= python3
PARAMS ?= params.yaml
export PARAMS  # recipes read it as "$$PARAMS": a path is never spliced into a command line
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: all pipeline test bench push pull dvc-yaml

all: pipeline

$(BIN)/kdlib-installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# The wall time goes to results/pipeline_time.json for the benchmarks, with the jobs run (from Snakemake's log) and
# each stage kind's seconds and start-up share (from the stages' job log, KDLIB_JOB_LOG).
pipeline: $(BIN)/kdlib-installed
	@start=$$(date +%s); jobs=.snakemake/kdlib-jobs.jsonl; mkdir -p .snakemake && rm -f $$jobs; \
	pipeline=$$($(BIN)/python -m kdlib.pipeline dvc --params "$$PARAMS" | sed -n 's/^wrote \([^ ]*\) .*/\1/p') && \
	test -n "$$pipeline" && \
	KDLIB_JOB_LOG="$(CURDIR)/$$jobs" $(BIN)/python -m kdlib.warm snakemake --cores all --resources gpu=1 \
		--config params="$$PARAMS" && \
	log=$$(find .snakemake/log -name '*.snakemake.log' -newermt @$$start 2>/dev/null | sort | tail -1) && \
	dvc commit --force --quiet "$$pipeline" && \
	snakemake --touch --cores 1 --quiet --config params="$$PARAMS" && \
	seconds=$$(( $$(date +%s) - start )) && \
	$(BIN)/python benchmarks/workflow.py --params "$$PARAMS" --record $$seconds $${log:+--log $$log} --jobs $$jobs && \
	echo "$$PARAMS: pipeline finished in $$seconds s; $${pipeline%.yaml}.lock updated"

bench: $(BIN)/kdlib-installed
	$(BIN)/python benchmarks/suite.py --params "$$PARAMS"

test: $(BIN)/kdlib-installed
	$(BIN)/python -m pytest

push: $(BIN)/kdlib-installed
	dvc push

# Times are aligned only when DVC finds every stage's code, params and outputs as dvc.lock records them.
# --forceall touches every job, so Snakemake records each with the current params and code: a fresh clone has no
# such records, and a job without one (the prepare stages, which a plain --touch skips) would not re-run after a
# params edit.
pull: $(BIN)/kdlib-installed
	dvc pull
	@if dvc status --quiet; then \
		snakemake --touch --forceall --cores 1 --quiet --config params="$$PARAMS" && \
		echo "pulled: dvc status and snakemake -n both say up to date"; \
	else \
		dvc status; \
		echo "pulled, but dvc status (above) says the pipeline is not up to date, so file times were left alone:" \
			"dvc repro re-runs what changed, then make pull aligns them" >&2; \
		exit 1; \
	fi

dvc-yaml: $(BIN)/kdlib-installed
	$(BIN)/python -m kdlib.pipeline dvc --params "$$PARAMS"
