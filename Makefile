# The two commands of the README. Each creates the virtual environment if it is missing and
# installs hlsm into it with the pinned constraints (CPU build of torch).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hlsm-installed

.PHONY: run test test-release test-all lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --progress-bar on -c constraints.txt -e '.[dev,ray]'
	touch $(STAMP)

run: $(STAMP)  ## the main job: the whole pipeline in small, runs/quickstart/report.md
	$(BIN)/hlsm quickstart

test: $(STAMP)  ## lint, type-check, then the default (fast) test suite, one process per core
	$(BIN)/ruff check hlsm sims tests scripts
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n auto --dist loadgroup $(PYTEST_ARGS)

test-release: $(STAMP)  ## the wheel and sdist built, installed into a fresh venv and used from an empty folder
	$(BIN)/python -m pytest -q -m 'release and not slow' $(PYTEST_ARGS)

test-all: $(STAMP)  ## every test, the slow and release ones included
	$(BIN)/python -m pytest -q -m '' $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check hlsm sims tests scripts
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/hlsm bench simulate

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .mypy_cache
