# MedDIFT developer commands. `make test` and `make demo` set up everything
# they need themselves (a local virtual environment in .venv).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch: PyTorch's CPU index is tried first so that pip never
# pulls the multi-GB CUDA build by accident (2.13.0+cpu sorts above 2.13.0).
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
PYTEST_ARGS ?=
DEMO_OUT ?= demo_output

.PHONY: venv test lint demo clean

$(BIN)/.meddift-installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || \
	  $(BIN)/pip install --retries 1 --timeout 30 --extra-index-url $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(BIN)/pip install -e ".[test,baselines,lint]"
	touch $@

venv: $(BIN)/.meddift-installed

## test: run the whole test suite (CPU only, ../shared used where present)
test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## lint: ruff (lint rules and formatting) and mypy, configured in pyproject.toml
lint: venv
	$(BIN)/ruff check MedDIFTLib MedDIFT Testing
	$(BIN)/ruff format --check MedDIFTLib MedDIFT Testing
	$(BIN)/mypy

## demo: the main job on a bundled phantom pair (see README)
demo: venv
	$(BIN)/meddift demo --out $(DEMO_OUT) --force

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
