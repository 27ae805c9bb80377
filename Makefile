# Two entry points for a fresh machine: `make run` and `make test`. Both create or reuse .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch keeps set-up small; a user with a GPU installs their own torch first.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: venv run test lint bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev,ray]"
	touch $@

venv: $(BIN)/.installed

run: venv
	$(BIN)/python -m fmpbench run --methods all --dataset avazu

test: venv
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check fmpbench tests benchmarks

bench: venv
	$(BIN)/pip install -q -e ".[bench]"  # polars, the preparation benchmark's reference
	$(BIN)/python benchmarks/trainer_throughput.py --json benchmarks/results/trainer_throughput_cpu.json
	$(BIN)/python benchmarks/prepare_throughput.py --json benchmarks/results/prepare_throughput.json
	$(BIN)/python benchmarks/grid_jobs.py --json benchmarks/results/grid_jobs.json
	$(BIN)/python benchmarks/backbone_auc.py --json benchmarks/results/backbone_auc.json
	$(BIN)/python benchmarks/study_cost.py --json benchmarks/results/study_cost.json
	$(BIN)/python benchmarks/threads_stacking.py --json benchmarks/results/threads_stacking.json

clean:
	rm -rf $(VENV) .fmpbench-data
