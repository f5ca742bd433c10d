# Set-up, main job and tests. Every target creates .venv first if needed.
# torch is installed on its own, pinned, before the package: a bare `torch` requirement on a machine
# without torch pulls a multi-GB CUDA build. Override with e.g. `make setup TORCH_SPEC="torch==2.13.0+cu128"`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-slow lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install "$(TORCH_SPEC)"
	$(BIN)/pip install -e ".[test,onnx,app]"
	touch $(STAMP)

demo: setup
	HF_HUB_OFFLINE=1 $(BIN)/gmp-tl demo

test: setup
	$(BIN)/python -m pytest

test-slow: setup
	$(BIN)/python -m pytest -m slow

lint: setup
	$(BIN)/ruff check gmp_tl_hf recipes tests
	$(BIN)/ruff format --check gmp_tl_hf recipes tests

bench: setup  # every performance table of the README (about 25 min on 2 cores)
	for script in tests/benchmarks/bench_*.py; do HF_HUB_OFFLINE=1 $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
