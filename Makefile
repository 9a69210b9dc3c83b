# autolabel — every target is a thin call of the CLI. Variables: see `make help`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
AUTOLABEL := $(VENV)/bin/autolabel
STAMP := $(VENV)/.installed
# the real clients of `autolabel review`'s formats (datumaro, Label Studio's SDK), kept out of .venv
REVIEW_VENV := .venv-review
REVIEW_STAMP := $(REVIEW_VENV)/.installed

.PHONY: help venv review-venv test test-fast lint demo synth teacher generate manifest verify student evaluate report \
	reproduce rounds bench soak clean-stamps gpu-check gpu-wheels

help:
	@echo "make demo       - the whole pipeline on a synthetic city (sets up .venv; DEMO_OUT=$(DEMO_OUT))"
	@echo "make test       - run the test suite (sets up .venv, and .venv-review for the review formats' clients)"
	@echo "make lint       - ruff check, ruff format --check, mypy"
	@echo "make reproduce  - the paper's findings in miniature -> results/ (REPRO_SEEDS=$(REPRO_SEEDS))"
	@echo "make rounds     - self-training rounds on the synthetic city (ROUNDS=$(ROUNDS) ROUNDS_SEEDS= ROUNDS_JOBS= STOP_WHEN=)"
	@echo "make bench      - benchmarks -> results/bench.json (BENCH_QUICK=1 for the short version)"
	@echo "make soak       - 20,000 tiny images through generate, interrupted twice"
	@echo "make gpu-wheels - wheels of zarr/dask for a GPU machine without them -> .whl/ (needs PyPI)"
	@echo "make gpu-check  - the GPU checks, one JSON (GPU_PYTHON=$(GPU_PYTHON)); without CUDA it does nothing"
	@echo ""
	@echo "Batch stages (each a thin CLI call; a stamp in OUT/.stamps makes make skip finished work):"
	@echo "  synth teacher generate manifest verify student evaluate report"
	@echo "Variables: PIPELINE=$(PIPELINE) OUT=$(OUT)"
	@echo "  DATA= (data.root; aliases CITYSCAPES=, IMAGES=)  TEACHER=$(TEACHER)  LABELS=$(LABELS)"
	@echo "  SHARD= NUM_SHARDS=$(NUM_SHARDS)  WORKERS= SCHEDULER= (Dask)  SET='key=value ...' (config overrides)"
	@echo "Examples:"
	@echo "  make generate PIPELINE=pipelines/cityscapes.toml CITYSCAPES=/data/cs OUT=/scratch/cs \\"
	@echo "       SHARD=\$$SLURM_ARRAY_TASK_ID NUM_SHARDS=32"
	@echo "  make -j4 generate NUM_SHARDS=4     # four shard processes here; on a GPU node shard i takes GPU i"

# The virtualenv: torch first (the pinned CPU build on this disk), then the package with test extras.
$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(STAMP)

# datumaro pins pillow~=12 and pyarrow~=25, so the clients get a venv of their own; the tests call them by
# subprocess (tests/tools/review_client.py)
$(REVIEW_STAMP): tests/tools/requirements.txt
	test -x $(REVIEW_VENV)/bin/python || $(PYTHON) -m venv $(REVIEW_VENV)
	$(REVIEW_VENV)/bin/python -m pip install --quiet -r tests/tools/requirements.txt
	touch $@

review-venv: $(REVIEW_STAMP)

test: $(STAMP) $(REVIEW_STAMP)
	AUTOLABEL_REVIEW_PYTHON=$(abspath $(REVIEW_VENV))/bin/python $(PY) -m pytest -q --timeout=900 tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

# ruff (lint + format check) and mypy: what .ci/run checks before the tests
lint: $(STAMP)
	$(VENV)/bin/ruff check autolabel tests bench scripts
	$(VENV)/bin/ruff format --check autolabel tests bench scripts
	$(VENV)/bin/mypy

# ---------------------------------------------------------------------------------------------------------
# the demo, the paper's findings in miniature, benchmarks, soak

DEMO_OUT ?= runs/demo
REPRO_OUT ?= results
REPRO_SEEDS ?= 3
ROUNDS ?= 2
ROUNDS_OUT ?= runs/rounds
ROUNDS_SEEDS ?=
ROUNDS_JOBS ?= 2
STOP_WHEN ?=

demo: $(STAMP)
	$(AUTOLABEL) demo --out $(DEMO_OUT) --config pipelines/demo.toml

reproduce: $(STAMP)
	$(AUTOLABEL) reproduce --out $(REPRO_OUT) --seeds $(REPRO_SEEDS) --work runs/reproduce

# round 1 = the demo's teacher -> labels -> student; round k+1 relabels with round k's student (docs/rounds.md)
rounds: $(STAMP)
	$(AUTOLABEL) rounds --config pipelines/demo.toml --synthetic --rounds $(ROUNDS) --out $(ROUNDS_OUT) \
		$(if $(ROUNDS_SEEDS),--seeds $(ROUNDS_SEEDS) --jobs $(ROUNDS_JOBS)) $(if $(STOP_WHEN),--stop-when '$(STOP_WHEN)') \
		$(foreach s,$(SET),--set $(s))

bench: $(STAMP)
	$(PY) bench/run.py

soak: $(STAMP)
	$(PY) scripts/soak.py

# ---------------------------------------------------------------------------------------------------------
# GPUs (docs/usage.md, "GPUs"). gpu-check runs with the GPU machine's own Python (torch + CUDA there; no
# .venv): it installs .whl/ (made by gpu-wheels where pip reaches PyPI) into a temporary folder when zarr or
# dask are missing, never torch. Without CUDA it prints {"cuda": false, ...} and exits 0.

GPU_PYTHON ?= $(if $(wildcard $(PY)),$(PY),python3)

gpu-wheels: $(STAMP)
	$(PY) scripts/gpu_wheels.py --dest .whl --present .whl-resolve

gpu-check:
	$(GPU_PYTHON) scripts/gpu_check.py

# ---------------------------------------------------------------------------------------------------------
# batch stages: `make <stage> PIPELINE=pipelines/X.toml OUT=...`; each leaves OUT/.stamps/<stage> when done,
# so rerunning skips finished stages, and an interrupted stage resumes (training from last.pt, generate
# from its manifest). Delete a stamp (or `make clean-stamps`) to redo a stage.

PIPELINE ?= pipelines/demo.toml
PIPELINE_NAME := $(basename $(notdir $(PIPELINE)))
OUT ?= runs/$(PIPELINE_NAME)
STAMPS := $(OUT)/.stamps
NUM_SHARDS ?= 1
SHARD ?=
WORKERS ?=
SCHEDULER ?=
SET ?=
# the dataset root: DATA=..., or the pipeline's own names for it; the demo pipeline reads the synthetic city
DATA ?= $(or $(CITYSCAPES),$(IMAGES),$(if $(filter demo,$(PIPELINE_NAME)),$(OUT)/city))
SYNTH_ARGS ?= --train 200 --val 50 --extra 400 --size 512x256 --seed 0
TEACHER_RUN := $(OUT)/teacher
STUDENT_RUN := $(OUT)/student
LABELS ?= $(OUT)/labels

CONFIG_ARGS = --config $(PIPELINE) $(if $(DATA),--set data.root=$(DATA)) $(foreach s,$(SET),--set $(s))
# a run with a saved state resumes; one without is (re)started from scratch
RESUME_OR_NEW = $$(test -f $(1)/last.state.pt && echo --resume || echo --overwrite)

# TEACHER=path uses an existing checkpoint; otherwise `make teacher` trains one into OUT/teacher
ifeq ($(origin TEACHER),undefined)
TEACHER := $(TEACHER_RUN)/last.pt
TEACHER_DEP := $(STAMPS)/teacher
else
TEACHER_DEP := $(TEACHER)
endif

SHARD_IDS := $(if $(SHARD),$(SHARD),$(shell seq 0 $$(($(NUM_SHARDS) - 1))))
SHARD_STAMPS := $(foreach i,$(SHARD_IDS),$(STAMPS)/generate-$(i)-of-$(NUM_SHARDS))
ALL_SHARD_STAMPS := $(foreach i,$(shell seq 0 $$(($(NUM_SHARDS) - 1))),$(STAMPS)/generate-$(i)-of-$(NUM_SHARDS))

synth: $(STAMPS)/synth
teacher: $(STAMPS)/teacher
generate: $(SHARD_STAMPS)
manifest: $(STAMPS)/manifest
student: $(STAMPS)/student
evaluate: $(STAMPS)/evaluate

$(STAMPS)/synth: | $(STAMP)
	$(AUTOLABEL) synth $(OUT)/city $(SYNTH_ARGS) $(if $(filter demo,$(PIPELINE_NAME)),--extra-fine)
	mkdir -p $(@D) && touch $@

$(STAMPS)/teacher: | $(STAMP) $(if $(filter demo,$(PIPELINE_NAME)),$(STAMPS)/synth)
	$(AUTOLABEL) train-teacher $(CONFIG_ARGS) --out $(TEACHER_RUN) \
		$(call RESUME_OR_NEW,$(TEACHER_RUN))
	mkdir -p $(@D) && touch $@

# one stamp per shard: `make -j N generate` runs shards side by side, a SLURM array task runs one. On a GPU
# node each shard process takes GPU (shard index mod visible GPUs) by itself (autolabel.models.device), so
# make sets no CUDA_VISIBLE_DEVICES; a launcher's own assignment (LOCAL_RANK, SLURM_LOCALID, ...) wins.
$(STAMPS)/generate-%-of-$(NUM_SHARDS): $(TEACHER_DEP) | $(STAMP)
	$(AUTOLABEL) generate $(CONFIG_ARGS) --teacher $(TEACHER) --out $(LABELS) --shard $*/$(NUM_SHARDS) \
		$(if $(WORKERS),--dask-workers $(WORKERS)) $(if $(SCHEDULER),--dask-scheduler $(SCHEDULER))
	mkdir -p $(@D) && touch $@

$(STAMPS)/manifest: $(ALL_SHARD_STAMPS)
	$(AUTOLABEL) manifest $(LABELS)
	mkdir -p $(@D) && touch $@

verify: | $(STAMP)
	$(AUTOLABEL) verify $(LABELS)

$(STAMPS)/student: $(STAMPS)/manifest
	$(AUTOLABEL) train-student $(CONFIG_ARGS) --out $(STUDENT_RUN) --labels $(LABELS) \
		$(call RESUME_OR_NEW,$(STUDENT_RUN))
	mkdir -p $(@D) && touch $@

$(STAMPS)/evaluate: $(STAMPS)/student $(TEACHER_DEP)
	$(AUTOLABEL) evaluate $(CONFIG_ARGS) --checkpoint $(TEACHER) --data config --json $(OUT)/eval/teacher.json
	$(AUTOLABEL) evaluate $(CONFIG_ARGS) --checkpoint $(STUDENT_RUN)/last.pt --data config \
		--json $(OUT)/eval/student.json
	mkdir -p $(@D) && touch $@

report: | $(STAMP)
	$(AUTOLABEL) report $(LABELS) --out $(OUT)/report --config $(PIPELINE) \
		$(foreach m,teacher student,$(if $(wildcard $(OUT)/eval/$(m).json),--evaluation $(m)=$(OUT)/eval/$(m).json))

clean-stamps:
	rm -rf $(STAMPS)
