# `make demo` and `make test` set up a virtual environment on first use, then run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
OUT ?= out/demo

.PHONY: setup demo test lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt torch
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dlcr-data build demo --variants 10 --splits train,query --out $(OUT)
	$(BIN)/dlcr-data preview $(OUT) --n 8
	$(BIN)/dlcr-data experiment demo --out $(OUT) --generators recolor

test: $(STAMP) lint
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check dlcr_data tests $(wildcard bench)
	$(BIN)/ruff format --check dlcr_data tests $(wildcard bench)
	$(BIN)/lint-imports --no-cache

format: $(STAMP)
	$(BIN)/ruff format dlcr_data tests $(wildcard bench)
	$(BIN)/ruff check --fix dlcr_data tests $(wildcard bench)

bench: $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps torchreid==0.2.5  # peer of eval_rank.py only
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
