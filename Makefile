# trigkit: `make train export synth` is the main job, `make test` the tests.
# The first target that needs Python creates .venv and installs the pinned stack into it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed-stamp
MODEL ?=
# DATA=file trains MODEL on that table/image file instead of its card's source (train only).
DATA ?=
BUILD := build
TRIGKIT := $(BIN)/trigkit
# Default models in two lanes run side by side (each a teacher before its student).
LANES := "l0_pointing_f32 l0_pointing_tnn" "l0_vertex_f32 l0_vertex_tnn"
MODELS := l0_pointing_f32 l0_pointing_tnn l0_vertex_f32 l0_vertex_tnn
# Offline models (issues 7/8/20), generators before the models that use their samples.
OFFLINE_MODELS := jet_wgan_gp jet_darkphoton_cnn jet_darkphoton_tnn jet_autoencoder \
	monojet_event_dnn monojet_hist_dnn monojet_hist_cnn lowpt_electron_dnn lowpt_electron_tnn \
	lowpt_electron_bnn jet_pt_bayes dijet_cwola dijet_anode
OFFLINE_FIRMWARE := jet_darkphoton_tnn lowpt_electron_tnn
SELECTED := $(if $(MODEL),$(MODEL),$(MODELS))
SELECTED_LANES := $(if $(MODEL),"$(MODEL)",$(LANES))
# Run stages over the selected models in their lanes, printing each model's and each lane's
# wall time: $(call each_model,STAGES,EXTRA ARGS OF THE FIRST STAGE).
each_model = @bash sw/tools/lanes.sh $(TRIGKIT) "$(1)" "$(2)" $(SELECTED_LANES)
# One stage over a list of models, one after the other: $(call in_order,STAGE,MODELS).
in_order = @bash sw/tools/lanes.sh $(TRIGKIT) "$(1)" "" "$(2)"
# The main job (`make train export synth`): each lane runs its whole chain, stage after stage,
# without waiting for the other lane at every stage (the lanes take different times at
# different stages); the later goals then find their work done. A single goal runs one stage
# over all lanes.
MAIN_JOB := $(and $(filter train,$(MAKECMDGOALS)),$(filter synth,$(MAKECMDGOALS)))
CHAIN := train export rtl sim synth
in_main_job = @echo "== $(1): done in the lanes of the main job =="

.PHONY: all venv train export rtl sim synth report test lint bench baseline clean offline scan

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
	$(call each_model,$(if $(MAIN_JOB),$(CHAIN),train),$(if $(DATA),--data $(DATA)))

# QONNX, integer reference, test vectors and the hls4ml C simulation, all checked bit-exact.
export: $(STAMP)
	$(if $(MAIN_JOB),$(call in_main_job,export),$(call each_model,export))

# Pipelined Verilog (da4ml) from the QONNX graph, checked against the integer reference.
rtl: $(STAMP)
	$(if $(MAIN_JOB),$(call in_main_job,rtl),$(call each_model,rtl))

# cocotb testbenches under Verilator on every vector: stream, random gaps, reset.
sim: $(STAMP)
	$(if $(MAIN_JOB),$(call in_main_job,sim),$(call each_model,sim))

# Resources and latency of RTL proven bit-exact by the cocotb run, then the per-model reports
# and build/summary.md.
synth: $(STAMP) rtl sim
	$(if $(MAIN_JOB),$(call in_main_job,synth),$(call each_model,synth))
	$(TRIGKIT) report

# Every offline model: train (with its studies and variants), then the firmware path of the
# ternary ones.
offline: $(STAMP)
	$(call in_order,train,$(OFFLINE_MODELS))
	$(call in_order,export,$(OFFLINE_FIRMWARE))
	$(call in_order,rtl,$(OFFLINE_FIRMWARE))
	$(call in_order,sim,$(OFFLINE_FIRMWARE))
	$(call in_order,synth,$(OFFLINE_FIRMWARE))

report: $(STAMP)
	$(TRIGKIT) report

lint: $(STAMP)
	$(BIN)/ruff check sw tests

test: $(STAMP) lint
	$(BIN)/python -m pytest -n 2 -q

# Co-design scan of one card over models/spaces/MODEL.yaml (Ray Tune + Optuna), e.g.
# make scan MODEL=l0_pointing_tnn SCAN_ARGS="--trials 24 --max-lut 86000 --resume"
SCAN_ARGS ?= --trials 24 --resume
scan: $(STAMP)
	@test -n "$(MODEL)" || { echo "make scan needs MODEL=NAME (a card with models/spaces/NAME.yaml)"; exit 2; }
	$(TRIGKIT) scan --model $(MODEL) --space models/spaces/$(MODEL).yaml $(SCAN_ARGS)

bench: $(STAMP)
	$(BIN)/python sw/bench/bench_simulate.py
	-$(BIN)/python sw/bench/bench_reference.py
	$(BIN)/python sw/bench/bench_generators.py
	$(BIN)/python sw/bench/bench_trace.py

clean:
	rm -rf $(BUILD) sim/sim_build* .pytest_cache .ruff_cache
	find hls hw -mindepth 1 -maxdepth 1 -type d ! -name common -exec rm -rf {} +
