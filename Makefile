# Everything installs into .venv; nothing else on the machine is changed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo test test-fast lint openapi clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(INSTALLED)

install: $(INSTALLED)

# Ingest the real sample in data/, train, replay the rest in time order, print risk.
demo: install
	$(BIN)/predictor run

# The whole suite, slow tests included.
test: install
	$(BIN)/python -m pytest

# The suite without tests marked slow.
test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check predictor tests dags
	$(BIN)/mypy

# Regenerate the API's OpenAPI document after changing a route or response model.
openapi: install
	$(BIN)/python -m predictor.api.openapi docs/openapi.json

clean:
	rm -rf $(VENV) .predictor .pytest_cache
