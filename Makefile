# trigkit: `make train export synth` is the main job, `make test` the tests.
# The first target that needs Python creates .venv and installs the pinned stack into it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed-stamp
MODEL ?=
BUILD := build
TRIGKIT := $(BIN)/trigkit
# Default models, teachers before their students.
MODELS := l0_pointing_f32 l0_pointing_tnn l0_vertex_f32 l0_vertex_tnn
SELECTED := $(if $(MODEL),$(MODEL),$(MODELS))

.PHONY: all venv train export rtl sim synth report test lint bench baseline clean

all: train export synth

$(STAMP): pyproject.toml
	@echo "== creating $(VENV) and installing the pinned stack (one-time, ~2 min) =="
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	# torch first and pinned: a CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)

# The coincidence-window baseline study: roads, turn-on curves, fake rate, signal efficiencies.
baseline: $(STAMP)
	$(TRIGKIT) baseline --out $(BUILD)/baseline --no-progress

# Train (resuming from checkpoints), evaluate against the standard algorithm, write reports.
train: $(STAMP)
	@set -e; for m in $(SELECTED); do \
	  echo "== train $$m =="; $(TRIGKIT) train --model $$m; done

# QONNX, integer reference, test vectors and the hls4ml C simulation, all checked bit-exact.
export: $(STAMP)
	@set -e; for m in $(SELECTED); do \
	  echo "== export $$m =="; $(TRIGKIT) export --model $$m; done

# Pipelined Verilog (da4ml) from the QONNX graph, checked against the integer reference.
rtl: $(STAMP)
	@set -e; for m in $(SELECTED); do \
	  echo "== rtl $$m =="; $(TRIGKIT) rtl --model $$m; done

# cocotb testbenches under Verilator on every vector: stream, random gaps, reset.
sim: $(STAMP)
	@set -e; for m in $(SELECTED); do \
	  echo "== sim $$m =="; $(TRIGKIT) sim --model $$m; done

synth: $(STAMP) rtl
	@set -e; for m in $(SELECTED); do \
	  echo "== synth $$m =="; $(TRIGKIT) synth --model $$m; done

report: $(STAMP)
	$(TRIGKIT) report

lint: $(STAMP)
	$(BIN)/ruff check sw tests

test: $(STAMP) lint
	$(BIN)/python -m pytest -n 2 -q

bench: $(STAMP)
	$(BIN)/python sw/bench/bench_simulate.py
	-$(BIN)/python sw/bench/bench_reference.py

clean:
	rm -rf $(BUILD) sim/sim_build* .pytest_cache .ruff_cache
	find hls hw -mindepth 1 -maxdepth 1 -type d ! -name common -exec rm -rf {} +
